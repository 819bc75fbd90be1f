"""Every report the kernel prints, from its printers: each row of analysis.printers.PRINTERS has
a fixture written from the printer's format string (tests/data/printers/<fixture>.log) with its
expected record beside it (<fixture>.expected.json), and a row in docs/log-parsing.md.
CRASHFLEET_UPDATE_GOLDEN=1 rewrites the expected files from the table.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from analysis.logtext import normalize_line
from analysis.oops import parse_log
from analysis.printers import PRINTERS, Printer
from analysis.title import describe, match_anchor

DATA = Path(__file__).resolve().parents[1] / "data" / "printers"
DOC = Path(__file__).resolve().parents[2] / "docs" / "log-parsing.md"
UPDATE = os.environ.get("CRASHFLEET_UPDATE_GOLDEN") == "1"


def doc_row(row: Printer) -> str:
    """The table row docs/log-parsing.md shows for a printer."""
    title = row.title + ("" if row.syzkaller else " †")
    return f"| `{row.printer}` | `{row.kind.value}` | {title} | `{row.rule}` | [{row.fixture}](../tests/data/printers/{row.fixture}.log) |"


def test_every_fixture_is_in_the_table() -> None:
    fixtures = {p.stem for p in DATA.glob("*.log")}
    assert fixtures == {row.fixture for row in PRINTERS}
    assert len({row.fixture for row in PRINTERS}) == len(PRINTERS)


@pytest.mark.parametrize("row", PRINTERS, ids=[row.fixture for row in PRINTERS])
def test_printer_fixture(row: Printer) -> None:
    records = parse_log((DATA / f"{row.fixture}.log").read_bytes())
    assert len(records) == 1, [r.title for r in records]
    record = records[0]
    lines = [normalize_line(line).text for line in record.excerpt.splitlines()]
    group = match_anchor(lines[0])
    assert group is not None
    got = {
        "printer": row.printer,
        "kind": record.kind.value,
        "title": record.title,
        "guilty_frame": record.guilty_frame,
        "corrupted": record.corrupted_reason,
        "rule": describe(group, lines).rule,
    }
    expected_path = DATA / f"{row.fixture}.expected.json"
    if UPDATE:
        expected_path.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(expected_path.read_text())
    assert (got["kind"], got["title"], got["rule"], got["corrupted"]) == (row.kind.value, row.title, row.rule, None)


def test_the_table_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    missing = [row.fixture for row in PRINTERS if doc_row(row) not in text]
    assert not missing, f"docs/log-parsing.md lacks the rows of: {missing}"
