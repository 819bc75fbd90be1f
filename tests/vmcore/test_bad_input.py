"""Bad dumps end in one DumpFormatError naming the file and the reason: never a traceback, a hang
or a huge allocation. One case per way a dump can be broken; each builds its file in tmp_path."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from analysis.errors import DumpFormatError
from analysis.sources import open_capture
from analysis.vmcore import read_dump, read_dump_log
from tests.vmcore.dumpwriter import Kernel, Record, flatten, write_elf, write_kdump

RECORDS = [Record(i * 1_000_000, b"record %d" % i) for i in range(8)]


def lockless_kernel() -> Kernel:
    kernel = Kernel()
    kernel.add_lockless_log(RECORDS)
    return kernel


def kdump() -> bytes:
    return write_kdump(lockless_kernel())


def kdump_layout(data: bytes) -> tuple[int, int, int]:
    """(bitmap offset, bitmap length, page descriptor offset) of a kdump written by the writer."""
    block, sub_blocks, bitmap_blocks = struct.unpack_from("<iiI", data, 428)
    bitmap = (1 + sub_blocks) * block
    return bitmap, bitmap_blocks * block, bitmap + bitmap_blocks * block


def with_info(drop: tuple[str, ...] = (), add: tuple[str, ...] = ()) -> bytes:
    kernel = lockless_kernel()
    kernel.info = [line for line in kernel.info if not line.startswith(drop)] + list(add)
    return write_kdump(kernel)


def patched_prb(offset: int, value: bytes) -> bytes:
    """A dump whose printk_ringbuffer in memory lies (VMCOREINFO is fine)."""
    kernel = lockless_kernel()
    static = next(
        int(line.split("=")[1], 16) for line in kernel.info if line.startswith("SYMBOL(printk_rb_static)")
    )
    kernel.write_virt(static + offset, value)
    return write_kdump(kernel)


def corrupt_pages(codec: str) -> bytes:
    kernel = lockless_kernel()
    prb_page = next(int(line.split("=")[1], 16) for line in kernel.info if line.startswith("SYMBOL(prb)"))
    return write_kdump(kernel, codec=codec, corrupt_pfn=kernel.kernel_phys(prb_page) // 4096)


def elf_with_truncated_segment() -> bytes:
    data = write_elf(lockless_kernel())
    return data[: len(data) - 4096]


def elf_without_vmcoreinfo() -> bytes:
    return write_elf(lockless_kernel(), vmcoreinfo=b"")


def elf_not_core() -> bytes:
    data = bytearray(write_elf(lockless_kernel()))
    struct.pack_into("<H", data, 16, 2)  # ET_EXEC
    return bytes(data)


def kdump_bitmap_beyond_eof() -> bytes:
    data = bytearray(kdump())
    struct.pack_into("<I", data, 436, 1 << 30)  # bitmap_blocks: the header claims 4 TiB of bitmap
    return bytes(data)


def record_cycle() -> bytes:
    kernel = Kernel(release="4.19.0-synthetic")
    kernel.add_record_log(RECORDS, buf_len=1024)
    first = next(
        int(line.split("=")[1], 16) for line in kernel.info if line.startswith("SYMBOL(log_first_idx)")
    )
    nxt = next(int(line.split("=")[1], 16) for line in kernel.info if line.startswith("SYMBOL(log_next_idx)"))
    kernel.write_virt(first, struct.pack("<I", 16))
    kernel.write_virt(nxt, struct.pack("<I", 8))  # never reached: records are 8-aligned from 16
    return write_kdump(kernel)


# (case id, bytes of the file, fragment the reason must contain)
CASES: tuple[tuple[str, Callable[[], bytes], str], ...] = (
    ("empty", lambda: b"", "empty file"),
    ("wrong-magic", lambda: b"this is not a dump at all\n" * 10, "unknown format"),
    ("tiny", lambda: b"KD", "too short"),
    ("kdump-truncated-header", lambda: kdump()[:200], "truncated in the kdump header"),
    (
        "kdump-truncated-bitmap",
        lambda: kdump()[: kdump_layout(kdump())[0] + 100],
        "truncated in the page bitmap",
    ),
    (
        "kdump-truncated-descriptors",
        lambda: kdump()[: kdump_layout(kdump())[2] + 30],
        "truncated in the page",
    ),
    ("kdump-truncated-page-data", lambda: kdump()[:-300], "truncated in the page data"),
    ("kdump-header-claims-more", kdump_bitmap_beyond_eof, "header says bitmaps end at"),
    ("kdump-corrupt-zlib-page", lambda: corrupt_pages("zlib"), "corrupt zlib page"),
    ("kdump-corrupt-lzo-page", lambda: corrupt_pages("lzo"), "corrupt lzo page"),
    ("kdump-no-vmcoreinfo", lambda: write_kdump(lockless_kernel(), vmcoreinfo=b""), "no VMCOREINFO"),
    ("kdump-old-header-version", lambda: write_kdump(lockless_kernel(), version=2), "carries no VMCOREINFO"),
    ("diskdump", lambda: b"DISKDUMP" + bytes(4096), "diskdump"),
    ("elf-truncated-header", lambda: write_elf(lockless_kernel())[:40], "truncated ELF header"),
    ("elf-truncated-segment", elf_with_truncated_segment, "still being written"),
    ("elf-no-vmcoreinfo", elf_without_vmcoreinfo, "no VMCOREINFO note"),
    ("elf-not-a-core", elf_not_core, "not a core dump"),
    ("vmcoreinfo-no-log-symbols", lambda: with_info(drop=("SYMBOL(prb)",)), "no kernel log symbols"),
    ("vmcoreinfo-missing-offset", lambda: with_info(drop=("OFFSET(prb_desc.state_var)",)), "lacks OFFSET"),
    (
        "vmcoreinfo-absurd-size",
        lambda: with_info(drop=("SIZE(printk_info)",), add=("SIZE(printk_info)=99999999",)),
        "absurd",
    ),
    (
        "vmcoreinfo-wild-symbol",
        lambda: with_info(drop=("SYMBOL(prb)",), add=("SYMBOL(prb)=ffffffffa0000000",)),
        "not in the dump",
    ),
    (
        "vmcoreinfo-unmapped-symbol",
        lambda: with_info(drop=("SYMBOL(prb)",), add=("SYMBOL(prb)=ffffc90000000000",)),
        "not mapped",
    ),
    ("vmcoreinfo-bad-pagesize", lambda: with_info(drop=("PAGESIZE",), add=("PAGESIZE=8192",)), "PAGESIZE"),
    ("prb-absurd-count-bits", lambda: patched_prb(0, struct.pack("<I", 40)), "absurd"),
    ("prb-absurd-text-ring", lambda: patched_prb(48, struct.pack("<I", 62)), "absurd"),
    ("records-cycle", record_cycle, "printk record"),
    ("flattened-no-end-marker", lambda: flatten(kdump())[:-16], "no end marker"),
    ("flattened-truncated-record", lambda: flatten(kdump())[:-1000], "truncated flattened stream"),
    (
        "flattened-corrupt-record",
        lambda: flatten(kdump())[:4096] + struct.pack(">qq", -5, 10),
        "corrupt flattened",
    ),
    (
        "gzip-truncated",
        lambda: gzip.compress(kdump())[: len(gzip.compress(kdump())) // 2],
        "truncated gzip stream",
    ),
    ("gzip-corrupt", lambda: gzip.compress(kdump())[:100] + bytes(5000), "corrupt gzip stream"),
)


@pytest.mark.parametrize(("case", "make", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_dump_is_a_typed_error(
    case: str, make: Callable[[], bytes], fragment: str, tmp_path: Path
) -> None:
    path = tmp_path / "vmcore"
    path.write_bytes(make())
    with pytest.raises(DumpFormatError) as info:
        read_dump(str(path))
    assert info.value.path == str(path)
    assert fragment in info.value.reason, info.value.reason


def test_five_gib_of_zeros_fails_fast(tmp_path: Path) -> None:
    """A preallocated, never-written dump: rejected from its first bytes (sparse file, nothing read)."""
    path = tmp_path / "vmcore"
    with open(path, "wb") as f:
        f.truncate(5 << 30)
    with pytest.raises(DumpFormatError, match="starts with zero bytes"):
        read_dump_log(str(path))
    with pytest.raises(DumpFormatError, match="starts with zero bytes"):
        open_capture(str(path))  # not mistaken for a (binary) text log either


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DumpFormatError, match="no such file"):
        read_dump_log(str(tmp_path / "absent"))
    with pytest.raises(DumpFormatError, match="is a directory"):
        read_dump_log(str(tmp_path))


def test_rhel_incomplete_name(tmp_path: Path) -> None:
    path = tmp_path / "vmcore-incomplete"
    path.write_bytes(kdump())
    with pytest.raises(DumpFormatError, match="still being written"):
        open_capture(str(path))


def test_cli_reports_one_line_and_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "vmcore"
    path.write_bytes(kdump()[:200])
    proc = subprocess.run(
        [sys.executable, "-m", "crashfleet", "dmesg", str(path)], capture_output=True, timeout=60
    )
    assert proc.returncode == 1
    assert proc.stdout == b""
    lines = proc.stderr.decode().splitlines()
    assert lines == [f"crashfleet dmesg: {path}: truncated in the kdump header"]


def test_kdump_flagged_incomplete(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """makedumpfile sets DUMP_DH_COMPRESSED_INCOMPLETE when the disk filled up: read what is there,
    warn, and fail by name only when a needed page is missing."""
    path = tmp_path / "vmcore"
    data = write_kdump(lockless_kernel(), incomplete=True)
    path.write_bytes(data)
    with caplog.at_level("WARNING"):
        assert b"record 7" in read_dump_log(str(path))
    assert any(f"path={path}" in r.getMessage() for r in caplog.records)
    path.write_bytes(data[:-300])
    with pytest.raises(DumpFormatError, match="still being written"):
        read_dump_log(str(path))
