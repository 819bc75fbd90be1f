"""analysis.editions: the secondary fingerprint is the fingerprint the previous rule edition gives.

Checked on the project's real console logs: a record parsed under `previous_rules()` (what an
agent before the edition sends) is fingerprinted by the collector into exactly the secondary
that the current record carries, and reports the edition does not touch have none.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.editions import EDITION_KINDS, secondary_fingerprint
from analysis.fingerprint import (
    FINGERPRINT_VERSION,
    GUILTY_FRAME_RULES,
    PREVIOUS_FINGERPRINT_VERSION,
    compute,
    ruleset_text,
)
from analysis.model import CrashKind
from analysis.oops import parse_log
from analysis.title import previous_rules

REAL = Path(__file__).resolve().parents[1] / "data" / "vmcore" / "real"


@pytest.mark.parametrize(
    "case", ["debian12-6.1-arm64-softlockup", "debian13-6.12-amd64-softlockup", "debian13-6.12-amd64-null"]
)
def test_secondary_is_what_the_previous_edition_computes(case: str) -> None:
    text = (REAL / case / "serial.log").read_text()
    with previous_rules():
        before = {(r.kind, r.reason): compute(r) for r in parse_log(text)}
    for record in parse_log(text):
        primary = compute(record)
        old = before[(record.kind, record.reason)]
        secondary = secondary_fingerprint(record, record.excerpt, primary)
        if old.value == primary.value:
            assert secondary is None
        else:
            assert record.kind in EDITION_KINDS
            assert secondary is not None
            assert (secondary.value, secondary.frames, secondary.version) == (
                old.value, old.frames, PREVIOUS_FINGERPRINT_VERSION,
            )  # fmt: skip


def test_the_edition_changes_stall_titles_only_where_the_rip_rule_applies() -> None:
    text = (REAL / "debian13-6.12-amd64-softlockup" / "serial.log").read_text()
    lockup = next(r for r in parse_log(text) if r.kind is CrashKind.SOFT_LOCKUP)
    with previous_rules():
        old = next(r for r in parse_log(text) if r.kind is CrashKind.SOFT_LOCKUP)
    assert (lockup.guilty_frame, old.guilty_frame) == ("crashme_softlockup", "proc_reg_write")
    assert not secondary_fingerprint(lockup, "", compute(lockup)), "no excerpt, nothing to re-read"


def test_versions_differ_by_the_guilty_frame_rules() -> None:
    assert FINGERPRINT_VERSION != PREVIOUS_FINGERPRINT_VERSION
    added = set(ruleset_text().splitlines()) - set(ruleset_text(guilty_rules=False).splitlines())
    assert added == {f"guilty-frame {rule}" for rule in GUILTY_FRAME_RULES}
