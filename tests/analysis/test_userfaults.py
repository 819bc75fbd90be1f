"""User-space faults: recognized per printer, never a crash record, counted per program."""

from __future__ import annotations

import pytest

from analysis.oops import parse_kernel_log
from analysis.userfaults import OTHER_PROGRAMS, USER_FAULT_RULES, bound_counts, count_user_faults, user_fault

# One line per rule, written from each printer's format string: (rule, line, comm, object).
LINES: tuple[tuple[str, str, str | None, str | None], ...] = (
    ("segfault", "java[4242]: segfault at 8 ip 00007f3a1c2b4e10 sp 00007f3a0effd8a0 error 4 in "
     "libjvm.so[7f3a1b600000+1000000] likely on CPU 5 (core 5, socket 0)", "java", "libjvm.so"),
    ("segfault", "Web Content[911]: segfault at 0 ip 0000000000000000 sp 00007ffd1e2d3a40 error 14", "Web Content", None),
    ("trap", "traps: python3[5150] trap invalid opcode ip:7f11c0a1b2c3 sp:7ffd2c9a8e10 error:0 in "
     "libcrypto.so.3[7f11c0800000+2b0000]", "python3", "libcrypto.so.3"),
    ("trap", "traps: node[6001] general protection fault ip:55d0c3a4b1e2 sp:7ffc1e2d3a40 error:0 in "
     "node[55d0c2000000+2000000]", "node", "node"),
    ("trap", "traps: bc[77] trap divide error ip:4011d6 sp:7ffd8e0c6e50 error:0 in bc[401000+1000]", "bc", "bc"),
    ("trap", "a.out[123] general protection ip:7f0a sp:7ffd error:0 in libc-2.12.so[7f0a+18a000]", "a.out",
     "libc-2.12.so"),
    ("arm64-unhandled", "nginx[3311]: unhandled exception: DABT (lower EL), ESR 0x0000000092000006, "
     "level 2 translation fault in libc.so.6[ffff8a600000+1a0000]", "nginx", "libc.so.6"),
    ("arm64-unhandled", "sh[1]: unhandled level 2 translation fault (11) at 0x00000008, esr 0x92000006", "sh", None),
    ("arm-unhandled", "busybox: unhandled page fault (11) at 0x00000000, code 0x017", "busybox", None),
    ("riscv-unhandled", "init[1]: unhandled signal 11 code 0x1 at 0x0000000000000000 in busybox[10000+c0000]", "init",
     None),
    ("powerpc-signal", "ls[2233]: segfault (11) at 0 nip 7fff9a0b1c2c lr 7fff9a0b1c00 code 1", "ls", None),
    ("fatal-signal", "potentially unexpected fatal signal 11.", None, None),
    ("fatal-signal", "crond/1111: potentially unexpected fatal signal 6.", "crond", None),
)


@pytest.mark.parametrize(("rule", "line", "comm", "obj"), LINES, ids=[f"{r}-{n}" for n, (r, *_) in enumerate(LINES)])
def test_user_fault_lines(rule: str, line: str, comm: str | None, obj: str | None) -> None:
    fault = user_fault(line)
    assert fault is not None
    assert (fault.rule, fault.comm, fault.object) == (rule, comm, obj)


def test_every_rule_has_a_line() -> None:
    assert {r for r, *_ in LINES} == {name for name, _, _ in USER_FAULT_RULES}


@pytest.mark.parametrize(
    "line",
    [
        "general protection fault, probably for non-canonical address 0xdffffc0000000001: 0000 [#1] PREEMPT SMP KASAN",
        "invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
        "BUG: unable to handle page fault for address: ffffffffc0a01000",
        "Unable to handle kernel NULL pointer dereference at virtual address 0000000000000008",
        "watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [kworker/1:1:77]",
    ],
)
def test_kernel_reports_are_not_user_faults(line: str) -> None:
    assert user_fault(line) is None


def test_user_mode_gpf_makes_no_record_but_counts() -> None:
    log = (
        "[  10.000000] traps: node[6001] general protection fault ip:55d0c3a4b1e2 sp:7ffc1e2d3a40 error:0\n"
        "[  11.000000] potentially unexpected fatal signal 11.\n"
        "[  11.000001] CPU: 2 PID: 917 Comm: qemu-kvm Not tainted 6.1.0-56-amd64 #1  Debian 6.1.192-2\n"
        "[  11.000002] RIP: 0033:0x7f3a1c2b4e10\n"
        "[  11.000003] Code: Unable to access opcode bytes at 0x7f3a1c2b4de6.\n"
        "[  12.000000] java[4242]: segfault at 8 ip 00007f3a1c2b4e10 sp 00007f3a0effd8a0 error 4\n"
        "[  12.500000] java[4243]: segfault at 8 ip 00007f3a1c2b4e10 sp 00007f3a0effd8a0 error 4\n"
    )
    parsed = parse_kernel_log(log)
    assert parsed.records == []
    assert parsed.user_faults == {"node": 1, "qemu-kvm": 1, "java": 2}


def test_fatal_signal_without_cpu_line_counts_unknown() -> None:
    assert count_user_faults(["[ 1.0] potentially unexpected fatal signal 11.", "[ 1.1] something else"]) == {"?": 1}


def test_bound_counts_keeps_the_most_frequent() -> None:
    counts = {f"prog{n:03d}": n + 1 for n in range(100)}
    bounded = bound_counts(counts, limit=10)
    assert len(bounded) == 10
    assert sum(bounded.values()) == sum(counts.values())
    assert bounded["prog099"] == 100 and OTHER_PROGRAMS in bounded
    assert bound_counts({"a": 1}) == {"a": 1}
