"""The short chaos run (bench/chaos.py --short) as a test: real agent processes and two collector
replicas on PostgreSQL through a fault-injecting proxy, faults injected while crashes keep coming.

It asserts what must hold whatever the machine's speed: every crash placed is stored, none twice,
and every recovery drains. The timings the full run prints (`make chaos`) are goals of the
benchmark, quoted in docs/reliability.md, never asserted here.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.collector.conftest import postgres_url_or_skip
from tests.conftest import REPO


@pytest.mark.slow
@pytest.mark.postgres
def test_short_chaos_run_loses_nothing_and_stores_nothing_twice() -> None:
    postgres_url_or_skip()
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "chaos.py"), "--short"],
        capture_output=True, text=True, timeout=900, cwd=REPO,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    total = next(line for line in out.splitlines() if line.startswith("total"))
    lost, twice = (int(x) for x in total.split()[-2:])
    placed = int(total.split()[1])
    assert placed >= 30, out
    assert (lost, twice) == (0, 0), out
    assert "result: PASS" in out
