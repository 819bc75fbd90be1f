"""A small crash-dump *writer* for tests: synthetic kernels with a log in any era, in any dump format.

`Kernel` is a sparse physical memory with an x86_64 kernel-image mapping (`__START_KERNEL_map +
phys_base`), a direct map reached through real 4-level page tables, and VMCOREINFO lines.
`add_lockless_log`, `add_record_log` and `add_legacy_log` lay out the kernel's log structures
the way each era's kernel does; `write_elf`, `write_kdump` and `flatten` serialize the memory as
the dump formats do (QEMU's section-headers-first ELF, kdump header versions, each page codec).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

START_KERNEL_MAP = 0xFFFFFFFF80000000
DIRECT_MAP = 0xFFFF888000000000
PAGE = 4096
KERNEL_VIRT = 0xFFFFFFFF81000000  # _stext without KASLR

# prstatus layout offsets (x86_64)
_PR_PID = 32
_PR_REG = 112
_PRSTATUS_SIZE = 336

DESC_COMMITTED = 1
DESC_FINALIZED = 2
DESC_REUSABLE = 3


@dataclass
class Record:
    """One log record for the ring builders; `state`/`id_skew`/`text_len_extra` make edge cases."""

    ts_nsec: int
    text: bytes
    state: int = DESC_FINALIZED
    dataless: bool = False  # begin == next (the kernel's "no data" record)
    id_skew: int = 0  # stored id differs from the expected one: makedumpfile's desc_miss
    text_len_extra: int = 0  # info.text_len claims more than the block holds (truncated message)


@dataclass
class Kernel:
    """Sparse physical memory of a synthetic x86_64 kernel plus its VMCOREINFO."""

    phys_base: int = 0
    kaslr: int = 0
    release: str = "6.1.0-synthetic"
    nodename: str = "testhost"
    version: str = "#1 SMP PREEMPT_DYNAMIC Debian 6.1.0-1 (2026-01-01)"
    pages: dict[int, bytearray] = field(default_factory=dict)
    info: list[str] = field(default_factory=list)
    next_kernel_data: int = 0x1000000  # offset from _stext where the next kernel variable goes
    next_table_page: int = 0x7000000  # physical pages for page tables and direct-map data
    top_pgt: int = 0

    def __post_init__(self) -> None:
        self.info[:0] = [
            f"OSRELEASE={self.release}",
            "BUILD-ID=0123456789abcdef0123456789abcdef01234567",
            f"PAGESIZE={PAGE}",
        ]
        self.top_pgt = self.alloc_kernel(PAGE, align=PAGE)
        self.symbol("init_top_pgt", self.top_pgt)
        # The kernel image is mapped with 2 MiB pages too (makedumpfile walks them for every address).
        image = KERNEL_VIRT + self.kaslr
        for off in range(0, 64 << 20, 2 << 20):
            self._map(image + off, self.kernel_phys(image + off), large=True)
        self.info.append(f"NUMBER(phys_base)={self.phys_base}")
        self.info.append(f"KERNELOFFSET={self.kaslr:x}")
        self.info.append("NUMBER(KERNEL_IMAGE_SIZE)=1073741824")
        self.info.append("NUMBER(pgtable_l5_enabled)=0")
        # FLATMEM's mem_map pointer: makedumpfile refuses dumps whose memory model it cannot tell.
        mem_map = self.alloc_kernel(8)
        self.write_virt(mem_map, struct.pack("<Q", DIRECT_MAP + 0x4000000))
        self.symbol("mem_map", mem_map)
        self.info += [
            "SIZE(page)=64",
            "OFFSET(page.flags)=0",
            "OFFSET(page._refcount)=52",
            "OFFSET(page.mapping)=24",
        ]
        uts = self.alloc_kernel(6 * 65, align=64)
        self.symbol("init_uts_ns", uts)
        self.info.append("OFFSET(uts_namespace.name)=0")
        for i, value in enumerate(("Linux", self.nodename, self.release, self.version, "x86_64", "(none)")):
            self.write_virt(uts + 65 * i, value.encode())

    # --- memory ---------------------------------------------------------------------------------
    def write_phys(self, paddr: int, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            pfn, within = divmod(paddr + pos, PAGE)
            take = min(PAGE - within, len(data) - pos)
            page = self.pages.setdefault(pfn, bytearray(PAGE))
            page[within : within + take] = data[pos : pos + take]
            pos += take

    def read_phys(self, paddr: int, length: int) -> bytes:
        out = bytearray()
        for addr in range(paddr, paddr + length):
            page = self.pages.get(addr // PAGE)
            out.append(page[addr % PAGE] if page else 0)
        return bytes(out)

    def kernel_phys(self, vaddr: int) -> int:
        return vaddr - START_KERNEL_MAP + self.phys_base

    def alloc_kernel(self, size: int, align: int = 8) -> int:
        """A kernel-image (.data/.bss) address for a variable of `size` bytes."""
        off = (self.next_kernel_data + align - 1) & ~(align - 1)
        self.next_kernel_data = off + size
        return KERNEL_VIRT + self.kaslr + off

    def alloc_direct(self, size: int) -> int:
        """A direct-map address (memblock/kmalloc memory), reachable only through page tables."""
        paddr = self.next_table_page
        self.next_table_page += (size + PAGE - 1) // PAGE * PAGE
        vaddr = DIRECT_MAP + paddr
        for page in range(0, size, PAGE):
            self._map(vaddr + page, paddr + page)
        return vaddr

    def _table(self) -> int:
        paddr = self.next_table_page
        self.next_table_page += PAGE
        self.write_phys(paddr, bytes(PAGE))
        return paddr

    def _map(self, vaddr: int, paddr: int, large: bool = False) -> None:
        table = self.kernel_phys(self.top_pgt)
        for shift in (39, 30, 21):
            if large and shift == 21:
                self.write_phys(table + ((vaddr >> 21) & 0x1FF) * 8, struct.pack("<Q", paddr | 0xE3))
                return
            slot = table + ((vaddr >> shift) & 0x1FF) * 8
            entry = struct.unpack("<Q", self.read_phys(slot, 8))[0]
            if not entry & 1:
                entry = self._table() | 0x63
                self.write_phys(slot, struct.pack("<Q", entry))
            table = entry & 0x000FFFFFFFFFF000
        self.write_phys(table + ((vaddr >> 12) & 0x1FF) * 8, struct.pack("<Q", paddr | 0x63))

    def write_virt(self, vaddr: int, data: bytes) -> None:
        if vaddr >= START_KERNEL_MAP:
            self.write_phys(self.kernel_phys(vaddr), data)
        else:
            self.write_phys(vaddr - DIRECT_MAP, data)

    def symbol(self, name: str, vaddr: int) -> None:
        self.info.append(f"SYMBOL({name})={vaddr:x}")

    def vmcoreinfo(self) -> bytes:
        return ("\n".join(self.info) + "\n").encode()

    # --- logs -----------------------------------------------------------------------------------
    def add_lockless_log(
        self,
        records: Sequence[Record],
        count_bits: int = 5,
        size_bits: int = 10,
        first_id: int = 0,
        first_lpos: int = 0,
        direct: bool = False,
    ) -> None:
        """The 5.10+ ring: desc ring (state_var, text_blk_lpos), printk_info array, text data ring."""
        count = 1 << count_bits
        size = 1 << size_bits
        descs = bytearray(24 * count)
        infos = bytearray(88 * count)
        text = bytearray(size)
        lpos = first_lpos  # logical positions grow forever; the ring offset is lpos % size
        id_mask = (1 << 62) - 1  # ids live in the state word's low 62 bits and wrap there
        for n, rec in enumerate(records):
            rid = (first_id + n) & id_mask
            slot = rid % count
            need = 8 + ((len(rec.text) + 7) & ~7)
            if rec.dataless:
                begin = nxt = lpos
            else:
                begin = lpos
                # A block that would reach the ring's end wraps (the kernel compares the wrap counts
                # of begin and begin + need), and its data goes to the ring's start.
                if begin % size + need >= size:
                    start = begin - begin % size + size
                    nxt = start + need
                    pos = 0
                else:
                    nxt = begin + need
                    pos = begin % size
                text[pos : pos + 8] = struct.pack("<Q", rid)
                text[pos + 8 : pos + 8 + len(rec.text)] = rec.text
                lpos = nxt
            state_var = (rec.state << 62) | ((rid + rec.id_skew) & id_mask)
            struct.pack_into("<QQQ", descs, slot * 24, state_var, begin, nxt)
            struct.pack_into("<QQH", infos, slot * 88, rid, rec.ts_nsec, len(rec.text) + rec.text_len_extra)
        place = self.alloc_direct if direct else (lambda n: self.alloc_kernel(n, 64))
        descs_va, infos_va, text_va = place(len(descs)), place(len(infos)), place(size)
        self.write_virt(descs_va, bytes(descs))
        self.write_virt(infos_va, bytes(infos))
        self.write_virt(text_va, bytes(text))
        prb = bytearray(88)
        head = (first_id + len(records) - 1) & id_mask
        struct.pack_into("<I", prb, 0, count_bits)
        struct.pack_into("<QQQQ", prb, 8, descs_va, infos_va, head, first_id)
        struct.pack_into("<I", prb, 48, size_bits)
        struct.pack_into("<QQQ", prb, 56, text_va, lpos, first_lpos)
        static = self.alloc_kernel(len(prb), 64)
        self.write_virt(static, bytes(prb))
        pointer = self.alloc_kernel(8)
        self.write_virt(pointer, struct.pack("<Q", static))
        self.symbol("prb", pointer)
        self.symbol("printk_rb_static", static)
        self.info += [
            "SIZE(printk_ringbuffer)=88",
            "OFFSET(printk_ringbuffer.desc_ring)=0",
            "OFFSET(printk_ringbuffer.text_data_ring)=48",
            "OFFSET(printk_ringbuffer.fail)=80",
            "SIZE(prb_desc_ring)=48",
            "OFFSET(prb_desc_ring.count_bits)=0",
            "OFFSET(prb_desc_ring.descs)=8",
            "OFFSET(prb_desc_ring.infos)=16",
            "OFFSET(prb_desc_ring.head_id)=24",
            "OFFSET(prb_desc_ring.tail_id)=32",
            "SIZE(prb_desc)=24",
            "OFFSET(prb_desc.state_var)=0",
            "OFFSET(prb_desc.text_blk_lpos)=8",
            "SIZE(prb_data_blk_lpos)=16",
            "OFFSET(prb_data_blk_lpos.begin)=0",
            "OFFSET(prb_data_blk_lpos.next)=8",
            "SIZE(printk_info)=88",
            "OFFSET(printk_info.seq)=0",
            "OFFSET(printk_info.ts_nsec)=8",
            "OFFSET(printk_info.text_len)=16",
            "OFFSET(printk_info.caller_id)=20",
            "OFFSET(printk_info.dev_info)=24",
            "SIZE(prb_data_ring)=32",
            "OFFSET(prb_data_ring.size_bits)=0",
            "OFFSET(prb_data_ring.data)=8",
            "OFFSET(prb_data_ring.head_lpos)=16",
            "OFFSET(prb_data_ring.tail_lpos)=24",
            "SIZE(atomic_long_t)=8",
            "OFFSET(atomic_long_t.counter)=0",
        ]

    def add_record_log(
        self,
        records: Sequence[Record],
        buf_len: int = 1024,
        struct_name: str = "printk_log",
        direct: bool = True,
    ) -> None:
        """3.5-5.9: `struct printk_log` records (16-byte header, 8-aligned); zero `len` marks a wrap."""
        buf = bytearray(buf_len)
        idx = 0
        placed: list[tuple[int, int, int]] = []  # (start, size, index into writes), oldest first
        writes: list[tuple[int, int]] = []  # every byte range written, in order
        for rec in records:
            size = (16 + len(rec.text) + 7) & ~7
            if idx + size + 16 > buf_len:  # no room for this record and a wrap header after it
                buf[idx : idx + 16] = bytes(16)  # len 0: readers continue at the start
                writes.append((idx, 16))
                idx = 0
            struct.pack_into("<QHHHBB", buf, idx, rec.ts_nsec, size, len(rec.text), 0, 0, 6)
            buf[idx + 16 : idx + 16 + len(rec.text)] = rec.text
            placed.append((idx, size, len(writes)))
            writes.append((idx, size))
            idx += size
        # log_first_idx: the oldest record from which on nothing was overwritten by a later write.
        first = idx
        for n in range(len(placed) - 1, -1, -1):
            start, size, written = placed[n]
            later = writes[written + 1 :]
            if any(a < start + size and start < a + ln for a, ln in later):
                break
            first = start
        buf_va = self.alloc_direct(buf_len) if direct else self.alloc_kernel(buf_len, 64)
        self.write_virt(buf_va, bytes(buf))
        variables = {
            "log_buf": struct.pack("<Q", buf_va),
            "log_buf_len": struct.pack("<I", buf_len),
            "log_first_idx": struct.pack("<I", first),
            "log_next_idx": struct.pack("<I", idx),
        }
        for name, value in variables.items():
            va = self.alloc_kernel(8)
            self.write_virt(va, value)
            self.symbol(name, va)
        s = struct_name
        self.info += [
            f"SIZE({s})=16",
            f"OFFSET({s}.ts_nsec)=0",
            f"OFFSET({s}.len)=8",
            f"OFFSET({s}.text_len)=10",
            f"OFFSET({s}.dict_len)=12",
        ]

    def add_legacy_log(self, text: bytes, buf_len: int = 1024) -> None:
        """Before 3.5: a character ring; log_end counts every byte ever written."""
        buf = bytearray(buf_len)
        for i, byte in enumerate(text):
            buf[i % buf_len] = byte
        buf_va = self.alloc_kernel(buf_len, 64)
        self.write_virt(buf_va, bytes(buf))
        for name, value in (
            ("log_buf", struct.pack("<Q", buf_va)),
            ("log_buf_len", struct.pack("<I", buf_len)),
            ("log_end", struct.pack("<I", len(text))),
            ("logged_chars", struct.pack("<I", 0)),
        ):
            va = self.alloc_kernel(8)
            self.write_virt(va, value)
            self.symbol(name, va)

    def prstatus(self, pid: int, rip: int) -> bytes:
        desc = bytearray(_PRSTATUS_SIZE)
        struct.pack_into("<i", desc, _PR_PID, pid)
        struct.pack_into("<Q", desc, _PR_REG + 16 * 8, rip)
        return bytes(desc)


# --- serializers ------------------------------------------------------------------------------------


def note(name: bytes, ntype: int, desc: bytes) -> bytes:
    namez = name + b"\x00"
    return struct.pack("<III", len(namez), len(desc), ntype) + _pad4(namez) + _pad4(desc)


def _pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


def _runs(pfns: Iterable[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for pfn in sorted(pfns):
        if runs and runs[-1][0] + runs[-1][1] == pfn:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((pfn, 1))
    return runs


def write_elf(
    kernel: Kernel,
    cpus: int = 2,
    qemu_layout: bool = False,
    with_vaddr: bool = False,
    vmcoreinfo: bytes | None = None,
    pn_xnum: bool = False,
    vaddr_base: int = DIRECT_MAP,
) -> bytes:
    """An ELF64 core: PT_NOTE (NT_PRSTATUS per CPU + VMCOREINFO) and one PT_LOAD per run of pages.

    `qemu_layout` puts a section header table before the program headers, as QEMU does;
    `pn_xnum` stores the segment count in section 0 (what >65534 segments force).
    """
    notes = b"".join(note(b"CORE", 1, kernel.prstatus(100 + c, 0xFFFFFFFF81000000 + c)) for c in range(cpus))
    notes += note(b"VMCOREINFO", 0, kernel.vmcoreinfo() if vmcoreinfo is None else vmcoreinfo)
    runs = _runs(kernel.pages)
    phnum = 1 + len(runs)
    shoff = 64 if (qemu_layout or pn_xnum) else 0
    shnum = 1 if shoff else 0
    phoff = 64 + 64 * shnum
    data_off = phoff + 56 * phnum
    headers = [struct.pack("<IIQQQQQQ", 4, 0, data_off, 0, 0, len(notes), len(notes), 0)]
    body = bytearray(notes)
    for pfn, n in runs:
        paddr = pfn * PAGE
        vaddr = vaddr_base + paddr if with_vaddr else 0
        headers.append(
            struct.pack("<IIQQQQQQ", 1, 7, data_off + len(body), vaddr, paddr, n * PAGE, n * PAGE, 0)
        )
        for p in range(pfn, pfn + n):
            body += kernel.pages[p]
    e_phnum = 0xFFFF if pn_xnum else phnum
    ehdr = struct.pack(
        "<4sBBBBB7sHHIQQQIHHHHHH",
        b"\x7fELF",
        2,
        1,
        1,
        0,
        0,
        bytes(7),
        4,
        62,
        1,
        0,
        phoff,
        shoff,
        0,
        64,
        56,
        e_phnum,
        64 if shnum else 0,
        shnum,
        0,
    )
    # QEMU always writes section 0 with sh_info = the segment count (PN_XNUM's extension).
    shdr = struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, phnum, 0, 0) if shnum else b""
    return ehdr + shdr + b"".join(headers) + bytes(body)


KDUMP_CODECS = {"zlib": 0x1, "lzo": 0x2, "snappy": 0x4, "zstd": 0x20, "raw": 0}


def _compress(codec: str, page: bytes) -> bytes:
    if codec == "zlib":
        return zlib.compress(page)
    if codec == "lzo":
        import lzallright

        return bytes(lzallright.LZOCompressor().compress(page))
    if codec == "snappy":
        import cramjam

        return bytes(cramjam.snappy.compress_raw(page))
    if codec == "zstd":
        import cramjam

        return bytes(cramjam.zstd.compress(page))
    return page


def write_kdump(
    kernel: Kernel,
    codec: str = "zlib",
    version: int = 6,
    nr_cpus: int = 2,
    sub_phys_base: int | None = None,
    vmcoreinfo: bytes | None = None,
    incomplete: bool = False,
    max_mapnr: int | None = None,
    corrupt_pfn: int | None = None,
) -> bytes:
    """A kdump-compressed dump: header, sub-header, two bitmaps, page descriptors, page data."""
    block = PAGE
    max_pfn = max_mapnr if max_mapnr is not None else max(kernel.pages) + 1
    bitmap_bytes = (max_pfn + 7) // 8
    bitmap_blocks = 2 * ((bitmap_bytes + block - 1) // block)
    half = bitmap_blocks // 2 * block
    bitmap = bytearray(2 * half)
    for pfn in kernel.pages:
        if pfn < max_pfn:
            bitmap[pfn // 8] |= 1 << (pfn % 8)
            bitmap[half + pfn // 8] |= 1 << (pfn % 8)
    info = kernel.vmcoreinfo() if vmcoreinfo is None else vmcoreinfo
    notes = b"".join(note(b"CORE", 1, kernel.prstatus(100 + c, 0)) for c in range(nr_cpus))
    sub_hdr_blocks = 1 + (104 + len(info) + len(notes)) // block
    off_info = block + 104
    off_note = off_info + len(info)
    flag = KDUMP_CODECS[codec]
    status = flag | (0x8 if incomplete else 0)
    uts = b"".join(
        s.encode().ljust(65, b"\x00")
        for s in ("Linux", kernel.nodename, kernel.release, kernel.version, "x86_64", "(none)")
    )
    header = struct.pack("<8si", b"KDUMP   ", version) + uts + bytes(6)
    header += struct.pack(
        "<qqIiiIIIIIIi",
        1_700_000_000,
        0,
        status,
        block,
        sub_hdr_blocks,
        bitmap_blocks,
        max_pfn & 0xFFFFFFFF,
        len(kernel.pages),
        0,
        0,
        0,
        nr_cpus,
    )
    phys = kernel.phys_base if sub_phys_base is None else sub_phys_base
    sub = struct.pack(
        "<QiiQQqQqQqQQQQ",
        phys & (2**64 - 1),
        31,
        0,
        0,
        max_pfn,
        off_info,
        len(info),
        off_note,
        len(notes),
        0,
        0,
        0,
        max_pfn,
        max_pfn,
    )
    out = bytearray(header.ljust(block, b"\x00"))
    out += (sub + info + notes).ljust(sub_hdr_blocks * block, b"\x00")
    out += bitmap
    dumped = sorted(p for p in kernel.pages if p < max_pfn)
    desc_start = len(out)
    data_pos = desc_start + 24 * len(dumped)
    descs = bytearray()
    data = bytearray()
    for pfn in dumped:
        page = bytes(kernel.pages[pfn])
        packed = _compress(codec, page)
        flags = flag
        if len(packed) >= block:  # makedumpfile stores incompressible pages raw
            packed, flags = page, 0
        if pfn == corrupt_pfn and flags:
            packed = bytes(b ^ 0x5A for b in packed)
        descs += struct.pack("<qIIQ", data_pos + len(data), len(packed), flags, 0)
        data += packed
    return bytes(out + descs + data)


def flatten(image: bytes, chunk: int = 4096, shuffle: bool = True) -> bytes:
    """makedumpfile -F: a 4 KiB header, then (offset, size) big-endian records, then (-1, -1).

    Records go out of order and the first one is written twice (stale, then final), as
    makedumpfile rewrites the header at the end.
    """
    head = b"makedumpfile".ljust(16, b"\x00") + struct.pack(">qq", 1, 1)
    out = bytearray(head.ljust(4096, b"\x00"))
    pieces = [(off, image[off : off + chunk]) for off in range(0, len(image), chunk)]
    if shuffle and len(pieces) > 2:
        pieces = [(0, bytes(len(pieces[0][1]))), *pieces[2:], pieces[1], pieces[0]]
    for off, data in pieces:
        out += struct.pack(">qq", off, len(data)) + data
    out += struct.pack(">qq", -1, -1)
    return bytes(out)


def write_sparse_elf(kernel: Kernel, path: str, memory_bytes: int) -> None:
    """An ELF core of `memory_bytes` of RAM as one PT_LOAD, written sparse: only the kernel's pages
    hold data, the rest are holes (what copying /proc/vmcore of a big, idle machine looks like)."""
    notes = note(b"VMCOREINFO", 0, kernel.vmcoreinfo())
    data_off = (64 + 56 * 2 + len(notes) + PAGE - 1) // PAGE * PAGE
    ehdr = struct.pack(
        "<4sBBBBB7sHHIQQQIHHHHHH",
        b"\x7fELF",
        2,
        1,
        1,
        0,
        0,
        bytes(7),
        4,
        62,
        1,
        0,
        64,
        0,
        0,
        64,
        56,
        2,
        0,
        0,
        0,
    )
    phdrs = struct.pack("<IIQQQQQQ", 4, 0, 64 + 112, 0, 0, len(notes), len(notes), 0)
    phdrs += struct.pack("<IIQQQQQQ", 1, 7, data_off, 0, 0, memory_bytes, memory_bytes, 0)
    with open(path, "wb") as f:
        f.write(ehdr + phdrs + notes)
        for pfn, page in sorted(kernel.pages.items()):
            if pfn * PAGE < memory_bytes:
                f.seek(data_off + pfn * PAGE)
                f.write(page)
        f.truncate(data_off + memory_bytes)
