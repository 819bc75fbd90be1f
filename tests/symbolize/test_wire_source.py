"""Source lines travel to the collector: the wire format and the stored JSON keep them, and the
fingerprint computed from a symbolized record is the one computed without debuginfo."""

from __future__ import annotations

import dataclasses

from analysis.fingerprint import compute
from analysis.model import CallFrame, CrashKind, CrashRecord, Rip, SourceLocation
from wire import convert

LIST_EMPTY = SourceLocation("list_empty", "/usr/src/linux-headers-6.1.0-56-common/include/linux/list.h", 299)
CALLER = SourceLocation("crashme_napi_pending", "/usr/src/crashme-1.0/crashme.c", 46)


def _record(with_source: bool) -> CrashRecord:
    rip_source = (LIST_EMPTY, CALLER) if with_source else ()
    frame_source = (SourceLocation("crashme_null", "/usr/src/crashme-1.0/crashme.c", 56),) if with_source else ()
    return CrashRecord(
        kind=CrashKind.NULL_DEREF,
        reason="BUG: kernel NULL pointer dereference, address: 0000000000000060",
        normalized_reason="BUG: kernel NULL pointer dereference",
        title="BUG: unable to handle kernel NULL pointer dereference in crashme_napi_pending",
        rip=Rip("crashme_napi_pending.constprop.0.isra.0", 5, 0x20, "crashme", source=rip_source),
        call_trace=(CallFrame("crashme_null", 0x34, 0x60, "crashme", source=frame_source),
                    CallFrame("vfs_write", 0xC7, 0x3F0)),
    )


def test_proto_round_trip_keeps_source() -> None:
    record = _record(with_source=True)
    back = convert.record_from_proto(convert.record_to_proto(record))
    assert back.rip == record.rip
    assert back.call_trace == record.call_trace


def test_stored_json_round_trip_keeps_source() -> None:
    record = _record(with_source=True)
    back = convert.signature_from_json(convert.signature_to_json(record))
    assert back.rip is not None and back.rip.source == (LIST_EMPTY, CALLER)
    assert back.call_trace[0].source == record.call_trace[0].source
    assert back.call_trace[1].source == ()


def test_fingerprint_ignores_source() -> None:
    plain, symbolized = _record(with_source=False), _record(with_source=True)
    assert compute(plain) == compute(symbolized)
    assert dataclasses.replace(symbolized, rip=plain.rip, call_trace=plain.call_trace) == plain
