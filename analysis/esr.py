"""arm64 exception syndromes: the ESR an arm64 oops prints (`Internal error: Oops: 0000000096000006`,
`Mem abort info: ESR = 0x96000006`) decoded the way arch/arm64/mm/fault.c and the Arm ARM (D17.2.37)
read it, so an operator sees "data abort, read, translation fault at level 2" instead of a number.

ESR_ELx = EC [31:26] | IL [25] | ISS [24:0]. For data and instruction aborts the ISS holds the fault
status code (xFSC [5:0]); for data aborts also WnR [6] (write) and CM [8] (cache maintenance).
For BRK (what BUG() and friends execute on arm64) the ISS holds the BRK immediate, which says who
trapped (arch/arm64/include/asm/brk-imm.h).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BRK_IMMEDIATES", "EXCEPTION_CLASSES", "FAULT_STATUS", "Esr", "decode_esr"]

# EC -> what the exception is (the classes an oops can carry; arch/arm64/include/asm/esr.h).
EXCEPTION_CLASSES: dict[int, str] = {
    0x00: "unknown reason",
    0x01: "WFI/WFE trap",
    0x07: "SIMD/FP access trap",
    0x0E: "illegal execution state",
    0x15: "SVC (system call)",
    0x18: "system register access trap",
    0x19: "SVE access trap",
    0x1C: "pointer authentication failure",
    0x20: "instruction abort from user space",
    0x21: "instruction abort in the kernel",
    0x22: "PC alignment fault",
    0x24: "data abort from user space",
    0x25: "data abort in the kernel",
    0x26: "SP alignment fault",
    0x2C: "floating-point exception",
    0x2F: "SError (asynchronous external abort)",
    0x30: "breakpoint from user space",
    0x31: "breakpoint in the kernel",
    0x32: "software step from user space",
    0x33: "software step in the kernel",
    0x34: "watchpoint from user space",
    0x35: "watchpoint in the kernel",
    0x3C: "BRK instruction",
}

# Data/instruction fault status code -> meaning; "{level}" is the translation table level (0..3).
FAULT_STATUS: dict[int, str] = {
    **{0x00 + level: f"address size fault at level {level}" for level in range(4)},
    **{0x04 + level: f"translation fault at level {level}" for level in range(4)},
    **{0x08 + level: f"access flag fault at level {level}" for level in range(4)},
    **{0x0C + level: f"permission fault at level {level}" for level in range(4)},
    0x10: "synchronous external abort",
    0x11: "synchronous tag check fault (MTE)",
    **{0x14 + level: f"synchronous external abort on table walk at level {level}" for level in range(4)},
    0x18: "synchronous parity or ECC error",
    0x21: "alignment fault",
    0x30: "TLB conflict abort",
    0x31: "unsupported atomic hardware update",
}

# BRK immediates the kernel uses (arch/arm64/include/asm/brk-imm.h); ranges are (low, high).
BRK_IMMEDIATES: tuple[tuple[int, int, str], ...] = (
    (0x004, 0x004, "kprobes"),
    (0x005, 0x005, "uprobes"),
    (0x100, 0x100, "kgdb/fault injection"),
    (0x400, 0x400, "kgdb compiled breakpoint"),
    (0x800, 0x800, "BUG()"),
    (0x801, 0x801, "uprobes"),
    (0x900, 0x9FF, "KASAN check"),
    (0x5500, 0x55FF, "UBSAN check"),
    (0x8000, 0x8FFF, "CFI check"),
)


@dataclass(frozen=True, slots=True)
class Esr:
    """One decoded syndrome; `describe()` is what `inspect` prints."""

    value: int
    ec: int
    iss: int
    write: bool | None  # data aborts only: WnR
    status: str | None  # the fault status code's meaning (aborts), or the BRK immediate's user

    def describe(self) -> str:
        parts = [EXCEPTION_CLASSES.get(self.ec, f"exception class {self.ec:#04x}")]
        if self.write is not None:
            parts.append("write" if self.write else "read")
        if self.status:
            parts.append(self.status)
        return ", ".join(parts)


def decode_esr(value: int) -> Esr:
    """Split an ESR value into its fields; unknown codes are named by number, never dropped."""
    value &= 0xFFFF_FFFF  # the oops prints 64 bits; ESR_EL1's upper half is RES0 or ISS2
    ec = (value >> 26) & 0x3F
    iss = value & 0x1FF_FFFF
    write: bool | None = None
    status: str | None = None
    if ec in (0x20, 0x21, 0x24, 0x25):
        fsc = iss & 0x3F
        status = FAULT_STATUS.get(fsc, f"fault status {fsc:#04x}")
        if ec in (0x24, 0x25):
            write = bool(iss & (1 << 6)) and not iss & (1 << 8)  # CM: cache maintenance reads as write
    elif ec == 0x3C:
        comment = iss & 0xFFFF
        status = next((f"{who} (#{comment:#x})" for lo, hi, who in BRK_IMMEDIATES if lo <= comment <= hi), None)
        if status is None:
            status = f"immediate {comment:#x}"
    return Esr(value, ec, iss, write, status)
