"""The shared real 6.1 crashes, symbolized end to end and checked against `addr2line -f -i`.

Module frames use ../shared's crashme.ko (always, when ../shared is there). Kernel frames need
Debian's 633 MB debug vmlinux, which `make test` does not fetch: set CRASHFLEET_DEBUG_VMLINUX to
its path (`apt-get download linux-image-6.1.0-56-amd64-dbg`, `dpkg -x` it outside the repo).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from analysis.model import CrashRecord, SourceLocation
from analysis.signature import analyze
from analysis.sources import open_capture
from analysis.symbolize import Symbolizer
from analysis.symbolize.debuginfo import DebuginfoSearch
from analysis.symbolize.elfinfo import ElfImage
from analysis.symbolize.enrich import SymbolizerSet, symbolize_capture, symbolize_records
from tests.conftest import shared_path
from tests.symbolize import oracles

CRASHES = ("null", "bug", "warn", "softlockup")
RELEASE = "6.1.0-56-amd64"


def _chain(source: tuple[SourceLocation, ...]) -> list[tuple[str, str, int]]:
    return [(s.function, s.file, s.line) for s in source]


def _points(record: CrashRecord) -> list[tuple[str, str | None, int, int | None, bool, tuple[SourceLocation, ...]]]:
    """(function, module, offset, size, is_return_address, source) of the RIP and every frame."""
    out = []
    if record.rip is not None and record.rip.offset is not None:
        rip = record.rip
        out.append((rip.function, rip.module, rip.offset, rip.size, False, rip.source))
    for frame in record.call_trace:
        if frame.offset is not None:
            out.append((frame.function, frame.module, frame.offset, frame.size, True, frame.source))
    return out


def _module_oracle(ko: Path, sym: Symbolizer, function: str, offset: int, size: int | None, ret: bool) -> list:
    symbol = sym.resolve_symbol(function, size)
    assert symbol is not None, function
    address = symbol.address + offset - (1 if ret else 0)
    with ElfImage(str(ko)) as image:
        where = image.section_of(address)
    assert where is not None
    section, section_offset = where
    return oracles.binutils(str(ko), [section_offset], section=section)[section_offset]


@pytest.mark.parametrize("crash", CRASHES)
def test_module_frames_match_addr2line(crash: str, tmp_path: Path) -> None:
    ko = shared_path("vmcores", "module", "crashme.ko")
    log = shared_path("vmcores", crash, "serial.log")
    records = analyze(log.read_bytes())
    assert records
    with SymbolizerSet(DebuginfoSearch(explicit=[str(ko)], debug_roots=[]), cache_dir=tmp_path) as symbolizers:
        enriched = symbolize_records(records, symbolizers)
        sym = symbolizers.get("crashme", RELEASE)
        assert sym is not None
        checked = 0
        for record in enriched:
            assert record.fingerprint == records[enriched.index(record)].fingerprint
            for function, module, offset, size, ret, source in _points(record):
                if module != "crashme":
                    assert source == ()  # no vmlinux given
                    continue
                assert _chain(source) == _module_oracle(ko, sym, function, offset, size, ret), function
                checked += 1
    assert checked >= 2


@pytest.mark.slow
def test_kernel_frames_match_addr2line_over_debug_vmlinux(tmp_path: Path) -> None:
    vmlinux = os.environ.get("CRASHFLEET_DEBUG_VMLINUX")
    if not vmlinux:
        pytest.skip("set CRASHFLEET_DEBUG_VMLINUX to Debian's 6.1.0-56 debug vmlinux to run this")
    ko = shared_path("vmcores", "module", "crashme.ko")
    search = DebuginfoSearch(explicit=[vmlinux, str(ko)], debug_roots=[])
    checked = 0
    for crash in CRASHES:
        capture = open_capture(str(shared_path("vmcores", crash, "vmcore.kdump-zlib")))
        assert capture.system is not None and capture.system.build_id
        records, listings = symbolize_capture(analyze(capture.log), capture.system, search, cache_dir=tmp_path)
        with Symbolizer.open(vmlinux, cache_dir=tmp_path) as sym:
            assert sym.build_id == capture.system.build_id
            for record in records:
                wanted: dict[int, tuple[str, tuple[SourceLocation, ...]]] = {}
                for function, module, offset, size, ret, source in _points(record):
                    if module is not None:
                        continue
                    address = sym.address_of(function, offset - (1 if ret else 0), size)
                    assert address is not None, function
                    wanted[address] = (function, source)
                expected = oracles.binutils(vmlinux, sorted(wanted))
                for address, (function, source) in wanted.items():
                    assert _chain(source) == expected[address], (function, hex(address))
                    checked += 1
        if crash == "null":
            assert listings and any("list.h: 299" in line for line in listings[0])
    assert checked >= 20


# The linker's markers around the special text sections vmlinux merges into .text.
_MARKED = ("noinstr", "entry", "cpuidle", "sched", "lock", "irqentry", "softirqentry")


@pytest.mark.slow
def test_special_section_functions_match_addr2line_over_debug_vmlinux(tmp_path: Path) -> None:
    """Functions in .init.text, the linker-marked noinstr/entry/cpuidle/sched/lock/irqentry ranges
    and .cold/.part/.isra/.constprop clones (a seeded sample, first, middle and last byte of each):
    every chain is the one eu-addr2line -i or addr2line -f -i prints (they disagree on a few inline
    chains and on DWARF 5 file 1, see docs/symbolize.md), and no address lacks a line either has."""
    vmlinux = os.environ.get("CRASHFLEET_DEBUG_VMLINUX")
    if not vmlinux:
        pytest.skip("set CRASHFLEET_DEBUG_VMLINUX to Debian's 6.1.0-56 debug vmlinux to run this")
    import random
    import re

    from analysis.symbolize.elfinfo import ElfImage

    rng = random.Random(14)
    with ElfImage(vmlinux) as image:
        marks = image.symbol_values({f"__{m}_text_{edge}" for m in _MARKED for edge in ("start", "end")})
    with Symbolizer.open(vmlinux, cache_dir=tmp_path) as sym:
        functions = [s for s in sym.index.all_symbols() if s.size > 0 and not s.name.startswith(("__pfx_", "__cfi_"))]
        classes = {".init.text": [s for s in functions if s.section == ".init.text"]}
        for m in _MARKED:
            low, high = marks[f"__{m}_text_start"], marks[f"__{m}_text_end"]
            classes[m] = [s for s in functions if low <= s.address < high]
        for clone in ("cold", "part", "isra", "constprop"):
            classes[clone] = [s for s in functions if re.search(rf"\.{clone}(?:\.\d+)?(?:\.|$)", s.name)]
        addresses: set[int] = set()
        for name, members in classes.items():
            assert members, f"no {name} functions: the markers or the names changed"
            for s in rng.sample(members, min(12, len(members))):
                addresses.update((s.address, s.address + s.size // 2, s.address + s.size - 1))
        ordered = sorted(addresses)
        ours = {a: [(x.function, x.file, x.line) for x in sym.lookup(a)] for a in ordered}
    eu = oracles.elfutils(vmlinux, ordered)
    bu = oracles.binutils(vmlinux, ordered)
    wrong = [
        hex(a) for a in ordered
        if [(f, n) for _, f, n in ours[a]] != eu.get(a, []) and ours[a] != [c for c in bu.get(a, []) if c[2]]
    ]  # fmt: skip
    assert not wrong, wrong[:10]
    lineless = [hex(a) for a in ordered if not any(n for *_, n in ours[a]) and (eu.get(a) or any(c[2] for c in bu.get(a, [])))]
    assert not lineless, lineless[:10]
