"""Adding source lines to crash records: `rip.source` and each `call_trace[i].source`.

Symbolization only enriches: records come back as copies with `source` filled where debuginfo of
the right build was found; the kind, reason, title, frames and fingerprint are left exactly as
they were, so clustering never depends on which host had debuginfo installed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

from analysis.errors import DebuginfoError
from analysis.model import CallFrame, CrashRecord, Rip, SourceLocation, SystemFacts
from analysis.symbolize.debuginfo import DebuginfoSearch, module_key
from analysis.symbolize.index import SymbolIndex
from analysis.symbolize.lookup import Symbolizer

__all__ = ["VMLINUX", "SymbolizerSet", "faulting_function_listing", "symbolize_capture", "symbolize_records"]

log = logging.getLogger(__name__)

VMLINUX = ""  # the key of the kernel image itself in a SymbolizerSet (frames without [module])


class SymbolizerSet:
    """Symbolizers per module (VMLINUX for the kernel image), found and opened on first use.

    `build_id` is the kernel's (from the dump's VMCOREINFO), used to find and to verify the
    vmlinux; `fixed` maps names to already-open symbolizers (tests, the collector's store).
    """

    def __init__(
        self,
        search: DebuginfoSearch | None = None,
        cache_dir: Path | None = None,
        build_id: str | None = None,
        fixed: Mapping[str, Symbolizer] | None = None,
    ) -> None:
        self.search = search
        self.cache_dir = cache_dir
        self.build_id = build_id
        self._open: dict[tuple[str, str | None], Symbolizer | None] = {}
        self._owned: list[Symbolizer] = []  # opened here, closed here; `fixed` ones stay the caller's
        for name, symbolizer in (fixed or {}).items():
            self._open[(module_key(name), None)] = symbolizer

    def get(self, module: str | None, release: str | None) -> Symbolizer | None:
        """The symbolizer for `module` (None/"" = vmlinux) of `release`, or None when no debuginfo."""
        name = module_key(module or VMLINUX)
        for key in ((name, None), (name, release)):
            if key in self._open:
                return self._open[key]
        symbolizer: Symbolizer | None = None
        if name == VMLINUX and self.build_id is not None:
            # An index of this very build may already be cached (or shipped without its ELF).
            cached = SymbolIndex.find(self.build_id, self.cache_dir)
            if cached is not None:
                symbolizer = Symbolizer(cached, name="vmlinux")
                self._owned.append(symbolizer)
                log.info("symbol index in use what=vmlinux path=%s", cached.db_path)
        if symbolizer is None and self.search is not None:
            found = (
                self.search.find_vmlinux(self.build_id, release)
                if name == VMLINUX
                else self.search.find_module(name, release)
            )
            if found is not None:
                try:
                    symbolizer = Symbolizer.open(found.path, cache_dir=self.cache_dir, name=name or "vmlinux")
                    self._owned.append(symbolizer)
                    log.info("debuginfo in use what=%s path=%s origin=%s", name or "vmlinux", found.path, found.origin)
                except DebuginfoError as exc:
                    log.warning("debuginfo unusable path=%s reason=%s", exc.path, exc.reason)
        self._open[(name, release)] = symbolizer
        return symbolizer

    def close(self) -> None:
        for symbolizer in self._owned:
            symbolizer.close()
        self._owned.clear()
        self._open.clear()

    def __enter__(self) -> SymbolizerSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _source(
    at: Rip | CallFrame, symbolizer: Symbolizer, kaslr_offset: int | None, is_return_address: bool
) -> tuple[SourceLocation, ...]:
    """Source of the RIP (the faulting instruction) or a call-trace frame (a return address)."""
    if at.offset is not None:
        return tuple(symbolizer.symbolize_frame(at.function, at.offset, is_return_address, at.size))
    if at.address is not None and kaslr_offset is not None and at.module is None:
        return tuple(symbolizer.symbolize_address(at.address, kaslr_offset, is_return_address))
    return ()


def symbolize_records(
    records: Iterable[CrashRecord],
    symbolizers: SymbolizerSet,
    kaslr_offset: int | None = None,
) -> list[CrashRecord]:
    """Copies of `records` with `source` on the RIP and on every call-trace frame that debuginfo
    covers; everything else (the fingerprint included) untouched. Lookups that fail leave the
    kernel's symbol+offset as the only answer, and are logged, never raised."""
    out: list[CrashRecord] = []
    for record in records:
        release = record.kernel_release
        rip = record.rip
        try:
            if rip is not None:
                symbolizer = symbolizers.get(rip.module, release)
                if symbolizer is not None:
                    # Debuginfo's answer wins; a `file:line` the log already printed stays otherwise.
                    rip = dataclasses.replace(rip, source=_source(rip, symbolizer, kaslr_offset, False) or rip.source)
            frames: list[CallFrame] = []
            for frame in record.call_trace:
                symbolizer = symbolizers.get(frame.module, release)
                if symbolizer is not None:
                    found = _source(frame, symbolizer, kaslr_offset, True)
                    frame = dataclasses.replace(frame, source=found or frame.source)
                frames.append(frame)
        except DebuginfoError as exc:
            log.warning("symbolization failed title=%r path=%s reason=%s", record.title, exc.path, exc.reason)
            out.append(record)
            continue
        out.append(dataclasses.replace(record, rip=rip, call_trace=tuple(frames)))
    return out


def symbolize_capture(
    records: Iterable[CrashRecord],
    system: SystemFacts | None,
    search: DebuginfoSearch,
    cache_dir: Path | None = None,
) -> tuple[list[CrashRecord], dict[int, list[str]]]:
    """Symbolize one capture's records with debuginfo found by `search`: the vmlinux by the dump's
    BUILD-ID (else each record's release), KASLR from its VMCOREINFO. Also returns, per record
    index, the `dis -rl` view of its faulting function where the code is at hand."""
    build_id = system.build_id if system is not None else None
    kaslr = system.kernel_offset if system is not None else None
    listings: dict[int, list[str]] = {}
    with SymbolizerSet(search, cache_dir=cache_dir, build_id=build_id) as symbolizers:
        out = symbolize_records(records, symbolizers, kaslr_offset=kaslr)
        for number, record in enumerate(out):
            lines = faulting_function_listing(record, symbolizers)
            if lines:
                listings[number] = lines
    return out, listings


def faulting_function_listing(record: CrashRecord, symbolizers: SymbolizerSet) -> list[str]:
    """crash's `dis -rl` of the RIP's function up to the faulting instruction; [] when the RIP has
    no function+offset or no debuginfo (the reason is logged)."""
    from analysis.symbolize.disasm import disassemble_to, render_dis_rl

    rip = record.rip
    if rip is None or rip.offset is None or not rip.source:
        return []
    symbolizer = symbolizers.get(rip.module, record.kernel_release)
    if symbolizer is None:
        return []
    try:
        return render_dis_rl(disassemble_to(symbolizer, rip.function, rip.offset, rip.size), rip.function)
    except DebuginfoError as exc:
        log.info("no disassembly of the faulting function path=%s reason=%s", exc.path, exc.reason)
        return []
