"""Kernel lines only, per input form: tests/data/logforms/<case> parses to <case>.expected.json.

Every case holds the same kernel report (a 6.1 NULL dereference in an IRQ, then the panic) in
one input form, with user-space lines that carry crash words (`WARNING:`, `BUG:`, `panic:`,
`Call Trace:`, a frame) before it and interleaved with it. Each must give exactly the one
record, equal in every field to the record of `reference.dmesg` (the kernel's lines alone),
and say how many lines of other programs it skipped. CRASHFLEET_UPDATE_GOLDEN=1 rewrites the
expected files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.logforms import (
    LogForm,
    _unstamped_lines,
    detect_form,
    header_seconds,
    is_console_noise,
    kernel_lines,
)
from analysis.oops import parse_kernel_log, parse_log

DATA = Path(__file__).resolve().parents[1] / "data" / "logforms"
REFERENCE = DATA / "reference.dmesg"
CASES = sorted(p for p in DATA.iterdir() if p != REFERENCE and not p.name.endswith(".expected.json"))
UPDATE = os.environ.get("CRASHFLEET_UPDATE_GOLDEN") == "1"


def _comparable(record: object) -> dict[str, object]:
    doc = dataclasses.asdict(record)  # type: ignore[call-overload]
    for key in ("first_line", "last_line"):  # line numbers differ per form by construction
        doc.pop(key)
    return doc


def test_every_form_has_a_case() -> None:
    forms = {parse_kernel_log(case.read_bytes()).form for case in CASES}
    assert forms == set(LogForm), f"forms without a fixture: {set(LogForm) - forms}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_kernel_lines_only(case: Path) -> None:
    parsed = parse_kernel_log(case.read_bytes())
    got = {
        "form": str(parsed.form),
        "skipped_lines": parsed.skipped_lines,
        "user_faults": parsed.user_faults,
        "titles": [r.title for r in parsed.records],
    }
    expected_path = case.with_suffix(".expected.json")
    if UPDATE:
        expected_path.write_text(json.dumps(got, indent=2) + "\n")
    assert got == json.loads(expected_path.read_text())
    reference = parse_log(REFERENCE.read_bytes())
    assert len(parsed.records) == len(reference) == 1
    assert _comparable(parsed.records[0]) == _comparable(reference[0]), "the kernel report was not found whole"


def test_user_space_lines_alone_make_no_record() -> None:
    lines = [
        "Mar 28 23:50:56 web17 openvpn[812]: WARNING: Make sure you understand the risks",
        "Mar 28 23:50:56 web17 myapp[3001]: BUG: kernel NULL pointer dereference, address: 0000000000000000",
        "Mar 28 23:50:56 web17 myapp[3001]: Call Trace:",
        "Mar 28 23:50:56 web17 myapp[3001]:  __netif_receive_skb+0x60/0x6e0",
        "Mar 28 23:50:57 web17 gopher[3100]: panic: runtime error: invalid memory address",
        "Mar 28 23:50:57 web17 appd[1200]: Kernel panic - not syncing: quoted",
    ]
    parsed = parse_kernel_log("\n".join(lines) + "\n")
    assert (parsed.form, parsed.records, parsed.skipped_lines) == (LogForm.SYSLOG, [], len(lines))


def test_syslog_kernel_facility_is_required_when_printed() -> None:
    text = (
        "<4>Mar 28 23:50:56 web17 kernel: BUG: kernel NULL pointer dereference, address: 0000000000000060\n"
        "<12>Mar 28 23:50:56 web17 kernel: WARNING: a user program calling itself kernel\n"
    )
    view = kernel_lines(text)
    assert view.kernel == [True, False] and view.skipped == 1


def test_console_noise_rules() -> None:
    assert is_console_noise("web17 login: ") == "login-prompt"
    assert is_console_noise("root@web17:~# echo 'BUG: x'") == "shell-echo"
    assert is_console_noise("/ # cat /proc/crashme") == "shell-echo"
    assert is_console_noise("[  OK  ] Started ssh.service - OpenBSD Secure Shell server.") == "systemd-status"
    assert is_console_noise("<14>[   12.000000] myapp: WARNING: quoted") == "dmesg-raw-facility"
    assert is_console_noise("user  :warn  : [   12.000000] myapp: BUG: quoted") == "dmesg-decoded-user"
    for kernel in (
        "[   12.000000] BUG: kernel NULL pointer dereference, address: 0000000000000060",
        "<4>[   12.000000] WARNING: CPU: 0 PID: 1 at kernel/foo.c:1 foo+0x1/0x2",
        "#PF: supervisor read access in kernel mode",
        "kern  :warn  : [   12.000000] WARNING: CPU: 0 PID: 1 at kernel/foo.c:1 foo+0x1/0x2",
        "syzkaller login: [   12.000000] BUG: KASAN: use-after-free in foo+0x1/0x2",
    ):
        assert is_console_noise(kernel) is None, kernel


def test_console_subsystem_prefixes_are_not_a_journal() -> None:
    """`[ts] usb 1-1: ...` looks like short-monotonic's `[ts] host ident: `; one host must dominate."""
    text = "".join(
        f"[{n:5d}.000000] {dev}: message {n}\n"
        for n, dev in enumerate(["usb 1-1", "sd 0:0:0:0", "ata1 kernel", "e1000e 0000:00:19.0 eth0"] * 5)
    )
    assert detect_form(text) is LogForm.CONSOLE
    assert kernel_lines(text).skipped == 0


def test_export_binary_field_cut_off_keeps_what_was_read() -> None:
    entry = b"__CURSOR=s=1\n_TRANSPORT=kernel\n_SOURCE_MONOTONIC_TIMESTAMP=5000000\nMESSAGE=hello\n\n"
    cut = b"__CURSOR=s=2\n_TRANSPORT=kernel\nMESSAGE\n" + struct.pack("<Q", 1 << 40) + b"short"
    view = kernel_lines(entry + cut)
    assert view.form is LogForm.JOURNAL_EXPORT
    assert [line for line, mine in zip(view.lines, view.kernel, strict=True) if mine] == ["[    5.000000] hello"]


def test_json_bad_line_is_skipped_not_fatal() -> None:
    good = json.dumps({"__CURSOR": "s=1", "_TRANSPORT": "kernel", "MESSAGE": "BUG: sleeping function called"})
    view = kernel_lines(good + "\n{\"__CURSOR\": \"s=2\", \"MESS\n" + good + "\n")
    assert view.form is LogForm.JOURNAL_JSON
    assert sum(view.kernel) == 2 and view.skipped == 1


def test_kmsg_user_facility_is_skipped() -> None:
    text = "4,1,100,-;BUG: kernel NULL pointer dereference\n12,2,200,-;BUG: written by user space\n 12,x\n"
    view = kernel_lines(text)
    assert view.form is LogForm.KMSG
    assert [line for line, mine in zip(view.lines, view.kernel, strict=True) if mine] == [
        "[    0.000100] BUG: kernel NULL pointer dereference"
    ]
    assert view.skipped == 1


def test_header_times() -> None:
    day = 86400.0
    assert header_seconds("Mar 28 23:50:56 web17 kernel: x") == (2 * 31 + 28) * day + 23 * 3600 + 50 * 60 + 56
    assert header_seconds("Mar  8 00:00:01.250000 web17 kernel: x") == (2 * 31 + 8) * day + 1.25
    iso = header_seconds("2026-03-28T23:50:56.5+00:00 web17 kernel: x")
    assert iso is not None and header_seconds("Sat 2026-03-28 23:50:57 UTC web17 kernel: x") == iso + 0.5
    assert header_seconds("[ 4.357716] web17 kernel: x") == 4.357716
    assert header_seconds("BUG: kernel NULL pointer dereference") is None


def _report(stamp: str, header: str) -> list[str]:
    return [
        f"{stamp} web17 kernel: {header}",
        f"{stamp} web17 kernel: CPU: 0 PID: 1 Comm: init Not tainted 6.1.0-56-amd64 #1  Debian 6.1.192-2",
        f"{stamp} web17 kernel: Call Trace:",
        f"{stamp} web17 kernel:  <TASK>",
        f"{stamp} web17 kernel:  crashme_write+0x3f/0x60 [crashme]",
        f"{stamp} web17 kernel:  vfs_write+0xd1/0x3e0",
        f"{stamp} web17 kernel:  </TASK>",
    ]


def test_a_quiet_gap_ends_a_report_in_a_journal_without_printk_times() -> None:
    """journalctl prints no printk timestamp: the header's time tells a later report apart,
    even one whose header would continue an open report (a bare `Kernel panic`)."""
    log = [
        *_report("Mar 28 10:00:00", "BUG: scheduling while atomic: init/1/0x00000002"),
        "Mar 28 10:07:00 web17 kernel: Kernel panic - not syncing: Fatal machine check",
    ]
    records = parse_log("\n".join(log) + "\n")
    assert [r.title for r in records] == [
        "BUG: scheduling while atomic in crashme_write", "kernel panic: hardware error: Fatal machine check",
    ]
    together = [
        *_report("Mar 28 10:00:00", "BUG: scheduling while atomic: init/1/0x00000002"),
        "Mar 28 10:00:01 web17 kernel: Kernel panic - not syncing: Fatal machine check",
    ]
    [record] = parse_log("\n".join(together) + "\n")
    assert record.panic_message == "Fatal machine check"


_ASCII_STAMP = re.compile(r"\[ {0,12}[0-9]{1,12}\.[0-9]")


def _unstamped_by_walk(lines: list[str]) -> set[int]:
    """The lines a console log's fast path must look at, found line by line: every non-empty line
    (one not starting a `\\r\\n`) that does not begin with a printk stamp, and line 0 of any text."""
    first = {0} if "\n".join(lines) else set()
    return first | {i for i, line in enumerate(lines) if line[:1] not in ("", "\r") and not _ASCII_STAMP.match(line)}


@settings(max_examples=400, deadline=None)
@given(st.lists(st.text(alphabet="[ 0123456789.x\r\u0661", max_size=30), min_size=1, max_size=12))
def test_the_unstamped_scan_passes_every_line_a_walk_finds(lines: list[str]) -> None:
    """_UNSTAMPED spells out the complement of a stamp for RE2: no unstamped line escapes it."""
    data = "\n".join(lines).encode("utf-8")
    count = len(data.decode().splitlines())
    found = list(_unstamped_lines(data, count))
    assert found == sorted(set(found)) and all(i < count for i in found)
    assert _unstamped_by_walk(lines) & set(range(count)) <= set(found)


EDGES = ["[ 1.0] ok", "[", "[ ", "[  12", "[12.", "[12.x", "[" + " " * 12 + "1.0] ok", "[" + " " * 13 + "1.0]",
         "[123456789012.3] ok", "[1234567890123.4]", "", "x", "\r", "[\r", "[ 5.5] ok"]  # fmt: skip


def test_the_unstamped_scan_on_the_edges_of_a_stamp() -> None:
    """Far apart, the lines found are exactly the unstamped ones; close together, the lines
    after one found are passed with it (the caller asks each for its stamp)."""
    filler = "[ 2.0] " + "y" * 5000  # a stamped line long enough to keep the others far apart
    lines = [line for edge in EDGES for line in (edge, filler)]
    found = list(_unstamped_lines("\n".join(lines).encode(), len(lines)))
    edges = [i for i in found if lines[i] != filler]  # a filler may be passed with the line before it
    assert edges == [2 * i for i in (0, 1, 2, 3, 4, 5, 7, 9, 11, 13)]
    assert edges == sorted(_unstamped_by_walk(lines))
    close = list(_unstamped_lines("\n".join(EDGES).encode(), len(EDGES)))
    assert close == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    assert list(_unstamped_lines("\n".join(EDGES).encode(), 5)) == [0, 1, 2, 3, 4]
    assert list(_unstamped_lines(b"\x00\x00", 0)) == []  # the NULs dropped, no line is left
    assert list(_unstamped_lines(b"[ 1.0] a\n[ 1.1] b\n", 2)) == [0]


@pytest.mark.parametrize("data", [b"\x00" * 64, b"[ 1.0] BUG: x\n\x00", b"\x00\nplain\n\x00\x00"])
def test_a_console_log_whose_nuls_are_dropped_keeps_its_lines(data: bytes) -> None:
    text = data.replace(b"\x00", b"").decode()
    view = kernel_lines(data)
    assert view.form is LogForm.CONSOLE and view.lines == text.splitlines() and view.source is None
