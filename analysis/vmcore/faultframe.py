"""The faulting instruction's address from a dump, where the oops text did not print it.

x86_64 kernels since 4.x print `RIP: 0010:func+0x5/0x20` without the address, so a record read
from a dump had `rip.address` null although the dump holds the answer: the exception frame the
CPU pushed is still on the crashed task's stack. For a fault in kernel mode without a stack
switch (#PF, #GP, #UD: BUG() and WARN()), the CPU pushes SS, RSP, RFLAGS, CS and RIP just below
the interrupted stack pointer (Intel SDM vol. 3, 6.14.2), which is the RSP the oops prints. A
frame in that window whose CS is the kernel's, whose RFLAGS and RSP are the printed ones, gives
RIP; it is used only when the dump's bytes at that address are the `Code:` bytes the kernel
printed around it, so a wrong guess is impossible, only a missing one.
"""

from __future__ import annotations

import dataclasses
import logging
import struct

from analysis.errors import CrashfleetInputError
from analysis.model import CrashRecord
from analysis.vmcore.detect import open_dump
from analysis.vmcore.dump import PageNotPresent
from analysis.vmcore.memory import AddressSpace

__all__ = ["fill_rip_addresses", "rip_from_stack"]

log = logging.getLogger(__name__)

_WINDOW = 256  # bytes below the printed RSP searched for the frame (the frame itself is 40)
_KERNEL_CS = frozenset({0x10})  # __KERNEL_CS on x86_64


def _wants_address(rec: CrashRecord) -> bool:
    code = rec.code
    return (
        rec.arch == "x86_64"
        and rec.rip is not None
        and rec.rip.address is None
        and "rsp" in rec.registers
        and "eflags" in rec.registers
        and code is not None
        and code.fault_offset >= 0
        and bool(code.code_bytes)
    )


def rip_from_stack(mem: AddressSpace, rec: CrashRecord) -> int | None:
    """The RIP of `rec`'s exception frame in the dump, confirmed by its Code: bytes; else None."""
    if not _wants_address(rec) or rec.code is None:
        return None
    rsp, flags = rec.registers["rsp"], rec.registers["eflags"]
    start = (rsp & ~0xF) - _WINDOW
    try:
        window = mem.read(start, _WINDOW + 16)
    except (PageNotPresent, CrashfleetInputError, ValueError):
        return None
    words: list[int] = [value for (value,) in struct.iter_unpack("<Q", window[: len(window) // 8 * 8])]
    code = rec.code
    for i in range(len(words) - 3):
        if words[i + 1] in _KERNEL_CS and words[i + 2] == flags and words[i + 3] == rsp:
            ip = words[i]
            try:
                around = mem.read(ip - code.fault_offset, len(code.code_bytes))
            except (PageNotPresent, CrashfleetInputError, ValueError):
                continue
            if around == code.code_bytes:
                return ip
    return None


def fill_rip_addresses(dump_path: str, records: list[CrashRecord]) -> list[CrashRecord]:
    """`records` with `rip.address` filled from the dump where the text lacked it (never raises)."""
    if not any(_wants_address(r) for r in records):
        return records
    try:
        dump = open_dump(dump_path)
    except CrashfleetInputError:
        return records
    try:
        mem = AddressSpace(dump)
        out = []
        for rec in records:
            ip = rip_from_stack(mem, rec)
            if ip is not None and rec.rip is not None:
                rec = dataclasses.replace(rec, rip=dataclasses.replace(rec.rip, address=ip))
            out.append(rec)
        return out
    except Exception:  # an extra fact: a reader bug costs the address, never the records
        log.exception("event=rip_from_dump_failed path=%s", dump_path)
        return records
    finally:
        dump.close()
