"""Read kernel crash dumps directly: every kdump format, the kernel log and `sys` facts, no debuginfo.

    read_dump(path) -> DumpResult(log, system)   the log as `makedumpfile --dump-dmesg` prints it
    read_dump_log(path) -> bytes                  just the log (what `crashfleet dmesg` writes)
    open_dump(path) -> Dump                       lower level: pages, VMCOREINFO, notes, header

Formats (detected by content): ELF cores, kdump-compressed (zlib/LZO/snappy/zstd/raw pages),
makedumpfile's flattened stream, and gzip/xz/bzip2 around any of them. See docs/vmcore.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from analysis.vmcore.detect import looks_like_dump, open_dump
from analysis.vmcore.dump import Dump, DumpHeader, PageNotPresent
from analysis.vmcore.memory import AddressSpace
from analysis.vmcore.printk import extract_log
from analysis.vmcore.vmcoreinfo import VmcoreInfo, parse_vmcoreinfo

if TYPE_CHECKING:
    from analysis.model import SystemFacts

__all__ = [
    "AddressSpace",
    "Dump",
    "DumpHeader",
    "DumpResult",
    "PageNotPresent",
    "VmcoreInfo",
    "looks_like_dump",
    "open_dump",
    "parse_vmcoreinfo",
    "read_dump",
    "read_dump_log",
]


@dataclass(frozen=True, slots=True)
class DumpResult:
    """A dump's kernel log (makedumpfile's format) and its system facts."""

    path: str
    log: bytes
    system: SystemFacts


def read_dump_log(path: str) -> bytes:
    """The kernel log of the dump at `path`, byte-identical to `makedumpfile --dump-dmesg`."""
    dump = open_dump(path)
    try:
        return extract_log(AddressSpace(dump))
    finally:
        dump.close()


def read_dump(path: str) -> DumpResult:
    """The log and SystemFacts of the dump at `path`; DumpFormatError on anything unreadable."""
    from analysis.vmcore.sysinfo import system_facts  # the record model is not needed for `dmesg`

    dump = open_dump(path)
    try:
        mem = AddressSpace(dump)
        log = extract_log(mem)
        return DumpResult(path=path, log=log, system=system_facts(dump, mem, log))
    finally:
        dump.close()
