"""Golden corpus: each tests/data/logs/<case>.log parses to exactly <case>.expected.json.

The logs are written by hand in the formats real kernels print (2.6.32 to 6.x, x86_64, i386,
arm64, ppc64, s390x, riscv64; syslog, journalctl, `<N>` levels, caller ids). Every field of
every record is compared, so any change to what the parser reads shows up here as a diff.
Regenerate after an intended change with CRASHFLEET_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from pathlib import Path
from typing import Any

import pytest

from analysis.oops import parse_log

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"
CASES = sorted(LOGS.glob("*.log"))
UPDATE = os.environ.get("CRASHFLEET_UPDATE_GOLDEN") == "1"


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return value


def records_as_json(data: bytes) -> list[dict[str, Any]]:
    """Every record of a log as plain JSON data (the excerpt left out: it is the log itself)."""
    out = []
    for record in parse_log(data):
        doc = _jsonable(record)
        doc.pop("excerpt")
        out.append(doc)
    return out


def test_corpus_is_present() -> None:
    assert len(CASES) >= 15, f"golden corpus shrank: {len(CASES)} cases in {LOGS}"
    missing = [c.name for c in CASES if not c.with_suffix(".expected.json").exists() and not UPDATE]
    assert not missing, f"cases without expected output (run with CRASHFLEET_UPDATE_GOLDEN=1): {missing}"


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_golden(case: Path) -> None:
    got = records_as_json(case.read_bytes())
    expected_path = case.with_suffix(".expected.json")
    if UPDATE:
        expected_path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    expected = json.loads(expected_path.read_text())
    assert got == expected


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_golden_survives_crlf(case: Path) -> None:
    """A log copied through Windows tools (CRLF) parses to the same records."""
    data = case.read_bytes()
    assert records_as_json(data.replace(b"\n", b"\r\n")) == records_as_json(data)
