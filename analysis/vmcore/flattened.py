"""The flattened stream of `makedumpfile -F` (what Debian/Ubuntu/SUSE pipe over ssh or to a file).

A 4096-byte `makedumpfile_header` ("makedumpfile", type 1, version 1, big-endian) is followed by
data records: a big-endian (offset, size) pair and `size` bytes meant for `offset` of the
un-flattened file, ended by (-1, -1). `makedumpfile -R` replays the records into a file; here
they are indexed instead (only record headers are read) and reads are served from the stream.
A later record covering the same bytes wins, as it would when replayed.
"""

from __future__ import annotations

import bisect
import struct
from array import array

from analysis.errors import DumpFormatError
from analysis.vmcore.io import Source

__all__ = ["FLAT_SIGNATURE", "FlattenedSource"]

FLAT_SIGNATURE = b"makedumpfile\x00"
FLAT_HEADER_SIZE = 4096
TYPE_FLAT_HEADER = 1
MAX_RECORDS = 4_000_000  # ~100 MiB of index; real streams write 64 KiB-ish records
MAX_RECORD = 1 << 31
_RECORD = struct.Struct(">qq")


class FlattenedSource:
    """A `Source` over the un-flattened view of a flattened stream, built from an index of records."""

    def __init__(self, inner: Source) -> None:
        self.name = inner.name
        self._inner = inner
        head = inner.pread(0, 32)
        if len(head) < 32 or not head.startswith(FLAT_SIGNATURE):
            raise DumpFormatError(self.name, "truncated flattened header")
        ftype, version = struct.unpack_from(">qq", head, 16)
        if ftype != TYPE_FLAT_HEADER or version < 1:
            raise DumpFormatError(self.name, f"unknown flattened header type {ftype} version {version}")
        offsets = array("q")
        sizes = array("q")
        positions = array("q")
        pos = FLAT_HEADER_SIZE
        ended = False
        while len(offsets) < MAX_RECORDS:
            raw = inner.pread(pos, _RECORD.size)
            if len(raw) < _RECORD.size:
                break
            offset, size = _RECORD.unpack(raw)
            if offset == -1 and size == -1:
                ended = True
                break
            if offset < 0 or size < 0 or size > MAX_RECORD:
                raise DumpFormatError(
                    self.name, f"corrupt flattened record at stream offset {pos}: ({offset}, {size})"
                )
            offsets.append(offset)
            sizes.append(size)
            positions.append(pos + _RECORD.size)
            pos += _RECORD.size + size
        else:
            raise DumpFormatError(self.name, f"more than {MAX_RECORDS} flattened records; refusing to index")
        total = inner.size()
        if not ended or (total is not None and positions and positions[-1] + sizes[-1] > total):
            raise DumpFormatError(
                self.name,
                "truncated flattened stream: no end marker (dump incomplete or still being written)",
            )
        order = sorted(range(len(offsets)), key=lambda i: (offsets[i], i))
        self._offsets = array("q", (offsets[i] for i in order))
        self._ends = array("q", (offsets[i] + sizes[i] for i in order))
        self._positions = array("q", (positions[i] for i in order))
        self._seq = array("q", order)  # stream order: later records overwrite earlier ones
        self._max_len = max(sizes, default=0)
        self._size = max(self._ends, default=0)
        self.records = len(offsets)

    def pread(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise DumpFormatError(self.name, f"negative read at offset {offset} length {length}")
        end = min(offset + length, self._size)
        if offset >= end:
            return b""
        lo = bisect.bisect_left(self._offsets, offset - self._max_len)
        hi = bisect.bisect_left(self._offsets, end)
        hits = [i for i in range(lo, hi) if self._ends[i] > offset]
        hits.sort(key=lambda i: self._seq[i])
        out = bytearray(end - offset)  # bytes no record wrote read as zeros, like the replayed file's holes
        for i in hits:
            a = max(offset, self._offsets[i])
            b = min(end, self._ends[i])
            data = self._inner.pread(self._positions[i] + (a - self._offsets[i]), b - a)
            if len(data) != b - a:
                raise DumpFormatError(self.name, "truncated flattened stream inside a data record")
            out[a - offset : b - offset] = data
        return bytes(out)

    def size(self) -> int | None:
        return self._size

    def close(self) -> None:
        self._inner.close()
