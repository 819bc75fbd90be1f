"""`crashfleet suspects` in text: each finding with at most a few of the combinations it
explains, pairs that only repeat a value already listed left out (docs/analytics.md)."""

from __future__ import annotations

import pytest

from crashfleet.commands.suspects import finding_lines
from wire.v1 import analytics_service_pb2 as pb

HW = ("hardware", "QEMU")
Attrs = tuple[tuple[str, str], ...]


def _name(attrs: Attrs) -> str:
    return " and ".join(f"{d} {v}" for d, v in attrs)


def _suspect(attrs: Attrs, by: Attrs = ()) -> pb.Suspect:
    words = f"{_name(attrs)}: 8 of 8 crashing hosts vs 8 of 16 in the fleet"
    if by:
        words += f" — explained by {_name(by)}"
    return pb.Suspect(
        attributes=[pb.Attribute(dim=d, value=v) for d, v in attrs], cluster_hosts=8, cluster_hosts_with=8,
        explained_by=[pb.Attribute(dim=d, value=v) for d, v in by], words=words,
    )  # fmt: skip


def _m(name: str) -> tuple[str, str]:
    return ("module", name)


CASES: list[tuple[str, list[tuple[Attrs, Attrs]], list[str]]] = [
    (
        "the demo: three singles, and pairs made of a listed value and another",
        [((HW,), ()), ((_m("bridge"),), (HW,)), ((_m("veth"),), (HW,)), ((("kernel_release", "56"),), (HW,)),
         ((("agent_version", "0.1"), HW), (HW,)), ((HW, _m("ext4")), (HW,)), ((_m("bridge"), _m("veth")), (HW,)),
         ((("kernel_release", "56"), _m("ext4")), (HW,))],
        ["  1. hardware QEMU: 8 of 8", "       · module bridge: 8 of 8", "       · module veth: 8 of 8",
         "       · kernel_release 56: 8 of 8",
         "       … and 4 more explained by hardware QEMU (--json lists all)"],
    ),
    (
        "more singles than shown",
        [((_m("veth"),), ()), *(((_m(f"m{i}"),), (_m("veth"),)) for i in range(5))],
        ["  1. module veth: 8 of 8", "       · module m0: 8 of 8", "       · module m1: 8 of 8",
         "       · module m2: 8 of 8", "       … and 2 more explained by module veth (--json lists all)"],
    ),
    (
        "a pair of values listed nowhere else is listed",
        [((_m("veth"),), ()), ((_m("a"), _m("b")), (_m("veth"),))],
        ["  1. module veth: 8 of 8", "       · module a and module b: 8 of 8"],
    ),
    (
        "two findings, each with its own",
        [((_m("veth"),), ()), ((HW,), ()), ((_m("x"),), (HW,)), ((_m("veth"), _m("y")), (_m("veth"),))],
        ["  1. module veth: 8 of 8", "       … and 1 more explained by module veth (--json lists all)",
         "  2. hardware QEMU: 8 of 8", "       · module x: 8 of 8"],
    ),
    ("a finding alone", [((HW,), ())], ["  1. hardware QEMU: 8 of 8"]),
    ("nothing", [], []),
]  # fmt: skip


@pytest.mark.parametrize(("suspects", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_findings_list_a_few_explained_combinations_and_count_the_rest(
    suspects: list[tuple[Attrs, Attrs]], expected: list[str]
) -> None:
    lines = finding_lines([_suspect(attrs, by) for attrs, by in suspects])
    assert [line.split(" crashing hosts")[0] for line in lines] == expected
    assert not any(" — " in line for line in lines if line.startswith("       ·")), "the reason is the heading"


def test_the_cluster_page_lists_the_combinations_worth_it_first() -> None:
    """The web page shares the rule (collector.analytics.listing): pairs that add nothing go last,
    behind its "N more explained by it"."""
    from dataclasses import replace
    from datetime import UTC, datetime

    from collector.analytics.regression import regression_window
    from collector.analytics.suspects import Suspect, SuspectReport
    from collector.analytics.triage import Triage
    from collector.web import ClusterAnalytics

    base = Suspect((HW,), 8, 8, 16, 8, 10.0, 5.0, 2.0, 1.6, 3.0, 1e-6, 1e-5)
    finding = replace(base, words="finding")
    order = [((HW, _m("ext4")), "redundant"), ((_m("veth"),), "single"), ((_m("a"), _m("b")), "new pair")]
    under = [replace(base, attributes=attrs, explained_by=(HW,), words=words) for attrs, words in order]
    report = SuspectReport(8, 10, (finding, *under), "summary")
    when = datetime(2026, 12, 1, tzinfo=UTC)
    page = ClusterAnalytics(report, regression_window([]), Triage("c"), when, when)
    [(top, listed)] = page.findings
    assert top is finding and [e.words for e in listed] == ["single", "new pair", "redundant"]
