"""Reading only what is needed: the cost of extracting the log does not grow with the dump's size.

A synthetic kernel is written as a sparse multi-GiB ELF (holes everywhere but the kernel's pages);
extraction must read a few hundred KiB and stay at the same peak memory as a small dump.
No timing asserts: bytes read and peak RSS are deterministic enough to compare.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from analysis.vmcore import AddressSpace, open_dump
from analysis.vmcore.io import FileSource
from analysis.vmcore.printk import extract_log
from tests.vmcore.dumpwriter import Kernel, Record, write_sparse_elf

GIB = 1 << 30
RECORDS = [Record(i * 1_000_000, b"flat cost record %d" % i) for i in range(200)]


def _kernel() -> Kernel:
    kernel = Kernel()
    kernel.add_lockless_log(RECORDS, count_bits=8, size_bits=14, direct=True)
    return kernel


def _bytes_read(path: Path) -> tuple[bytes, int]:
    dump = open_dump(str(path))
    try:
        log = extract_log(AddressSpace(dump))
        assert isinstance(dump.source, FileSource)
        return log, dump.source.bytes_read
    finally:
        dump.close()


def test_sparse_multi_gib_elf_reads_only_the_log(tmp_path: Path) -> None:
    kernel = _kernel()
    small, big = tmp_path / "small.elf", tmp_path / "big.elf"
    write_sparse_elf(kernel, str(small), 256 << 20)
    write_sparse_elf(kernel, str(big), 6 * GIB)
    assert big.stat().st_size > 6 * GIB
    assert big.stat().st_blocks * 512 < 64 << 20  # really sparse on disk
    small_log, small_read = _bytes_read(small)
    big_log, big_read = _bytes_read(big)
    assert big_log == small_log
    assert b"flat cost record 199" in big_log
    assert big_read == small_read  # the same pages, whatever the dump's size
    assert big_read < 2 << 20


# Peak RSS of the child's own address space. Not getrusage's ru_maxrss: Linux carries that over
# from the forking parent across execve, so a child of a large pytest process would report the
# parent's peak.
_RSS = """
import sys
from analysis.vmcore import read_dump
read_dump(sys.argv[1])
with open("/proc/self/status") as status:
    print(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
"""


def test_peak_memory_does_not_grow_with_dump_size(tmp_path: Path) -> None:
    kernel = _kernel()
    small, big = tmp_path / "small.elf", tmp_path / "big.elf"
    write_sparse_elf(kernel, str(small), 256 << 20)
    write_sparse_elf(kernel, str(big), 6 * GIB)

    def peak_kib(path: Path) -> int:
        out = subprocess.run(
            [sys.executable, "-c", _RSS, str(path)], capture_output=True, check=True, timeout=60
        )
        return int(out.stdout)

    small_kib, big_kib = peak_kib(small), peak_kib(big)
    assert big_kib < small_kib + 4096  # within 4 MiB of the small dump's peak
    assert big_kib < 50 * 1024
