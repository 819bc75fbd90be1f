"""Decode an oops's `Code:` line: the faulting instruction, the register behind it, and a verdict.

This is the step an engineer does by hand with `decodecode` and the register dump: disassemble
the bytes at the `<..>`/`(..)` marker, find the instruction's memory operand, read its base and
index registers from the dump and say what the pointer was ("NULL pointer + 0x60 through r12").

`decode_code` never raises: the kernel's own "could not read the code" lines (`Bad RIP value.`,
`Unable to access opcode bytes at ...`, arm64 `bad PC value`), cut or garbled bytes and bytes
that do not decode all come back as a `CodeDecode` whose `error` says why (and, when the code
was unreadable because RIP itself was bad, an `access` verdict about the jump).

Architectures: x86_64 and i386 (byte lists with a `<..>` marker), arm64, arm and Thumb, riscv64
and powerpc (instruction words, `(..)` or `<..>` marked), and s390x (its `Krnl Code:` listing,
when capstone was built with SystemZ). Others keep their bytes and say that there is no
disassembler.

The verdict is the first match of `VERDICT_RULES`, an ordered list of named rules (trap
instructions, divide errors, stack accesses, then pointer classes from the most specific —
KASAN shadow checks, NULL, ERR_PTR, poison values — to the most generic). Domain constants
(poison values, user-space limits, errno names, arm64 BRK immediates) are the named tables below.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import capstone
from capstone import arm, arm64, x86

from analysis.model import CodeDecode

__all__ = [
    "ARCH_ALIASES",
    "ERRNO_NAMES",
    "INTERRUPTED_VERDICT",
    "POISON_VALUES",
    "VERDICT_RULES",
    "CodeBytes",
    "CodeLineError",
    "Facts",
    "ListingLine",
    "MemoryOperand",
    "Suspect",
    "Verdict",
    "VerdictRule",
    "context_listing",
    "decode_code",
    "normalize_arch",
    "parse_code_line",
    "register_value",
]

# Architecture spellings seen in logs, `uname -m` and dumps -> the names this module uses.
ARCH_ALIASES: Mapping[str, str] = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "x86-64": "x86_64",
    "i386": "i386",
    "i486": "i386",
    "i586": "i386",
    "i686": "i386",
    "x86": "i386",
    "arm64": "arm64",
    "aarch64": "arm64",
    "arm": "arm",
    "armv7l": "arm",
    "armv6l": "arm",
    "ppc64": "ppc64",
    "ppc64le": "ppc64",
    "powerpc": "ppc64",
    "powerpc64": "ppc64",
    "riscv": "riscv64",
    "riscv64": "riscv64",
    "s390x": "s390x",
    "s390": "s390x",
}

# Pointer width per architecture: register values and effective addresses wrap at this width.
_ADDRESS_BITS: Mapping[str, int] = {
    "x86_64": 64,
    "i386": 32,
    "arm64": 64,
    "arm": 32,
    "ppc64": 64,
    "riscv64": 64,
    "s390x": 64,
}

# The first address above user space (TASK_SIZE_MAX); below it a kernel access hit a user address.
USER_SPACE_END: Mapping[str, int] = {
    "x86_64": 0x0000_8000_0000_0000,
    "i386": 0xC000_0000,  # the default 3G/1G split
    "arm64": 0x0001_0000_0000_0000,  # 48-bit VA; TTBR0 range
    "arm": 0xBF00_0000,  # TASK_SIZE with modules below PAGE_OFFSET
    "riscv64": 0x0000_0040_0000_0000,  # sv39
    "ppc64": 0x0010_0000_0000_0000,
}

# Addresses below this are "near NULL": Debian and Ubuntu set vm.mmap_min_addr to 65536, so no
# mapping can exist there and a fault there is almost always a NULL struct pointer plus a member.
NEAR_NULL_LIMIT = 0x10000

# x86_64 generic KASAN's KASAN_SHADOW_OFFSET: `shadow = (addr >> 3) + offset`, so a shadow check
# of a NULL pointer faults at a non-canonical 0xdffffc00000000XX (syzbot's most common GPF).
KASAN_SHADOW_OFFSET_X86_64 = 0xDFFF_FC00_0000_0000

ARM64_UNTAGGED = 0x00FF_FFFF_FFFF_FFFF  # an arm64 address without its top-byte tag


@dataclass(frozen=True, slots=True)
class PoisonValue:
    """A value the kernel stores on purpose so that a later use of a dead pointer is recognizable."""

    value: int
    mask: int  # bits compared: all of them, or the high ones for a family (POISON_POINTER_DELTA + n)
    meaning: str


_EXACT = 0xFFFF_FFFF_FFFF_FFFF

# include/linux/poison.h and friends, 64-bit values with POISON_POINTER_DELTA 0xdead000000000000
# (x86_64 and arm64 Debian configs), plus the slab/page poisons repeated over a whole word.
POISON_VALUES: tuple[PoisonValue, ...] = (
    PoisonValue(0xDEAD_0000_0000_0100, _EXACT, "LIST_POISON1 (list entry used after list_del)"),
    PoisonValue(0xDEAD_0000_0000_0122, _EXACT, "LIST_POISON2 (list entry used after list_del)"),
    PoisonValue(0xDEAD_0000_0000_0000, 0xFFFF_FFFF_FFFF_0000, "poison pointer (POISON_POINTER_DELTA)"),
    PoisonValue(0x6B6B_6B6B_6B6B_6B6B, _EXACT, "slab free poison 0x6b (use after free)"),
    PoisonValue(0x5A5A_5A5A_5A5A_5A5A, _EXACT, "slab POISON_INUSE 0x5a (uninitialized slab memory)"),
    PoisonValue(0xCCCC_CCCC_CCCC_CCCC, _EXACT, "SLUB red zone 0xcc (out of bounds)"),
    PoisonValue(0xBBBB_BBBB_BBBB_BBBB, _EXACT, "SLUB red zone 0xbb (out of bounds)"),
    PoisonValue(0xAAAA_AAAA_AAAA_AAAA, _EXACT, "page poison 0xaa (use after free of a page)"),
    PoisonValue(0x0000_0000_0000_0010, _EXACT, "ZERO_SIZE_PTR (result of kmalloc(0))"),
)

# errno values an unchecked ERR_PTR() most often carries; others print as a plain number.
ERRNO_NAMES: Mapping[int, str] = {
    1: "EPERM",
    2: "ENOENT",
    3: "ESRCH",
    4: "EINTR",
    5: "EIO",
    6: "ENXIO",
    7: "E2BIG",
    9: "EBADF",
    11: "EAGAIN",
    12: "ENOMEM",
    13: "EACCES",
    14: "EFAULT",
    16: "EBUSY",
    17: "EEXIST",
    19: "ENODEV",
    20: "ENOTDIR",
    21: "EISDIR",
    22: "EINVAL",
    24: "EMFILE",
    28: "ENOSPC",
    34: "ERANGE",
    36: "ENAMETOOLONG",
    38: "ENOSYS",
    39: "ENOTEMPTY",
    61: "ENODATA",
    75: "EOVERFLOW",
    95: "EOPNOTSUPP",
    110: "ETIMEDOUT",
    512: "ERESTARTSYS",
    524: "ENOTSUPP",
}
MAX_ERRNO = 4095

# arm64 BRK immediates the kernel uses (arch/arm64/include/asm/brk-imm.h); ranges are inclusive.
ARM64_BRK_MEANINGS: tuple[tuple[int, int, str], ...] = (
    (0x800, 0x800, "BUG()/WARN() (brk #0x800)"),
    (0x5500, 0x55FF, "UBSAN trap (brk #0x{imm:x})"),
    (0x900, 0x9FF, "KASAN software-tag report (brk #0x{imm:x})"),
    (0x400, 0x400, "kgdb breakpoint (brk #0x400)"),
    (0x004, 0x005, "kprobe breakpoint (brk #0x{imm:x})"),
)

# Instructions whose only purpose is to trap: the verdict is the trap, not a pointer.
TRAP_MNEMONICS: Mapping[str, str] = {
    "ud2": "BUG()/invalid opcode (ud2)",
    "ud1": "invalid opcode (ud1, UBSAN or BUG trap)",
    "ud0": "invalid opcode (ud0)",
    "int3": "breakpoint (int3)",
    "udf": "BUG()/undefined instruction (udf)",
    "ebreak": "BUG()/breakpoint (ebreak)",
    "trap": "BUG() (trap)",
    "tw": "BUG()/WARN() trap (tw)",
    "twi": "BUG()/WARN() trap (twi)",
    "tdi": "BUG()/WARN() trap (tdi)",
    "td": "BUG()/WARN() trap (td)",
}

# The same trap instructions in a WARNING report: WARN() traps too (x86 since 4.11, riscv with
# GENERIC_BUG), but the kernel reports the warning and carries on; calling it BUG() misleads.
WARNING_TRAP_MNEMONICS: Mapping[str, str] = {
    "ud2": "WARN() trap (ud2): a warning, the kernel carried on",
    "ebreak": "WARN() trap (ebreak): a warning, the kernel carried on",
}

DIVIDE_MNEMONICS = frozenset({"div", "idiv"})

# Registers whose value says nothing about a bad pointer (the stack and instruction pointers).
_FRAME_REGISTERS = frozenset({"rsp", "esp", "sp", "rip", "eip", "pc", "wsp"})

_X86_64_PARENTS: Mapping[str, str] = {
    **{f"e{r}": f"r{r}" for r in ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp")},
    **{f"r{n}d": f"r{n}" for n in range(8, 16)},
}
_X86_32_CHILDREN: Mapping[str, str] = {v: k for k, v in _X86_64_PARENTS.items() if k.startswith("e")}
_ARM_ALIASES: Mapping[str, str] = {
    "sb": "r9",
    "sl": "r10",
    "fp": "r11",
    "ip": "r12",
    "sp": "r13",
    "lr": "r14",
    "pc": "r15",
}

_HEX = re.compile(r"\A[0-9a-fA-F]+\Z")
_MARKED = re.compile(r"([<(])([0-9a-fA-F]+)([>)])\Z")
_UNAVAILABLE = (
    (re.compile(r"Bad RIP value", re.IGNORECASE), "the kernel could not read the code bytes (Bad RIP value)"),
    (
        re.compile(r"Unable to access opcode bytes at(?: RIP)? (0x[0-9a-fA-F]+)", re.IGNORECASE),
        "the kernel could not read the code bytes at {0}",
    ),
    (re.compile(r"Bad (?:E)?IP value", re.IGNORECASE), "the kernel could not read the code bytes"),
    (re.compile(r"bad PC value", re.IGNORECASE), "the kernel could not read the code bytes (bad PC value)"),
)
# x86 show_opcodes() prints 42 bytes before RIP and 21 after (OPCODE_BUFSIZE 64); when they
# cannot be read, "Unable to access opcode bytes at RIP 0x..." names the window's start, RIP - 42.
X86_CODE_PROLOGUE = 42
# The bytes each architecture reads around the instruction pointer for its `Code:` line, as
# (before, after including the instruction): x86 show_opcodes(), arm64 dump_kernel_instr().
# One unreadable byte anywhere in that window makes the kernel print no code at all, so when
# the window straddles a page boundary the unreadable page may be the neighbour of RIP's own.
CODE_WINDOWS: Mapping[str, tuple[int, int]] = {
    "x86_64": (X86_CODE_PROLOGUE, 64 - X86_CODE_PROLOGUE),
    "i386": (X86_CODE_PROLOGUE, 64 - X86_CODE_PROLOGUE),
    "arm64": (16, 4),
}
CODE_PAGE_SIZE = 4096  # the smallest page any of CODE_WINDOWS' architectures maps
CODE_PREFIXES = ("Code:", "Instruction dump:", "Krnl Code:")  # x86/arm/arm64/riscv, powerpc, s390
MAX_CODE_TOKENS = 256  # real Code: lines hold 64 bytes or 5-16 words; more is not a Code: line


@dataclass(frozen=True, slots=True)
class CodeBytes:
    """The bytes of a `Code:` line in memory order and the index of the marked (faulting) byte."""

    data: bytes
    fault_offset: int  # -1 when the line has no marker
    word_bytes: int  # 1 for x86's byte list, 2 or 4 for instruction words (arm, arm64, riscv, ppc)
    truncated: bool = False  # a trailing token was cut or garbled and dropped
    address: int | None = None  # the marked instruction's address, when the line prints it (s390)


# s390's `Krnl Code:` is the kernel's own disassembly, one `[#>]address: encoding  text` entry per
# instruction (2, 4 or 6 bytes); `>` marks the instruction at the PSW address, which the page-fault
# handler has rewound to the faulting instruction.
_S390_ENTRY = re.compile(r"(?<!\S)([#>]?)([0-9a-f]{8,16}): ((?:[0-9a-f]{4}){1,3})(?!\S)")
# Instructions whose storage-operand syntax computes an address without accessing it.
_S390_NO_ACCESS = re.compile(r"la[ye]?|larl|b[a-z]*|j[a-z]*|lpq?sw[a-z]*")


class CodeLineError(ValueError):
    """Internal: why a `Code:` line cannot be read; surfaces as `CodeDecode.error`."""

    def __init__(self, reason: str, *, unreadable: bool = False, address: int | None = None) -> None:
        super().__init__(reason)
        self.unreadable = unreadable  # the kernel said it could not read the code (not a damaged line)
        self.address = address  # the unreadable instruction address, when the kernel printed it


def normalize_arch(arch: str) -> str:
    """Map `uname -m`-style spellings to this module's names; unknown names pass through lower-cased."""
    key = arch.strip().lower()
    return ARCH_ALIASES.get(key, key)


def parse_code_line(code_line: str, arch: str) -> CodeBytes:
    """Parse the bytes of a `Code:` line; raise `CodeLineError` naming what is wrong with it.

    x86 prints bytes (`49 8b <44> 24`); arm, arm64, riscv and powerpc print instruction words as
    numbers (`97fcf6fe (d4210000)`), which are turned into memory order for the disassembler
    (little-endian, or big-endian on powerpc so that capstone's big-endian mode reads the value).
    """
    text = code_line.strip()
    for prefix in CODE_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :].strip()
            break
    for pattern, reason in _UNAVAILABLE:
        found = pattern.search(text)
        if found:
            address = int(found.group(1), 16) if found.groups() else None
            raise CodeLineError(reason.format(*found.groups()), unreadable=True, address=address)
    if _S390_ENTRY.match(text):
        return _parse_s390_code(text)
    tokens = text.split()
    if not tokens:
        raise CodeLineError("no code bytes")
    if len(tokens) > MAX_CODE_TOKENS:
        raise CodeLineError(f"{len(tokens)} tokens; longer than any Code: line")
    width: int | None = None
    words: list[int] = []
    fault_index = -1
    truncated = False
    for position, token in enumerate(tokens):
        marked = _MARKED.match(token)
        digits = marked.group(2) if marked else token
        valid = (
            bool(_HEX.match(digits)) and len(digits) in (2, 4, 8) and (width is None or len(digits) == width)
        )
        if marked and marked.group(1) + marked.group(3) not in ("<>", "()"):
            valid = False
        if not valid:
            if position == len(tokens) - 1 and words:
                truncated = True  # the console cut the line mid-token
                break
            raise CodeLineError(f"garbled token {token[:20]!r} at position {position}")
        width = len(digits)
        if marked:
            if fault_index >= 0:
                raise CodeLineError("more than one faulting-byte marker")
            fault_index = len(words)
        words.append(int(digits, 16))
    assert width is not None
    word_bytes = width // 2
    order: Literal["big", "little"] = "big" if normalize_arch(arch) == "ppc64" else "little"
    data = bytes(words) if word_bytes == 1 else b"".join(w.to_bytes(word_bytes, order) for w in words)
    offset = fault_index * word_bytes if fault_index >= 0 else -1
    return CodeBytes(data=data, fault_offset=offset, word_bytes=word_bytes, truncated=truncated)


def _parse_s390_code(text: str) -> CodeBytes:
    """The instructions of a `Krnl Code:` block in address order, the `>` one marked."""
    entries = _S390_ENTRY.findall(text)
    if not entries:
        raise CodeLineError("no `address: encoding` entries in the Krnl Code: text")
    if len(entries) > MAX_CODE_TOKENS:
        raise CodeLineError(f"{len(entries)} entries; longer than any Krnl Code: block")
    data = bytearray()
    fault_offset = -1
    address = None
    for mark, addr_text, encoding in entries:  # a dropped console line leaves a gap: decoded all the same
        if mark == ">":
            if fault_offset >= 0:
                raise CodeLineError("more than one `>` marker")
            fault_offset, address = len(data), int(addr_text, 16)
        data += bytes.fromhex(encoding)
    return CodeBytes(data=bytes(data), fault_offset=fault_offset, word_bytes=2, address=address)


@dataclass(frozen=True, slots=True)
class _Disassembler:
    arch: int
    mode: int


def _disassembler(arch: str, word_bytes: int) -> _Disassembler | None:
    if arch == "x86_64" and word_bytes == 1:
        return _Disassembler(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    if arch == "i386" and word_bytes == 1:
        return _Disassembler(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
    if arch == "arm64" and word_bytes == 4:
        return _Disassembler(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    if arch == "arm" and word_bytes == 4:
        return _Disassembler(capstone.CS_ARCH_ARM, capstone.CS_MODE_ARM)
    if arch == "arm" and word_bytes == 2:
        return _Disassembler(capstone.CS_ARCH_ARM, capstone.CS_MODE_THUMB)
    if arch == "riscv64" and word_bytes in (2, 4):
        return _Disassembler(capstone.CS_ARCH_RISCV, capstone.CS_MODE_RISCV64 | capstone.CS_MODE_RISCVC)
    if arch == "ppc64" and word_bytes == 4:
        return _Disassembler(capstone.CS_ARCH_PPC, capstone.CS_MODE_64 | capstone.CS_MODE_BIG_ENDIAN)
    sysz = getattr(capstone, "CS_ARCH_SYSZ", None)  # absent from some capstone builds
    if arch == "s390x" and word_bytes == 2 and sysz is not None:
        return _Disassembler(sysz, capstone.CS_MODE_BIG_ENDIAN)
    return None


_HANDLES = threading.local()  # a capstone handle is not safe to share between threads


def _capstone(d: _Disassembler, detail: bool) -> Any:
    """A capstone handle for this thread, reused: opening one costs more than a decode."""
    handles: dict[tuple[int, int, bool], Any] | None = getattr(_HANDLES, "cache", None)
    if handles is None:
        handles = _HANDLES.cache = {}
    key = (d.arch, d.mode, detail)
    md = handles.get(key)
    if md is None:
        md = capstone.Cs(d.arch, d.mode)
        md.detail = detail
        handles[key] = md
    return md


@dataclass(frozen=True, slots=True)
class MemoryOperand:
    """One memory operand of the faulting instruction, with what the register dump says about it."""

    base: str | None
    index: str | None
    scale: int
    displacement: int
    segment: str | None
    operation: str | None  # "read", "write", "read-write"
    base_value: int | None
    index_value: int | None
    address: int | None  # effective address when every register in it is known


@dataclass(frozen=True, slots=True)
class Suspect:
    """The register most likely holding the bad pointer, its value, and the operand's offset from it."""

    register: str
    value: int
    offset: int  # effective address minus value: displacement plus any scaled index


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the verdict rules look at, gathered once from the instruction and the dump."""

    arch: str
    mnemonic: str
    op_str: str
    memory: MemoryOperand | None
    register_operands: tuple[str, ...]
    immediates: tuple[int, ...]
    fault_address: int | None
    registers: Mapping[str, int]
    kernel_mode: bool
    suspect: Suspect | None = None  # set when the memory operand has a register of known value
    warning: bool = False  # the report is a WARNING: its trap is WARN(), not BUG()
    pf_error: int | None = None  # x86 #PF error code of a page-fault oops (P=1, W=2, U=4, I=16)
    stack_guard: bool = False  # the report says the stack ran into its guard page


@dataclass(frozen=True, slots=True)
class Verdict:
    access: str
    bad_register: str | None = None
    bad_register_value: int | None = None


@dataclass(frozen=True, slots=True)
class VerdictRule:
    """A named step of the verdict pipeline: `apply` returns a verdict or None to pass it on."""

    name: str
    apply: Callable[[Facts], Verdict | None]


def _mask(arch: str) -> int:
    return (1 << _ADDRESS_BITS.get(arch, 64)) - 1


def register_value(name: str, registers: Mapping[str, int], arch: str) -> int | None:
    """A register's value from the dump, reading sub-registers (eax, r8d, w3) from their parents."""
    name = name.lower()
    if name in registers:
        return registers[name] & _mask(arch)
    if arch == "x86_64" and name in _X86_64_PARENTS and _X86_64_PARENTS[name] in registers:
        return registers[_X86_64_PARENTS[name]] & 0xFFFF_FFFF
    if arch == "i386" and name in _X86_32_CHILDREN and _X86_32_CHILDREN[name] in registers:
        return registers[_X86_32_CHILDREN[name]] & 0xFFFF_FFFF
    if arch == "arm64":
        if name.startswith("w") and name[1:].isdigit() and f"x{name[1:]}" in registers:
            return registers[f"x{name[1:]}"] & 0xFFFF_FFFF
        alias = {"x29": "fp", "fp": "x29", "x30": "lr", "lr": "x30"}.get(name)
        if alias and alias in registers:
            return registers[alias] & _mask(arch)
    if arch == "arm":
        alias = _ARM_ALIASES.get(name) or {v: k for k, v in _ARM_ALIASES.items()}.get(name)
        if alias and alias in registers:
            return registers[alias] & 0xFFFF_FFFF
    return None


def _to_signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value & (1 << (bits - 1)) else value


def _hex_offset(offset: int) -> str:
    """` + 0x60`, ` - 0x20`, or nothing for a zero offset (leading space included)."""
    if offset == 0:
        return ""
    return f" + 0x{offset:x}" if offset > 0 else f" - 0x{-offset:x}"


def _is_canonical(address: int, arch: str = "x86_64") -> bool:
    """x86_64: bits 63..47 all equal. arm64 (48-bit VA): bits 55..48 all equal, the top byte
    being a tag the MMU ignores (TBI)."""
    if arch == "arm64":
        return (address >> 48) & 0xFF in (0, 0xFF)
    top = address >> 47
    return top in (0, 0x1FFFF)


def _same_address(a: int, b: int, arch: str) -> bool:
    """Whether a fault address lies within the page after the operand's address; arm64 compares
    without the top-byte tag, which the reported fault address (FAR) may not carry."""
    if arch == "arm64":
        a &= ARM64_UNTAGGED
        b &= ARM64_UNTAGGED
    return 0 <= a - b < 4096


def _operand_text(mem: MemoryOperand) -> str:
    """The address expression as `base + index*scale + disp`, for verdicts about indexed operands."""
    text = mem.base or ""
    if mem.index:
        scaled = mem.index if mem.scale == 1 else f"{mem.index}*{mem.scale}"
        text = f"{text} + {scaled}" if text else scaled
    return text + _hex_offset(mem.displacement)


def _err_ptr(value: int, arch: str) -> int | None:
    signed = _to_signed(value, _ADDRESS_BITS.get(arch, 64))
    return -signed if -MAX_ERRNO <= signed < 0 else None


def _poison(value: int) -> PoisonValue | None:
    for poison in POISON_VALUES:
        if value & poison.mask == poison.value & poison.mask:
            return poison
    return None


def _suspect(mem: MemoryOperand, arch: str) -> tuple[str | None, int | None]:
    """The register that most plausibly holds the bad pointer: base, unless only the index is wild."""
    base = mem.base if mem.base and mem.base not in _FRAME_REGISTERS else None
    if mem.index is None or (base is not None and mem.base_value is None):
        return base, mem.base_value
    if base is None:
        return mem.index, mem.index_value
    if mem.base_value is not None and mem.index_value is not None:
        base_bad = mem.base_value < NEAR_NULL_LIMIT or _err_ptr(mem.base_value, arch) is not None
        index_wild = mem.index_value * mem.scale >= NEAR_NULL_LIMIT << 8
        if index_wild and not base_bad:
            return mem.index, mem.index_value
    return base, mem.base_value


def _suspect_of(mem: MemoryOperand | None, arch: str) -> Suspect | None:
    if mem is None:
        return None
    register, value = _suspect(mem, arch)
    if register is None or value is None:
        return None
    if mem.address is None:
        offset = mem.displacement
    else:
        offset = _to_signed((mem.address - value) & _mask(arch), _ADDRESS_BITS.get(arch, 64))
    return Suspect(register, value, offset)


def _trap_rule(f: Facts) -> Verdict | None:
    if f.arch == "arm64" and f.mnemonic == "brk":
        imm = f.immediates[0] if f.immediates else 0
        for low, high, meaning in ARM64_BRK_MEANINGS:
            if low <= imm <= high:
                return Verdict(meaning.format(imm=imm))
        return Verdict(f"breakpoint (brk #0x{imm:x})")
    if f.warning and f.mnemonic in WARNING_TRAP_MNEMONICS:
        return Verdict(WARNING_TRAP_MNEMONICS[f.mnemonic])
    if f.mnemonic in TRAP_MNEMONICS:
        return Verdict(TRAP_MNEMONICS[f.mnemonic])
    return None


def _divide_rule(f: Facts) -> Verdict | None:
    if f.mnemonic not in DIVIDE_MNEMONICS or f.arch not in ("x86_64", "i386"):
        return None
    if f.memory is not None:
        return Verdict(f"divide error ({f.mnemonic} by a value in memory)")
    if not f.register_operands:
        return Verdict(f"divide error ({f.mnemonic})")
    divisor = f.register_operands[0]
    value = register_value(divisor, f.registers, f.arch)
    if value is None:
        return Verdict(f"divide error ({f.mnemonic} {divisor})", divisor, None)
    if value == 0:
        return Verdict(f"divide error: division by zero ({divisor} = 0)", divisor, 0)
    return Verdict(f"divide error: quotient overflow ({divisor} = 0x{value:x})", divisor, value)


def _unreadable_code_verdict(
    address: int | None, registers: Mapping[str, int], arch: str, fault_address: int | None
) -> str | None:
    """When the code bytes could not be read, the instruction pointer itself is the bad pointer:
    execution went somewhere with nothing mapped (a NULL or corrupted function pointer). None
    when the unreadable byte may lie on the page beside RIP's (see CODE_WINDOWS)."""
    if not _kernel_mode(registers):
        return None
    if address is not None and arch in ("x86_64", "i386"):
        address += X86_CODE_PROLOGUE  # x86 prints the start of the byte window, RIP - 42
    if address is None:
        address = next((registers[n] for n in ("rip", "eip", "pc") if n in registers), None)
    if address is None:
        address = fault_address
    if address is None:
        return None
    address &= _mask(arch)
    if address < NEAR_NULL_LIMIT:
        return (
            f"jump to NULL + 0x{address:x} (call through a NULL function pointer?)"
            if address
            else ("jump to NULL (call through a NULL function pointer?)")
        )
    if arch == "x86_64" and not _is_canonical(address):
        return f"jump to non-canonical address 0x{address:x} (corrupted function pointer or return address)"
    fetch_fault = fault_address is not None and fault_address & _mask(arch) == address
    if _window_crosses_page(address, arch) and not fetch_fault:
        # A function in the first 42 bytes of a module's text (or the last 21) has an unmapped
        # neighbour page: the kernel ran the instruction at RIP, so only an instruction fetch
        # fault at RIP itself (fault address == RIP) says execution went nowhere. What is left
        # to judge is the data address the fault names.
        return _fault_address_only_verdict(fault_address, arch)
    return f"jump to unmapped address 0x{address:x} (corrupted function pointer or return address?)"


def _fault_address_only_verdict(fault_address: int | None, arch: str) -> str | None:
    """What the fault address alone says when no instruction could be read: its pointer class
    (NULL + offset, a poison value + offset, non-canonical), never a register (none is known)."""
    if fault_address is None:
        return None
    address = fault_address & _mask(arch)
    unknown = "; code bytes unreadable, register unknown"
    if address < 4096:
        return f"NULL pointer{_hex_offset(address)} at fault address 0x{address:x}{unknown}"
    if _ADDRESS_BITS.get(arch, 64) == 64:
        exact = [p for p in POISON_VALUES if p.mask == _EXACT and 0 <= address - p.value < 4096]
        if exact:
            poison = max(exact, key=lambda p: p.value)
            return f"{poison.meaning}{_hex_offset(address - poison.value)} at fault address 0x{address:x}{unknown}"
        found = _poison(address)
        if found is not None:
            return f"{found.meaning} at fault address 0x{address:x}{unknown}"
    if arch in ("x86_64", "arm64") and not _is_canonical(address, arch):
        return f"non-canonical fault address 0x{address:x}{unknown}"
    return None


def _window_crosses_page(address: int, arch: str) -> bool:
    """True when the bytes the kernel reads for the `Code:` line around `address` span two pages."""
    window = CODE_WINDOWS.get(arch)
    if window is None:
        return False
    before, after = window
    page = address // CODE_PAGE_SIZE
    return (address - before) // CODE_PAGE_SIZE != page or (address + after - 1) // CODE_PAGE_SIZE != page


# Instructions that touch memory only through the stack pointer, without a memory operand.
IMPLICIT_STACK_MNEMONICS = frozenset(
    {
        "push",
        "pop",
        "pushf",
        "popf",
        "pushfq",
        "popfq",
        "call",
        "ret",
        "retq",
        "leave",
        "enter",
        "iret",
        "iretq",
    }
)


_STACK_POINTERS: Mapping[str, str] = {
    "x86_64": "rsp",
    "i386": "esp",
    "arm64": "sp",
    "arm": "sp",
    "riscv64": "sp",
    "s390x": "r15",
}


def _stack_guard_rule(f: Facts) -> Verdict | None:
    """The kernel said the stack hit its guard page (`BUG: stack guard page was hit`, the 5.10
    double fault): the faulting access is the overflowing frame's, whatever register it went
    through (a `rep stos` zero-filling the new frame through rdi = rsp); the stack pointer's
    depth is the bug, the address is hashed in the message."""
    sp = _STACK_POINTERS.get(f.arch)
    if not f.stack_guard or sp is None:
        return None
    value = register_value(sp, f.registers, f.arch)
    where = f" ({sp} = 0x{value:x})" if value is not None else ""
    return Verdict(f"stack overflow: {f.mnemonic} ran into the stack's guard page{where}", sp, value)


def _stack_rule(f: Facts) -> Verdict | None:
    """A fault on a stack access (push/pop/call/ret, or an operand based on the stack pointer):
    the stack overflowed into its guard page, or the stack pointer itself is corrupt."""
    sp = _STACK_POINTERS.get(f.arch)
    if sp is None or f.fault_address is None:
        return None
    implicit = f.memory is None and f.mnemonic in IMPLICIT_STACK_MNEMONICS and f.arch in ("x86_64", "i386")
    explicit = f.memory is not None and f.memory.base == sp
    if not (implicit or explicit):
        return None
    value = register_value(sp, f.registers, f.arch)
    return Verdict(
        f"stack access by {f.mnemonic} at 0x{f.fault_address:x} through {sp} (stack overflow or corrupted {sp}?)",
        sp,
        value,
    )


def _no_memory_rule(f: Facts) -> Verdict | None:
    if f.memory is not None:
        return None
    return Verdict(f"no memory access in the faulting instruction ({f.mnemonic})")


def _kasan_shadow_rule(f: Facts) -> Verdict | None:
    mem = f.memory
    if f.arch != "x86_64" or mem is None or mem.address is None:
        return None
    pairs = (
        (mem.base, mem.base_value, mem.index, mem.index_value),
        (mem.index, mem.index_value, mem.base, mem.base_value),
    )
    for _, offset_value, reg, reg_value in pairs:
        if offset_value == KASAN_SHADOW_OFFSET_X86_64 and reg is not None:
            shadow = (mem.address - KASAN_SHADOW_OFFSET_X86_64) & _mask(f.arch)
            original = (shadow << 3) & _mask(f.arch)
            if original < NEAR_NULL_LIMIT:
                what = f"NULL pointer + 0x{original:x}" if original else "NULL pointer"
            else:
                what = f"wild pointer 0x{original:x}"
            return Verdict(
                f"KASAN shadow check of {what} (shadow index in {reg}; general protection)", reg, reg_value
            )
    return None


def _rip_relative_rule(f: Facts) -> Verdict | None:
    mem = f.memory
    if mem is None or mem.base not in ("rip", "eip"):
        return None
    where = f" 0x{mem.address:x}" if mem.address is not None else ""
    return Verdict(f"fault on a rip-relative (global) address{where}")


def _per_cpu_rule(f: Facts) -> Verdict | None:
    """x86 per-CPU data is addressed through gs (x86_64) or fs (i386); the segment base is not dumped."""
    mem = f.memory
    per_cpu_segment = {"x86_64": "gs", "i386": "fs"}.get(f.arch)
    if mem is None or per_cpu_segment is None or mem.segment != per_cpu_segment:
        return None
    reg = mem.base or mem.index
    if reg is None:
        return Verdict(f"per-CPU access {per_cpu_segment}:0x{mem.displacement & _mask(f.arch):x}")
    value = mem.base_value if reg == mem.base else mem.index_value
    return Verdict(f"per-CPU access through {reg} ({per_cpu_segment}-relative)", reg, value)


# Pointer rules: they judge the suspect register (Facts.suspect, see _suspect) and blame it.


def _blame(f: Facts, text: str) -> Verdict:
    assert f.suspect is not None
    return Verdict(text, f.suspect.register, f.suspect.value)


def _null_rule(f: Facts) -> Verdict | None:
    s = f.suspect
    if s is None or s.value != 0:
        return None
    return _blame(f, f"NULL pointer{_hex_offset(s.offset)} through {s.register}")


def _err_ptr_rule(f: Facts) -> Verdict | None:
    s = f.suspect
    errno = _err_ptr(s.value, f.arch) if s is not None else None
    if s is None or errno is None:
        return None
    name = ERRNO_NAMES.get(errno)
    label = f"ERR_PTR(-{errno})" + (f" (-{name})" if name else "")
    return _blame(f, f"{label}{_hex_offset(s.offset)} through {s.register}")


def _poison_rule(f: Facts) -> Verdict | None:
    s = f.suspect
    found = _poison(s.value) if s is not None and _ADDRESS_BITS.get(f.arch, 64) == 64 else None
    if s is None or found is None:
        return None
    return _blame(f, f"{found.meaning}: 0x{s.value:x}{_hex_offset(s.offset)} through {s.register}")


def _non_canonical_rule(f: Facts) -> Verdict | None:
    s, mem = f.suspect, f.memory
    if s is None or mem is None or mem.address is None or f.arch not in ("x86_64", "arm64"):
        return None
    if _is_canonical(mem.address, f.arch):
        return None
    exception = " (general protection)" if f.arch == "x86_64" else ""
    return _blame(f, f"non-canonical address 0x{mem.address:x} through {s.register}{exception}")


def _near_null_rule(f: Facts) -> Verdict | None:
    s, mem = f.suspect, f.memory
    if s is None or mem is None or mem.address is None or mem.address >= NEAR_NULL_LIMIT:
        return None
    return _blame(f, f"near-NULL pointer 0x{s.value:x}{_hex_offset(s.offset)} through {s.register}")


def _user_address_rule(f: Facts) -> Verdict | None:
    s, mem = f.suspect, f.memory
    limit = USER_SPACE_END.get(f.arch)
    if s is None or mem is None or mem.address is None or limit is None:
        return None
    if not f.kernel_mode or mem.address >= limit:
        return None
    return _blame(f, f"user-space address 0x{mem.address:x} through {s.register} accessed from kernel mode")


# x86 #PF error-code bits (arch/x86/include/asm/trap_pf.h): present page, write, user mode, fetch.
_PF_PROTECTION, _PF_WRITE, _PF_USER, _PF_INSTR = 0x1, 0x2, 0x4, 0x10


def _read_only_write_rule(f: Facts) -> Verdict | None:
    """A kernel-mode write that faulted on a present page (#PF error code P=1, W=1) at the
    operand's address: the pointer is fine, the page is read-only (const data, rodata, a
    write-protected page table or text): the write itself is the bug, not a wild pointer."""
    s, mem, code = f.suspect, f.memory, f.pf_error
    if s is None or mem is None or code is None or f.fault_address is None or f.arch not in ("x86_64", "i386"):
        return None
    if code & (_PF_PROTECTION | _PF_WRITE | _PF_USER | _PF_INSTR) != _PF_PROTECTION | _PF_WRITE:
        return None
    if mem.address is not None and not _same_address(f.fault_address, mem.address, f.arch):
        return None  # the fault is not this operand's: let the fault-address rule say so
    return _blame(
        f, f"write to read-only memory at 0x{f.fault_address:x} through {s.register} (#PF: permissions violation)"
    )


def _fault_address_rule(f: Facts) -> Verdict | None:
    """With a fault address: does it match the operand? A mismatch is said, not hidden."""
    s, mem = f.suspect, f.memory
    if s is None or mem is None or f.fault_address is None:
        return None
    fault = f"fault address 0x{f.fault_address:x}"
    if mem.address is not None and not _same_address(f.fault_address, mem.address, f.arch):
        return _blame(
            f, f"bad pointer through {s.register}? {fault} is not {_operand_text(mem)} = 0x{mem.address:x}"
        )
    if mem.index is not None and mem.address is not None:
        return _blame(f, f"bad address 0x{mem.address:x} = {_operand_text(mem)} ({fault})")
    return _blame(f, f"bad pointer 0x{s.value:x}{_hex_offset(s.offset)} through {s.register} ({fault})")


def _pointer_rule(f: Facts) -> Verdict | None:
    """Last resort when the value is known: state the address, claim nothing more."""
    s, mem = f.suspect, f.memory
    if s is None or mem is None:
        return None
    if mem.index is not None and mem.address is not None:
        return _blame(f, f"address 0x{mem.address:x} = {_operand_text(mem)}")
    return _blame(f, f"pointer 0x{s.value:x}{_hex_offset(s.offset)} through {s.register}")


def _unknown_register_rule(f: Facts) -> Verdict | None:
    mem = f.memory
    if mem is None:
        return None
    reg, _ = _suspect(mem, f.arch)
    if reg is None:
        return Verdict("memory access through the stack or an absolute address")
    return Verdict(
        f"access through {reg}{_hex_offset(mem.displacement)} ({reg} not in the register dump)", reg, None
    )


INTERRUPTED_VERDICT = "not a fault: an interrupt found the CPU at this instruction"

# The verdict pipeline, first match wins. Order matters: a trap instruction is never a pointer
# problem; a KASAN shadow check must be recognized before its non-canonical address is blamed;
# NULL/ERR_PTR/poison say more than "non-canonical"; the generic "pointer" rule comes last.
VERDICT_RULES: tuple[VerdictRule, ...] = (
    VerdictRule("trap", _trap_rule),
    VerdictRule("divide", _divide_rule),
    VerdictRule("stack-guard", _stack_guard_rule),
    VerdictRule("stack", _stack_rule),
    VerdictRule("no-memory-operand", _no_memory_rule),
    VerdictRule("kasan-shadow", _kasan_shadow_rule),
    VerdictRule("rip-relative", _rip_relative_rule),
    VerdictRule("per-cpu", _per_cpu_rule),
    VerdictRule("null", _null_rule),
    VerdictRule("err-ptr", _err_ptr_rule),
    VerdictRule("poison", _poison_rule),
    VerdictRule("non-canonical", _non_canonical_rule),
    VerdictRule("near-null", _near_null_rule),
    VerdictRule("user-address", _user_address_rule),
    VerdictRule("read-only-write", _read_only_write_rule),
    VerdictRule("fault-address", _fault_address_rule),
    VerdictRule("pointer", _pointer_rule),
    VerdictRule("register-unknown", _unknown_register_rule),
)


def _operation(access: int) -> str | None:
    read = bool(access & capstone.CS_AC_READ)
    write = bool(access & capstone.CS_AC_WRITE)
    if read and write:
        return "read-write"
    return "write" if write else ("read" if read else None)


# arm64 capstone's per-operand access flags are unreliable for stores; the mnemonic is not.
_ARM64_WRITE = re.compile(r"st(?!add|clr|eor|set|smax|smin|umax|umin)")
_ARM64_READ_WRITE = re.compile(r"(?:cas|swp|ld(?:add|clr|eor|set|smax|smin|umax|umin)|st(?:add|clr|eor|set))")


def _arm64_operation(mnemonic: str) -> str:
    if _ARM64_READ_WRITE.match(mnemonic):
        return "read-write"
    return "write" if _ARM64_WRITE.match(mnemonic) else "read"


def _effective_address(
    arch: str,
    base_value: int | None,
    base: str | None,
    index_value: int | None,
    index: str | None,
    scale: int,
    disp: int,
) -> int | None:
    if base is not None and base_value is None:
        return None
    if index is not None and index_value is None:
        return None
    address = (base_value or 0) + (index_value or 0) * scale + disp
    return address & _mask(arch)


def _memory_operands(insn: Any, arch: str, registers: Mapping[str, int]) -> list[MemoryOperand]:
    found: list[MemoryOperand] = []
    mem_type = _operand_types(arch).mem
    if arch == "s390x" and _S390_NO_ACCESS.fullmatch(insn.mnemonic):
        return found
    for op in insn.operands:
        if op.type != mem_type:
            continue
        base = insn.reg_name(op.mem.base) if op.mem.base else None
        index = insn.reg_name(op.mem.index) if getattr(op.mem, "index", 0) else None
        if arch == "s390x":  # capstone names SystemZ registers by number only
            base, index = (f"r{r}" if r and r.isdigit() else r for r in (base, index))
        scale = 1
        segment = None
        if arch in ("x86_64", "i386"):
            scale = op.mem.scale or 1
            segment = insn.reg_name(op.mem.segment) if op.mem.segment else None
            operation = _operation(op.access)
        elif arch == "arm64":
            if index is not None and op.shift.type and op.shift.value:
                scale = 1 << op.shift.value
            operation = _arm64_operation(insn.mnemonic)
        elif arch in ("riscv64", "ppc64"):
            operation = _risc_operation(insn.mnemonic)
        elif arch == "s390x":
            operation = _s390_operation(insn.mnemonic, len(found))
        else:
            operation = _operation(getattr(op, "access", 0))
        disp = int(op.mem.disp)
        if arch == "arm" and getattr(op, "subtracted", False) and disp > 0:
            disp = -disp
        if base in ("rip", "eip"):
            base_value: int | None = insn.address + insn.size
        else:
            base_value = register_value(base, registers, arch) if base else None
        index_value = register_value(index, registers, arch) if index else None
        address = _effective_address(arch, base_value, base, index_value, index, scale, disp)
        if segment in ("gs", "fs") and arch == "x86_64":
            address = None  # per-CPU: the segment base is not in the dump
        found.append(
            MemoryOperand(base, index, scale, disp, segment, operation, base_value, index_value, address)
        )
    if not found and arch in ("riscv64", "ppc64"):
        found.extend(_text_memory_operand(insn, arch, registers))
    return found


# `disp(base)`: how RISC-V and PowerPC write a memory operand. Capstone 5 describes compressed
# RISC-V loads and stores (c.ld a4, 0(a5)) as register + immediate operands, so read the text.
_DISP_BASE = re.compile(r"(?<![\w-])(-?(?:0x[0-9a-f]+|\d+))\((\w+)\)")  # starts at a number's first digit
_RISC_LOAD = re.compile(r"(?:c\.)?(?:l[bhwdq]|lbz|lhz|lwz|lwa|lha|ld|fl[wd]|lr\.)")
_RISC_STORE = re.compile(r"(?:c\.)?(?:s[bhwdq]|st[bhwd]|fs[wd]|sc\.)")


def _s390_operation(mnemonic: str, position: int) -> str | None:
    """Stores write; storage-to-storage moves and logic (mvc, xc, nc, oc) write their first
    operand and read the second; other storage operands (l*, c*, a*, s* ...) are read."""
    if mnemonic.startswith(("mv", "xc", "nc", "oc")):
        return "write" if position == 0 else "read"
    return "write" if mnemonic.startswith("st") else "read"


def _risc_operation(mnemonic: str) -> str | None:
    if mnemonic.startswith(("amo", "c.amo")):
        return "read-write"
    if _RISC_STORE.match(mnemonic):
        return "write"
    return "read" if _RISC_LOAD.match(mnemonic) else None


def _text_memory_operand(insn: Any, arch: str, registers: Mapping[str, int]) -> list[MemoryOperand]:
    found = _DISP_BASE.search(insn.op_str)
    operation = _risc_operation(insn.mnemonic)
    if found is None or operation is None:
        return []
    disp = int(found.group(1), 0)
    base = found.group(2)
    base_value = register_value(base, registers, arch)
    address = _effective_address(arch, base_value, base, None, None, 1, disp)
    return [MemoryOperand(base, None, 1, disp, None, operation, base_value, None, address)]


def _pick_memory_operand(
    operands: list[MemoryOperand], fault_address: int | None, arch: str
) -> MemoryOperand | None:
    """With two memory operands (`rep movs`, `push [mem]`), prefer the one the fault address is in."""
    if not operands:
        return None
    if fault_address is not None:
        for mem in operands:
            if mem.address is not None and _same_address(fault_address, mem.address, arch):
                return mem
    return operands[0]


class _OperandTypes(NamedTuple):
    reg: int
    imm: int
    mem: int


# capstone's operand-type codes differ per architecture module; RISC-V, PowerPC and SystemZ
# number register, immediate and memory operands 1, 2, 3.
_OPERAND_TYPES: dict[str, _OperandTypes] = {
    "x86_64": _OperandTypes(x86.X86_OP_REG, x86.X86_OP_IMM, x86.X86_OP_MEM),
    "i386": _OperandTypes(x86.X86_OP_REG, x86.X86_OP_IMM, x86.X86_OP_MEM),
    "arm64": _OperandTypes(arm64.ARM64_OP_REG, arm64.ARM64_OP_IMM, arm64.ARM64_OP_MEM),
    "arm": _OperandTypes(arm.ARM_OP_REG, arm.ARM_OP_IMM, arm.ARM_OP_MEM),
}
_OTHER_OPERAND_TYPES = _OperandTypes(1, 2, 3)


def _operand_types(arch: str) -> _OperandTypes:
    return _OPERAND_TYPES.get(arch, _OTHER_OPERAND_TYPES)


def _register_operands(insn: Any, arch: str) -> tuple[str, ...]:
    reg_type = _operand_types(arch).reg
    return tuple(insn.reg_name(op.reg) for op in insn.operands if op.type == reg_type)


def _immediates(insn: Any, arch: str) -> tuple[int, ...]:
    imm_type = _operand_types(arch).imm
    return tuple(int(op.imm) for op in insn.operands if op.type == imm_type)


def _kernel_mode(registers: Mapping[str, int]) -> bool:
    """x86 `RIP: 0010:` puts CS in the dump; ring 3 means the Code: line is of user space."""
    cs = registers.get("cs")
    return cs is None or cs & 3 == 0


def _instruction_address(arch: str, registers: Mapping[str, int], fault_offset: int) -> int:
    """The marked instruction's address: RIP/PC from the dump, else its offset in the bytes (as objdump)."""
    for name in ("rip", "eip", "pc", "nip", "epc", "ip") if arch != "arm" else ("pc",):
        if name in registers:
            return registers[name] & _mask(arch)
    return fault_offset


def decode_code(
    code_line: str,
    arch: str,
    registers: Mapping[str, int],
    fault_address: int | None,
    *,
    interrupted: bool = False,
    warning: bool = False,
    pf_error: int | None = None,
    stack_guard: bool = False,
) -> CodeDecode:
    """Decode the faulting instruction of a `Code:` line and judge its memory operand; never raises.

    `interrupted` says the marker is where an interrupt found the CPU (soft/hard lockups, RCU
    stalls), not a faulting instruction: the instruction is still decoded, but not judged.
    `warning` says the report is a WARNING, whose trap instruction is WARN()'s, not BUG()'s.
    `pf_error` is the x86 #PF error code of a page-fault oops (`#PF: error_code(0x0003)`).
    `stack_guard` says the report is a stack overflow into the guard page.
    """
    arch = normalize_arch(arch)
    try:
        parsed = parse_code_line(code_line, arch)
    except CodeLineError as exc:
        return CodeDecode(
            arch=arch,
            code_bytes=b"",
            fault_offset=-1,
            instruction=None,
            access=_unreadable_code_verdict(exc.address, registers, arch, fault_address)
            if exc.unreadable
            else None,
            error=str(exc),
        )

    def failed(reason: str) -> CodeDecode:
        return CodeDecode(
            arch=arch,
            code_bytes=parsed.data,
            fault_offset=parsed.fault_offset,
            instruction=None,
            error=reason,
        )

    if parsed.fault_offset < 0:
        return failed("no faulting-byte marker (<..> or (..)) in the Code: line")
    engine = _disassembler(arch, parsed.word_bytes)
    if engine is None:
        width = "bytes" if parsed.word_bytes == 1 else f"{parsed.word_bytes * 8}-bit words"
        return failed(f"no disassembler for {arch or 'unknown arch'} code printed as {width}")
    md = _capstone(engine, detail=True)
    address = parsed.address if parsed.address is not None else _instruction_address(
        arch, registers, parsed.fault_offset
    )
    try:
        insn = next(md.disasm(parsed.data[parsed.fault_offset :], address, 1), None)
    except capstone.CsError as exc:
        return failed(f"capstone: {exc}")
    if insn is None:
        if parsed.truncated or len(parsed.data) - parsed.fault_offset < 16:
            return failed(f"the bytes at the marker do not form a whole {arch} instruction (cut off)")
        return failed(f"the bytes at the marker do not decode as {arch}")
    instruction = f"{insn.mnemonic} {insn.op_str}".strip()
    mems = _memory_operands(insn, arch, registers)
    mem = _pick_memory_operand(mems, fault_address, arch)
    facts = Facts(
        arch=arch,
        mnemonic=insn.mnemonic,
        op_str=insn.op_str,
        memory=mem,
        register_operands=_register_operands(insn, arch),
        immediates=_immediates(insn, arch),
        fault_address=fault_address,
        registers=registers,
        kernel_mode=_kernel_mode(registers),
        suspect=_suspect_of(mem, arch),
        warning=warning,
        pf_error=pf_error,
        stack_guard=stack_guard,
    )
    if interrupted:
        verdict: Verdict | None = Verdict(INTERRUPTED_VERDICT)
    else:
        verdict = next((v for rule in VERDICT_RULES if (v := rule.apply(facts)) is not None), None)
    return CodeDecode(
        arch=arch,
        code_bytes=parsed.data,
        fault_offset=parsed.fault_offset,
        instruction=instruction,
        base_register=mem.base if mem else None,
        index_register=mem.index if mem else None,
        displacement=mem.displacement if mem else None,
        bad_register=verdict.bad_register if verdict else None,
        bad_register_value=verdict.bad_register_value if verdict else None,
        access=verdict.access if verdict else None,
        operation=mem.operation if mem else None,
    )


@dataclass(frozen=True, slots=True)
class ListingLine:
    """One disassembled instruction of the context listing."""

    offset: int  # from the start of the Code: bytes
    data: bytes
    text: str
    faulting: bool


def context_listing(decode: CodeDecode, max_skip: int = 16) -> tuple[ListingLine, ...]:
    """The instructions around the fault, like `scripts/decodecode`'s "best guess" listing.

    x86 code bytes start mid-instruction, so try starting 0, 1, 2 ... bytes in until one start
    falls on the marked byte; word architectures are aligned by construction. Empty when the
    decode failed or no start lines up.
    """
    if decode.instruction is None or decode.fault_offset < 0:
        return ()
    data = decode.code_bytes
    mnemonic = decode.instruction.split()[0]
    md = None
    # arm code is printed as 32-bit (ARM) or 16-bit (Thumb) words; keep the mode that gives the
    # decoded instruction (compared by mnemonic: the listing's addresses are offsets, not RIP).
    for word in (1,) if decode.arch in ("x86_64", "i386") else (4, 2):
        engine = _disassembler(decode.arch, word)
        if engine is None:
            continue
        candidate = _capstone(engine, detail=False)
        try:
            first = next(candidate.disasm_lite(data[decode.fault_offset :], decode.fault_offset, 1), None)
        except capstone.CsError:
            return ()
        if first is not None and first[2] == mnemonic:
            md = candidate
            break
    if md is None:
        return ()
    for skip in range(min(max_skip, decode.fault_offset) + 1):
        lines = []
        aligned = False
        try:
            for start, size, name, op_str in md.disasm_lite(data[skip:], skip):
                if start > decode.fault_offset and not aligned:
                    break
                aligned = aligned or start == decode.fault_offset
                lines.append(
                    ListingLine(
                        start,
                        data[start : start + size],
                        f"{name} {op_str}".strip(),
                        start == decode.fault_offset,
                    )
                )
        except capstone.CsError:
            return ()
        if aligned:
            return tuple(lines)
    return ()
