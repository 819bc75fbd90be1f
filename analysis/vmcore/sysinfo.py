"""`sys` facts of a dump, like crash's header, from the dump itself and its log (no debuginfo).

Each fact comes from the most direct source available: the kernel's `init_uts_ns` in memory,
then the kdump header's utsname copy, then the log's "Linux version" banner, then VMCOREINFO.
"""

from __future__ import annotations

import re

from analysis.errors import DumpFormatError
from analysis.linear import compile_bytes
from analysis.model import SystemFacts
from analysis.vmcore.dump import Dump
from analysis.vmcore.elf import ElfDump
from analysis.vmcore.memory import START_KERNEL_MAP, AddressSpace

__all__ = ["LogFacts", "log_facts", "read_utsname", "system_facts"]

_UTS_FIELD = 65
_UTS_FIELDS = ("sysname", "nodename", "release", "version", "machine", "domainname")
_UTS_NAME_OFFSET_BEFORE_5_11 = (
    4  # `struct kref` came first in uts_namespace until VMCOREINFO exported the offset
)

# RE2: they scan the whole log, and `.*?` pairs backtrack quadratically in `re` on a long line.
_BANNER = compile_bytes(rb"(?m)Linux version (\S+) \(.*?\) (#\d+.*?)\s*$")
_BANNER_LOOSE = compile_bytes(rb"(?m)Linux version (\S+).*?(#\d+[^\n]*)$")
_PANIC = re.compile(rb"(?<!end )Kernel panic - not syncing: ?([^\n]*)")
_CPU_LINE = re.compile(rb"CPU: (\d+) PID: (\d+) Comm: (\S{1,20})")


class LogFacts:
    """What the kernel log says about the system and the panic."""

    __slots__ = ("panic_comm", "panic_cpu", "panic_message", "panic_pid", "release", "version")

    def __init__(self) -> None:
        self.release: str | None = None
        self.version: str | None = None
        self.panic_message: str | None = None
        self.panic_cpu: int | None = None
        self.panic_pid: int | None = None
        self.panic_comm: str | None = None


def log_facts(log: bytes) -> LogFacts:
    """Release/version from the boot banner; the panic message and the task that panicked.

    The first panic line counts: panic() ends with "---[ end Kernel panic - not syncing: ... ]---",
    and a second panic while panicking repeats the line.
    """
    facts = LogFacts()
    banner = _BANNER.search(log) or _BANNER_LOOSE.search(log)
    if banner is not None:
        facts.release = banner.group(1).decode("utf-8", "replace")
        facts.version = banner.group(2).decode("utf-8", "replace").strip()
    first = _PANIC.search(log)
    if first is not None:
        facts.panic_message = first.group(1).decode("utf-8", "replace").strip() or None
        # A bare panic() dumps its stack on the very next line; after an oops or warning the
        # report before the panic line names the task (later CPU lines are other CPUs' backtraces).
        next_end = log.find(b"\n", first.end() + 1)
        cpu = _CPU_LINE.search(log, first.end(), next_end if next_end >= 0 else len(log))
        if cpu is None:
            before = list(_CPU_LINE.finditer(log, 0, first.start()))
            cpu = before[-1] if before else None
        if cpu is not None:
            facts.panic_cpu = int(cpu.group(1))
            facts.panic_pid = int(cpu.group(2))
            facts.panic_comm = cpu.group(3).decode("utf-8", "replace")
    return facts


def read_utsname(mem: AddressSpace) -> dict[str, str] | None:
    """`init_uts_ns.name` from memory, when VMCOREINFO locates it and the page was dumped."""
    info = mem.dump.vmcoreinfo
    base = info.symbol("init_uts_ns")
    if base is None:
        return None
    offset = info.offset("uts_namespace.name")
    if offset is None or not 0 <= offset < 4096:
        offset = _UTS_NAME_OFFSET_BEFORE_5_11
    try:
        raw = mem.read(base + offset, _UTS_FIELD * len(_UTS_FIELDS))
    except DumpFormatError:
        return None
    fields = {}
    for i, name in enumerate(_UTS_FIELDS):
        value = raw[i * _UTS_FIELD : (i + 1) * _UTS_FIELD].split(b"\x00", 1)[0]
        fields[name] = value.decode("utf-8", "replace")
    if fields["sysname"] != "Linux":
        return None
    return fields


def _memory_bytes(dump: Dump) -> int | None:
    if isinstance(dump, ElfDump):
        # /proc/vmcore maps the kernel image a second time; count RAM once.
        return sum(seg.memsz for seg in dump.loads if seg.vaddr < START_KERNEL_MAP) or None
    if dump.header.max_pfn:
        # max_mapnr counts pfns from 0; arm64 RAM starts at PHYS_OFFSET (1 GiB under QEMU's virt
        # machine), which is address space, not memory.
        start = dump.vmcoreinfo.number("PHYS_OFFSET") if dump.header.machine == "aarch64" else None
        total = dump.header.max_pfn * dump.page_size - (start or 0)
        return total if total > 0 else None
    return None


def system_facts(dump: Dump, mem: AddressSpace, log: bytes) -> SystemFacts:
    """Combine header, VMCOREINFO, memory and log into SystemFacts."""
    info = dump.vmcoreinfo
    header = dump.header
    uts = read_utsname(mem) or {}
    from_log = log_facts(log)
    prstatus = dump.prstatus()
    return SystemFacts(
        format=dump.format,
        release=uts.get("release") or header.release or from_log.release or info.osrelease,
        version=uts.get("version") or header.version or from_log.version,
        nodename=uts.get("nodename") or header.nodename,
        machine=uts.get("machine") or header.machine,
        cpus=header.nr_cpus or (len(prstatus) or None),
        memory_bytes=_memory_bytes(dump),
        crash_time=info.crash_time,
        build_id=info.build_id,
        page_size=dump.page_size,
        kernel_offset=info.kernel_offset,
        panic_message=from_log.panic_message,
        panic_cpu=from_log.panic_cpu,
        panic_pid=from_log.panic_pid,
        panic_comm=from_log.panic_comm,
    )
