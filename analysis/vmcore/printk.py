"""The kernel log from a dump, in all three eras, formatted byte-for-byte like `makedumpfile --dump-dmesg`.

The era is chosen by which VMCOREINFO keys exist (feature detection, not version numbers):
  lockless  SYMBOL(prb)                          5.10+: descriptor ring + text data ring
  records   SYMBOL(log_first_idx), printk_log     3.5-5.9: variable-length `struct printk_log`
  legacy    SYMBOL(log_end)                       < 3.5: a plain character ring, copied as is
Record eras print `[%5lu.%06lu] ` + text; a newline inside a record continues on a new line
indented to the text column, and bytes that are neither printable nor whitespace (C locale)
print as `\\xNN` — with a signed `char`, so bytes >= 0x80 come out as `\\xffffffNN`.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from analysis.errors import DumpFormatError
from analysis.vmcore.memory import AddressSpace
from analysis.vmcore.vmcoreinfo import VmcoreInfo

__all__ = [
    "ERAS",
    "LocklessLayout",
    "RecordLayout",
    "detect_era",
    "extract_log",
    "format_record",
    "render_legacy",
    "render_lockless",
    "render_records",
]

MAX_LOG_BUF = 256 * 1024 * 1024
MAX_DESC_COUNT_BITS = 24
MAX_STRUCT_SIZE = 4096
ERAS: tuple[str, ...] = ("lockless", "records", "legacy")

_DESC_SV_BITS = 64
_DESC_FLAGS_SHIFT = _DESC_SV_BITS - 2
_DESC_ID_MASK = (1 << _DESC_FLAGS_SHIFT) - 1
_DESC_COMMITTED = 1
_DESC_FINALIZED = 2
_UNPRINTABLE = re.compile(rb"[^\x09-\x0d\x20-\x7e]")


def _escape(match: re.Match[bytes]) -> bytes:
    byte = match.group()[0]
    # makedumpfile passes a signed char to "%02x": bytes >= 0x80 sign-extend to 0xffffffNN.
    return b"\\x%02x" % (byte | 0xFFFFFF00 if byte >= 0x80 else byte)


def format_record(ts_nsec: int, text: bytes) -> bytes:
    """One log record as makedumpfile prints it (prefix, escaped text, continuation indent, newline)."""
    prefix = b"[%5d.%06d] " % (ts_nsec // 1_000_000_000, ts_nsec % 1_000_000_000 // 1000)
    if _UNPRINTABLE.search(text) is not None:
        text = _UNPRINTABLE.sub(_escape, text)
    if b"\n" in text:
        text = text.replace(b"\n", b"\n" + b" " * len(prefix))
    return prefix + text + b"\n"


_CALLER_COLUMN = re.compile(rb"(\[ *[0-9]+\.[0-9]{6}\] )(\[ *[TC][0-9]+\] )")


def without_caller_ids(log: bytes) -> bytes:
    """makedumpfile 1.7.4+ (Debian 13's, so kdump-tools' dmesg.<stamp> there) prints each record's
    caller id after its timestamp, `[  279.549721] [    T476] RIP: ...`, and indents the record's
    continuation lines past it; this is the same log the way format_record (and makedumpfile 1.7.2)
    prints it. Only for comparing with that oracle: the reader itself never prints caller ids."""
    out: list[bytes] = []
    width = 0
    for line in log.split(b"\n"):
        match = _CALLER_COLUMN.match(line)
        if match is not None:
            width = len(match.group(2))
            line = match.group(1) + line[match.end() :]
        elif width and not line.startswith(b"[") and line.startswith(b" " * width):
            line = line[width:]  # a continuation line of the record above
        out.append(line)
    return b"\n".join(out)


def detect_era(info: VmcoreInfo) -> str:
    """Which log layout the dumped kernel used, from the VMCOREINFO keys it exported."""
    if info.symbol("prb") is not None:
        return "lockless"
    if info.symbol("log_buf") is not None and info.symbol("log_first_idx") is not None:
        return "records"
    if info.symbol("log_buf") is not None and info.symbol("log_end") is not None:
        return "legacy"
    raise DumpFormatError("", "VMCOREINFO has no kernel log symbols (prb, log_buf)")


def _need(info: VmcoreInfo, kind: str, *names: str) -> int:
    """The first of `names` VMCOREINFO exports (older kernels name the struct `log`, not `printk_log`)."""
    table = {"SIZE": info.size, "OFFSET": info.offset, "SYMBOL": info.symbol}[kind]
    for name in names:
        value = table(name)
        if value is not None:
            if kind != "SYMBOL" and not 0 <= value <= MAX_STRUCT_SIZE:
                raise DumpFormatError("", f"VMCOREINFO {kind}({name})={value} is absurd")
            return value
    raise DumpFormatError("", f"VMCOREINFO lacks {kind}({names[0]})")


# --- 5.10+: the lockless ring buffer ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LocklessLayout:
    """Offsets and sizes of the lockless ring buffer's structures, from VMCOREINFO."""

    prb_size: int
    desc_ring: int
    text_data_ring: int
    count_bits: int
    descs: int
    infos: int
    head_id: int
    tail_id: int
    desc_size: int
    state_var: int
    text_blk_lpos: int
    lpos_begin: int
    lpos_next: int
    info_size: int
    ts_nsec: int
    text_len: int
    size_bits: int
    data: int
    counter: int

    @classmethod
    def from_vmcoreinfo(cls, info: VmcoreInfo) -> LocklessLayout:
        def o(name: str) -> int:
            return _need(info, "OFFSET", name)

        def s(name: str) -> int:
            return _need(info, "SIZE", name)

        layout = cls(
            prb_size=s("printk_ringbuffer"),
            desc_ring=o("printk_ringbuffer.desc_ring"),
            text_data_ring=o("printk_ringbuffer.text_data_ring"),
            count_bits=o("prb_desc_ring.count_bits"),
            descs=o("prb_desc_ring.descs"),
            infos=o("prb_desc_ring.infos"),
            head_id=o("prb_desc_ring.head_id"),
            tail_id=o("prb_desc_ring.tail_id"),
            desc_size=s("prb_desc"),
            state_var=o("prb_desc.state_var"),
            text_blk_lpos=o("prb_desc.text_blk_lpos"),
            lpos_begin=o("prb_data_blk_lpos.begin"),
            lpos_next=o("prb_data_blk_lpos.next"),
            info_size=s("printk_info"),
            ts_nsec=o("printk_info.ts_nsec"),
            text_len=o("printk_info.text_len"),
            size_bits=o("prb_data_ring.size_bits"),
            data=o("prb_data_ring.data"),
            counter=info.offset("atomic_long_t.counter") or 0,
        )
        layout.check()
        return layout

    def check(self) -> None:
        """Every field read must lie inside its structure, or VMCOREINFO is lying."""
        fields = (
            (
                "printk_ringbuffer",
                self.prb_size,
                self.desc_ring
                + max(
                    self.count_bits + 4,
                    self.descs + 8,
                    self.infos + 8,
                    self.head_id + self.counter + 8,
                    self.tail_id + self.counter + 8,
                ),
            ),
            (
                "printk_ringbuffer",
                self.prb_size,
                self.text_data_ring + max(self.size_bits + 4, self.data + 8),
            ),
            (
                "prb_desc",
                self.desc_size,
                max(
                    self.state_var + self.counter,
                    self.text_blk_lpos + self.lpos_begin,
                    self.text_blk_lpos + self.lpos_next,
                )
                + 8,
            ),
            ("printk_info", self.info_size, max(self.ts_nsec + 8, self.text_len + 2)),
        )
        for name, size, end in fields:
            if end > size:
                raise DumpFormatError("", f"VMCOREINFO puts fields of {name} beyond its size {size}")


def render_lockless(
    layout: LocklessLayout, descs: bytes, infos: bytes, text: bytes, tail_id: int, head_id: int
) -> bytes:
    """Render every committed/finalized record from tail to head, as makedumpfile does."""
    count = len(descs) // layout.desc_size
    size = len(text)
    if count == 0 or size == 0:
        return b""
    out: list[bytes] = []
    ids = (head_id - tail_id) & _DESC_ID_MASK
    if ids >= count:  # a ring never holds more than `count` ids; start where a real tail could be
        tail_id = (head_id - count + 1) & _DESC_ID_MASK
        ids = count - 1
    u64 = struct.Struct("<Q").unpack_from
    u16 = struct.Struct("<H").unpack_from
    state_at = layout.state_var + layout.counter
    begin_at = layout.text_blk_lpos + layout.lpos_begin
    next_at = layout.text_blk_lpos + layout.lpos_next
    for step in range(ids + 1):
        rid = (tail_id + step) & _DESC_ID_MASK
        slot = rid % count
        d = slot * layout.desc_size
        (state_var,) = u64(descs, d + state_at)
        if state_var & _DESC_ID_MASK != rid:
            continue
        if state_var >> _DESC_FLAGS_SHIFT not in (_DESC_COMMITTED, _DESC_FINALIZED):
            continue
        begin = u64(descs, d + begin_at)[0] % size
        nxt = u64(descs, d + next_at)[0] % size
        if begin == nxt:
            continue  # data-less record
        i = slot * layout.info_size
        (text_len,) = u16(infos, i + layout.text_len)
        if begin > nxt:
            begin = 0  # the block wrapped: its data starts at the ring's beginning
        begin += 8  # skip the descriptor id stored in front of the text
        if 0 <= nxt - begin < text_len:
            text_len = nxt - begin
        (ts,) = u64(infos, i + layout.ts_nsec)
        out.append(format_record(ts, text[begin : begin + text_len]))
    return b"".join(out)


def _lockless(mem: AddressSpace, info: VmcoreInfo) -> bytes:
    layout = LocklessLayout.from_vmcoreinfo(info)
    prb_addr = mem.u64(_need(info, "SYMBOL", "prb"))
    prb = mem.read(prb_addr, layout.prb_size)

    def field(offset: int, width: int) -> int:
        return int.from_bytes(prb[offset : offset + width], "little")

    ring = layout.desc_ring
    count_bits = field(ring + layout.count_bits, 4)
    if count_bits > MAX_DESC_COUNT_BITS:
        raise DumpFormatError(mem.path, f"printk descriptor ring of 2^{count_bits} entries is absurd")
    count = 1 << count_bits
    data_ring = layout.text_data_ring
    size_bits = field(data_ring + layout.size_bits, 4)
    if (1 << min(size_bits, 63)) > MAX_LOG_BUF:
        raise DumpFormatError(mem.path, f"printk text ring of 2^{size_bits} bytes is absurd")
    if count * max(layout.desc_size, layout.info_size) > MAX_LOG_BUF:
        raise DumpFormatError(mem.path, "printk descriptor ring is absurdly large")
    descs = mem.read(field(ring + layout.descs, 8), count * layout.desc_size)
    infos = mem.read(field(ring + layout.infos, 8), count * layout.info_size)
    text = mem.read(field(data_ring + layout.data, 8), 1 << size_bits)
    tail_id = field(ring + layout.tail_id + layout.counter, 8)
    head_id = field(ring + layout.head_id + layout.counter, 8)
    return render_lockless(layout, descs, infos, text, tail_id, head_id)


# --- 3.5 to 5.9: struct printk_log records ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecordLayout:
    """`struct printk_log` (named `struct log` before 3.11) as VMCOREINFO describes it."""

    size: int
    ts_nsec: int
    len: int
    text_len: int

    @classmethod
    def from_vmcoreinfo(cls, info: VmcoreInfo) -> RecordLayout:
        layout = cls(
            size=_need(info, "SIZE", "printk_log", "log"),
            ts_nsec=_need(info, "OFFSET", "printk_log.ts_nsec", "log.ts_nsec"),
            len=_need(info, "OFFSET", "printk_log.len", "log.len"),
            text_len=_need(info, "OFFSET", "printk_log.text_len", "log.text_len"),
        )
        if max(layout.ts_nsec + 8, layout.len + 2, layout.text_len + 2) > layout.size:
            raise DumpFormatError("", f"VMCOREINFO puts fields of printk_log beyond its size {layout.size}")
        return layout


def render_records(layout: RecordLayout, buf: bytes, first_idx: int, next_idx: int) -> bytes:
    """Walk records from log_first_idx to log_next_idx; a zero `len` means "wrapped to the start"."""

    def u16(pos: int) -> int:
        if pos < 0 or pos + 2 > len(buf):
            raise DumpFormatError("", f"printk record index {pos} outside the {len(buf)}-byte log buffer")
        value: int = struct.unpack_from("<H", buf, pos)[0]
        return value

    out: list[bytes] = []
    idx = first_idx
    # Every record is at least `size` bytes long, so more steps than this means a cycle.
    budget = len(buf) // max(layout.size, 1) + 2
    while idx != next_idx:
        budget -= 1
        if budget < 0:
            raise DumpFormatError("", "printk records form a cycle (corrupt log_buf)")
        ptr = idx if u16(idx + layout.len) else 0
        text_len = u16(ptr + layout.text_len)
        ts = int.from_bytes(buf[ptr + layout.ts_nsec : ptr + layout.ts_nsec + 8], "little")
        start = ptr + layout.size
        out.append(format_record(ts, buf[start : start + text_len]))
        length = u16(idx + layout.len)
        idx = u16(layout.len) if length == 0 else idx + length
    return b"".join(out)


def _records(mem: AddressSpace, info: VmcoreInfo) -> bytes:
    layout = RecordLayout.from_vmcoreinfo(info)
    buf_addr = mem.u64(_need(info, "SYMBOL", "log_buf"))
    buf_len = _log_buf_len(mem, info)
    first_idx = mem.u32(_need(info, "SYMBOL", "log_first_idx"))
    next_idx = mem.u32(_need(info, "SYMBOL", "log_next_idx"))
    buf = mem.read(buf_addr, buf_len)
    try:
        return render_records(layout, buf, first_idx, next_idx)
    except DumpFormatError as exc:
        raise DumpFormatError(mem.path, exc.reason) from None


def _log_buf_len(mem: AddressSpace, info: VmcoreInfo) -> int:
    length = mem.u32(_need(info, "SYMBOL", "log_buf_len"))
    if length >= 1 << 31 or length > MAX_LOG_BUF or length == 0:
        raise DumpFormatError(mem.path, f"log_buf_len {length} is absurd")
    return length


# --- before 3.5: a plain character ring -----------------------------------------------------------


def render_legacy(buf: bytes, log_end: int) -> bytes:
    """The ring in order: everything up to log_end, or (wrapped) from log_end round to it again."""
    size = len(buf)
    if log_end < size:
        return buf[:log_end]
    index = log_end & (size - 1)
    return buf[index:] + buf[:index]


def _legacy(mem: AddressSpace, info: VmcoreInfo) -> bytes:
    buf_addr = mem.u64(_need(info, "SYMBOL", "log_buf"))
    buf_len = _log_buf_len(mem, info)
    if buf_len & (buf_len - 1):
        raise DumpFormatError(mem.path, f"log_buf_len {buf_len} is not a power of two")
    log_end = mem.u32(_need(info, "SYMBOL", "log_end"))
    return render_legacy(mem.read(buf_addr, buf_len), log_end)


_ERA_READERS = {"lockless": _lockless, "records": _records, "legacy": _legacy}


def extract_log(mem: AddressSpace) -> bytes:
    """The dump's kernel log exactly as `makedumpfile --dump-dmesg` writes it."""
    info = mem.dump.vmcoreinfo
    try:
        era = detect_era(info)
        return _ERA_READERS[era](mem, info)
    except DumpFormatError as exc:
        if exc.path:
            raise
        raise DumpFormatError(mem.path, exc.reason) from None
