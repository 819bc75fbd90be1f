"""The `sys` facts that need the debug vmlinux: HZ and uptime arithmetic (pure functions), the
facts read from a synthetic kernel image, and, opt-in, from the shared dumps checked against
their serial logs."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from analysis.model import SystemFacts
from analysis.symbolize.debuginfo import DebuginfoSearch
from analysis.symbolize.elfinfo import ElfImage
from analysis.symbolize.sysfacts import (
    HZ_CHOICES,
    JIFFIES_WRAP,
    dwarf_facts,
    format_uptime,
    hz_from_log_time,
    hz_from_tick_nsec,
    last_log_timestamp,
    uptime_seconds,
    with_dwarf_facts,
)
from tests.conftest import shared_path
from tests.symbolize.test_tasks import SLIDE, Memory, _fleet, _image
from tests.symbolize.test_tasks import fake as fake  # the compiled miniature kernel, shared

LOG = b"[    0.000000] Linux version 6.1.0\n[  461.250000] Kernel panic - not syncing: test\n"


def jiffies_at(seconds: float, hz: int) -> int:
    """jiffies_64 after `seconds` of uptime: it starts at (u32)(-300 * HZ)."""
    return JIFFIES_WRAP - 300 * hz + round(seconds * hz)


@pytest.mark.parametrize("hz", HZ_CHOICES)
@pytest.mark.parametrize("seconds", [4.4, 120.0, 299.0, 300.0, 86400.0 * 40])
def test_uptime_inverts_the_jiffies_start(hz: int, seconds: float) -> None:
    up = uptime_seconds(jiffies_at(seconds, hz), hz)
    assert up == pytest.approx(seconds, abs=1 / hz)


def test_the_null_dumps_counter() -> None:
    """Literal values of the shared `null` dump (jiffies_64 read with its debug vmlinux, HZ 250,
    console panic at [4.357716]): pins the start value, which jiffies_at above shares."""
    assert uptime_seconds(0xFFFEDF5B, 250) == pytest.approx(4.428)
    assert hz_from_log_time(0xFFFEDF5B, 4.357716) == 250
    assert hz_from_tick_nsec(4_000_000) == 250


def test_uptime_refuses_a_counter_below_its_start() -> None:
    assert uptime_seconds(JIFFIES_WRAP - 300 * 250 - 1, 250) is None
    assert uptime_seconds(0, 1000) is None
    assert uptime_seconds(jiffies_at(10, 250), 0) is None


@pytest.mark.parametrize(
    ("tick_nsec", "hz"),
    [(4_000_000, 250), (3_999_000, 250), (10_000_000, 100), (3_333_333, 300), (999_848, 1000), (1_000_000, 1000),
     (2_000_000, None), (0, None), (-5, None), (1, None)],
)
def test_hz_from_tick_nsec(tick_nsec: int, hz: int | None) -> None:
    assert hz_from_tick_nsec(tick_nsec) == hz


@pytest.mark.parametrize("hz", HZ_CHOICES)
@pytest.mark.parametrize(("actual", "logged"), [(4.43, 4.36), (120.0, 119.0), (3600.0, 3599.2), (9.65, 10.0)])
def test_hz_from_the_last_log_timestamp(hz: int, actual: float, logged: float) -> None:
    assert hz_from_log_time(jiffies_at(actual, hz), logged) == hz


@pytest.mark.parametrize("logged", [300.0, 285.0, 315.0, 329.9])
def test_hz_from_log_refuses_near_the_jiffies_wrap(logged: float) -> None:
    """At t = 300 s jiffies_64 - 2**32 is 0 whatever HZ is: no ratio to take."""
    assert hz_from_log_time(jiffies_at(logged, 250), logged) is None


def test_hz_from_log_refuses_a_ratio_near_no_choice() -> None:
    """A log from another boot (or a wrong read) gives a ratio no kernel is built with."""
    assert hz_from_log_time(jiffies_at(1000.0, 250), 1000.0 * 250 / 175) is None  # ratio 175
    assert hz_from_log_time(0, 1000.0) is None


@pytest.mark.parametrize(
    ("log", "seconds"),
    [(LOG, 461.25), (b"no timestamps here\n", None), (b"", None), (b"[ 12.5] a\nplain\n", 12.5),
     (b"\xff\xfe[  1.000001] binary\x00junk", 1.000001), (b"[ 1.0] x\n" + b"y" * 200_000, None)],
)
def test_last_log_timestamp(log: bytes, seconds: float | None) -> None:
    """Only the tail is scanned: a timestamp buried before 64 KiB of text is not the last."""
    assert last_log_timestamp(log) == seconds


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(4.43, "00:00:04"), (3599.9, "00:59:59"), (86399, "23:59:59"), (86400, "1 day, 00:00:00"),
     (2 * 86400 + 3661, "2 days, 01:01:01")],
)
def test_format_uptime_like_crash(seconds: float, text: str) -> None:
    assert format_uptime(seconds) == text


def _with_clock(vmlinux: Path, memory: Memory, jiffies: int | None, tick: int | None) -> None:
    with ElfImage(str(vmlinux)) as image:
        sym = image.symbol_values({"jiffies_64", "tick_nsec"})
    if jiffies is not None:
        memory.write(sym["jiffies_64"] + SLIDE, struct.pack("<Q", jiffies))
    if tick is not None:
        memory.write(sym["tick_nsec"] + SLIDE, struct.pack("<Q", tick))


def test_facts_of_the_synthetic_kernel(fake: tuple[Path, dict[str, int]]) -> None:
    vmlinux, off = fake
    mem = _image(vmlinux, off, _fleet(vmlinux))
    _with_clock(vmlinux, mem, jiffies_at(461.5, 300), 3_333_333)
    with ElfImage(str(vmlinux)) as image:
        facts = dwarf_facts(mem, image, SLIDE, 2, LOG)  # type: ignore[arg-type]
    assert (facts.tasks, facts.load_average, facts.hz, facts.hz_source) == (6, (1.5, 0.5, 0.0), 300, "tick_nsec")
    assert facts.uptime_seconds == pytest.approx(461.5)


def test_hz_falls_back_to_the_log_when_tick_nsec_is_unusable(fake: tuple[Path, dict[str, int]]) -> None:
    vmlinux, off = fake
    mem = _image(vmlinux, off, _fleet(vmlinux))
    _with_clock(vmlinux, mem, jiffies_at(461.7, 1000), 0)  # tick_nsec zero: never initialized
    with ElfImage(str(vmlinux)) as image:
        facts = dwarf_facts(mem, image, SLIDE, 2, LOG)  # type: ignore[arg-type]
        assert (facts.hz, facts.hz_source) == (1000, "log")
        assert facts.uptime_seconds == pytest.approx(461.7)
        # Without a usable timestamp either, HZ and so the uptime stay unknown; the rest is kept.
        facts = dwarf_facts(mem, image, SLIDE, 2, b"no timestamps\n")  # type: ignore[arg-type]
    assert (facts.hz, facts.uptime_seconds, facts.tasks) == (None, None, 6)


def test_unreadable_memory_leaves_every_fact_none(fake: tuple[Path, dict[str, int]]) -> None:
    """A dump filtered of the pages needed: each fact is None, no exception."""
    vmlinux, _ = fake
    with ElfImage(str(vmlinux)) as image:
        facts = dwarf_facts(Memory(), image, SLIDE, 2, LOG)  # type: ignore[arg-type]
    assert (facts.tasks, facts.load_average, facts.uptime_seconds, facts.hz) == (None, None, None, None)


def test_broken_task_list_omits_the_count_only(fake: tuple[Path, dict[str, int]]) -> None:
    """An incomplete walk gives no TASKS (a wrong count is worse than none); uptime still comes."""
    vmlinux, off = fake
    fleet = _fleet(vmlinux)
    mem = _image(vmlinux, off, fleet)
    mem.write(fleet.leaders[1].address + off["tasks"], struct.pack("<Q", 0xFFFF999900000000))
    _with_clock(vmlinux, mem, jiffies_at(42.0, 250), 4_000_000)
    with ElfImage(str(vmlinux)) as image:
        facts = dwarf_facts(mem, image, SLIDE, 2, LOG)  # type: ignore[arg-type]
    assert facts.tasks is None and facts.load_average == (1.5, 0.5, 0.0)
    assert facts.uptime_seconds == pytest.approx(42.0)


def test_with_dwarf_facts_leaves_the_system_alone_without_a_vmlinux(tmp_path: Path) -> None:
    """No debuginfo of the build, or a dump that no longer opens: the facts come back unchanged."""
    system = SystemFacts("kdump-zlib", build_id="00" * 20, release="6.1.0-test")
    empty = DebuginfoSearch(explicit=[str(tmp_path)], debug_roots=[str(tmp_path)])
    assert with_dwarf_facts(system, str(tmp_path / "gone.vmcore"), LOG, empty) is system


def test_missing_dump_with_a_vmlinux_found_is_not_an_exception(
    fake: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    vmlinux, _ = fake
    with ElfImage(str(vmlinux)) as image:
        build_id = image.build_id
    system = SystemFacts("kdump-zlib", build_id=build_id)
    search = DebuginfoSearch(explicit=[str(vmlinux)], debug_roots=[str(tmp_path)])
    assert search.find_vmlinux(build_id, None) is not None
    assert with_dwarf_facts(system, str(tmp_path / "gone.vmcore"), LOG, search) is system


@pytest.mark.slow
@pytest.mark.parametrize("crash", ["null", "bug", "warn", "softlockup"])
def test_shared_dumps_sys_facts_with_debug_vmlinux(crash: str) -> None:
    """Against the serial console: the uptime is within a second of the last printk timestamp
    (the printk clock and jiffies drift apart under a lockup) and HZ is Debian's 250."""
    vmlinux = os.environ.get("CRASHFLEET_DEBUG_VMLINUX")
    if not vmlinux:
        pytest.skip("set CRASHFLEET_DEBUG_VMLINUX to Debian's 6.1.0-56 debug vmlinux to run this")
    from analysis.vmcore import read_dump

    path = str(shared_path("vmcores", crash, "vmcore.kdump-zlib"))
    result = read_dump(path)
    serial = shared_path("vmcores", crash, "serial.log").read_bytes()
    logged = last_log_timestamp(serial)
    assert logged is not None
    system = with_dwarf_facts(result.system, path, result.log, DebuginfoSearch(explicit=[vmlinux], debug_roots=[]))
    assert system.tasks is not None and system.tasks > 20
    assert system.load_average is not None and all(v >= 0 for v in system.load_average)
    assert system.uptime_seconds is not None and abs(system.uptime_seconds - logged) < 1.0
    from analysis.vmcore import open_dump
    from analysis.vmcore.memory import AddressSpace

    dump = open_dump(path)
    try:
        with ElfImage(vmlinux) as image:
            facts = dwarf_facts(AddressSpace(dump), image, system.kernel_offset, system.cpus, result.log)
    finally:
        dump.close()
    assert (facts.hz, facts.hz_source) == (250, "tick_nsec")
