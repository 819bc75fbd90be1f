"""`analysis.logtext`: every transport prefix is stripped, the message and its indentation kept."""

from __future__ import annotations

import pytest

from analysis.logtext import MAX_LINE_CHARS, decode_log, normalize_line, split_lines

# (raw line, expected text, timestamp, caller, level)
CASES = [
    ("[    4.356486] BUG: kernel NULL pointer dereference", "BUG: kernel NULL pointer dereference", 4.356486, None, None),
    ("[    4.357716]  crashme_null+0x34/0x60 [crashme]", " crashme_null+0x34/0x60 [crashme]", 4.357716, None, None),
    ("[  242.114031][   T36] INFO: task jbd2/sda1-8:271 blocked", "INFO: task jbd2/sda1-8:271 blocked", 242.114031, "T36", None),
    ("[  242.114901][    C0] sched: RT throttling activated", "sched: RT throttling activated", 242.114901, "C0", None),
    ("<4>[ 4471.196401] Call Trace:", "Call Trace:", 4471.196401, None, 4),
    ("<1>BUG: unable to handle kernel NULL pointer dereference at 00000004",
     "BUG: unable to handle kernel NULL pointer dereference at 00000004", None, None, 1),
    ("<0> ffff880334bdc868 ffff88034ac93788", "ffff880334bdc868 ffff88034ac93788", None, None, 0),
    ("Mar 28 23:50:56 web-17 kernel: [1215524.310014] WARNING: CPU: 5 PID: 0 at x.c:1 f+0x1/0x2",
     "WARNING: CPU: 5 PID: 0 at x.c:1 f+0x1/0x2", 1215524.310014, None, None),
    ("Feb 06 14:03:20 build-03 kernel: BUG: KASAN: use-after-free in f+0x1/0x2",
     "BUG: KASAN: use-after-free in f+0x1/0x2", None, None, None),
    ("Feb 06 14:03:20 build-03 kernel:  dump_stack_lvl+0x4a/0x63", " dump_stack_lvl+0x4a/0x63", None, None, None),
    ("2024-02-06T14:03:20+0000 build-03 kernel: Call Trace:", "Call Trace:", None, None, None),
    ("2024-02-06T14:03:20.123456+01:00 build-03 kernel: Oops: 0000 [#1] SMP", "Oops: 0000 [#1] SMP", None, None, None),
    ("[ 1012.312] db-4 kernel: general protection fault: 0000 [#1]", "general protection fault: 0000 [#1]", None, None, None),
    ("syzkaller login: [   30.021137][   T81] usb 1-1: new device", "usb 1-1: new device", 30.021137, "T81", None),
    # makedumpfile 1.7.4+ --dump-dmesg (Debian 13's kdump-tools dmesg.<stamp>): a space, a wider column.
    ("[  279.549721] [    T476] RIP: 0010:e2e_oops_pending+0x5/0x10 [e2e_oops]",
     "RIP: 0010:e2e_oops_pending+0x5/0x10 [e2e_oops]", 279.549721, "T476", None),
    ("[    0.000000] [      T0] Linux version 6.12.117+deb13-amd64", "Linux version 6.12.117+deb13-amd64", 0.0, "T0", None),
    ("[  495.485174] [     C1]  <TASK>", " <TASK>", 495.485174, "C1", None),
    ("** 3 printk messages dropped ** [  150.1][ T10] BUG: foo", "BUG: foo", 150.1, "T10", None),
    ("[    4.357716] Kernel panic - not syncing: Fatal exception\r", "Kernel panic - not syncing: Fatal exception",
     4.357716, None, None),
    ("Process swapper (pid: 0, threadinfo ffff880637d18000,", "Process swapper (pid: 0, threadinfo ffff880637d18000,",
     None, None, None),
    ("                   i2c_i801 i2c_core sg iTCO_wdt", "                   i2c_i801 i2c_core sg iTCO_wdt", None, None, None),
    ("", "", None, None, None),
]


@pytest.mark.parametrize(("raw", "text", "timestamp", "caller", "level"), CASES)
def test_normalize_line(raw: str, text: str, timestamp: float | None, caller: str | None, level: int | None) -> None:
    line = normalize_line(raw, 7)
    assert line.index == 7
    assert line.text == text
    assert line.timestamp == timestamp
    assert line.caller == caller
    assert line.level == level
    assert line.prefixed == (timestamp is not None)


def test_a_bracket_that_is_not_a_timestamp_is_kept() -> None:
    assert normalize_line("[<ffffffff8142c25a>] process_backlog+0x9a/0x100").text == (
        "[<ffffffff8142c25a>] process_backlog+0x9a/0x100"
    )
    assert normalize_line("[last unloaded: scsi_wait_scan]").text == "[last unloaded: scsi_wait_scan]"


def test_decode_never_fails_and_drops_nul() -> None:
    assert decode_log(b"BUG:\x00 x\xff\xfe") == "BUG: x\ufffd\ufffd"
    assert decode_log("already text") == "already text"


def test_split_lines_accepts_every_line_ending() -> None:
    lines = split_lines(b"a\r\nb\nc\rd")
    assert [ln.text for ln in lines] == ["a", "b", "c", "d"]
    assert [ln.index for ln in lines] == [0, 1, 2, 3]


def test_overlong_line_is_capped_not_scanned_in_full() -> None:
    line = normalize_line("[ 1.0] " + "x" * (10 * MAX_LINE_CHARS))
    assert len(line.text) <= MAX_LINE_CHARS


def test_hostile_prefix_soup_is_kept_verbatim() -> None:
    """Brackets and digits without closing structure are message text, not a prefix.

    The prefix patterns are anchored with bounded repeats, so this returns at once (a
    backtracking pattern would hit the suite's timeout instead).
    """
    raw = "[" + " " * 3_000 + "1" * 1_000
    assert normalize_line(raw).text == raw
