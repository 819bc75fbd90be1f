"""arm64 address translation: page tables built here for every granule and VA size the kernel
supports (including 52-bit LPA2 and 64 KiB LPA descriptors) walk to where the bytes were put;
what VMCOREINFO does not describe is refused with the reason."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import pytest

from analysis.errors import DumpFormatError
from analysis.vmcore.arm64 import Arm64Layout, Arm64Walker, arm64_layout, walk_arm64
from analysis.vmcore.vmcoreinfo import parse_vmcoreinfo

KIMAGE_VOFFSET = 0xFFFF_B0D1_F980_0000
PGD_PHYS = 0x4100_0000


@dataclass
class Tables:
    """Sparse physical memory holding arm64 translation tables, written the way the MMU reads them."""

    layout: Arm64Layout
    memory: dict[int, int] = field(default_factory=dict)  # 8-byte descriptors by physical address
    next_table: int = 0x4200_0000

    def _encode(self, addr: int) -> int:
        if self.layout.lpa2:
            return (addr & ((1 << 50) - 1)) | ((addr >> 50) & 3) << 8
        if self.layout.lpa_64k:
            return (addr & ((1 << 48) - 1)) | ((addr >> 48) & 0xF) << 12
        return addr

    def map(self, vaddr: int, paddr: int, block_level: int | None = None) -> None:
        """Map `vaddr` to `paddr`: a page, or a block at `block_level` (index into the shifts)."""
        table = self.layout.pgd_phys
        shifts = self.layout.shifts
        last = len(shifts) - 1 if block_level is None else block_level
        for level, shift in enumerate(shifts):
            width = self.layout.va_bits - shift if level == 0 else self.layout.page_shift - 3
            slot = table + ((vaddr >> shift) & ((1 << width) - 1)) * 8
            if level == last:
                kind = 0x3 if block_level is None else 0x1  # page / block
                self.memory[slot] = self._encode(paddr & ~((1 << shift) - 1)) | kind | 0x400
                return
            entry = self.memory.get(slot)
            if entry is None:
                child = self.next_table
                self.next_table += 1 << self.layout.page_shift
                self.memory[slot] = self._encode(child) | 0x3
                table = child
            else:
                table = self._child(entry)

    def _child(self, entry: int) -> int:
        if self.layout.lpa2:
            return (entry & ((1 << 50) - 1) & ~0xFFF & ~((1 << self.layout.page_shift) - 1)) | ((entry >> 8) & 3) << 50
        addr = entry & ((1 << 48) - 1) & ~((1 << self.layout.page_shift) - 1)
        if self.layout.lpa_64k:
            addr |= ((entry >> 12) & 0xF) << 48
        return addr

    def read_u64(self, paddr: int) -> int:
        return self.memory.get(paddr, 0)


def _layout(page_size: int, va_bits: int, t1sz: int | None = None, physmem_bits: int = 48) -> Arm64Layout:
    lines = [
        f"PAGESIZE={page_size}",
        f"NUMBER(VA_BITS)={va_bits}",
        f"NUMBER(kimage_voffset)={KIMAGE_VOFFSET:#x}",
        "NUMBER(PHYS_OFFSET)=0x40000000",
        f"NUMBER(MAX_PHYSMEM_BITS)={physmem_bits}",
        f"SYMBOL(swapper_pg_dir)={PGD_PHYS + KIMAGE_VOFFSET:x}",
    ]
    if t1sz is not None:
        lines.append(f"NUMBER(TCR_EL1_T1SZ)={t1sz:#x}")
    return arm64_layout(parse_vmcoreinfo("\n".join(lines).encode()), page_size, "vmcore")


# (page size, configured VA_BITS, TCR_EL1_T1SZ, MAX_PHYSMEM_BITS, expected levels, lpa2, lpa 64K)
GEOMETRIES = [
    (4096, 39, 25, 48, 3, False, False),
    (4096, 48, 16, 48, 4, False, False),  # Debian 12 arm64
    (4096, 52, 16, 52, 4, False, False),  # a 52-bit kernel on a CPU without LPA2
    (4096, 52, 12, 52, 5, True, False),  # Debian 13 arm64 under `-cpu max` (FEAT_LPA2)
    (16384, 47, 17, 48, 3, False, False),
    (16384, 48, 16, 48, 4, False, False),
    (16384, 52, 12, 52, 4, True, False),
    (65536, 42, 22, 48, 2, False, False),
    (65536, 48, 16, 48, 3, False, False),
    (65536, 52, 12, 52, 3, False, True),  # FEAT_LVA + FEAT_LPA
]


@pytest.mark.parametrize(("page", "va", "t1sz", "pbits", "levels", "lpa2", "lpa"), GEOMETRIES)
def test_walk_finds_pages_and_blocks(
    page: int, va: int, t1sz: int, pbits: int, levels: int, lpa2: bool, lpa: bool
) -> None:
    layout = _layout(page, va, t1sz, pbits)
    assert (layout.levels, layout.lpa2, layout.lpa_64k) == (levels, lpa2, lpa)
    assert layout.va_bits == 64 - t1sz
    tables = Tables(layout)
    top = (1 << 64) - (1 << layout.va_bits)  # the start of the kernel half (the linear map since 5.4)
    high_phys = (1 << 50) + 0x1234_5000 if lpa2 or lpa else 0x4567_8000  # 52-bit PA needs LPA2 or LPA
    high_phys &= ~(page - 1)
    cases = [
        (top + 0x10_0000 * page, 0x4000_0000 + 7 * page),
        ((1 << 64) - 3 * page, high_phys),  # the last pages of the address space (fixmap)
        (top + (1 << (layout.va_bits - 1)) + 5 * page, 0x4800_0000),  # vmalloc / kernel image half
    ]
    for vaddr, paddr in cases:
        tables.map(vaddr, paddr)
    for vaddr, paddr in cases:
        assert walk_arm64(layout, vaddr + 0x18, tables.read_u64, "vmcore") == paddr + 0x18
    # A block one level above the pages (2 MiB with 4 KiB pages, 32 MiB with 16 KiB, 512 MiB with 64 KiB).
    block_shift = layout.shifts[-2]
    vblock = top + (3 << block_shift)
    tables.map(vblock, 0x4000_0000 << 1, block_level=levels - 2)
    offset = (1 << block_shift) - 8
    assert walk_arm64(layout, vblock + offset, tables.read_u64, "vmcore") == (0x4000_0000 << 1) + offset
    with pytest.raises(DumpFormatError, match="not mapped"):
        walk_arm64(layout, top + (9 << block_shift), tables.read_u64, "vmcore")
    with pytest.raises(DumpFormatError, match="not an arm64 kernel address"):
        walk_arm64(layout, 0x0000_7FFF_0000_0000, tables.read_u64, "vmcore")


@pytest.mark.parametrize(("page", "va", "t1sz", "pbits", "levels", "lpa2", "lpa"), GEOMETRIES)
def test_cached_walker_agrees_with_the_walk_and_reads_one_descriptor_per_page(
    page: int, va: int, t1sz: int, pbits: int, levels: int, lpa2: bool, lpa: bool
) -> None:
    """The walk cache (upper levels per last-level table's span) changes the cost, never the answer."""
    layout = _layout(page, va, t1sz, pbits)
    tables = Tables(layout)
    top = (1 << 64) - (1 << layout.va_bits)
    region = 1 << layout.shifts[-2]
    base = top + 5 * region
    for i in range(8):  # eight pages of one region, one of them left unmapped
        if i != 6:
            tables.map(base + i * page, 0x4000_0000 + (7 - i) * page)
    tables.map(top + 11 * region, 0x4000_0000 << 1, block_level=levels - 2)
    if levels >= 3:  # a block two levels up (1 GiB with 4 KiB pages)
        tables.map(top + (3 << layout.shifts[-3]), 0x8000_0000 << 1, block_level=levels - 3)
    reads = 0

    def counting(paddr: int) -> int:
        nonlocal reads
        reads += 1
        return tables.read_u64(paddr)

    walker = Arm64Walker(layout, counting, "vmcore")
    addresses = [base + i * page + 0x28 for i in range(8)] + [top + 11 * region + region - 8, top + 11 * region + 16]
    if levels >= 3:
        addresses += [top + (3 << layout.shifts[-3]) + 7 * region + 0x40, top + (3 << layout.shifts[-3]) + 0x40]
    addresses += [top + 13 * region, 0x0000_7FFF_0000_0000]
    for _ in range(2):  # cold, then cached
        for vaddr in addresses:
            try:
                want: int | str = walk_arm64(layout, vaddr, tables.read_u64, "vmcore")
            except DumpFormatError as exc:
                want = exc.reason
            try:
                got: int | str = walker.translate(vaddr)
            except DumpFormatError as exc:
                got = exc.reason
            assert got == want, hex(vaddr)
    reads = 0
    for i in (0, 1, 2, 3):
        walker.translate(base + i * page)
    assert reads == 4  # the upper levels come from the cache: one last-level descriptor per page
    reads = 0
    walker.translate(top + 11 * region + 0x100)
    assert reads == 0  # inside a block: nothing to read


def test_swapper_pg_dir_is_found_through_kimage_voffset() -> None:
    assert _layout(4096, 48, 16).pgd_phys == PGD_PHYS


def test_configured_va_bits_are_used_without_t1sz() -> None:
    """Kernels before 5.9 export no TCR_EL1_T1SZ; VA_BITS is then what the CPU used."""
    assert _layout(65536, 42).va_bits == 42


@pytest.mark.parametrize(
    ("lines", "page", "reason"),
    [
        (["NUMBER(VA_BITS)=48", "SYMBOL(swapper_pg_dir)=ffff800009000000"], 4096, r"NUMBER\(kimage_voffset\)"),
        (["NUMBER(kimage_voffset)=0x1", "SYMBOL(swapper_pg_dir)=ffff800009000000"], 4096, r"NUMBER\(VA_BITS\)"),
        (["NUMBER(VA_BITS)=48", "NUMBER(kimage_voffset)=0x1"], 4096, r"SYMBOL\(swapper_pg_dir\)"),
        (["NUMBER(VA_BITS)=48", "NUMBER(kimage_voffset)=0x1", "SYMBOL(swapper_pg_dir)=1"], 8192, "page size 8192"),
        (["NUMBER(VA_BITS)=48", "NUMBER(TCR_EL1_T1SZ)=0x8", "NUMBER(kimage_voffset)=0x1", "SYMBOL(swapper_pg_dir)=1"],
         4096, "VA size 56"),
        (["NUMBER(VA_BITS)=48", "NUMBER(TCR_EL1_T1SZ)=0xc", "NUMBER(kimage_voffset)=0x1", "SYMBOL(swapper_pg_dir)=1"],
         4096, "VA size 52"),  # a 48-bit kernel cannot have run with 52-bit VA: VMCOREINFO is wrong
    ],
)  # fmt: skip
def test_unsupported_layouts_are_refused(lines: list[str], page: int, reason: str) -> None:
    with pytest.raises(DumpFormatError, match=reason):
        arm64_layout(parse_vmcoreinfo("\n".join(lines).encode()), page, "vmcore")


def test_descriptor_helpers_round_trip() -> None:
    """The test's own encoder matches the walker's decoder for 52-bit addresses (guards the test)."""
    layout = _layout(4096, 52, 12, 52)
    tables = Tables(layout)
    tables.map((1 << 64) - 4096 * 16, (3 << 50) | 0x1000)
    (slot,) = [a for a, v in tables.memory.items() if v & 0x400]
    assert struct.pack("<Q", tables.memory[slot])[1] & 0x3 == 0x3  # bits [9:8] carry OA[51:50]
