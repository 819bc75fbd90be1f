#!/usr/bin/env python3
"""Cut a kdump-compressed dump down to the pages crashfleet reads, so real dumps fit in the repository.

    scripts/trim-dump.py [--keep-oracle 'MAKEDUMPFILE COMMAND'] IN OUT

A makedumpfile `-d 31` dump of a 256 MiB guest is still ~16 MB (kernel text, slab, page
tables); reading the log and the system facts needs a few dozen pages. This reads IN with
`analysis.vmcore` (the log, the system facts, and the stack and code pages the agent reads to
find an oops's RIP address), records every physical page touched, and writes
OUT as the same kdump-compressed file with only those pages: headers, VMCOREINFO, notes and the
RAM bitmap byte for byte, the dumped-pages bitmap and the page descriptors rewritten, each kept
page's compressed bytes copied unchanged. A flattened stream (`makedumpfile -F`: kdump-tools'
`dump.<stamp>`) is trimmed as the file `makedumpfile -R` makes of it and written back flattened.
An ELF dump (QEMU's, when makedumpfile cannot read it) becomes an ELF core with the same notes and
one PT_LOAD per run of kept pages.

With `--keep-oracle CMD` (e.g. `makedumpfile` or `qemu-aarch64-static -L ROOT .../makedumpfile`)
the pages makedumpfile itself reads (it names each excluded pfn it misses) are kept as well,
added until it succeeds, and the trimmed dump is accepted only if `CMD --dump-dmesg` prints the
same log from IN and OUT: the oracle committed beside a fixture is makedumpfile's own reading of
that very file.
"""

from __future__ import annotations

import argparse
import re
import shlex
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.vmcore import open_dump
from analysis.vmcore.dump import Dump
from analysis.vmcore.elf import ElfDump
from analysis.vmcore.flattened import FLAT_SIGNATURE
from analysis.vmcore.kdump import KdumpDump

_HEADER = struct.Struct("<8si" + "65s" * 6 + "6xqqIiiIIIIIIi")
_PAGE_DESC = struct.Struct("<qIIQ")


def touched_pages(path: str) -> set[int]:
    """Every pfn the reader fetches while extracting the log and the system facts, and while the
    agent looks for a record's RIP address on the crashed task's stack (fill_rip_addresses)."""
    from analysis.signature import analyze
    from analysis.vmcore import read_dump
    from analysis.vmcore.faultframe import fill_rip_addresses

    seen: set[int] = set()
    originals = {cls: cls._read_page for cls in (KdumpDump, ElfDump)}

    def recorder(cls: type[Dump]) -> Callable[[Dump, int], bytes | None]:
        def recording(self: Dump, pfn: int) -> bytes | None:
            seen.add(pfn)
            return originals[cls](self, pfn)  # type: ignore[index]

        return recording

    for cls in originals:
        cls._read_page = recorder(cls)  # type: ignore[method-assign]
    try:
        fill_rip_addresses(path, analyze(read_dump(path).log))
    finally:
        for cls, original in originals.items():
            cls._read_page = original  # type: ignore[method-assign]
    return seen


def trim_elf(dump: ElfDump, src: str, dst: str, keep: set[int]) -> int:
    """An ELF64 core holding the original notes and only the kept pages (runs become segments)."""
    data = Path(src).read_bytes()
    phoff, phentsize, phnum = struct.unpack_from("<Q", data, 32)[0], *struct.unpack_from("<HH", data, 54)
    notes = b""
    for i in range(phnum):
        p_type, _flags, p_offset, _v, _p, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type == 4:  # PT_NOTE
            notes += data[p_offset : p_offset + p_filesz]
    pages = sorted(pfn for pfn in keep if dump._read_page(pfn) is not None)
    runs: list[list[int]] = []
    for pfn in pages:
        if runs and runs[-1][-1] + 1 == pfn:
            runs[-1].append(pfn)
        else:
            runs.append([pfn])
    ps = dump.page_size
    count = 1 + len(runs)
    body_start = 64 + 56 * count
    headers = [struct.pack("<IIQQQQQQ", 4, 0, body_start, 0, 0, len(notes), len(notes), 0)]
    body = bytearray(notes)
    for run in runs:
        offset = body_start + len(body)
        size = len(run) * ps
        headers.append(struct.pack("<IIQQQQQQ", 1, 7, offset, run[0] * ps, run[0] * ps, size, size, 0))
        for pfn in run:
            page = dump._read_page(pfn)
            assert page is not None
            body += page
    machine = struct.unpack_from("<H", data, 18)[0]
    ehdr = data[:16] + struct.pack("<HHIQQQIHHHHHH", 4, machine, 1, 0, 64, 0, 0, 64, 56, count, 64, 0, 0)
    Path(dst).write_bytes(ehdr + b"".join(headers) + bytes(body))
    return len(pages)


def trim(src: str, dst: str, keep: set[int]) -> int:
    dump: Dump = open_dump(src)
    if isinstance(dump, ElfDump) and not dump.format.count("+"):
        return trim_elf(dump, src, dst, keep)
    if not isinstance(dump, KdumpDump) or dump.format.count("+"):
        sys.exit(f"{src}: only plain kdump-compressed dumps can be trimmed (got {dump.format})")
    data = Path(src).read_bytes()
    fields = _HEADER.unpack_from(data, 0)
    block_size, sub_hdr_size, bitmap_blocks = fields[11], fields[12], fields[13]
    bitmap_offset = (1 + sub_hdr_size) * block_size
    half = bitmap_blocks * block_size // 2
    bitmap1 = data[bitmap_offset : bitmap_offset + half]
    present = sorted(pfn for pfn in keep if dump._read_page(pfn) is not None)
    # Locate each kept page's descriptor in the original, in pfn order.
    bitmap2 = bytearray(half)
    descs: list[tuple[int, int, int, int]] = []
    orig_bitmap2 = data[bitmap_offset + half : bitmap_offset + 2 * half]
    desc_offset = bitmap_offset + 2 * half
    for pfn in present:
        byte, bit = divmod(pfn, 8)
        index = int.from_bytes(orig_bitmap2[:byte], "little").bit_count() + (orig_bitmap2[byte] & ((1 << bit) - 1)).bit_count()
        descs.append(_PAGE_DESC.unpack_from(data, desc_offset + index * _PAGE_DESC.size))
        bitmap2[byte] |= 1 << bit
    out = bytearray(data[:bitmap_offset])
    out += bitmap1 + bitmap2
    data_start = len(out) + len(descs) * _PAGE_DESC.size
    table = bytearray()
    payload = bytearray()
    for offset, size, flags, page_flags in descs:
        table += _PAGE_DESC.pack(data_start + len(payload), size, flags, page_flags)
        payload += data[offset : offset + size]
    Path(dst).write_bytes(bytes(out + table + payload))
    dump.close()
    return len(present)


_FLAT_HEADER_SIZE = 4096
_FLAT_RECORD = struct.Struct(">qq")
_FLAT_CHUNK = 1 << 16


def is_flattened(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(len(FLAT_SIGNATURE)) == FLAT_SIGNATURE


def unflatten(src: str, dst: str) -> None:
    """What `makedumpfile -R` does: replay a flattened stream's (offset, size) records into a file."""
    with open(src, "rb") as f, open(dst, "wb") as out:
        f.seek(_FLAT_HEADER_SIZE)
        while True:
            raw = f.read(_FLAT_RECORD.size)
            if len(raw) < _FLAT_RECORD.size:
                sys.exit(f"{src}: truncated flattened stream (no end marker)")
            offset, size = _FLAT_RECORD.unpack(raw)
            if offset == -1 and size == -1:
                return
            data = f.read(size)
            if offset < 0 or len(data) != size:
                sys.exit(f"{src}: corrupt flattened record ({offset}, {size})")
            out.seek(offset)
            out.write(data)


def flatten(src: str, dst: str, header: bytes) -> None:
    """A plain file as `makedumpfile -F` streams one: the original's header, records, the end marker."""
    data = Path(src).read_bytes()
    out = bytearray(header)
    for offset in range(0, len(data), _FLAT_CHUNK):
        chunk = data[offset : offset + _FLAT_CHUNK]
        out += _FLAT_RECORD.pack(offset, len(chunk)) + chunk
    out += _FLAT_RECORD.pack(-1, -1)
    Path(dst).write_bytes(bytes(out))


_EXCLUDED = re.compile(rb"pfn\(([0-9a-f]+)\) is excluded")
_MAX_ROUNDS = 500


def oracle(cmd: list[str], path: str) -> tuple[bytes | None, set[int]]:
    """makedumpfile's log of `path`, or None and the pfns it said were missing."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "dmesg"
        run = subprocess.run([*cmd, "--dump-dmesg", path, str(out)], capture_output=True, check=False)
        if run.returncode == 0:
            return out.read_bytes(), set()
        return None, {int(m, 16) for m in _EXCLUDED.findall(run.stdout + run.stderr)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep-oracle", metavar="CMD", help="makedumpfile command line to verify with (one string)")
    parser.add_argument("src")
    parser.add_argument("dst")
    args = parser.parse_args()
    keep = touched_pages(args.src)
    ours = len(keep)
    with tempfile.TemporaryDirectory() as tmp:
        # A flattened stream is trimmed as the file `makedumpfile -R` makes of it, and written back
        # flattened; makedumpfile itself reads only the un-flattened file.
        flat = is_flattened(args.src)
        src, dst = (str(Path(tmp, "src.plain")), str(Path(tmp, "dst.plain"))) if flat else (args.src, args.dst)
        if flat:
            unflatten(args.src, src)
        pages = trim(src, dst, keep)
        if args.keep_oracle:
            cmd = shlex.split(args.keep_oracle)
            full, _ = oracle(cmd, src)
            if full is None:
                print(f"{args.src}: makedumpfile cannot read the original dump", file=sys.stderr)
                return 1
            for _ in range(_MAX_ROUNDS):
                log, missing = oracle(cmd, dst)
                if log is not None or not missing - keep:
                    break
                keep |= missing
                pages = trim(src, dst, keep)
            if log != full:
                print(f"{args.dst}: makedumpfile reads a different log from the trimmed dump", file=sys.stderr)
                return 1
            print(f"{args.dst}: makedumpfile --dump-dmesg identical on the original and the trimmed dump")
        if flat:
            flatten(dst, args.dst, Path(args.src).read_bytes()[:_FLAT_HEADER_SIZE])
    print(f"{args.dst}: {pages} pages ({ours} read by crashfleet), {Path(args.dst).stat().st_size} bytes")
    return 0

if __name__ == "__main__":
    sys.exit(main())
