"""kdump-compressed dumps (`makedumpfile -c/-l/-p/-z`, QEMU `dump-guest-memory -z/-l/-s`).

Layout, in blocks of `block_size` (= page size):
  block 0             disk_dump_header: "KDUMP   ", version, utsname, timestamp, status, sizes
  block 1..           kdump_sub_header: phys_base, VMCOREINFO and ELF-note offsets, 64-bit max_mapnr
  then bitmap_blocks  two bitmaps, one bit per pfn: RAM pages, then dumped pages
  then page_desc[]    one 24-byte descriptor per dumped page, in pfn order: offset, size, flags
  then page data      each page raw or compressed (zlib, LZO, snappy or zstd, per descriptor flags)

A pfn's descriptor index is the count of dumped pages before it, so the second bitmap is read
in chunks with a running popcount per chunk; nothing proportional to memory is held.
"""

from __future__ import annotations

import struct
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Callable

from analysis.errors import DumpFormatError
from analysis.vmcore.dump import Dump, DumpHeader
from analysis.vmcore.io import Source
from analysis.vmcore.prstatus import VMCOREINFO_NOTE_NAME, Note, iter_notes
from analysis.vmcore.vmcoreinfo import MAX_VMCOREINFO_BYTES, VmcoreInfo, parse_vmcoreinfo

__all__ = ["COMPRESSION_FLAGS", "KDUMP_SIGNATURE", "KdumpDump", "open_kdump"]

KDUMP_SIGNATURE = b"KDUMP   "
DISKDUMP_SIGNATURE = b"DISKDUMP"

DUMP_DH_COMPRESSED_ZLIB = 0x1
DUMP_DH_COMPRESSED_LZO = 0x2
DUMP_DH_COMPRESSED_SNAPPY = 0x4
DUMP_DH_COMPRESSED_INCOMPLETE = 0x8
DUMP_DH_EXCLUDED_VMEMMAP = 0x10
DUMP_DH_COMPRESSED_ZSTD = 0x20

# Header/descriptor compression flag -> format suffix, in makedumpfile's precedence order.
COMPRESSION_FLAGS: tuple[tuple[int, str], ...] = (
    (DUMP_DH_COMPRESSED_ZLIB, "zlib"),
    (DUMP_DH_COMPRESSED_LZO, "lzo"),
    (DUMP_DH_COMPRESSED_SNAPPY, "snappy"),
    (DUMP_DH_COMPRESSED_ZSTD, "zstd"),
)

_UTS_LEN = 65
_HEADER = struct.Struct("<8si" + f"{_UTS_LEN}s" * 6 + "6xqqIiiIIIIIIi")
_SUB_HEADER = struct.Struct("<QiiQQqQqQqQQQQ")
_PAGE_DESC = struct.Struct("<qIIQ")
_BITMAP_CHUNK = 4096  # bytes of bitmap per popcount entry (32768 pages)
_BITMAP_READ = 64 * _BITMAP_CHUNK  # bitmap bytes read per pread while counting
_MAX_BLOCK_SIZE = 1 << 20
_MAX_NOTE_BYTES = 64 * 1024 * 1024
_MAX_PFN = 1 << 52  # 2^64 bytes of 4 KiB pages


def _cstr(raw: bytes) -> str | None:
    text = raw.split(b"\x00", 1)[0].decode("utf-8", "replace")
    return text or None


def _lzo(data: bytes, size: int) -> bytes:
    import lzallright  # imported on first LZO page: keeps `crashfleet dmesg` start-up small

    return bytes(lzallright.LZOCompressor.decompress(data, output_size_hint=size))


def _snappy(data: bytes, size: int) -> bytes:
    import cramjam

    return bytes(cramjam.snappy.decompress_raw(data))


def _zstd(data: bytes, size: int) -> bytes:
    import cramjam

    return bytes(cramjam.zstd.decompress(data, output_len=size))


def _zlib(data: bytes, size: int) -> bytes:
    d = zlib.decompressobj()
    out = d.decompress(data, size + 1)
    if not d.eof:
        raise ValueError("zlib stream does not end within the page")
    return out


_DECOMPRESSORS: dict[int, Callable[[bytes, int], bytes]] = {
    DUMP_DH_COMPRESSED_ZLIB: _zlib,
    DUMP_DH_COMPRESSED_LZO: _lzo,
    DUMP_DH_COMPRESSED_SNAPPY: _snappy,
    DUMP_DH_COMPRESSED_ZSTD: _zstd,
}


class KdumpDump(Dump):
    """Pages of a kdump-compressed dump, found through the dumped-pages bitmap."""

    def __init__(
        self,
        source: Source,
        *,
        fmt: str,
        bitmap2_offset: int,
        bitmap_len: int,
        desc_offset: int,
        max_mapnr: int,
        block_size: int,
        vmcoreinfo: VmcoreInfo,
        notes: list[Note],
        header: DumpHeader,
        page_size: int,
    ) -> None:
        super().__init__(source, vmcoreinfo, notes, header, page_size)
        self.format = fmt
        self._bitmap2 = bitmap2_offset
        self._bitmap_len = bitmap_len
        self._desc_offset = desc_offset
        self._max_mapnr = max_mapnr
        self._block_size = block_size
        self._prefix = array("Q", [0])  # _prefix[k]: dumped pages in bitmap chunks [0, k)
        self._chunks: OrderedDict[int, bytes] = OrderedDict()

    def _bitmap_chunk(self, index: int) -> bytes:
        chunk = self._chunks.get(index)
        if chunk is None:
            start = index * _BITMAP_CHUNK
            want = min(_BITMAP_CHUNK, self._bitmap_len - start)
            chunk = self.source.pread(self._bitmap2 + start, want)
            if len(chunk) != want:
                raise DumpFormatError(self.path, "truncated in the page bitmap")
            self._chunks[index] = chunk
            if len(self._chunks) > 8:
                self._chunks.popitem(last=False)
        else:
            self._chunks.move_to_end(index)
        return chunk

    def _count_before_chunk(self, index: int) -> int:
        """Dumped pages before bitmap chunk `index`, counting forward from the last known chunk."""
        while len(self._prefix) <= index:
            k = len(self._prefix) - 1
            start = k * _BITMAP_CHUNK
            want = min(_BITMAP_READ, self._bitmap_len - start)
            data = self.source.pread(self._bitmap2 + start, want)
            if len(data) != want:
                raise DumpFormatError(self.path, "truncated in the page bitmap")
            total = self._prefix[-1]
            for pos in range(0, len(data), _BITMAP_CHUNK):
                total += int.from_bytes(data[pos : pos + _BITMAP_CHUNK], "little").bit_count()
                self._prefix.append(total)
        return self._prefix[index]

    def _read_page(self, pfn: int) -> bytes | None:
        if pfn >= self._max_mapnr:
            return None
        byte, bit = divmod(pfn, 8)
        chunk_index, within = divmod(byte, _BITMAP_CHUNK)
        if byte >= self._bitmap_len:
            return None
        chunk = self._bitmap_chunk(chunk_index)
        if not (chunk[within] >> bit) & 1:
            return None
        before = (
            int.from_bytes(chunk[:within], "little").bit_count()
            + (chunk[within] & ((1 << bit) - 1)).bit_count()
        )
        index = self._count_before_chunk(chunk_index) + before
        raw = self.source.pread(self._desc_offset + index * _PAGE_DESC.size, _PAGE_DESC.size)
        if len(raw) != _PAGE_DESC.size:
            raise DumpFormatError(
                self.path,
                f"truncated in the page descriptors (pfn {pfn:#x}; dump incomplete or still being written)",
            )
        offset, size, flags, _page_flags = _PAGE_DESC.unpack(raw)
        if offset <= 0 or size == 0 or size > 2 * self._block_size:
            raise DumpFormatError(
                self.path, f"corrupt page descriptor for pfn {pfn:#x} (offset {offset}, size {size})"
            )
        data = self.source.pread(offset, size)
        if len(data) != size:
            raise DumpFormatError(
                self.path,
                f"truncated in the page data (pfn {pfn:#x}; dump incomplete or still being written)",
            )
        ps = self.page_size
        codec = next((f for f, _ in COMPRESSION_FLAGS if flags & f), None)
        if codec is None:
            if size != ps:
                raise DumpFormatError(
                    self.path, f"corrupt page data for pfn {pfn:#x}: raw page of {size} bytes"
                )
            return data
        try:
            page = _DECOMPRESSORS[codec](data, ps)
        except Exception as exc:  # each codec library raises its own error types
            name = dict(COMPRESSION_FLAGS)[codec]
            raise DumpFormatError(self.path, f"corrupt {name} page for pfn {pfn:#x}: {exc}") from None
        if len(page) != ps:
            raise DumpFormatError(
                self.path, f"corrupt compressed page for pfn {pfn:#x}: {len(page)} bytes, not {ps}"
            )
        return page


def open_kdump(source: Source, fmt_prefix: str = "kdump") -> KdumpDump:
    """Validate the headers of a kdump-compressed dump and read its VMCOREINFO and notes."""
    path = source.name
    raw = source.pread(0, _HEADER.size)
    if raw.startswith(DISKDUMP_SIGNATURE):
        raise DumpFormatError(path, "diskdump (pre-kdump netdump/diskdump era) format is not supported")
    if not raw.startswith(KDUMP_SIGNATURE):
        raise DumpFormatError(path, "not a kdump-compressed dump (no KDUMP signature)")
    if len(raw) < _HEADER.size:
        raise DumpFormatError(path, "truncated in the kdump header")
    fields = _HEADER.unpack(raw)
    version = fields[1]
    uts = [_cstr(f) for f in fields[2:8]]
    (
        tv_sec,
        _tv_usec,
        status,
        block_size,
        sub_hdr_size,
        bitmap_blocks,
        max_mapnr32,
        _total_ram,
        _device_blocks,
        _written,
        _current_cpu,
        nr_cpus,
    ) = fields[8:]
    if version < 1 or version > 100:
        raise DumpFormatError(path, f"unknown kdump header version {version}")
    if block_size < 512 or block_size > _MAX_BLOCK_SIZE or block_size & (block_size - 1):
        raise DumpFormatError(path, f"bad kdump block size {block_size}")
    if sub_hdr_size < 1 or bitmap_blocks < 1:
        raise DumpFormatError(
            path, f"bad kdump layout (sub-header {sub_hdr_size} blocks, bitmap {bitmap_blocks} blocks)"
        )
    if version < 3:
        raise DumpFormatError(
            path, f"kdump header version {version} carries no VMCOREINFO; cannot read the log"
        )
    sub = source.pread(block_size, _SUB_HEADER.size)
    if len(sub) < _SUB_HEADER.size:
        raise DumpFormatError(path, "truncated in the kdump sub-header")
    (
        phys_base,
        _dump_level,
        _split,
        _start_pfn,
        _end_pfn,
        off_info,
        size_info,
        off_note,
        size_note,
        _off_erase,
        _size_erase,
        _start64,
        _end64,
        max_mapnr64,
    ) = _SUB_HEADER.unpack(sub)
    max_mapnr = max_mapnr64 if version >= 6 else max_mapnr32
    if max_mapnr <= 0 or max_mapnr > _MAX_PFN:
        raise DumpFormatError(path, f"absurd max_mapnr {max_mapnr}")
    bitmap_offset = (1 + sub_hdr_size) * block_size
    bitmap_len = bitmap_blocks * block_size
    if bitmap_len // 2 * 8 < max_mapnr:
        raise DumpFormatError(path, f"bitmap of {bitmap_len} bytes cannot cover {max_mapnr} pages")
    desc_offset = bitmap_offset + bitmap_len
    file_size = source.size()
    if file_size is not None and desc_offset > file_size:
        raise DumpFormatError(
            path,
            f"truncated in the page bitmap: header says bitmaps end at {desc_offset}, file holds {file_size} bytes "
            "(dump incomplete or still being written)",
        )
    if not 0 < size_info <= MAX_VMCOREINFO_BYTES or off_info <= 0:
        raise DumpFormatError(
            path, f"no VMCOREINFO in the kdump sub-header (offset {off_info}, size {size_info})"
        )
    info_bytes = source.pread(off_info, size_info)
    if len(info_bytes) != size_info:
        raise DumpFormatError(path, "truncated: VMCOREINFO lies beyond the end of the file")
    info = parse_vmcoreinfo(info_bytes)
    notes = []
    if version >= 4 and 0 < size_note <= _MAX_NOTE_BYTES and off_note > 0:
        note_bytes = source.pread(off_note, size_note)
        notes = [n for n in iter_notes(note_bytes) if n.name != VMCOREINFO_NOTE_NAME]
    page_size = info.page_size or block_size
    if page_size != block_size:
        raise DumpFormatError(
            path, f"VMCOREINFO PAGESIZE {page_size} differs from the kdump block size {block_size}"
        )
    if status & DUMP_DH_COMPRESSED_INCOMPLETE:
        import logging  # only on this rare path: keeps `crashfleet dmesg` start-up lean

        logging.getLogger(__name__).warning(
            "kdump header marks the dump incomplete (disk full while saving) path=%s", path
        )
    codec = next((name for flag, name in COMPRESSION_FLAGS if status & flag), "raw")
    header = DumpHeader(
        sysname=uts[0],
        nodename=uts[1],
        release=uts[2],
        version=uts[3],
        machine=uts[4],
        timestamp=tv_sec or None,
        nr_cpus=nr_cpus if nr_cpus > 0 else None,
        phys_base=phys_base,
        max_pfn=max_mapnr,
        incomplete=bool(status & DUMP_DH_COMPRESSED_INCOMPLETE),
        extra={"header_version": version, "status": status},
    )
    return KdumpDump(
        source,
        fmt=f"{fmt_prefix}-{codec}",
        bitmap2_offset=bitmap_offset + bitmap_len // 2,
        bitmap_len=bitmap_len // 2,
        desc_offset=desc_offset,
        max_mapnr=max_mapnr,
        block_size=block_size,
        vmcoreinfo=info,
        notes=notes,
        header=header,
        page_size=page_size,
    )
