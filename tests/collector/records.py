"""Hand-built crash records for collector tests (independent of the log parsers)."""

from __future__ import annotations

from analysis.fingerprint import compute
from analysis.model import (
    CallFrame,
    CodeDecode,
    CrashKind,
    CrashRecord,
    PageFaultCode,
    Rip,
    StackContext,
)


def null_deref(frames: tuple[str, ...] = ("crashme_write", "proc_reg_write", "vfs_write", "ksys_write", "do_syscall_64"),
               release: str = "6.1.0-26-amd64") -> CrashRecord:  # fmt: skip
    """A NULL dereference oops with every field the wire carries filled in."""
    record = CrashRecord(
        kind=CrashKind.NULL_DEREF,
        reason="BUG: kernel NULL pointer dereference, address: 0000000000000060",
        normalized_reason="BUG: kernel NULL pointer dereference",
        title=f"BUG: kernel NULL pointer dereference in {frames[0]}",
        guilty_frame=frames[0],
        arch="x86_64",
        fault_address=0x60,
        oops_code=PageFaultCode.decode(0x2),
        oops_code_raw=0x2,
        oops_number=1,
        oops_flags=("PREEMPT", "SMP", "NOPTI"),
        tainted="G           OE",
        taint_flags=("PROPRIETARY_MODULE", "OOT_MODULE"),
        cpu=1,
        pid=4242,
        comm="bash",
        kernel_release=release,
        kernel_build="#1 SMP PREEMPT_DYNAMIC Debian 6.1.112-1",
        hardware="QEMU Standard PC (i440FX + PIIX, 1996)",
        bios="rel-1.16.2-0-gea1b7a073390-prebuilt.qemu.org 04/01/2014",
        modules=("crashme", "e1000e", "nvme"),
        module_taints={"crashme": "OE"},
        last_unloaded="floppy",
        panic_message="Fatal exception",
        rip=Rip(frames[0], 0x1D, 0x50, "crashme", 0xFFFFFFFFC0A1B01D),
        call_trace=tuple(
            CallFrame(f, 0x10 + i, 0x100, "crashme" if i == 0 else None, reliable=i != 2,
                      context=StackContext.TASK, address=0xFFFFFFFF81000000 + i)
            for i, f in enumerate(frames)
        ),
        registers={"rax": 0, "r12": 0, "cr2": 0x60, "rip": 0xFFFFFFFFC0A1B01D, "eflags": 0x10246},
        code_line="48 89 e5 <48> 8b 40 60",
        code=CodeDecode("x86_64", bytes.fromhex("4889e5488b4060"), 3, "mov rax, qword ptr [rax + 0x60]",
                        base_register="rax", displacement=0x60, bad_register="rax", bad_register_value=0,
                        access="NULL pointer + 0x60 through rax", operation="read"),
        corrupted=False,
        related=("follows-warning",),
        first_line=3,
        last_line=40,
        excerpt="BUG: kernel NULL pointer dereference, address: 0000000000000060\n#PF: supervisor write access\n",
    )
    record.fingerprint = compute(record)
    return record
