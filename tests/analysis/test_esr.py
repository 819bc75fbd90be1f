"""arm64 syndromes as real oopses print them (values from Debian arm64 crashes made in QEMU and
from syzbot's arm64 reports) decode to the exception, the access and the fault status."""

from __future__ import annotations

import pytest

from analysis.esr import decode_esr


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0x96000006, "data abort in the kernel, read, translation fault at level 2"),  # NULL + 0x60 read
        (0x96000045, "data abort in the kernel, write, translation fault at level 1"),
        (0x9600004F, "data abort in the kernel, write, permission fault at level 3"),  # write to rodata
        (0x96000144, "data abort in the kernel, read, translation fault at level 0"),  # DC CIVAC (CM)
        (0x92000004, "data abort from user space, read, translation fault at level 0"),
        (0x86000007, "instruction abort in the kernel, translation fault at level 3"),
        (0x96000021, "data abort in the kernel, read, alignment fault"),
        (0xF2000800, "BRK instruction, BUG() (#0x800)"),
        (0xF2000910, "BRK instruction, KASAN check (#0x910)"),
        (0xF2008123, "BRK instruction, CFI check (#0x8123)"),
        (0xF2000123, "BRK instruction, immediate 0x123"),
        (0x0000000096000006, "data abort in the kernel, read, translation fault at level 2"),
        (0x8A000000, "PC alignment fault"),
        (0xFC000000, "exception class 0x3f"),
        (0x96000035, "data abort in the kernel, read, fault status 0x35"),
    ],
)
def test_describe(value: int, text: str) -> None:
    assert decode_esr(value).describe() == text


def test_fields() -> None:
    esr = decode_esr(0x0000000096000006)
    assert (esr.ec, esr.iss, esr.write) == (0x25, 0x6, False)
