"""ELF cores: /proc/vmcore copies, `makedumpfile -E`, QEMU/libvirt `dump-guest-memory`.

Memory is the PT_LOAD segments (physical address -> file offset); VMCOREINFO and NT_PRSTATUS
are in PT_NOTE. QEMU writes the section header table before the program headers, so only
`e_phoff` is trusted; more than 65534 segments are counted in section 0's `sh_info` (PN_XNUM).
"""

from __future__ import annotations

import bisect
import struct
from array import array
from dataclasses import dataclass

from analysis.errors import DumpFormatError
from analysis.vmcore.dump import Dump, DumpHeader
from analysis.vmcore.io import Source
from analysis.vmcore.prstatus import VMCOREINFO_NOTE_NAME, Note, iter_notes
from analysis.vmcore.vmcoreinfo import MAX_VMCOREINFO_BYTES, VmcoreInfo, parse_vmcoreinfo

__all__ = ["ELF_MACHINES", "ElfDump", "LoadSegment", "open_elf"]

PT_LOAD = 1
PT_NOTE = 4
PN_XNUM = 0xFFFF
MAX_SEGMENTS = 1 << 20  # filtered dumps of huge machines have many segments; not millions
MAX_NOTE_BYTES = 64 * 1024 * 1024

ELF_MACHINES: dict[int, str] = {
    3: "i386",
    8: "mips",
    20: "ppc",
    21: "ppc64",
    22: "s390x",
    40: "arm",
    62: "x86_64",
    183: "aarch64",
    243: "riscv64",
    258: "loongarch64",
}


@dataclass(frozen=True, slots=True)
class LoadSegment:
    """One PT_LOAD: where `memsz` bytes of physical (and maybe virtual) memory sit in the file."""

    offset: int
    paddr: int
    vaddr: int
    filesz: int
    memsz: int


class ElfDump(Dump):
    """Physical memory of an ELF core, looked up by bisecting segments sorted by address."""

    format = "elf"

    def __init__(
        self,
        source: Source,
        vmcoreinfo: VmcoreInfo,
        notes: list[Note],
        header: DumpHeader,
        page_size: int,
        loads: list[LoadSegment],
    ) -> None:
        super().__init__(source, vmcoreinfo, notes, header, page_size)
        loads = sorted(loads, key=lambda s: s.paddr)
        self.loads = loads
        self._starts = array("Q", (s.paddr for s in loads))

    def _read_page(self, pfn: int) -> bytes | None:
        ps = self.page_size
        lo = pfn * ps
        hi = lo + ps
        # Segments do not overlap, so only the last one starting at or before `lo` can cover it.
        first = max(bisect.bisect_right(self._starts, lo) - 1, 0)
        page: bytearray | None = None
        for j in range(first, len(self.loads)):
            seg = self.loads[j]
            if seg.paddr >= hi:
                break
            a = max(lo, seg.paddr)
            b = min(hi, seg.paddr + seg.memsz)
            if a >= b:
                continue
            if page is None:
                page = bytearray(ps)
            file_end = seg.paddr + seg.filesz
            if a < file_end:
                take = min(b, file_end) - a
                data = self.source.pread(seg.offset + (a - seg.paddr), take)
                if len(data) != take:
                    raise DumpFormatError(
                        self.path,
                        f"truncated: segment data for physical {a:#x} lies beyond the end of the file "
                        "(dump incomplete or still being written)",
                    )
                page[a - lo : a - lo + take] = data
        return bytes(page) if page is not None else None


def _class_layout(ident: bytes, path: str) -> tuple[bool, bool]:
    if ident[4] not in (1, 2):
        raise DumpFormatError(path, f"bad ELF class {ident[4]}")
    if ident[5] not in (1, 2):
        raise DumpFormatError(path, f"bad ELF data encoding {ident[5]}")
    return ident[4] == 2, ident[5] == 1


def open_elf(source: Source) -> ElfDump:
    """Read an ELF core's headers and notes; memory is read later, page by page, on demand."""
    path = source.name
    ident = source.pread(0, 64)
    if len(ident) < 52 or not ident.startswith(b"\x7fELF"):
        raise DumpFormatError(path, "truncated ELF header")
    is64, little = _class_layout(ident, path)
    end = "<" if little else ">"
    if is64 and len(ident) < 64:
        raise DumpFormatError(path, "truncated ELF header")
    # ELF64 widens e_entry/e_phoff/e_shoff and every program-header word except p_type/p_flags.
    header_fmt, ph_layout, ph_size = ("HHIQQQIHHHHHH", "IIQQQQQQ", 56) if is64 else ("HHIIIIIHHHHHH", "IIIIIIII", 32)
    ph_fmt = end + ph_layout
    (
        e_type,
        e_machine,
        _ver,
        _entry,
        e_phoff,
        e_shoff,
        _flags,
        _ehsize,
        e_phentsize,
        e_phnum,
        _shentsize,
        _shnum,
        _shstrndx,
    ) = struct.unpack_from(end + header_fmt, ident, 16)
    if e_type != 4:
        raise DumpFormatError(path, f"ELF file is not a core dump (e_type {e_type})")
    if e_phentsize != ph_size:
        raise DumpFormatError(path, f"bad program header size {e_phentsize}")
    if e_phnum == PN_XNUM:
        sh = source.pread(e_shoff, 64 if is64 else 40)
        if len(sh) < (64 if is64 else 40):
            raise DumpFormatError(path, "truncated: section header 0 (segment count) beyond end of file")
        e_phnum = struct.unpack_from(end + "I", sh, 44 if is64 else 28)[0]
    if e_phnum == 0:
        raise DumpFormatError(path, "ELF core has no program headers")
    if e_phnum > MAX_SEGMENTS:
        raise DumpFormatError(path, f"absurd program header count {e_phnum}")
    table = source.pread(e_phoff, e_phnum * ph_size)
    if len(table) != e_phnum * ph_size:
        raise DumpFormatError(path, "truncated: program headers beyond end of file")
    file_size = source.size()
    loads: list[LoadSegment] = []
    note_segments: list[tuple[int, int]] = []
    for fields in struct.iter_unpack(ph_fmt, table):
        if is64:
            p_type, _pf, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, _align = fields
        else:
            p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, _pf, _align = fields
        if p_type == PT_LOAD:
            if p_filesz > p_memsz:
                raise DumpFormatError(path, f"PT_LOAD at {p_paddr:#x} has filesz > memsz")
            if file_size is not None and p_offset + p_filesz > file_size:
                raise DumpFormatError(
                    path,
                    f"truncated: PT_LOAD at physical {p_paddr:#x} ends at file offset {p_offset + p_filesz}, "
                    f"file holds {file_size} bytes (dump incomplete or still being written)",
                )
            loads.append(LoadSegment(p_offset, p_paddr, p_vaddr, p_filesz, p_memsz))
        elif p_type == PT_NOTE:
            if p_filesz > MAX_NOTE_BYTES:
                raise DumpFormatError(path, f"absurd PT_NOTE size {p_filesz}")
            note_segments.append((p_offset, p_filesz))
    notes: list[Note] = []
    for offset, size in note_segments:
        data = source.pread(offset, size)
        if len(data) != size:
            raise DumpFormatError(path, "truncated: PT_NOTE beyond end of file")
        notes.extend(iter_notes(data, little))
    info_note = next((n for n in notes if n.name == VMCOREINFO_NOTE_NAME), None)
    if info_note is None or not info_note.desc.strip(b"\x00"):
        raise DumpFormatError(
            path, "no VMCOREINFO note (not a kernel crash dump, or the kernel lacks kexec support)"
        )
    if len(info_note.desc) > MAX_VMCOREINFO_BYTES:
        raise DumpFormatError(path, f"absurd VMCOREINFO size {len(info_note.desc)}")
    info = parse_vmcoreinfo(info_note.desc)
    page_size = info.page_size or 4096
    if page_size < 512 or page_size > 1 << 20 or page_size & (page_size - 1):
        raise DumpFormatError(path, f"VMCOREINFO PAGESIZE {page_size} is not a sane page size")
    header = DumpHeader(
        machine=ELF_MACHINES.get(e_machine, f"elf-machine-{e_machine}"), release=info.osrelease
    )
    return ElfDump(source, info, notes, header, page_size, loads)
