"""How records in one log relate, and fields whose parsing has a rule worth stating on its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.model import CrashKind, StackContext
from analysis.oops import parse_log
from analysis.taint import TAINT_FLAGS, decode_taint

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"


def _log(name: str) -> bytes:
    return (LOGS / name).read_bytes()


def test_warning_then_oops_then_panic() -> None:
    """The panic line attaches to the oops it follows; the earlier WARNING stays its own record."""
    warning, oops = parse_log(_log("x86_64-4.19-syslog-warning-oops-panic.log"))
    assert warning.kind is CrashKind.WARNING and warning.panic_message is None
    assert oops.kind is CrashKind.NULL_DEREF and oops.panic_message == "Fatal exception"
    assert oops.related == ("panic-attached",)
    assert warning.last_line < oops.first_line
    # The register dump repeated after "---[ end trace" is the same record, and the first wins.
    assert oops.rip is not None and oops.rip.function == "e1000e_down"
    assert oops.registers["cr2"] == 0x18 and oops.fault_address == 0x18
    assert oops.tainted == "G        W" and oops.taint_flags == ("WARN",)


def test_panic_without_a_report_is_its_own_record() -> None:
    (rec,) = parse_log(_log("x86_64-5.10-oom-panic.log"))
    assert rec.kind is CrashKind.OUT_OF_MEMORY
    assert rec.panic_message == "System is deadlocked on memory"
    assert "panic-attached" not in rec.related


def test_a_crash_after_reboot_is_a_second_record() -> None:
    first, second = parse_log(_log("x86_64-4.14-two-crashes-divide-error.log"))
    assert first.title == "divide error in cake_dequeue"
    assert first.panic_message == "Fatal exception in interrupt"
    assert second.title == "kernel BUG in tcp_build_frag"
    assert second.oops_number == 1  # the "invalid opcode" line continued the kernel BUG record
    assert second.panic_message is None and first.last_line < second.first_line


def test_caller_ids_keep_interleaved_cpus_apart() -> None:
    hung, lockup = parse_log(_log("x86_64-6.6-caller-ids-interleaved.log"))
    assert hung.kind is CrashKind.HUNG_TASK
    assert hung.title == "INFO: task hung in jbd2_journal_commit_transaction"
    assert "next_to_clean" not in hung.excerpt and "RT throttling" not in hung.excerpt
    assert [f.function for f in hung.call_trace if f.reliable][:2] == ["__schedule", "schedule"]
    assert lockup.kind is CrashKind.SOFT_LOCKUP and lockup.related == ("during:0",)
    assert lockup.rip is not None and lockup.rip.function == "e1000_clean_tx_irq"
    contexts = [f.context for f in lockup.call_trace]
    assert contexts[0] is StackContext.IRQ and contexts[-1] is StackContext.TASK


def test_arm64_registers_and_code() -> None:
    (rec,) = parse_log(_log("arm64-6.1-null-deref.log"))
    assert rec.arch == "arm64"
    assert rec.rip is not None and (rec.rip.function, rec.rip.module) == ("spidev_ioctl", "spidev")
    assert rec.registers["x0"] == 0xFFFFFF8102E4A300 and rec.registers["sp"] == 0xFFFFFFC00A7C3D60
    assert rec.registers["x29"] == 0xFFFFFFC00A7C3D60 and len([k for k in rec.registers if k.startswith("x")]) == 30  # x30 is lr, printed symbolically
    assert rec.code_line == "f9400a80 aa1303e0 52800002 f9400e94 (b9400a81)"
    assert rec.oops_code_raw == 0x96000006 and rec.oops_code is None  # an ESR, not an x86 #PF code
    assert rec.fault_address == 8


@pytest.mark.parametrize(
    ("name", "arch", "function"),
    [
        ("i386-2.6.32-eip.log", "i386", "usb_stor_control_thread"),
        ("ppc64-4.4-nip.log", "ppc64", "pci_pm_runtime_suspend"),
        ("s390x-5.14-psw.log", "s390x", "qeth_l2_dev2br_worker"),
        ("riscv64-6.5-epc.log", "riscv64", "demo_probe"),
    ],
)
def test_other_architectures(name: str, arch: str, function: str) -> None:
    (rec,) = parse_log(_log(name))
    assert rec.arch == arch
    assert rec.rip is not None and rec.rip.function == function
    assert rec.call_trace, "frames of this architecture's trace format"


def test_old_kernels_modules_continue_over_lines() -> None:
    (rec,) = parse_log(_log("x86_64-2.6.32-paging-request.log"))
    assert rec.modules[-1] == "megaraid_sas" and len(rec.modules) == 19
    assert rec.module_taints == {"bnx2": "U", "megaraid_sas": "P"}
    assert rec.last_unloaded == "microcode"
    assert rec.kernel_release == "2.6.32-431.el6.x86_64"
    assert rec.hardware == "Dell Inc. PowerEdge R610/0F0XJ6"
    assert rec.tainted == "P        W" and rec.taint_flags == ("PROPRIETARY_MODULE", "WARN")
    assert rec.oops_code is not None and rec.oops_code.write and not rec.oops_code.user
    assert rec.oops_number == 2


def test_truncated_report_is_a_corrupted_record() -> None:
    (rec,) = parse_log(_log("truncated-header-only.log"))
    assert rec.corrupted and rec.corrupted_reason
    assert rec.oops_code is not None and rec.oops_code.instruction_fetch
    assert rec.fault_address == 0xFFFFFFFFC0A3F1C8


def test_taint_letters() -> None:
    assert decode_taint("G           OE") == ("OOT_MODULE", "UNSIGNED_MODULE")
    assert decode_taint("P    B   W  OEL") == (
        "PROPRIETARY_MODULE", "BAD_PAGE", "WARN", "OOT_MODULE", "UNSIGNED_MODULE", "SOFTLOCKUP",
    )  # fmt: skip
    assert decode_taint(None) == () and decode_taint("") == () and decode_taint("G") == ()
    assert len(set(TAINT_FLAGS.values())) == len(TAINT_FLAGS)


_OOPS_HEAD = "Unable to handle kernel paging request at virtual address 0000000000000010\n"


@pytest.mark.parametrize(
    ("lines", "arch"),
    [
        # arm64 before 4.10 printed arm's `PC is at` too: its x registers decide.
        (["PC is at foo+0x14/0x34", "x29: ffffffc0a7e83d10 x28: 0000000000000000"], "arm64"),
        (["pc : [<ffffff80083d6a14>] lr : [<ffffff8000a3e10c>] pstate: 80400145"], "arm64"),
        (["pc : 0xffff800008a1b2c4", "lr : do_thing+0x1c/0x40"], "arm64"),
        (["Internal error: Oops: 0000000096000006 [#1] PREEMPT SMP"], "arm64"),
        # arm with a wild PC: no symbol on the PC line, the flags and registers say arm.
        (["Internal error: Oops: 80000005 [#1] SMP ARM", "PC is at 0x7f3a0c10"], "arm"),
        (["pc : [<7f3a0c10>]    lr : [<bf02a1b4>]    psr: 600f0013"], "arm"),
        (["r10: c2d5e900  r9 : c3c30000  r8 : 00000000"], "arm"),
        (["GPR00: c0000000005e2ef0 c000001fd6d1bbe0 c0000000015b8f00 0000000000000000"], "ppc64"),
        (["Krnl GPRS: 0000000000000000 0000000000000000 0000000000000000 0000000089a1c000"], "s390x"),
        (["epc : ffffffff01a2e01a ra : ffffffff8061d77a sp : ff2000000061bb40"], "riscv64"),
        (["EAX: 00000000 EBX: f5b3c000 ECX: 00000000 EDX: 00000001"], "i386"),
        (["RAX: 0000000000000000 RBX: ffff8880b9400000 RCX: 0000000000000000"], "x86_64"),
        # Only the hardware name: a weak hint, used when nothing else names the architecture.
        (["Hardware name: ARM-Versatile Express"], "arm"),
        (["Hardware name: linux,dummy-virt (DT)"], "arm64"),
        (["Hardware name: riscv-virtio,qemu (DT)"], "riscv64"),
        (["Hardware name: IBM 3931 A01 703 (z/VM 7.3.0)"], "s390x"),
        (["Hardware name: QEMU Standard PC (i440FX + PIIX, 1996)"], "x86_64"),
        ([], "x86_64"),
    ],
)
def test_arch_from_the_lines_only_it_prints(lines: list[str], arch: str) -> None:
    (rec,) = parse_log(_OOPS_HEAD + "\n".join(lines) + "\n")
    assert rec.arch == arch


def test_strong_evidence_beats_the_hardware_hint() -> None:
    text = _OOPS_HEAD + "Hardware name: ARM-Versatile Express\nx29: ffffffc0a7e83d10 x28: 0000000000000000\n"
    (rec,) = parse_log(text)
    assert rec.arch == "arm64"


def test_trace_survives_interleaved_printk_lines() -> None:
    """Another subsystem's line between two frames does not end the trace; a terminator does."""
    text = (
        "BUG: unable to handle kernel NULL pointer dereference at 0000000000000010\n"
        "Call Trace:\n"
        " [<ffffffff81df79f4>] foo+0x1d4/0x200\n"
        "sg_write: data in/out 327644/32 bytes for SCSI command 0x4-- guessing data in;\n"
        "   program syz-executor0 not setting count and/or reply_len properly\n"
        " [<ffffffff833f4098>] bar+0x188/0x930\n"
        "---[ end trace 0000000000000000 ]---\n"
        " [<ffffffff833604c0>] after_the_end+0xb0/0x7d0\n"
    )
    (rec,) = parse_log(text)
    assert [f.function for f in rec.call_trace] == ["foo", "bar"]


def test_trace_ends_after_too_many_foreign_lines() -> None:
    text = (
        "BUG: unable to handle kernel NULL pointer dereference at 0000000000000010\n"
        "Call Trace:\n"
        " [<ffffffff81df79f4>] foo+0x1d4/0x200\n"
        "one\ntwo\nthree\n"
        " [<ffffffff833f4098>] bar+0x188/0x930\n"
    )
    (rec,) = parse_log(text)
    assert [f.function for f in rec.call_trace] == ["foo"]


def test_ppc_and_s390_registers_and_code() -> None:
    (ppc,) = parse_log(_log("ppc64le-5.15-instruction-dump.log"))
    assert ppc.arch == "ppc64" and ppc.registers["r31"] == 0 and ppc.registers["dar"] == 0x10
    assert ppc.registers["nip"] == 0xC008000001A4138C and "regs" not in ppc.registers
    assert ppc.code_line is not None and "<e93f0010>" in ppc.code_line and ppc.fault_address == 0x10
    (s390,) = parse_log(_log("s390x-6.1-krnl-code.log"))
    assert [s390.registers[f"r{n}"] for n in (1, 2, 15)] == [0, 0xA1B9C300, 0x37FFFB1FD88]
    assert s390.code_line is not None and s390.code_line.count(": ") == 8 and ">000003ff8025e0b0" in s390.code_line
    assert s390.comm == "zdemo"  # `Kdump: loaded` between the comm and the taint is not part of it
