"""`crashfleet inspect` golden outputs over small logs written for these tests.

Each `tests/data/cli/inspect/<case>.log` has `<case>.expected.txt` (the human summary) and
`<case>.expected.json` (the `--json` object) beside it. `CRASHFLEET_UPDATE_GOLDEN=1` rewrites
them from the current output; review the diff before committing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest

from analysis.fingerprint import FINGERPRINT_VERSION
from crashfleet.cli import main
from tests.conftest import REPO

DATA = REPO / "tests" / "data" / "cli" / "inspect"
UPDATE = os.environ.get("CRASHFLEET_UPDATE_GOLDEN") == "1"
SCHEMA = json.loads((REPO / "docs" / "report.schema.json").read_text())
CASES = sorted(p.stem for p in DATA.glob("*.log"))


def run_inspect(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """In-process run; no debuginfo lookup, so the output does not depend on the machine."""
    assert main(["inspect", "--no-symbolize", *args]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


def check_golden(path: Path, got: str) -> None:
    # The version carries a digest of every skip list: stand it in, or any rule edit anywhere
    # would rewrite these files. (Hash changes of these crashes still show.)
    got = got.replace(FINGERPRINT_VERSION, "<FINGERPRINT_VERSION>")
    if UPDATE:
        path.write_text(got)
    assert path.exists(), f"no {path.name}; run with CRASHFLEET_UPDATE_GOLDEN=1 and review"
    assert got == path.read_text()


@pytest.mark.parametrize("case", CASES)
def test_human(case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    got = run_inspect([str((DATA / f"{case}.log").relative_to(REPO))], capsys)
    check_golden(DATA / f"{case}.expected.txt", got)


@pytest.mark.parametrize("case", CASES)
def test_json(case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    out = run_inspect(["--json", str((DATA / f"{case}.log").relative_to(REPO))], capsys)
    (line,) = out.splitlines()
    doc = json.loads(line)
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    check_golden(DATA / f"{case}.expected.json", json.dumps(doc, indent=2, sort_keys=True) + "\n")


def test_every_case_has_both_expectations() -> None:
    for case in CASES:
        assert (DATA / f"{case}.expected.txt").exists(), case
        assert (DATA / f"{case}.expected.json").exists(), case
