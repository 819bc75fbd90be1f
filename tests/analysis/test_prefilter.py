"""The whole-log prefilter passes every line that holds a literal, each once, and no other."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.logforms import KernelLines, LogForm, kernel_lines
from analysis.oops import SCAN, _find_starts, _Lines, parse_kernel_log
from analysis.prefilter import Prefilter
from analysis.title import OOPS_GROUPS
from analysis.userfaults import FAULT_HINTS, count_user_faults
from tests.conftest import REPO

LITERALS = ("BUG:", "ab", "bc", "a.c", "Oops", "é:", " ip:")
LINES = [
    "BUG: x",  # at the start
    "plain line",
    "",
    "x BUG:",  # at the end
    "abc",  # two literals overlapping
    "abxbc BUG: Oops",  # three in one line: reported once
    "a.c",
    "axc",  # `.` is a literal dot, not any character
    "\u00e9: caf\u00e9",  # non-ASCII literal in non-ASCII text
    "caf\u00e9 ab",  # a literal after multi-byte characters
    "\ud800 ab",  # a lone surrogate (a JSON journal's \\ud800 escape) does not shift the lines
    "carriage\r BUG:",  # a \r inside a journal message line is not a line break
    "x" * 10_000 + "Oops",  # far into a long line
    "trap ip:1",
    "trap,ip:1",  # " ip:" needs its space
    "Oo ps",
    "bc",  # the last line, no line break after it
]


def brute(literals: tuple[str, ...], lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if any(w in line for w in literals)]


def test_lines_are_exactly_those_holding_a_literal() -> None:
    scan = Prefilter("test", LITERALS)
    assert scan.lines(LINES) == brute(LITERALS, LINES)
    assert scan.lines(LINES) == [0, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 16]
    assert scan.lines([]) == []
    assert scan.lines(["", "", "ab"]) == [2]
    assert scan.lines(["ab"] * 5) == [0, 1, 2, 3, 4]


PIECES = ("BUG:", "BUG", ":", "ab", "b", "c", "Oops", "\u00e9:", " ip:", "ip:", " ", "x" * 1500, "\r", "\u00e9")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(PIECES), max_size=6).map("".join), max_size=40))
def test_lines_are_those_a_walk_finds_dense_or_sparse(lines: list[str]) -> None:
    """Hits far apart (one RE2 search each) or close together (asked line by line) alike."""
    assert Prefilter("test", LITERALS).lines(lines) == brute(LITERALS, lines)


@pytest.mark.parametrize("bad", [(), ("",), ("a\nb",)])
def test_a_literal_that_no_line_can_hold_is_refused(bad: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        Prefilter("bad", bad)


def test_scan_holds_every_anchor_and_fault_hint() -> None:
    assert set(SCAN.literals) == {g.anchor for g in OOPS_GROUPS} | set(FAULT_HINTS)


def _golden_logs() -> list[KernelLines]:
    paths = sorted((REPO / "tests" / "data" / "logs").glob("*.log")) + sorted(
        (REPO / "tests" / "data" / "printers").glob("*.log")
    )
    assert len(paths) > 60
    return [kernel_lines(p.read_bytes()) for p in paths]


def test_report_starts_from_the_scan_are_those_of_a_walk_over_every_line() -> None:
    found = read_as_given = 0
    for view in _golden_logs():
        lines = _Lines(view.lines, [None] * len(view.lines), view.kernel)
        every = _find_starts(lines, list(range(len(view.lines))))
        assert _find_starts(lines, SCAN.lines(view.lines)) == every
        assert _find_starts(lines, SCAN.lines(view.lines, view.source)) == every
        found += len(every)
        read_as_given += view.source is not None
    assert found > 60 and read_as_given > 50


def test_a_console_log_given_as_bytes_is_scanned_as_it_came() -> None:
    data = b"[ 1.0] BUG: x\r\n[ 1.1] caf\xc3\xa9 \xff Oops\nuser  :err   : BUG: y\n[ 1.2] fine\n"
    view = kernel_lines(data)
    assert view.form is LogForm.CONSOLE and view.source is data
    assert view.lines[2] == ""  # user space's line, blanked
    assert SCAN.lines(view.lines) == [0, 1]
    # Reading the bytes may pass the blanked line too (its bytes hold `BUG:`); the stages judge it.
    assert {0, 1} <= set(SCAN.lines(view.lines, view.source)) <= {0, 1, 2}
    far = b"[ 1.0] BUG: x\n" + b"[ 1.1] filler\n" * 1000 + b"user  :err   : BUG: y\n[ 1.2] Oops\n"
    view = kernel_lines(far)
    assert view.source is far and view.lines[1001] == ""
    assert SCAN.lines(view.lines, view.source) == [0, 1001, 1002]  # a hit of the bytes alone
    assert SCAN.lines(view.lines) == [0, 1002]
    assert parse_kernel_log(data).records == parse_kernel_log(data.decode("utf-8", errors="replace")).records


@pytest.mark.parametrize(
    "data",
    [
        "[ 1.0] BUG: x\n",  # text: nothing to read as it came
        b"[ 1.0] BU\x00G: x\n",  # decoding drops the NUL: the bytes do not hold the line
        b"[ 1.0] BUG: x\r[ 1.1] y\n",  # a lone \r splits a line the bytes do not
        b"Mar 28 23:50:56 host kernel: BUG: x\nMar 28 23:50:57 host kernel: y\n",  # syslog: headers cut
    ],
)
def test_other_inputs_are_joined_again(data: bytes | str) -> None:
    view = kernel_lines(data)
    assert view.source is None
    assert SCAN.lines(view.lines) == [0]


def test_user_faults_from_the_scan_are_those_of_a_walk_over_every_line() -> None:
    lines = [
        "[ 1.0] java[4242]: segfault at 8 ip 00007f3a1c2b4e10 sp 00007f3a0effd8a0 error 4",
        "[ 1.1] potentially unexpected fatal signal 11.",
        "[ 1.2] CPU: 2 PID: 917 Comm: qemu-kvm Not tainted 6.1.0-56-amd64 #1  Debian 6.1.192-2",
        "[ 1.3] BUG: unable to handle page fault for address: 0000000000000060",
        "[ 1.4] traps: node[6001] general protection fault ip:55d0c3a4b1e2 sp:7ffc1e2d3a40 error:0",
    ]
    expected = {"java": 1, "qemu-kvm": 1, "node": 1}
    assert count_user_faults(lines) == expected
    assert count_user_faults(lines, range(len(lines))) == expected
    assert count_user_faults(lines, SCAN.lines(lines)) == expected
