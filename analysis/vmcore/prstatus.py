"""ELF notes of a dump: NT_PRSTATUS (one per CPU: registers and pid at the crash) and VMCOREINFO.

Notes come from the ELF PT_NOTE segment or the kdump-compressed `offset_note` area, which
holds the same ELF note stream.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["NT_PRSTATUS", "X86_64_PR_REGS", "Note", "PrStatus", "iter_notes", "parse_prstatus"]

NT_PRSTATUS = 1
VMCOREINFO_NOTE_NAME = b"VMCOREINFO"
MAX_NOTES = 65536  # more notes than any machine has CPUs means the note area is garbage

# struct user_regs_struct order on x86_64 (arch/x86/include/asm/user_64.h).
X86_64_PR_REGS: tuple[str, ...] = (
    "r15",
    "r14",
    "r13",
    "r12",
    "rbp",
    "rbx",
    "r11",
    "r10",
    "r9",
    "r8",
    "rax",
    "rcx",
    "rdx",
    "rsi",
    "rdi",
    "orig_rax",
    "rip",
    "cs",
    "eflags",
    "rsp",
    "ss",
    "fs_base",
    "gs_base",
    "ds",
    "es",
    "fs",
    "gs",
)
_PR_PID_OFFSET = 32  # after siginfo (12), pr_cursig (2+2 pad), pr_sigpend (8), pr_sighold (8)
_PR_REG_OFFSET = 112  # after pid, ppid, pgrp, sid and four struct timevals


@dataclass(frozen=True, slots=True)
class Note:
    """One ELF note: owner name (without NUL), type and payload."""

    name: bytes
    type: int
    desc: bytes


@dataclass(frozen=True, slots=True)
class PrStatus:
    """One CPU's NT_PRSTATUS: the pid it ran and its registers (x86_64 names; empty elsewhere)."""

    pid: int
    registers: Mapping[str, int]


def iter_notes(data: bytes, little_endian: bool = True) -> Iterator[Note]:
    """Walk an ELF note stream (4-byte aligned fields); stops quietly at padding or a cut note."""
    fmt = "<III" if little_endian else ">III"
    pos = 0
    count = 0
    while pos + 12 <= len(data) and count < MAX_NOTES:
        namesz, descsz, ntype = struct.unpack_from(fmt, data, pos)
        if namesz == 0 and descsz == 0 and ntype == 0:
            break
        name_start = pos + 12
        desc_start = name_start + ((namesz + 3) & ~3)
        desc_end = desc_start + descsz
        if desc_end > len(data):
            break
        yield Note(data[name_start : name_start + namesz].rstrip(b"\x00"), ntype, data[desc_start:desc_end])
        pos = desc_start + ((descsz + 3) & ~3)
        count += 1


def parse_prstatus(desc: bytes, machine: str | None) -> PrStatus | None:
    """Decode an NT_PRSTATUS payload; registers are named only for x86_64 (None if too short)."""
    if len(desc) < _PR_PID_OFFSET + 4:
        return None
    (pid,) = struct.unpack_from("<i", desc, _PR_PID_OFFSET)
    regs: dict[str, int] = {}
    if machine == "x86_64" and len(desc) >= _PR_REG_OFFSET + 8 * len(X86_64_PR_REGS):
        values = struct.unpack_from(f"<{len(X86_64_PR_REGS)}Q", desc, _PR_REG_OFFSET)
        regs = dict(zip(X86_64_PR_REGS, values, strict=True))
    return PrStatus(pid=pid, registers=MappingProxyType(regs))
