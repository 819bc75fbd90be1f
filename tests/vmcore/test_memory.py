"""Address translation: the kernel-image shortcut, the page-table walk (4 KiB and 2 MiB pages)
agree with where the writer put the bytes, KASLR and a negative phys_base included."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.errors import DumpFormatError
from analysis.vmcore import AddressSpace, open_dump
from tests.vmcore.dumpwriter import KERNEL_VIRT, Kernel, write_elf, write_kdump


@pytest.mark.parametrize(("phys_base", "kaslr"), [(0, 0), (-650117120, 765460480)])
def test_walk_agrees_with_kernel_image_mapping(phys_base: int, kaslr: int, tmp_path: Path) -> None:
    kernel = Kernel(phys_base=phys_base, kaslr=kaslr)
    direct = kernel.alloc_direct(8192)
    kernel.write_virt(direct + 4090, b"across a page boundary")
    path = tmp_path / "vmcore"
    path.write_bytes(write_kdump(kernel, sub_phys_base=0))  # a wrong sub-header, as QEMU writes it
    dump = open_dump(str(path))
    mem = AddressSpace(dump)
    image = KERNEL_VIRT + kaslr + 0x1234
    assert mem.translate(image) == kernel.kernel_phys(image)
    assert mem._walk(image) == kernel.kernel_phys(image)  # through the 2 MiB page entries
    assert mem.read(direct + 4090, 22) == b"across a page boundary"  # 4 KiB pages, two of them
    with pytest.raises(DumpFormatError, match="not mapped"):
        mem.read(0xFFFFC90000000000, 8)
    dump.close()


def test_elf_virtual_segments_are_used(tmp_path: Path) -> None:
    """/proc/vmcore-style segments with virtual addresses translate without page tables."""
    kernel = Kernel()
    kernel.info = [line for line in kernel.info if not line.startswith("SYMBOL(init_top_pgt)")]
    kernel.write_phys(0x5000000, b"direct map data")
    path = tmp_path / "vmcore"
    path.write_bytes(write_elf(kernel, with_vaddr=True, vaddr_base=0xFFFF9A0000000000))  # a KASLR'd base
    dump = open_dump(str(path))
    assert AddressSpace(dump).read(0xFFFF9A0000000000 + 0x5000000, 15) == b"direct map data"
    dump.close()
