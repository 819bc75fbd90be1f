"""Enriching crash records with source lines, and the `dis -rl` view, on the real crashme module."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from analysis.errors import DebuginfoError
from analysis.model import CallFrame, CrashKind, CrashRecord, Fingerprint, Rip, SourceLocation, StackContext
from analysis.symbolize import Symbolizer
from analysis.symbolize.debuginfo import DebuginfoSearch
from analysis.symbolize.disasm import disassemble_to, render_dis_rl
from analysis.symbolize.enrich import SymbolizerSet, symbolize_records
from tests.conftest import shared_path

RELEASE = "6.1.0-56-amd64"
RIP_FUNCTION = "crashme_napi_pending.constprop.0.isra.0"


def _record() -> CrashRecord:
    """The shared `null` crash as the analyzer records it (serial.log lines 371-395)."""
    return CrashRecord(
        kind=CrashKind.NULL_DEREF,
        reason="BUG: kernel NULL pointer dereference, address: 0000000000000060",
        normalized_reason="BUG: kernel NULL pointer dereference",
        title="BUG: unable to handle kernel NULL pointer dereference in crashme_napi_pending",
        kernel_release=RELEASE,
        rip=Rip(RIP_FUNCTION, 0x5, 0x20, "crashme"),
        call_trace=(
            CallFrame("crashme_null", 0x34, 0x60, "crashme", context=StackContext.TASK),
            CallFrame("crashme_write", 0x22D, 0x2F6, "crashme", context=StackContext.TASK),
            CallFrame("proc_reg_write", 0x56, 0xA0, None, context=StackContext.TASK),
            CallFrame("filp_close", 0x5B, 0x70, None, reliable=False, context=StackContext.TASK),
        ),
        fingerprint=Fingerprint("ab" * 32, "fp-1", "null-deref", "BUG: kernel NULL pointer dereference",
                                ("crashme_napi_pending", "crashme_null")),
    )


@pytest.fixture
def module_set(tmp_path: Path) -> SymbolizerSet:
    ko = shared_path("vmcores", "module", "crashme.ko")
    return SymbolizerSet(DebuginfoSearch(explicit=[str(ko.parent)], debug_roots=[]), cache_dir=tmp_path)


def test_rip_and_module_frames_gain_source_fingerprint_untouched(module_set: SymbolizerSet) -> None:
    record = _record()
    with module_set:
        (out,) = symbolize_records([record], module_set)
    assert out.rip is not None
    assert [(s.function, s.line) for s in out.rip.source] == [("list_empty", 299), ("crashme_napi_pending", 46)]
    assert out.rip.source[0].file.endswith("include/linux/list.h")
    assert out.rip.source[1].file.endswith("crashme.c")
    assert [(s.function, s.line) for s in out.call_trace[0].source] == [("crashme_null", 56)]
    assert [(s.function, s.line) for s in out.call_trace[1].source] == [("crashme_write", 239)]
    # No debug vmlinux given: kernel frames keep symbol+offset only.
    assert out.call_trace[2].source == () and out.call_trace[3].source == ()
    # Only `source` changed.
    assert out.fingerprint == record.fingerprint and out.title == record.title
    assert dataclasses.replace(out.rip, source=()) == record.rip
    assert [dataclasses.replace(f, source=()) for f in out.call_trace] == list(record.call_trace)
    assert record.rip is not None and record.rip.source == ()  # the input is not mutated


def test_module_of_another_release_is_not_used(module_set: SymbolizerSet, caplog: pytest.LogCaptureFixture) -> None:
    record = dataclasses.replace(_record(), kernel_release="5.10.0-20-amd64")
    with module_set:
        (out,) = symbolize_records([record], module_set)
    assert out.rip is not None and out.rip.source == ()
    assert "release mismatch" in caplog.text


def test_printed_size_that_does_not_fit_is_refused(module_set: SymbolizerSet) -> None:
    """A symbol whose printed size cannot be this build's is another build: no source lines."""
    record = _record()
    assert record.rip is not None
    record = dataclasses.replace(record, rip=dataclasses.replace(record.rip, size=0x400))
    with module_set:
        (out,) = symbolize_records([record], module_set)
    assert out.rip is not None and out.rip.source == ()


def test_fixed_symbolizers_and_raw_vmlinux_addresses(tmp_path: Path) -> None:
    ko = shared_path("vmcores", "module", "crashme.ko")
    with Symbolizer.open(str(ko), cache_dir=tmp_path) as sym:
        symbol = sym.resolve_symbol("crashme_null", 0x60)
        assert symbol is not None
        slide = 0x3C000000
        record = dataclasses.replace(
            _record(), rip=None,
            call_trace=(CallFrame("", None, None, None, address=symbol.address + 0x34 + slide),),
        )
        (out,) = symbolize_records([record], SymbolizerSet(fixed={"": sym}), kaslr_offset=slide)
        assert out.call_trace[0].source == (SourceLocation("crashme_null", sym.lookup(symbol.address + 0x33)[0].file, 56),)


def test_dis_rl_view_of_the_faulting_function(tmp_path: Path) -> None:
    ko = shared_path("vmcores", "module", "crashme.ko")
    with Symbolizer.open(str(ko), cache_dir=tmp_path) as sym:
        lines = disassemble_to(sym, RIP_FUNCTION, 0x5, 0x20)
        text = render_dis_rl(lines, RIP_FUNCTION)
        with pytest.raises(DebuginfoError, match="no unambiguous symbol"):
            disassemble_to(sym, "no_such_function", 0)
    assert [(line.offset, line.faulting) for line in lines] == [(0, False), (5, True)]
    assert lines[-1].text == "mov rax, qword ptr [rdi + 0x60]"  # the `<48> 8b 47 60` of the Code: line
    assert text[-2].endswith("include/linux/list.h: 299")
    assert text[-1].endswith("<-- faulting instruction")
    assert text[0].endswith("crashme.c: 44")
