"""arm64 kernel virtual -> physical addresses: the walk the MMU does from TTBR1, read from the dump.

Everything comes from VMCOREINFO (arch/arm64/kernel/crash_core.c, 4.19+):
`NUMBER(VA_BITS)` (the configured size), `NUMBER(TCR_EL1_T1SZ)` (5.9+: the size the CPU really
ran with, `64 - T1SZ`; a 52-bit kernel on a CPU without LVA/LPA2 runs with 48),
`NUMBER(kimage_voffset)` (kernel image virtual - physical, KASLR included), `NUMBER(PHYS_OFFSET)`,
`NUMBER(MAX_PHYSMEM_BITS)`, `PAGESIZE` and `SYMBOL(swapper_pg_dir)`.

The only address translated by formula is swapper_pg_dir itself (kernel image: `va -
kimage_voffset`); every other address — linear map, kernel image, vmalloc, modules — goes through
the page tables, so the linear map's layout (flipped in 5.4, commit 14c127c957c1; PAGE_OFFSET
following the CPU's VA size since 5.11) never has to be guessed.

Descriptor formats (Arm ARM D8.3): bit 0 valid; at levels above the last, bit 1 set is a table
and clear a block. The output address is bits [47:page_shift], plus
  * 64 KiB pages with 52-bit physical addresses (FEAT_LPA): bits [51:48] in descriptor [15:12];
  * 4/16 KiB pages with 52-bit VA (FEAT_LPA2, TCR_EL1.DS = 1, 6.9+): bits [49:page_shift] in
    place and [51:50] in descriptor [9:8]. The kernel runs with 52-bit VA on 4/16 KiB pages only
    with LPA2 enabled, so a 52-bit `TCR_EL1_T1SZ` (12) is what tells this format apart.
Combinations outside these (missing keys, other page sizes, VA sizes outside 36..52) are
refused with the reason, never guessed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from analysis.errors import DumpFormatError
from analysis.vmcore.vmcoreinfo import VmcoreInfo

__all__ = ["Arm64Layout", "Arm64Walker", "arm64_layout", "walk_arm64"]

_PAGE_SHIFTS = {4096: 12, 16384: 14, 65536: 16}
_VALID = 0x1
_TABLE = 0x2
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Arm64Layout:
    """What the walk needs, all from VMCOREINFO."""

    page_shift: int
    va_bits: int  # the VA size the CPU used (64 - TCR_EL1.T1SZ), not only the configured one
    levels: int  # translation levels the walk goes through from swapper_pg_dir
    pgd_phys: int  # physical address of swapper_pg_dir
    lpa2: bool  # 52-bit descriptors of FEAT_LPA2 (4/16 KiB pages, 52-bit VA)
    lpa_64k: bool  # 52-bit descriptors of FEAT_LPA (64 KiB pages, 52-bit PA)

    @property
    def shifts(self) -> tuple[int, ...]:
        """The VA shift of each level's index, top level first."""
        return _shifts(self.page_shift, self.levels)


@functools.cache
def _shifts(page_shift: int, levels: int) -> tuple[int, ...]:
    bits = page_shift - 3
    return tuple(page_shift + bits * i for i in reversed(range(levels)))


def arm64_layout(info: VmcoreInfo, page_size: int, path: str) -> Arm64Layout:
    """Validate VMCOREINFO's description of the arm64 MMU setup; refuse what is not understood."""

    def need(name: str) -> int:
        value = info.number(name)
        if value is None:
            raise DumpFormatError(path, f"arm64 dump without NUMBER({name}) in VMCOREINFO: cannot translate addresses")
        return value

    page_shift = _PAGE_SHIFTS.get(page_size)
    if page_shift is None:
        raise DumpFormatError(path, f"arm64 page size {page_size} is not 4, 16 or 64 KiB: cannot translate addresses")
    config_va = need("VA_BITS")
    t1sz = info.number("TCR_EL1_T1SZ")
    va_bits = 64 - t1sz if t1sz is not None else config_va
    if not 36 <= va_bits <= 52 or va_bits > max(config_va, 48):
        raise DumpFormatError(
            path, f"arm64 VA size {va_bits} (VA_BITS={config_va}, TCR_EL1_T1SZ={t1sz}) is not supported"
        )
    kimage_voffset = need("kimage_voffset") & _MASK64
    pgd = info.symbol("swapper_pg_dir")
    if pgd is None:
        raise DumpFormatError(path, "arm64 dump without SYMBOL(swapper_pg_dir) in VMCOREINFO: cannot translate addresses")
    pgd_phys = (pgd - kimage_voffset) & _MASK64
    bits = page_shift - 3
    levels = -(-(va_bits - page_shift) // bits)  # ceil
    lpa2 = va_bits == 52 and page_shift in (12, 14)
    lpa_64k = page_shift == 16 and (info.number("MAX_PHYSMEM_BITS") or 48) == 52
    return Arm64Layout(page_shift, va_bits, levels, pgd_phys, lpa2, lpa_64k)


def _output_address(layout: Arm64Layout, entry: int, shift: int) -> int:
    """The physical address a table/block/page descriptor points to, aligned to `shift`."""
    if layout.lpa2:
        addr = entry & ((1 << 50) - 1) & ~((1 << layout.page_shift) - 1)
        addr |= ((entry >> 8) & 0x3) << 50
    else:
        addr = entry & ((1 << 48) - 1) & ~((1 << layout.page_shift) - 1)
        if layout.lpa_64k:
            addr |= ((entry >> 12) & 0xF) << 48
    return addr & ~((1 << shift) - 1)


def walk_arm64(layout: Arm64Layout, vaddr: int, read_u64: Callable[[int], int], path: str) -> int:
    """Physical address of `vaddr` through the kernel's (TTBR1) tables; blocks end the walk early.

    `read_u64(paddr)` reads one descriptor; PageNotPresent from it propagates to the caller.
    """
    top_bits = 64 - layout.va_bits
    if vaddr >> layout.va_bits != (1 << top_bits) - 1:
        raise DumpFormatError(path, f"{vaddr:#x} is not an arm64 kernel address ({layout.va_bits}-bit VA)")
    table = layout.pgd_phys
    shifts = layout.shifts
    last = len(shifts) - 1
    for level, shift in enumerate(shifts):
        width = layout.va_bits - shift if level == 0 else layout.page_shift - 3
        index = (vaddr >> shift) & ((1 << width) - 1)
        entry = read_u64(table + index * 8)
        if not entry & _VALID:
            raise DumpFormatError(path, f"virtual address {vaddr:#x} is not mapped")
        if level == last:
            if not entry & _TABLE:
                raise DumpFormatError(path, f"virtual address {vaddr:#x} has a reserved page descriptor")
            return _output_address(layout, entry, shift) | (vaddr & ((1 << shift) - 1))
        if not entry & _TABLE:  # a block: 1 GiB / 2 MiB (4K), 32 MiB (16K), 512 MiB (64K) ...
            return _output_address(layout, entry, shift) | (vaddr & ((1 << shift) - 1))
        table = _output_address(layout, entry, layout.page_shift)
    raise AssertionError("unreachable: the last level returns")


_MAX_REGIONS = 4096


class Arm64Walker:
    """`walk_arm64` with the walk cache an MMU keeps: per last-level table's span of VA (2 MiB
    with 4 KiB pages), what the upper levels lead to — the last-level table, or a block.

    A log read touches a few hundred consecutive pages of the linear map and the kernel image;
    the upper levels are the same for all of them, so each page then costs one descriptor read
    instead of four or five. Results and errors are those of `walk_arm64`: nothing is cached
    for an address that did not translate.
    """

    def __init__(self, layout: Arm64Layout, read_u64: Callable[[int], int], path: str) -> None:
        self.layout = layout
        self.read_u64 = read_u64
        self.path = path
        shifts = layout.shifts
        self._upper = shifts[:-1]
        self._region_shift = shifts[-2]
        self._region_mask = (1 << self._region_shift) - 1
        self._page_mask = (1 << layout.page_shift) - 1
        self._index_mask = (1 << (layout.page_shift - 3)) - 1
        self._top = (1 << (64 - layout.va_bits)) - 1
        self._regions: dict[int, tuple[bool, int]] = {}  # vaddr >> region_shift -> (is a table, address)

    def _walk_upper(self, vaddr: int) -> tuple[bool, int]:
        layout = self.layout
        table = layout.pgd_phys
        for level, shift in enumerate(self._upper):
            width = layout.va_bits - shift if level == 0 else layout.page_shift - 3
            entry = self.read_u64(table + ((vaddr >> shift) & ((1 << width) - 1)) * 8)
            if not entry & _VALID:
                raise DumpFormatError(self.path, f"virtual address {vaddr:#x} is not mapped")
            if not entry & _TABLE:  # a block as large as the region or larger: the region's part of it
                return False, _output_address(layout, entry, shift) | (vaddr & ((1 << shift) - 1) & ~self._region_mask)
            table = _output_address(layout, entry, layout.page_shift)
        return True, table

    def translate(self, vaddr: int) -> int:
        """Physical address of `vaddr`, as `walk_arm64` finds it."""
        if vaddr >> self.layout.va_bits != self._top:
            raise DumpFormatError(self.path, f"{vaddr:#x} is not an arm64 kernel address ({self.layout.va_bits}-bit VA)")
        region = vaddr >> self._region_shift
        hit = self._regions.get(region)
        if hit is None:
            hit = self._walk_upper(vaddr)
            if len(self._regions) >= _MAX_REGIONS:
                self._regions.clear()
            self._regions[region] = hit
        is_table, base = hit
        if not is_table:
            return base | (vaddr & self._region_mask)
        entry = self.read_u64(base + ((vaddr >> self.layout.page_shift) & self._index_mask) * 8)
        if not entry & _VALID:
            raise DumpFormatError(self.path, f"virtual address {vaddr:#x} is not mapped")
        if not entry & _TABLE:
            raise DumpFormatError(self.path, f"virtual address {vaddr:#x} has a reserved page descriptor")
        return _output_address(self.layout, entry, self.layout.page_shift) | (vaddr & self._page_mask)
