"""Hardware-error counting over the logs in tests/data/analysis/hwerrors (one file per case)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from analysis.hwerrors import KINDS, PATTERNS, HardwareErrorCounter, count_hardware_errors

DATA = Path(__file__).resolve().parents[1] / "data" / "analysis" / "hwerrors"
CASES = sorted(p.stem for p in DATA.glob("*.log"))


@pytest.mark.parametrize("name", CASES)
def test_log_counts_match_expected(name: str) -> None:
    found = dict(count_hardware_errors((DATA / f"{name}.log").read_text()))
    expected_path = DATA / f"{name}.json"
    if os.environ.get("CRASHFLEET_UPDATE_GOLDEN"):
        expected_path.write_text(json.dumps(found, sort_keys=True) + "\n")
    assert found == json.loads(expected_path.read_text())


def test_every_kind_has_a_case() -> None:
    seen = set()
    for name in CASES:
        seen.update(json.loads((DATA / f"{name}.json").read_text()))
    assert seen == set(KINDS)
    assert len(CASES) >= 4 and all(p.regex.pattern for p in PATTERNS)


def test_counter_adds_captured_counts_and_ignores_unknown_kinds() -> None:
    counter = HardwareErrorCounter()
    assert counter.feed("[ 1.0] EDAC MC0: 4 CE memory read error on DIMM_A1") == "edac_ce"
    assert counter.feed("[ 1.0] a line about nothing") is None
    assert counter.feed("EDAC MC0: 1 CE " + "x" * 5000) is None  # over MAX_LINE: not such a message
    counter.add([("edac_ce", 2), ("made_up", 9), ("mce", 0)])
    assert counter.counts == (("edac_ce", 6),)
