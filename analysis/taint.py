"""The kernel's taint string (`Tainted: G    B   W  OE`) decoded to flag names.

The kernel prints one column per taint bit, a letter when set and a space (or `G`/`P` for
bit 0) when not; the order is `kernel/panic.c`'s taint_flags table. We decode letters by
their position-independent meaning, which holds for every kernel since 2.6.x because each
letter is unique to its bit (bit 0 is the one pair: `P` proprietary vs `G` all GPL).
"""

from __future__ import annotations

__all__ = ["TAINT_FLAGS", "decode_taint"]

# letter -> name, in the kernel's bit order (Documentation/admin-guide/tainted-kernels.rst).
TAINT_FLAGS: dict[str, str] = {
    "P": "PROPRIETARY_MODULE",  # bit 0 (G when clear)
    "F": "FORCED_MODULE",  # bit 1
    "S": "CPU_OUT_OF_SPEC",  # bit 2 (older: "unsafe SMP")
    "R": "FORCED_RMMOD",  # bit 3
    "M": "MACHINE_CHECK",  # bit 4
    "B": "BAD_PAGE",  # bit 5
    "U": "USER",  # bit 6
    "D": "DIE",  # bit 7
    "A": "OVERRIDDEN_ACPI_TABLE",  # bit 8
    "W": "WARN",  # bit 9
    "C": "CRAP",  # bit 10 (staging driver)
    "I": "FIRMWARE_WORKAROUND",  # bit 11
    "O": "OOT_MODULE",  # bit 12
    "E": "UNSIGNED_MODULE",  # bit 13
    "L": "SOFTLOCKUP",  # bit 14
    "K": "LIVEPATCH",  # bit 15
    "X": "AUX",  # bit 16
    "T": "RANDSTRUCT",  # bit 17
    "N": "TEST",  # bit 18
}


def decode_taint(taint: str | None) -> tuple[str, ...]:
    """Flag names for the letters in `taint`, in the kernel's bit order; unknown letters are ignored."""
    if not taint:
        return ()
    present = set(taint)
    return tuple(name for letter, name in TAINT_FLAGS.items() if letter in present)
