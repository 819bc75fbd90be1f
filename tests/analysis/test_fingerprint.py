"""`analysis.fingerprint`: one bug, one hash — across builds, machines and report noise."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from analysis import fingerprint
from analysis.fingerprint import (
    DIGEST_HEX_CHARS,
    FINGERPRINT_ALGORITHM,
    FINGERPRINT_VERSION,
    FRAME_DEPTH,
    FRAME_RULES,
    compute,
    normalize_reason,
    ruleset_text,
    select_frames,
)
from analysis.model import CallFrame, CrashKind, CrashRecord, Rip, SkippedFrame, StackContext
from analysis.rules import SkipRule, generic_frame_rule, skip_rules
from tests.analysis.records import seed_record


def test_shape_and_version() -> None:
    fp = compute(seed_record())
    assert re.fullmatch(f"[0-9a-f]{{{DIGEST_HEX_CHARS}}}", fp.value)
    assert fp.version == FINGERPRINT_VERSION
    assert fp.kind == "null-deref"
    assert fp.reason == "BUG: kernel NULL pointer dereference"
    assert fp.frames[0] == "__netif_receive_skb"
    assert len(fp.frames) <= FRAME_DEPTH


def test_seed_provenance() -> None:
    """Guilty first, then the first reliable non-generic callers; every skipped frame names its rule."""
    fp = compute(seed_record())
    assert fp.frames[:3] == ("__netif_receive_skb", "process_backlog", "net_rx_action")
    rules = {s.function: s.rule for s in fp.skipped}
    assert rules["handle_IRQ_event"] == "unreliable"
    assert rules["intel_idle"] == "unreliable"
    # The interrupted idle task under the softirq is not the bug (rule `idle`, since the
    # irq-entry/idle lists: deliberately changed the seed's fingerprint, which used to hash the
    # dispatchers `__do_softirq < call_softirq` as its 4th and 5th frames).
    assert rules["start_secondary"] == "idle"
    assert rules["irq_exit"] == "irq-entry"
    assert fp.frames == ("__netif_receive_skb", "process_backlog", "net_rx_action", "__do_softirq")
    total = 1 + len(seed_record().call_trace)
    assert len(fp.skipped) + len(fp.frames) == total


def test_deterministic_known_value() -> None:
    """A fixed record has a fixed hash: catches accidental changes that would need a version bump."""
    fp = compute(seed_record())
    assert fp.value == compute(seed_record()).value
    assert fp.value == fingerprint_value_of_seed()


def test_version_tracks_the_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """The version names the algorithm and a digest of every rule, skip lists included."""
    assert re.fullmatch(rf"{FINGERPRINT_ALGORITHM}\+[0-9a-f]{{8}}", FINGERPRINT_VERSION)
    before = ruleset_text()
    assert "skip-list locking" in before
    extra = SkipRule("scheduler", re.compile(r"__schedule\Z"))
    monkeypatch.setattr(fingerprint, "skip_rules", lambda: (*skip_rules(), extra))
    assert ruleset_text() != before


def test_algorithm_not_rules_in_the_hash() -> None:
    """A crash that no edited rule touches keeps its hash across rule edits (only the version moves)."""
    fields = "\x1f".join((FINGERPRINT_ALGORITHM, "panic", "Kernel panic - not syncing: x", ""))
    record = CrashRecord(
        kind=CrashKind.PANIC, reason="Kernel panic - not syncing: x", normalized_reason="", title="x"
    )
    assert compute(record).value == hashlib.sha256(fields.encode()).hexdigest()[:DIGEST_HEX_CHARS]


def fingerprint_value_of_seed() -> str:
    """The seed's digest recomputed by hand from the documented field order."""
    kept, _ = select_frames(
        [("__netif_receive_skb", True)] + [(f.function, f.reliable) for f in seed_record().call_trace]
    )
    fields = (
        FINGERPRINT_ALGORITHM,
        "null-deref",
        "BUG: kernel NULL pointer dereference",
        "__netif_receive_skb",
        *kept,
    )
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()[:DIGEST_HEX_CHARS]


def test_differs_for_different_bugs() -> None:
    base = compute(seed_record()).value
    assert compute(seed_record(guilty_frame="ip_rcv", rip=Rip("ip_rcv", 0x10, 0x300))).value != base
    assert compute(seed_record(kind=CrashKind.PAGING_REQUEST)).value != base
    assert compute(seed_record(normalized_reason="BUG: unable to handle kernel paging request")).value != base
    other_caller = (CallFrame("netif_receive_skb_core", 0x10, 0x100), *seed_record().call_trace[1:])
    assert compute(seed_record(call_trace=other_caller)).value != base


def test_generic_frames_skipped_by_named_rule() -> None:
    """Frames a skip list names never enter the hash, and the provenance cites the list."""
    generic = "_raw_spin_lock_irqsave"
    rule = generic_frame_rule(generic)
    assert rule is not None, "the locking skip list should name _raw_spin_lock_irqsave"
    trace = (CallFrame(generic, 0x3A, 0x60), *seed_record().call_trace)
    fp = compute(seed_record(call_trace=trace))
    assert SkippedFrame(generic, rule) in fp.skipped
    assert generic not in fp.frames
    assert fp.value == compute(seed_record()).value


def test_recursion_collapses() -> None:
    trace = (CallFrame("process_backlog", 1, 2),) * 3 + seed_record().call_trace[1:]
    fp = compute(seed_record(call_trace=trace))
    assert [s.rule for s in fp.skipped if s.function == "process_backlog"] == ["repeat", "repeat"]
    assert fp.value == compute(seed_record()).value


def test_unsymbolized_frames_skipped() -> None:
    trace = (CallFrame("0xffffffffc0a01234"), *seed_record().call_trace)
    fp = compute(seed_record(call_trace=trace))
    assert SkippedFrame("0xffffffffc0a01234", "unsymbolized") in fp.skipped
    assert fp.value == compute(seed_record()).value


def test_no_frames_no_guilty_still_hashes() -> None:
    """A panic with nothing but a message still gets a stable fingerprint."""
    record = CrashRecord(
        kind=CrashKind.PANIC,
        reason="Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)",
        normalized_reason="",
        title="kernel panic: VFS: Unable to mount root fs",
    )
    fp = compute(record)
    assert fp.frames == ()
    assert fp.reason == "Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(N,N)"
    assert compute(dataclasses.replace(record, cpu=3)).value == fp.value


def test_syscall_wrappers_are_one_name() -> None:
    a = seed_record(call_trace=(CallFrame("__x64_sys_ioctl", 0x10, 0x20),))
    b = seed_record(call_trace=(CallFrame("__arm64_sys_ioctl", 0x30, 0x40),))
    assert compute(a).value == compute(b).value


def test_rules_are_named_and_ordered() -> None:
    names = [rule.name for rule in FRAME_RULES]
    assert names == [
        "reason-only", "unreliable", "inline", "interrupted", "unsymbolized", "generic", "repeat", "depth"
    ]  # fmt: skip
    assert [step.name for step in fingerprint.REASON_STEPS][-1] == "whitespace"


# --- invariance under build, machine and report noise (hypothesis) -----------------------------

_suffix = st.sampled_from(
    ["", ".isra.0", ".constprop.0", ".cold", ".part.1", ".constprop.0.isra.0", ".llvm.123456"]
)
_offset = st.one_of(st.none(), st.integers(0, 0xFFFF))
_address = st.one_of(st.none(), st.integers(0, 2**64 - 1))


@st.composite
def noisy_copy(draw: st.DrawFn) -> CrashRecord:
    """The seed as another machine and build would print it: only noise changed."""
    base = seed_record()
    context = draw(st.sampled_from(list(StackContext)))  # with or without <IRQ>-style markers
    trace = tuple(
        dataclasses.replace(
            frame,
            function=frame.function + draw(_suffix),
            offset=draw(_offset),
            size=draw(_offset),
            address=draw(_address),
            module=draw(st.sampled_from([None, frame.module])),
            context=context,
        )
        for frame in base.call_trace
    )
    rip = Rip("__netif_receive_skb" + draw(_suffix), draw(_offset), draw(_offset), address=draw(_address))
    return dataclasses.replace(
        base,
        reason=f"BUG: unable to handle kernel NULL pointer dereference at {draw(st.integers(0, 2**64 - 1)):016x}",
        guilty_frame="__netif_receive_skb" + draw(_suffix),
        rip=rip,
        call_trace=trace,
        cpu=draw(st.one_of(st.none(), st.integers(0, 4095))),
        pid=draw(st.one_of(st.none(), st.integers(0, 2**22))),
        comm=draw(st.one_of(st.none(), st.text(min_size=1, max_size=15))),
        tainted=draw(st.sampled_from([None, "G", "P           OE", "G        W"])),
        taint_flags=draw(st.sampled_from([(), ("PROPRIETARY_MODULE",), ("WARN", "OOT_MODULE")])),
        kernel_release=draw(st.sampled_from([None, "2.6.32-220.7.1.el6.x86_64", "6.1.0-56-amd64"])),
        kernel_build=draw(st.sampled_from([None, "#1", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2"])),
        hardware=draw(st.sampled_from([None, "QEMU Standard PC (i440FX + PIIX, 1996)"])),
        registers=draw(st.dictionaries(st.sampled_from(["rax", "r12", "rip"]), st.integers(0, 2**64 - 1))),
        fault_address=draw(_address),
        first_line=draw(st.integers(0, 10**6)),
    )


@settings(max_examples=200, deadline=None)
@given(noisy_copy())
def test_invariant_under_noise(record: CrashRecord) -> None:
    assert compute(record).value == compute(seed_record()).value


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(0, 4095), st.integers(0, 2**22))
def test_raw_reason_numbers_ignored(address: int, cpu: int, pid: int) -> None:
    """Without the parser's normalized reason, the raw one is normalized to the same text."""
    a = seed_record(normalized_reason="", reason=f"BUG: at {address:016x} CPU: {cpu} PID: {pid} [#1] SMP")
    b = seed_record(normalized_reason="", reason="BUG: at 0000000000000060 CPU: 12 PID: 0 [#2] SMP PTI")
    assert compute(a).value == compute(b).value


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
@example("0.0")  # one pass left `N.0`, a clone suffix only on the next pass
@example("BUG: at 5.10.0-13 in foo.0.1")
@example("0x10.5")
def test_reason_normalization_idempotent(reason: str) -> None:
    once = normalize_reason(reason)
    assert normalize_reason(once) == once


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=40), st.booleans()), max_size=60))
def test_frame_walk_accounts_for_every_frame(frames: list[tuple[str, bool]]) -> None:
    kept, skipped = select_frames(frames)
    assert len(kept) + len(skipped) == len(frames)
    assert len(kept) <= FRAME_DEPTH


def test_seed_published_and_restored_share_the_fingerprint() -> None:
    """The article's copy (addresses lost, Code: wrapped, release missing) is the same bug."""
    from analysis.signature import analyze
    from tests.conftest import shared_path

    folder = shared_path("corpora", "seed")
    published = analyze((folder / "buildtest07-console.txt").read_bytes())
    restored = analyze((folder / "buildtest07-console.restored.txt").read_bytes())
    assert len(published) == len(restored) == 1
    assert published[0].fingerprint == restored[0].fingerprint
    assert published[0].fingerprint is not None
    assert published[0].fingerprint.frames[:3] == ("__netif_receive_skb", "process_backlog", "net_rx_action")


def test_vmcore_crashes_have_distinct_fingerprints() -> None:
    """Four different bugs of the test module: four different fingerprints."""
    from analysis.signature import analyze
    from tests.conftest import shared_path

    values = set()
    for crash in ("null", "bug", "warn", "softlockup"):
        records = analyze(shared_path("vmcores", crash, "serial.log").read_bytes())
        assert records[0].fingerprint is not None
        values.add(records[0].fingerprint.value)
    assert len(values) == 4


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            "BUG: unable to handle kernel NULL pointer dereference at 0000000000000060",
            "BUG: kernel NULL pointer dereference, address: 0000000000000060",
        ),
        (
            "BUG: unable to handle kernel paging request at ffffc90000a01008",
            "BUG: unable to handle page fault for address: ffffc90000a01008",
        ),
        (
            "general protection fault: 0000 [#1] SMP",
            "general protection fault, probably for non-canonical address 0xdffffc0000000001: 0000 [#1] PREEMPT SMP KASAN PTI",
        ),
        ("divide error: 0000 [#1] SMP", "divide_error: 0000 [#1] PREEMPT SMP KASAN"),
        (
            "WARNING: at net/core/dev.c:1712 skb_gso_segment+0x1e2/0x2c0() (Not tainted)",
            "WARNING: net/core/dev.c:3345 at skb_gso_segment, CPU: syz.0.17/5821",
        ),
        (
            "WARNING: CPU: 1 PID: 99 at net/core/dev.c:3345 skb_gso_segment+0x12/0x40 [mod]",
            "WARNING: net/core/dev.c:3345 at skb_gso_segment, CPU: sh/99",
        ),
        ("BUG: KASAN: double-free or invalid-free in kvfree", "BUG: KASAN: invalid-free in kvfree"),
        (
            "BUG: KASAN: use-after-free in xas_start at addr ffff88801234abcd",
            "BUG: KASAN: slab-use-after-free in xas_start",
        ),
        (
            "INFO: task kworker/u4:2:123 blocked for more than 120 seconds.",
            "INFO: task syz-executor.3:9876 blocked for more than 143 seconds.",
        ),
        (
            "BUG: scheduling while atomic: swapper/0/0/0x00000100",
            "BUG: scheduling while atomic: syz-executor/1234/0x00000002",
        ),
    ],
)
def test_kernel_versions_wordings_meet(old: str, new: str) -> None:
    """One kind of report, phrased by different kernel versions (and machines): one reason."""
    assert normalize_reason(old) == normalize_reason(new)


def test_wording_keeps_title_like_reasons_apart() -> None:
    """A damaged report reduced to "<kind> in <func>" keeps the function in its reason."""
    assert normalize_reason("general protection fault in foo") != normalize_reason(
        "general protection fault in bar"
    )


def test_reason_only_reports_ignore_the_checker_stack() -> None:
    """A corrupted stack end is found by the scheduler: its stack differs on every occurrence."""
    reason = "Kernel panic - not syncing: corrupted stack end detected inside scheduler"
    a = seed_record(
        kind=CrashKind.STACK_PROTECTOR, reason=reason, normalized_reason="", guilty_frame="wb_workfn"
    )
    b = dataclasses.replace(
        a, call_trace=(CallFrame("__schedule", 1, 2), CallFrame("schedule_timeout", 3, 4))
    )
    assert compute(a).value == compute(b).value
    assert compute(a).frames == ("wb_workfn",)
    assert {s.rule for s in compute(b).skipped} == {"reason-only"}


def test_generic_checker_function_dropped_from_reason() -> None:
    """`in memcpy` / `in __lock_acquire` name the helper that tripped, which kernels vary."""
    assert normalize_reason("BUG: KASAN: slab-out-of-bounds in memcpy") == "BUG: KASAN: slab-out-of-bounds"
    assert normalize_reason("BUG: KASAN: use-after-free in _raw_spin_lock_irqsave") == "BUG: KASAN: use-after-free"
    kept = normalize_reason("BUG: KASAN: slab-out-of-bounds in sg_remove_request")
    assert kept == "BUG: KASAN: slab-out-of-bounds in sg_remove_request"


SYMBOLIZED_LOGS = sorted(
    (Path(__file__).resolve().parents[1] / "data" / "logs").glob("*symbolized*.log")
)
_PRINTED_SOURCE = re.compile(r" [\w./+-]+\.[chS]:\d+(?= |$)")


def _unsymbolized(text: str) -> str:
    """The log as the kernel printed it before a symbolizer ran: no `file:line`, no `[inline]` lines."""
    lines = [line for line in text.splitlines() if not line.rstrip().endswith("[inline]")]
    return "\n".join(_PRINTED_SOURCE.sub("", line) for line in lines) + "\n"


@pytest.mark.parametrize("case", SYMBOLIZED_LOGS, ids=[c.stem for c in SYMBOLIZED_LOGS])
def test_symbolized_and_raw_traces_share_the_fingerprint(case: Path) -> None:
    """A symbolized copy (syzkaller, decode_stacktrace.sh) of a crash is the same bug as the raw log."""
    from analysis.signature import analyze

    text = case.read_text()
    raw = _unsymbolized(text)
    assert raw != text and "[inline]" not in raw
    symbolized, plain = analyze(text), analyze(raw)
    assert symbolized and len(symbolized) == len(plain)
    for a, b in zip(symbolized, plain, strict=True):
        assert a.fingerprint is not None and b.fingerprint is not None
        assert a.fingerprint.value == b.fingerprint.value
        assert len(a.call_trace) > len(b.call_trace)  # the inlined calls were parsed, not dropped
        assert any(s.rule == "inline" for s in a.fingerprint.skipped)


def test_inline_frames_are_parsed_and_marked() -> None:
    """`func file:line [inline]` is a frame with no offset and its printed line as `source`."""
    from analysis.fingerprint import is_inline
    from analysis.model import SourceLocation
    from analysis.oops import parse_log

    (record,) = parse_log(
        "BUG: KASAN: use-after-free in foo+0x10/0x20 drivers/a/foo.c:12\n"
        "Call Trace:\n"
        " foo+0x10/0x20 drivers/a/foo.c:12 [foo_mod]\n"
        " bar_inner include/linux/bar.h:49 [inline]\n"
        " bar+0x5/0x9 kernel/bar.c:7\n"
        " baz+0x1/0x2\n"
    )
    names = [f.function for f in record.call_trace]
    assert names == ["foo", "bar_inner", "bar", "baz"]
    foo, inner, bar, baz = record.call_trace
    assert bar.source == (SourceLocation("bar", "kernel/bar.c", 7),) and bar.offset == 5
    assert foo.module == "foo_mod" and foo.source == (SourceLocation("foo", "drivers/a/foo.c", 12),)
    assert inner.offset is None and inner.reliable
    assert inner.source == (SourceLocation("bar_inner", "include/linux/bar.h", 49),)
    assert [is_inline(f) for f in record.call_trace] == [False, True, False, False]
    assert baz.source == ()


def test_interrupted_task_frames_are_skipped() -> None:
    """Under `<IRQ>` .. `<EOI>`, the task frames show what the interrupt landed on, not the bug."""
    irq = StackContext.IRQ
    record = seed_record(
        call_trace=(
            CallFrame("e1000_intr_msix_tx", 0x3C, 0x80, context=irq),
            CallFrame("__handle_irq_event_percpu", 0x4A, 0x1A0, context=irq),
            CallFrame("__common_interrupt", 0x42, 0xA0, context=irq),
            CallFrame("ext4_writepages", 0x1, 0x2, context=StackContext.TASK),
            CallFrame("do_writepages", 0x1, 0x2, context=StackContext.TASK),
        )
    )
    fp = compute(record)
    assert fp.frames == ("__netif_receive_skb", "e1000_intr_msix_tx")
    rules = {s.function: s.rule for s in fp.skipped}
    assert rules == {
        "__handle_irq_event_percpu": "irq-entry",
        "__common_interrupt": "irq-entry",
        "ext4_writepages": "interrupted",
        "do_writepages": "interrupted",
    }
    other_task = dataclasses.replace(
        record, call_trace=(*record.call_trace[:3], CallFrame("vfs_read", 0x1, 0x2, context=StackContext.TASK))
    )
    assert compute(other_task).value == fp.value


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (CrashKind.RCU_STALL, "INFO: rcu_preempt self-detected stall on CPU"),
        (CrashKind.HUNG_TASK, "INFO: task syz-executor4:6761 blocked for more than 140 seconds."),
        (CrashKind.SOFT_LOCKUP, "BUG: soft lockup - CPU#1 stuck for 22s! [syz-executor1:9000]"),
        (CrashKind.STACK_GUARD_PAGE, "BUG: TASK stack guard page was hit at ffffc90004d37ff8"),
        (CrashKind.BUG, "BUG: MAX_STACK_TRACE_ENTRIES too low!"),
        (CrashKind.PANIC, "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009"),
    ],
)
def test_watchdog_reports_keep_only_kind_reason_and_guilty(kind: CrashKind, reason: str) -> None:
    """Stalls, hung tasks, stack overflows and lockdep table exhaustion: the stack is where a
    watchdog or table ran out, different every time; the guilty function stays in the hash."""
    a = seed_record(kind=kind, reason=reason, normalized_reason="", guilty_frame="rtnl_lock")
    b = dataclasses.replace(a, call_trace=(CallFrame("synchronize_net", 1, 2), CallFrame("packet_release", 3, 4)))
    assert compute(a).value == compute(b).value
    assert compute(a).frames == ("rtnl_lock",)
    assert compute(dataclasses.replace(a, guilty_frame="p9_fd_close")).value != compute(a).value


def test_rcu_stall_flavours_share_a_reason() -> None:
    reasons = [
        "INFO: rcu_sched detected stalls on CPUs/tasks:",
        "INFO: rcu_preempt self-detected stall on CPU",
        "INFO: rcu_bh detected stall on CPU 1",
    ]
    assert {normalize_reason(r) for r in reasons} == {"INFO: rcu detected stall"}


def test_reason_suffix_naming_the_guilty_function_is_dropped() -> None:
    """`KASAN: ... in f` and a copy whose reason line named a generic helper are one bug."""
    a = seed_record(
        kind=CrashKind.KASAN, reason="BUG: KASAN: slab-out-of-bounds in sg_remove_request+0x10/0x80",
        normalized_reason="", guilty_frame="sg_remove_request",
    )  # fmt: skip
    b = dataclasses.replace(a, reason="BUG: KASAN: slab-out-of-bounds in memcpy+0x1/0x2")
    assert compute(a).reason == compute(b).reason == "BUG: KASAN: slab-out-of-bounds"
    assert compute(a).value == compute(b).value


def test_generic_warning_helper_dropped_from_reason() -> None:
    """The ODEBUG/lockdep helper that printed a WARNING moves between kernel versions."""
    old = normalize_reason("WARNING: CPU: 0 PID: 1 at lib/debugobjects.c:291 debug_print_object+0x16a/0x1f0")
    new = normalize_reason("WARNING: CPU: 1 PID: 9 at lib/debugobjects.c:1001 debug_check_no_obj_freed+0x4d/0x90")
    assert old == new == "WARNING: at lib/debugobjects.c"
    specific = normalize_reason("WARNING: CPU: 0 PID: 1 at net/core/dev.c:12 netdev_freemem+0x1/0x2")
    assert specific == "WARNING: at net/core/dev.c:N netdev_freemem"


_MODULE_SOFT_LOCKUP = """\
[   27.512306] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [sh:100]
[   27.513002] Modules linked in: crashme(OE) qemu_fw_cfg
[   27.513100] CPU: 0 PID: 100 Comm: sh Tainted: G           OE      6.1.0-56-amd64 #1  Debian 6.1.192-2
[   27.513200] RIP: 0010:crashme_softlockup+0xe/0x10 [crashme]
[   27.513300] Code: 90 90 90 90 66 0f 1f 00 0f 1f 44 00 00 65 ff 05 b4 5a d4 3f f3 90 <eb> fc 0f 1f 44 00 00
[   27.513400] Call Trace:
[   27.513500]  <TASK>
[   27.513600]  crashme_write+0x297/0x2f6 [crashme]
[   27.513700]  proc_reg_write+0x56/0xa0
[   27.513800]  vfs_write+0xc7/0x3f0
[   27.513900]  ksys_write+0x6b/0xf0
[   27.514000]  do_syscall_64+0x5d/0xb0
[   27.514100]  </TASK>
"""


def test_stall_provenance_names_the_guilty_frame_once() -> None:
    """A module's soft lockup is titled after the RIP function, which the provenance lists as the
    guilty frame and never also as skipped (issue: proc_reg_write was both)."""
    from analysis.signature import analyze

    (record,) = analyze(_MODULE_SOFT_LOCKUP)
    assert record.title == "BUG: soft lockup in crashme_softlockup"
    assert record.fingerprint is not None
    assert record.fingerprint.frames == ("crashme_softlockup",)
    skipped = [s.function for s in record.fingerprint.skipped]
    assert skipped == ["crashme_write", "proc_reg_write", "vfs_write", "ksys_write", "do_syscall_64"]
    assert all(s.rule == "reason-only" for s in record.fingerprint.skipped)
