"""A listing piped into `head` ends quietly: no `[Errno 32] Broken pipe`, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.cli.test_collector_commands import collector  # noqa: F401 - the live collector fixture
from tests.conftest import REPO

LOGS = REPO / "tests" / "data" / "logs"


def _into_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `crashfleet ARGS | head -c0`: the reader is gone before the first byte is written."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "crashfleet", *args],
            stdout=write, stderr=subprocess.PIPE, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
        )  # fmt: skip
    finally:
        os.close(write)


def test_inspect_into_a_closed_pipe_is_quiet() -> None:
    done = _into_closed_pipe("inspect", *(str(p) for p in sorted(LOGS.glob("*.log"))[:5]))
    assert done.stderr == ""
    assert done.returncode == -signal.SIGPIPE  # what a shell shows as 141, like `yes | head`


def test_a_listing_into_a_closed_pipe_is_quiet(collector: tuple[str, str], tmp_path: Path) -> None:  # noqa: F811
    target, _db = collector
    log = tmp_path / "dmesg.txt"
    log.write_bytes((LOGS / "hostile-code-hex-run.log").read_bytes())
    submitted = subprocess.run(
        [sys.executable, "-m", "crashfleet", "submit", "--collector", target, "--hostname", "h-1", str(log)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    for command in ("clusters", "crashes", "hosts"):
        done = _into_closed_pipe(command, "--collector", target)
        assert done.stderr == "", (command, done.stderr)
        assert done.returncode == -signal.SIGPIPE
