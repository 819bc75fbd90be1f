"""`analysis.title`: the ranked rule table, title sanitizing and guilty-frame extraction."""

from __future__ import annotations

import string

import pytest

from analysis.model import CrashKind
from analysis.title import OOPS_GROUPS, describe, frame_name, is_continuation, match_anchor, sanitize_title

_CORE_RIP = ["RIP: 0010:memcpy+0x45/0x50"]
TRACE_6X = [
    "RIP: 0010:crashme_napi_pending.constprop.0.isra.0+0x5/0x20 [crashme]",
    "Call Trace:",
    " <TASK>",
    " crashme_null+0x34/0x60 [crashme]",
    " crashme_write+0x22d/0x2f6 [crashme]",
    " vfs_write+0xc7/0x3f0",
    " ksys_write+0x6b/0xf0",
    " __x64_sys_write+0x19/0x20",
    " do_syscall_64+0x5d/0xb0",
    " entry_SYSCALL_64_after_hwframe+0x6e/0xd8",
]

# (report lines, kind, title, guilty frame)
REPORTS = [
    (["BUG: kernel NULL pointer dereference, address: 0000000000000060", *TRACE_6X], CrashKind.NULL_DEREF,
     "BUG: unable to handle kernel NULL pointer dereference in crashme_napi_pending", "crashme_napi_pending"),
    (["BUG: unable to handle page fault for address: ffffc90000a1c000", *TRACE_6X], CrashKind.PAGING_REQUEST,
     "BUG: unable to handle kernel paging request in crashme_napi_pending", "crashme_napi_pending"),
    (["general protection fault, probably for non-canonical address 0xdffffc0000000002: 0000 [#1] PREEMPT SMP KASAN",
      *TRACE_6X], CrashKind.GPF, "general protection fault in crashme_napi_pending", "crashme_napi_pending"),
    (["kernel BUG at net/core/skbuff.c:105!", "RIP: 0010:skb_panic+0x5f/0x61", "Call Trace:",
      " skb_put.cold+0x11/0x11", " tcp_build_frag+0x1d6/0x270"], CrashKind.KERNEL_BUG, "kernel BUG in tcp_build_frag",
     "tcp_build_frag"),
    (["kernel BUG at lib/list_debug.c:53!", "Call Trace:", " __list_del_entry_valid+0xcc/0xd0",
      " nilfs_put_super+0x84/0x9c"], CrashKind.LIST_CORRUPTION, "BUG: corrupted list in nilfs_put_super", "nilfs_put_super"),
    (["WARNING: CPU: 0 PID: 99 at drivers/net/x.c:70 foo_xmit+0x13/0x20 [foo]", *TRACE_6X[1:]], CrashKind.WARNING,
     "WARNING in crashme_null", "crashme_null"),
    (["WARNING: CPU: 1 PID: 2 at lib/refcount.c:28 refcount_warn_saturate+0x1/0x2",
      "RIP: 0010:refcount_warn_saturate+0x1/0x2", "Call Trace:", " sock_put+0x1/0x2", " tcp_close+0x1/0x2"],
     CrashKind.WARNING, "WARNING: refcount bug in sock_put", "sock_put"),
    (["BUG: KASAN: slab-use-after-free in memcpy+0x1/0x2", "Read of size 8 at addr ffff888012345678 by task a/1",
      "Call Trace:", " kasan_report+0x1/0x2", " memcpy+0x1/0x2", " hci_send_acl+0x48/0xe70"], CrashKind.KASAN,
     "KASAN: slab-use-after-free Read in hci_send_acl", "hci_send_acl"),
    (["UBSAN: shift-out-of-bounds in net/x.c:10:3", "shift exponent 64 is too large", "Call Trace:",
      " dump_stack_lvl+0x1/0x2", " __ubsan_handle_shift_out_of_bounds+0x1/0x2", " tcp_foo+0x1/0x2"], CrashKind.UBSAN,
     "UBSAN: shift-out-of-bounds in tcp_foo", "tcp_foo"),
    (["INFO: task kworker/0:1:12 blocked for more than 143 seconds.", "Call Trace:", " __schedule+0x1/0x2",
      " schedule+0x1/0x2", " rwsem_down_write_slowpath+0x1/0x2", " rtnl_lock+0x1/0x2", " foo_work+0x1/0x2"],
     CrashKind.HUNG_TASK, "INFO: task hung in rtnl_lock", "rtnl_lock"),
    (["INFO: task a:1 blocked for more than 143 seconds.", "Call Trace:", " __schedule+0x1/0x2",
      " synchronize_rcu_expedited+0x1/0x2", " foo+0x1/0x2"], CrashKind.HUNG_TASK, "INFO: task hung in synchronize_rcu",
     "synchronize_rcu"),
    (["watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [a:1]", *TRACE_6X], CrashKind.SOFT_LOCKUP,
     "BUG: soft lockup in crashme_napi_pending", "crashme_napi_pending"),  # module code at the RIP, task context
    (["watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [a:1]", *_CORE_RIP, *TRACE_6X[1:]], CrashKind.SOFT_LOCKUP,
     "BUG: soft lockup in crashme_write", "crashme_write"),  # core-kernel RIP: the frame above the vfs_write anchor
    (["watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [a:1]", TRACE_6X[0], "Call Trace:", " <IRQ>",
      " foo_timer+0x1/0x2 [foo]", " </IRQ>", *TRACE_6X[2:]], CrashKind.SOFT_LOCKUP,
     "BUG: soft lockup in crashme_write", "crashme_write"),  # the RIP is an interrupt's, not the task's
    (["watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [a:1]",
      "RIP: 0010:_raw_spin_lock+0x1/0x2 [crashme]", *TRACE_6X[1:]], CrashKind.SOFT_LOCKUP,
     "BUG: soft lockup in crashme_write", "crashme_write"),  # a skip list claims the RIP function
    (["divide error: 0000 [#1] SMP", "RIP: 0010:cake_dequeue+0x4c2/0x1070 [sch_cake]"], CrashKind.DIVIDE_ERROR,
     "divide error in cake_dequeue", "cake_dequeue"),
    (["Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009"], CrashKind.PANIC,
     "kernel panic: Attempted to kill init!", None),
    (["Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"], CrashKind.PANIC,
     "kernel panic: VFS: Unable to mount root fs on unknown-block(NUM,NUM)", None),
    (["Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: nfs4_get_acl+0x2f3/0x300"],
     CrashKind.STACK_PROTECTOR, "kernel panic: stack is corrupted in nfs4_get_acl", "nfs4_get_acl"),
    (["BUG: stack guard page was hit at 00000000a1b2c3d4 (stack is 0000000012345678..00000000deadbeef)",
      *TRACE_6X], CrashKind.STACK_GUARD_PAGE, "BUG: stack guard page was hit in crashme_napi_pending",
     "crashme_napi_pending"),  # the module function that ran out of stack
    (["WARNING: possible circular locking dependency detected", "a/1 is trying to acquire lock:",
      "ffff (&mm->mmap_lock){++++}-{3:3}, at: __might_fault+0x8f/0x110",
      "but task is already holding lock:", "ffff (&pipe->mutex/1){+.+.}-{3:3}, at: pipe_lock+0x1/0x2",
      "Call Trace:", " dump_stack+0x1/0x2"], CrashKind.LOCKDEP, "possible deadlock in pipe_lock", "pipe_lock"),
    (["BUG: MAX_STACK_TRACE_ENTRIES too low!"], CrashKind.LOCKDEP, "BUG: MAX_STACK_TRACE_ENTRIES too low!", None),
    (["rust_kernel: panicked at drivers/android/binder/process.rs:1211:17:", "attempt to subtract with overflow",
      "Call Trace:", " _RNvCscSpY9Juk0HT_7___rustc17rust_begin_unwind+0x15b/0x160",
      " _RNvNtCs9jEwPDbx20M_4core9panicking9panic_fmt+0x84/0x90",
      " _RNvMs3_NtCshgDM7dBCdno_11rust_binder7processNtB5_7Process10update_ref+0x17e5/0x1860"],
     CrashKind.KERNEL_BUG, "attempt to subtract with overflow in <rust_binder::process::Process>::update_ref",
     "<rust_binder::process::Process>::update_ref"),
]


@pytest.mark.parametrize(("lines", "kind", "title", "guilty"), REPORTS, ids=[r[2] for r in REPORTS])
def test_title_table(lines: list[str], kind: CrashKind, title: str, guilty: str | None) -> None:
    group = match_anchor(lines[0])
    assert group is not None
    result = describe(group, lines)
    assert (result.kind, result.title, result.guilty_frame) == (kind, title, guilty)


def test_header_alone_is_corrupted_with_a_reason() -> None:
    lines = ["BUG: kernel NULL pointer dereference, address: 0000000000000060"]
    result = describe(match_anchor(lines[0]) or OOPS_GROUPS[0], lines)
    assert result.title == "BUG: unable to handle kernel NULL pointer dereference in corrupted"
    assert result.corrupted_reason


def test_panic_after_oops_alone_is_corrupted() -> None:
    lines = ["Kernel panic - not syncing: Fatal exception"]
    result = describe(match_anchor(lines[0]) or OOPS_GROUPS[0], lines)
    assert result.title == "kernel panic: Fatal exception"
    assert result.corrupted_reason is not None


@pytest.mark.parametrize(
    "line",
    [
        "WARNING: /etc/ssh/moduli does not exist, using fixed modulus",
        "ODEBUG: object is on stack, but not annotated",
        "INFO: lockdep is turned off.",
        "a.out[123]: general protection fault ip:4004f3 sp:7ffd error:0 in a.out[400000+1000]",
        "systemd[1]: Started Daily apt upgrade.",
        "",
    ],
)
def test_non_reports(line: str) -> None:
    assert match_anchor(line) is None


@pytest.mark.parametrize(
    ("line", "continues"),
    [
        ("invalid opcode: 0000 [#1] PREEMPT SMP NOPTI", True),
        ("Kernel panic - not syncing: Fatal exception", True),
        ("Internal error: Oops: 96000005 [#1] PREEMPT SMP", True),
        ("Oops: 0000 [#1] SMP", True),
        ("BUG: kernel NULL pointer dereference, address: 0000000000000060", False),
        ("general protection fault: 0000 [#1] SMP KASAN", False),
    ],
)
def test_continuations(line: str, continues: bool) -> None:
    assert is_continuation(line) is continues


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("BUG: soft lockup - CPU#3 stuck for 22s! [syz-executor.4:8791]", "BUG: soft lockup - CPU stuck for 22s! [syz-executor]"),
        ("kernel panic: VFS: Unable to mount root fs on unknown-block(0,0)",
         "kernel panic: VFS: Unable to mount root fs on unknown-block(NUM,NUM)"),
        ("KASAN: use-after-free Read in foo at addr ffff88801234abcd", "KASAN: use-after-free Read in foo at addr ADDR"),
        ("BUG: unable to handle kernel NULL pointer dereference in e1000e_down", "BUG: unable to handle kernel NULL pointer dereference in e1000e_down"),
        ("kernel BUG at fs/ext4/inode.c:1234!", "kernel BUG at fs/ext4/inode.c:LINE!"),
        ("WARNING in\tfoo   bar\x07", "WARNING in foo bar"),
        ("x" * 500, "x" * 120),
    ],
)
def test_sanitize_title(raw: str, clean: str) -> None:
    assert sanitize_title(raw) == clean


def test_frame_name_cuts_clone_suffixes() -> None:
    assert frame_name("crashme_napi_pending.constprop.0.isra.0") == "crashme_napi_pending"
    assert frame_name("check_panic_on_warn.cold") == "check_panic_on_warn"
    assert frame_name("vfs_write") == "vfs_write"


def test_rule_table_is_well_formed() -> None:
    names: set[str] = set()
    for group in OOPS_GROUPS:
        assert group.anchor and group.rules
        for rule in group.rules:
            assert rule.name not in names, f"duplicate rule name {rule.name}"
            names.add(rule.name)
            fields = {f[1] for f in string.Formatter().parse(rule.title) if f[1] is not None}
            positional = {f for f in fields if f.isdigit()}
            captured = rule.header.groups + sum(p.groups for p in rule.follow)
            assert all(int(f) < captured for f in positional), f"{rule.name}: title uses a group it does not capture"
            if "frame" in fields:
                assert rule.parts or rule.header_frame is not None, f"{rule.name}: titles a frame it never looks for"


def test_the_anchor_scan_finds_exactly_the_lines_holding_an_anchor() -> None:
    """ANCHORS is a prefix-factored alternation of the group anchors: same lines as a plain one."""
    import re

    from analysis.title import ANCHORS, OOPS_GROUPS

    plain = re.compile("|".join(re.escape(g.anchor) for g in OOPS_GROUPS))
    lines = [g.anchor for g in OOPS_GROUPS] + [f"[ 1.0] x {g.anchor[:-1]}" for g in OOPS_GROUPS] + [
        "BUG kmalloc-64: Object already free", "BUG: x", "Kernel BUG at", "Kernel panic - not syncing: x",
        "kernel BUG at mm/slub.c:1", "Oops: 0000", "Oops", "NMI: PCI system error (SERR)", "plain line",
    ]
    assert [bool(ANCHORS.search(line)) for line in lines] == [bool(plain.search(line)) for line in lines]
