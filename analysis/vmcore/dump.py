"""What every dump format provides: physical pages, VMCOREINFO, notes and header facts.

Format readers (`elf`, `kdump`) subclass `Dump` and implement `_read_page`; address
translation and log extraction only ever call `read_phys`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from analysis.errors import DumpFormatError
from analysis.vmcore.io import Source
from analysis.vmcore.prstatus import NT_PRSTATUS, Note, PrStatus, parse_prstatus
from analysis.vmcore.vmcoreinfo import VmcoreInfo

__all__ = ["MAX_READ", "Dump", "DumpHeader", "PageNotPresent"]

MAX_READ = 256 * 1024 * 1024  # no single structure the log needs is larger than this
_PAGE_CACHE = 512


class PageNotPresent(DumpFormatError):
    """A physical page the reader needs was filtered out of the dump or never written."""


@dataclass(frozen=True, slots=True)
class DumpHeader:
    """Facts a dump's own header records (the kdump header's utsname, time, CPUs; ELF's machine)."""

    sysname: str | None = None
    nodename: str | None = None
    release: str | None = None
    version: str | None = None
    machine: str | None = None
    timestamp: int | None = None
    nr_cpus: int | None = None
    phys_base: int | None = None  # the sub-header's phys_base (QEMU's can be wrong: trust VMCOREINFO)
    max_pfn: int | None = None
    incomplete: bool = False
    extra: dict[str, int] = field(default_factory=dict)


class Dump:
    """Base of the format readers: page cache, bounded physical reads, note decoding."""

    format: str = "unknown"

    def __init__(
        self, source: Source, vmcoreinfo: VmcoreInfo, notes: list[Note], header: DumpHeader, page_size: int
    ) -> None:
        self.source = source
        self.path = source.name
        self.vmcoreinfo = vmcoreinfo
        self.notes = notes
        self.header = header
        self.page_size = page_size
        self._pages: OrderedDict[int, bytes] = OrderedDict()

    def _read_page(self, pfn: int) -> bytes | None:
        """The page's bytes (exactly page_size), or None when the dump does not hold it."""
        raise NotImplementedError

    def _page(self, pfn: int) -> bytes | None:
        page = self._pages.get(pfn)
        if page is not None:
            self._pages.move_to_end(pfn)
            return page
        page = self._read_page(pfn)
        if page is not None:
            self._pages[pfn] = page
            if len(self._pages) > _PAGE_CACHE:
                self._pages.popitem(last=False)
        return page

    def read_phys(self, paddr: int, length: int) -> bytes:
        """`length` bytes at physical address `paddr`; PageNotPresent names the missing page."""
        if length < 0 or length > MAX_READ:
            raise DumpFormatError(self.path, f"refusing a {length}-byte read (VMCOREINFO lies about a size)")
        if paddr < 0:
            raise DumpFormatError(self.path, f"negative physical address {paddr:#x}")
        out: list[bytes] = []
        pos = paddr
        end = paddr + length
        ps = self.page_size
        while pos < end:
            pfn, within = divmod(pos, ps)
            page = self._page(pfn)
            if page is None:
                raise PageNotPresent(self.path, f"physical page {pos - within:#x} is not in the dump")
            take = min(ps - within, end - pos)
            out.append(page[within : within + take])
            pos += take
        return b"".join(out)

    def prstatus(self) -> list[PrStatus]:
        """NT_PRSTATUS per CPU, in note order (the kernel writes them by CPU number)."""
        machine = self.header.machine
        found: list[PrStatus] = []
        for note in self.notes:
            if note.type == NT_PRSTATUS and note.name == b"CORE":
                status = parse_prstatus(note.desc, machine)
                if status is not None:
                    found.append(status)
        return found

    def close(self) -> None:
        self.source.close()
        self._pages.clear()
