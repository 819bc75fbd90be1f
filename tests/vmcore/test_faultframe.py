"""`rip.address` from a dump's stack: the exception frame below the printed RSP, confirmed by the Code: bytes."""

from __future__ import annotations

import dataclasses

import pytest

from analysis.signature import analyze
from analysis.vmcore import read_dump
from analysis.vmcore.faultframe import fill_rip_addresses
from tests.conftest import shared_path


@pytest.mark.parametrize(
    ("crash", "kind"), [("null", "null-deref"), ("bug", "kernel-bug"), ("warn", "warning")]
)
def test_rip_address_filled_from_the_real_dumps(crash: str, kind: str) -> None:
    """Debian 6.1 prints `RIP: 0010:func+off/size` without the address; the dump has it."""
    path = str(shared_path("vmcores", crash, "vmcore.kdump-zlib"))
    records = [r for r in analyze(read_dump(path).log) if r.kind.value == kind]
    assert records and records[0].rip is not None and records[0].rip.address is None
    [rec] = fill_rip_addresses(path, records[:1])
    assert rec.rip is not None and rec.rip.address is not None
    assert rec.rip.address >> 32 == 0xFFFFFFFF  # a kernel (module) text address
    assert rec.code is not None
    assert (rec.rip.function, rec.rip.offset) == (records[0].rip.function, records[0].rip.offset)


def test_a_frame_whose_code_bytes_differ_is_not_used() -> None:
    """The Code: bytes are the proof: with other bytes the same stack frame gives no address."""
    path = str(shared_path("vmcores", "null", "vmcore.kdump-zlib"))
    [rec] = [r for r in analyze(read_dump(path).log) if r.kind.value == "null-deref"][:1]
    assert rec.code is not None
    other = dataclasses.replace(
        rec, code=dataclasses.replace(rec.code, code_bytes=b"\x90" * len(rec.code.code_bytes))
    )
    [same] = fill_rip_addresses(path, [other])
    assert same.rip is not None and same.rip.address is None


def test_records_from_text_or_other_arches_are_left_alone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = str(shared_path("vmcores", "null", "vmcore.kdump-zlib"))
    [rec] = [r for r in analyze(read_dump(path).log) if r.kind.value == "null-deref"][:1]
    arm = dataclasses.replace(rec, arch="arm64")
    assert fill_rip_addresses(path, [arm]) == [arm]
    assert fill_rip_addresses(str(tmp_path / "missing"), [rec]) == [rec]  # no dump: nothing filled, no error
