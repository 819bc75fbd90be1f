"""Kernel virtual -> physical addresses from nothing but the dump (x86_64, arm64; others via ELF p_vaddr).

In order of preference:
  1. kernel image: `__START_KERNEL_map + phys_base`, phys_base from VMCOREINFO's signed
     NUMBER(phys_base) (QEMU's kdump sub-header gets negative values wrong), else from an ELF
     segment mapping the kernel text, else the kdump sub-header;
  2. ELF segments that carry virtual addresses (the kernel's own /proc/vmcore does);
  3. a 4- or 5-level page-table walk from init_top_pgt / init_level4_pgt / swapper_pg_dir
     (the direct map, vmalloc and module space, all with KASLR);
  4. the fixed direct map of kernels from before direct-map randomization.
arm64 dumps use ELF segments with virtual addresses, then the MMU's own walk (`arm64`).
"""

from __future__ import annotations

import bisect
import struct

from analysis.errors import DumpFormatError
from analysis.vmcore.arm64 import Arm64Walker, arm64_layout
from analysis.vmcore.dump import Dump, PageNotPresent
from analysis.vmcore.elf import ElfDump

__all__ = ["START_KERNEL_MAP", "AddressSpace"]

START_KERNEL_MAP = 0xFFFFFFFF80000000
DEFAULT_KERNEL_IMAGE_SIZE = 1 << 30
PTE_PFN_MASK = 0x000FFFFFFFFFF000
_PRESENT = 0x1
_PSE = 0x80  # large page at PUD (1 GiB) or PMD (2 MiB) level
# Direct-map bases of x86_64 kernels without KASLR: before 4.20, and 4.20+ (5-level layout change).
LEGACY_DIRECT_MAPS: tuple[int, ...] = (0xFFFF880000000000, 0xFFFF888000000000)
_LEGACY_DIRECT_MAP_SIZE = 64 << 40
PAGE_TABLE_SYMBOLS: tuple[str, ...] = ("init_top_pgt", "init_level4_pgt", "swapper_pg_dir")
_MAX_TRANSLATIONS = 4096


class AddressSpace:
    """Reads kernel virtual memory of a dump; every failure is a DumpFormatError naming the dump."""

    def __init__(self, dump: Dump) -> None:
        self.dump = dump
        self.path = dump.path
        info = dump.vmcoreinfo
        self.machine = dump.header.machine or "x86_64"
        self.page_size = dump.page_size
        self.kernel_image_size = info.number("KERNEL_IMAGE_SIZE") or DEFAULT_KERNEL_IMAGE_SIZE
        self.five_level = info.number("pgtable_l5_enabled") == 1
        self.sme_mask = info.number("sme_mask") or 0
        self._virt: list[tuple[int, int, int]] = []  # (vaddr, end, paddr) of ELF segments with addresses
        if isinstance(dump, ElfDump):
            self._virt = sorted(
                (s.vaddr, s.vaddr + s.memsz, s.paddr) for s in dump.loads if s.vaddr and s.vaddr != s.paddr
            )
        self._virt_starts = [v[0] for v in self._virt]
        self.phys_base = self._phys_base()
        self._top: int | None = None
        for name in PAGE_TABLE_SYMBOLS:
            addr = info.symbol(name)
            if addr is not None and self._in_kernel_image(addr):
                self._top = self._kernel_image_phys(addr)
                break
        self._cache: dict[int, int] = {}
        self._arm64: Arm64Walker | DumpFormatError | None = None
        if self.machine == "aarch64":
            try:
                self._arm64 = Arm64Walker(arm64_layout(info, self.page_size, self.path), self._u64, self.path)
            except DumpFormatError as exc:  # raised when an address needs the walk, not before
                self._arm64 = exc

    def _phys_base(self) -> int:
        number = self.dump.vmcoreinfo.number("phys_base")
        if number is not None:
            return number
        for vaddr, _end, paddr in self._virt:
            if self._in_kernel_image(vaddr):
                return paddr - (vaddr - START_KERNEL_MAP)
        return self.dump.header.phys_base or 0

    def _in_kernel_image(self, vaddr: int) -> bool:
        return START_KERNEL_MAP <= vaddr < START_KERNEL_MAP + self.kernel_image_size

    def _kernel_image_phys(self, vaddr: int) -> int:
        return vaddr - START_KERNEL_MAP + self.phys_base

    def _u64(self, paddr: int) -> int:
        value: int = struct.unpack("<Q", self.dump.read_phys(paddr, 8))[0]
        return value

    def _walk(self, vaddr: int) -> int:
        """Walk the kernel page tables; large pages end the walk early."""
        assert self._top is not None
        table = self._top
        shifts = (48, 39, 30, 21, 12) if self.five_level else (39, 30, 21, 12)
        mask = PTE_PFN_MASK & ~self.sme_mask
        for level, shift in enumerate(shifts):
            try:
                entry = self._u64(table + ((vaddr >> shift) & 0x1FF) * 8)
            except PageNotPresent:
                raise PageNotPresent(self.path, f"page table for {vaddr:#x} is not in the dump") from None
            if not entry & _PRESENT:
                raise DumpFormatError(self.path, f"virtual address {vaddr:#x} is not mapped")
            base = entry & mask
            remaining = len(shifts) - 1 - level
            if remaining in (1, 2) and entry & _PSE:  # 2 MiB or 1 GiB page
                return (base & ~((1 << shift) - 1)) | (vaddr & ((1 << shift) - 1))
            table = base
        return table | (vaddr & 0xFFF)

    def _walk_arm64(self, walker: Arm64Walker, vaddr: int) -> int:
        try:
            return walker.translate(vaddr)
        except PageNotPresent:
            raise PageNotPresent(self.path, f"page table for {vaddr:#x} is not in the dump") from None

    def translate(self, vaddr: int) -> int:
        """Physical address of kernel virtual address `vaddr`."""
        page = vaddr & ~(self.page_size - 1)
        cached = self._cache.get(page)
        if cached is not None:
            return cached + (vaddr - page)
        paddr = self._translate(page)
        if len(self._cache) >= _MAX_TRANSLATIONS:
            self._cache.clear()
        self._cache[page] = paddr
        return paddr + (vaddr - page)

    def _translate(self, vaddr: int) -> int:
        if vaddr < 0 or vaddr >= 1 << 64:
            raise DumpFormatError(self.path, f"address {vaddr:#x} is not a 64-bit address")
        if self.machine == "x86_64" and self._in_kernel_image(vaddr):
            return self._kernel_image_phys(vaddr)
        i = bisect.bisect_right(self._virt_starts, vaddr) - 1
        if i >= 0 and vaddr < self._virt[i][1]:
            start, _end, paddr = self._virt[i]
            return paddr + (vaddr - start)
        if isinstance(self._arm64, DumpFormatError):
            raise self._arm64
        if self._arm64 is not None:
            return self._walk_arm64(self._arm64, vaddr)
        if self.machine != "x86_64":
            raise DumpFormatError(
                self.path, f"cannot translate {vaddr:#x}: no mapping for {self.machine} dumps"
            )
        if self._top is not None:
            return self._walk(vaddr)
        for base in LEGACY_DIRECT_MAPS:
            if base <= vaddr < base + _LEGACY_DIRECT_MAP_SIZE:
                return vaddr - base
        raise DumpFormatError(self.path, f"cannot translate {vaddr:#x}: no page-table symbol in VMCOREINFO")

    def read(self, vaddr: int, length: int) -> bytes:
        """`length` bytes of kernel virtual memory (pages may map anywhere physically)."""
        if length < 0:
            raise DumpFormatError(self.path, f"negative read length {length}")
        if vaddr < 0 or vaddr + length > 1 << 64:
            raise DumpFormatError(self.path, f"read at {vaddr:#x} runs past the address space")
        parts: list[bytes] = []
        pos = vaddr
        end = vaddr + length
        ps = self.page_size
        while pos < end:
            take = min(ps - (pos % ps), end - pos)
            parts.append(self.dump.read_phys(self.translate(pos), take))
            pos += take
        return b"".join(parts)

    def u64(self, vaddr: int) -> int:
        value: int = struct.unpack("<Q", self.read(vaddr, 8))[0]
        return value

    def u32(self, vaddr: int) -> int:
        value: int = struct.unpack("<I", self.read(vaddr, 4))[0]
        return value
