"""The `sys` facts only a debug vmlinux unlocks: task count, load average and uptime.

crash's `sys` header shows TASKS, UPTIME and LOAD AVERAGE; none of them is in VMCOREINFO. The
task count and load average come from the DWARF-driven task walk (`analysis.symbolize.tasks`).
Uptime is `jiffies_64` turned into seconds, which needs the kernel's HZ:

* exactly-enough from `tick_nsec` (the length of one tick in ns, NTP-adjusted by < 0.1 %),
  read from the dump when the vmlinux has that symbol;
* otherwise derived from the log: jiffies start at INITIAL_JIFFIES = (u32)(-300 * HZ), so
  `jiffies_64 - 2**32 == HZ * (t - 300)` at uptime t; the last printk timestamp approximates
  t, and the ratio is rounded to the nearest HZ a kernel can be built with. Near t = 300 s the
  ratio is undefined, so the derivation refuses there.

Every step can fail on a filtered or damaged dump; then the fact stays None (logged), never an
exception: these facts decorate a report, they must not cost it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass

from analysis.errors import CrashfleetInputError
from analysis.model import SystemFacts
from analysis.symbolize.debuginfo import DebuginfoSearch
from analysis.symbolize.elfinfo import ElfImage
from analysis.symbolize.tasks import list_tasks
from analysis.vmcore.memory import AddressSpace

__all__ = [
    "HZ_CHOICES",
    "INITIAL_UPTIME_SECONDS",
    "JIFFIES_WRAP",
    "DwarfFacts",
    "dwarf_facts",
    "format_uptime",
    "hz_from_log_time",
    "hz_from_tick_nsec",
    "last_log_timestamp",
    "uptime_seconds",
    "with_dwarf_facts",
]

log = logging.getLogger(__name__)

HZ_CHOICES: tuple[int, ...] = (100, 250, 300, 1000)  # kernel/Kconfig.hz
INITIAL_UPTIME_SECONDS = 300  # jiffies wrap 5 minutes after boot, to catch wrap bugs early
JIFFIES_WRAP = 1 << 32  # INITIAL_JIFFIES = (unsigned long)(unsigned int)(-300 * HZ), on 32 and 64 bit
TICK_TOLERANCE = 0.01  # NTP moves tick_nsec by at most 500 ppm; 1 % leaves room, 100/250/300/1000 are far apart
LOG_TOLERANCE = 0.05  # 250 and 300 differ by 20 %: a ratio more than 5 % off any choice is refused
MIN_LOG_SPAN_SECONDS = 30.0  # |t - 300| below this: timestamp skew would dominate the ratio
_TIMESTAMP = re.compile(rb"\[ {0,12}(\d{1,12}\.\d{1,9})\]")
LOG_TAIL_BYTES = 64 * 1024  # the last printk timestamp is near the end; never scan a whole huge log


@dataclass(frozen=True, slots=True)
class DwarfFacts:
    """What `dwarf_facts` could read; each None when its step failed (see the log for why)."""

    tasks: int | None = None
    load_average: tuple[float, float, float] | None = None
    uptime_seconds: float | None = None
    hz: int | None = None
    hz_source: str | None = None  # "tick_nsec" or "log"


def _nearest(value: float, tolerance: float) -> int | None:
    """The HZ choice `value` is within `tolerance` (relative) of, else None."""
    best = min(HZ_CHOICES, key=lambda hz: abs(value - hz))
    return best if abs(value - best) <= tolerance * best else None


def hz_from_tick_nsec(tick_nsec: int) -> int | None:
    """HZ from the kernel's tick length in nanoseconds; None when it matches no choice."""
    if tick_nsec <= 0:
        return None
    return _nearest(1e9 / tick_nsec, TICK_TOLERANCE)


def hz_from_log_time(jiffies_64: int, seconds: float) -> int | None:
    """HZ from `jiffies_64` and an uptime estimate `seconds` (the last printk timestamp).

    None when `seconds` is within MIN_LOG_SPAN_SECONDS of 300 (undecidable) or the ratio is not
    close to any HZ choice (a wrong jiffies read or a log from another boot)."""
    span = seconds - INITIAL_UPTIME_SECONDS
    if abs(span) < MIN_LOG_SPAN_SECONDS:
        return None
    return _nearest((jiffies_64 - JIFFIES_WRAP) / span, LOG_TOLERANCE)


def uptime_seconds(jiffies_64: int, hz: int) -> float | None:
    """Seconds since boot, as crash computes them: (jiffies_64 - INITIAL_JIFFIES) / HZ.

    None when the result is negative (jiffies_64 below its start value: not a jiffies counter)."""
    if hz <= 0:
        return None
    ticks = jiffies_64 - (JIFFIES_WRAP - INITIAL_UPTIME_SECONDS * hz)
    return ticks / hz if ticks >= 0 else None


def last_log_timestamp(log_bytes: bytes) -> float | None:
    """The last printk timestamp (`[ 123.456789]`) in the tail of a kernel log, or None."""
    found = None
    for m in _TIMESTAMP.finditer(log_bytes[-LOG_TAIL_BYTES:]):
        found = m
    return float(found.group(1)) if found is not None else None


def _read_u64(mem: AddressSpace, address: int) -> int:
    return int.from_bytes(mem.read(address, 8), "little")


def dwarf_facts(
    mem: AddressSpace, vmlinux: ElfImage, kernel_offset: int | None, cpus: int | None, log_bytes: bytes
) -> DwarfFacts:
    """Tasks, load average and uptime of a dump whose debug vmlinux is `vmlinux`."""
    slide = kernel_offset or 0
    tasks: int | None = None
    load: tuple[float, float, float] | None = None
    try:
        walk = list_tasks(mem, vmlinux, kernel_offset, cpus)
    except CrashfleetInputError as exc:
        log.info("task walk failed path=%s reason=%s", exc.path, exc.reason)
    else:
        load = walk.load_average
        if walk.complete:
            tasks = len(walk.tasks)
        else:
            log.info("task count omitted, walk incomplete problem=%s", walk.problem)
    hz: int | None = None
    source: str | None = None
    uptime: float | None = None
    try:
        symbols = vmlinux.symbol_values({"jiffies_64", "tick_nsec"})
        if "jiffies_64" not in symbols:
            raise CrashfleetInputError(vmlinux.path, "no jiffies_64 symbol")
        jiffies = _read_u64(mem, symbols["jiffies_64"] + slide)
        if "tick_nsec" in symbols:
            hz = hz_from_tick_nsec(_read_u64(mem, symbols["tick_nsec"] + slide))
            source = "tick_nsec" if hz is not None else None
        if hz is None:
            seen = last_log_timestamp(log_bytes)
            hz = hz_from_log_time(jiffies, seen) if seen is not None else None
            source = "log" if hz is not None else None
        if hz is None:
            log.info("uptime omitted, HZ undecided path=%s", vmlinux.path)
        else:
            uptime = uptime_seconds(jiffies, hz)
    except CrashfleetInputError as exc:
        log.info("uptime unreadable path=%s reason=%s", exc.path, exc.reason)
    return DwarfFacts(tasks=tasks, load_average=load, uptime_seconds=uptime, hz=hz, hz_source=source)


def format_uptime(seconds: float) -> str:
    """crash's UPTIME: HH:MM:SS, with `N days, ` in front past a day."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days} day{'s' if days != 1 else ''}, {clock}" if days else clock



def with_dwarf_facts(system: SystemFacts, dump_path: str, log_bytes: bytes, search: DebuginfoSearch) -> SystemFacts:
    """`system` with tasks, load average and uptime filled when `search` finds the debug vmlinux
    of the dump's build; `system` unchanged (the reason logged) when it does not or the dump
    cannot be read again."""
    from analysis.vmcore import open_dump

    try:
        found = search.find_vmlinux(system.build_id, system.release)
        if found is None:
            log.info("no debug vmlinux for sys facts path=%s build_id=%s", dump_path, system.build_id or "?")
            return system
        dump = open_dump(dump_path)
        try:
            with ElfImage(found.path) as vmlinux:
                facts = dwarf_facts(AddressSpace(dump), vmlinux, system.kernel_offset, system.cpus, log_bytes)
        finally:
            dump.close()
    except CrashfleetInputError as exc:
        log.info("sys facts from debuginfo failed path=%s reason=%s", exc.path, exc.reason)
        return system
    return dataclasses.replace(
        system, tasks=facts.tasks, load_average=facts.load_average, uptime_seconds=facts.uptime_seconds
    )
