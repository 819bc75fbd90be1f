"""The same title gets the same kind everywhere: `analysis.title.TITLE_KINDS` is the one title ->
kind table, checked over every title template the rules can produce and every title the parser
gives the syzkaller corpus, the golden logs and the real dumps' console logs."""

from __future__ import annotations

import collections
import lzma
import re
from pathlib import Path

import pytest

from analysis.model import CrashKind
from analysis.oops import parse_log
from analysis.title import (
    OOPS_GROUPS,
    TITLE_KINDS,
    TitleRule,
    TitleTemplate,
    describe,
    match_anchor,
    title_kind,
)
from tests.conftest import SHARED

TESTS = Path(__file__).resolve().parents[1]
RULES = [rule for group in OOPS_GROUPS for rule in group.rules if rule.title]
_FIELD = re.compile(r"\{([^{}]*)\}")


def _render(rule: TitleRule) -> str:
    """The rule's title with every field filled by a word no template spells literally."""
    return _FIELD.sub(lambda m: "crashme_frame" if m.group(1) == "frame" else "qzx", rule.title)


TABLED = [rule for rule in RULES if not rule.title.startswith("{")]


@pytest.mark.parametrize("rule", TABLED, ids=[r.name for r in TABLED])
def test_every_rule_title_maps_to_its_rule_kind(rule: TitleRule) -> None:
    assert title_kind(_render(rule)) is rule.kind


def test_table_has_a_row_per_rule_with_a_literal_start() -> None:
    assert sorted(name for _, _, name in TITLE_KINDS) == sorted(r.name for r in TABLED)
    assert title_kind("Unable to handle kernel pointer dereference in virtual kernel address space") is None


@pytest.mark.parametrize(
    ("header", "kind"),
    [
        ("INFO: task hung in rtnl_lock", CrashKind.HUNG_TASK),  # a header already in title form
        ("INFO: suspicious RCU usage in crashme_write", CrashKind.LOCKDEP),
        ("INFO: rcu detected stall in crashme_softlockup", CrashKind.RCU_STALL),
        ("BUG: bad unlock balance in crashme_write", CrashKind.LOCKDEP),
        ("WARNING: suspicious RCU usage in crashme_write", CrashKind.LOCKDEP),
        ("INFO: something nobody titles", CrashKind.UNKNOWN),  # the group's own fallback kind
    ],
)
def test_fallback_titles_take_the_table_kind(header: str, kind: CrashKind) -> None:
    group = match_anchor(header)
    assert group is not None
    result = describe(group, [header])
    assert result.rule is None  # no rule recognised it: the table decided
    assert result.kind is kind


def _logs() -> list[Path]:
    logs = sorted((TESTS / "data" / "logs").glob("*.log"))
    logs += sorted((TESTS / "data" / "vmcore" / "real").glob("*/serial.log*"))  # plain or .xz
    corpus = SHARED / "corpora" / "syzkaller" / "report"
    if corpus.is_dir():
        logs += sorted(corpus.iterdir())
    return logs


def test_one_kind_per_title_over_every_log() -> None:
    kinds: dict[str, set[str]] = collections.defaultdict(set)
    for path in _logs():
        data = path.read_bytes()
        for record in parse_log(lzma.decompress(data) if path.suffix == ".xz" else data):
            kinds[re.sub(r" in \S+$", " in FUNC", record.title)].add(record.kind.value)
    assert len(kinds) > 20
    assert {title: k for title, k in kinds.items() if len(k) > 1} == {}


@pytest.mark.parametrize(
    ("template", "title", "matches"),
    [
        ("BUG: {0} {1} in {frame}", "BUG: a b in f", True),
        ("BUG: {0} {1} in {frame}", "BUG: a b c in f in g", True),
        ("BUG: {0} {1} in {frame}", "BUG: ab in f", False),  # the space between the fields is literal
        ("BUG: soft lockup in {frame}", "BUG: soft lockup in ", True),  # a field may be empty
        ("kernel panic: hardware error: {0}", "kernel panic: Fatal machine check", False),
        ("WARNING in {frame}", "WARNING in f", True),
        ("WARNING in {frame}", "xWARNING in f", False),  # anchored at the start
        ("lost connection to test machine", "lost connection to test machine", True),
        ("lost connection to test machine", "lost connection to test machine!", False),
        ("{0}: {1}:{1}", "a: b:", True),  # the last piece may end the title right after the middle
        ("x{0}yy{1}yz", "xyyz", False),  # pieces may not overlap
        ("x{0}yy{1}yz", "xyyyz", True),
    ],
)
def test_title_template_matches_like_fields_of_any_text(template: str, title: str, matches: bool) -> None:
    assert TitleTemplate.of(template).matches(title) is matches
