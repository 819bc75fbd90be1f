"""wire.convert: every CrashRecord/SystemFacts field survives the trip through protobuf."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from analysis.model import CallFrame, CodeDecode, CrashKind, CrashRecord, Rip, SystemFacts
from analysis.userfaults import MAX_PROGRAMS, OTHER_PROGRAMS
from collector.store import HostRecord
from tests.collector.records import null_deref
from wire import convert
from wire.model import ClusterSummary, CrashSummary, HostSummary, QueryFilter
from wire.v1 import crash_pb2

FULL_SYSTEM = SystemFacts(
    format="kdump-zstd", release="6.1.0-26-amd64", version="#1 SMP PREEMPT_DYNAMIC Debian", nodename="web-1",
    machine="x86_64", cpus=4, memory_bytes=8 << 30, crash_time=1_764_000_000, build_id="ab" * 20,
    page_size=4096, kernel_offset=0x1E000000, panic_message="Fatal exception", panic_cpu=1, panic_pid=4242,
    panic_comm="bash",
)  # fmt: skip


def test_record_round_trip_is_lossless() -> None:
    record = null_deref()
    back = convert.record_from_proto(convert.record_to_proto(record), excerpt=record.excerpt)
    assert back == record


def test_every_record_field_is_filled_by_the_fixture() -> None:
    """Guards the round-trip test: a field left at its default would round-trip trivially."""
    record = null_deref()
    defaults = CrashRecord(kind=CrashKind.UNKNOWN, reason="", normalized_reason="", title="")
    same = [f.name for f in dataclasses.fields(CrashRecord)
            if getattr(record, f.name) == getattr(defaults, f.name) and f.name not in ("arch", "corrupted")]  # fmt: skip
    assert same == ["corrupted_reason", "corrupt_fields"]  # the latter: test_values_the_wire_cannot_carry...


@pytest.mark.parametrize("value", [null_deref().rip, null_deref().call_trace[0], null_deref().code, FULL_SYSTEM])
def test_every_nested_field_is_filled_by_the_fixtures(value: object) -> None:
    """A field added to a nested dataclass shows up here until the fixture (and the wire) carry it."""
    unset = [f.name for f in dataclasses.fields(value) if getattr(value, f.name) is None]  # type: ignore[arg-type]
    allowed = {"index_register", "error"} if isinstance(value, CodeDecode) else set()
    if isinstance(value, SystemFacts):
        allowed = {"tasks", "load_average", "uptime_seconds"}  # `inspect`-only, from a debug vmlinux: not shipped
    assert set(unset) <= allowed, unset


def test_code_without_marker_round_trips() -> None:
    record = dataclasses.replace(null_deref(), code=CodeDecode("x86_64", b"\x90", -1, None, error="no marker"))
    assert convert.record_from_proto(convert.record_to_proto(record), excerpt=record.excerpt) == record


def test_minimal_record_keeps_nones() -> None:
    record = CrashRecord(kind=CrashKind.PANIC, reason="Kernel panic - not syncing: x", normalized_reason="x", title="x")
    assert convert.record_from_proto(convert.record_to_proto(record)) == record


def test_signature_json_round_trip() -> None:
    record = null_deref()
    back = convert.signature_from_json(convert.signature_to_json(record))
    assert back == dataclasses.replace(record, excerpt="")


def test_system_round_trip() -> None:
    assert convert.system_from_proto(convert.system_to_proto(FULL_SYSTEM)) == FULL_SYSTEM
    assert convert.system_from_proto(convert.system_to_proto(SystemFacts("elf"))) == SystemFacts("elf")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"fault_address": -1}, "fault_address"),
        ({"pid": 1 << 32}, "pid"),
        ({"rip": Rip("f", address=1 << 64)}, "rip.address"),
        ({"registers": {"rax": -5, "rbx": 7}}, "registers.rax"),
        ({"call_trace": (CallFrame("f", offset=16**8000),)}, "call_trace[0].offset"),
        ({"first_line": 1 << 40}, "first_line"),
    ],
)
def test_values_the_wire_cannot_carry_are_left_out_and_named(change: dict[str, object], field: str) -> None:
    """One bad number never costs a record its way to the collector: it is dropped and named."""
    record = dataclasses.replace(null_deref(), **change)  # type: ignore[arg-type]
    back = convert.record_from_proto(convert.record_to_proto(record))
    assert back.corrupt_fields == (field,)
    assert (back.title, back.kind, back.fingerprint) == (record.title, record.kind, record.fingerprint)
    assert record.corrupt_fields == ()  # the caller's record is not changed


def test_system_facts_the_wire_cannot_carry_are_left_out() -> None:
    facts = dataclasses.replace(FULL_SYSTEM, crash_time=10**30)
    back = convert.system_from_proto(convert.system_to_proto(facts))
    assert back == dataclasses.replace(FULL_SYSTEM, crash_time=None)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda m: setattr(m, "kind", "exploded"), "signature.kind"),
        (lambda m: setattr(m.call_trace[0], "context", "hyperspace"), "call_trace[0].context"),
    ],
)
def test_malformed_messages_raise_wire_error(mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    msg = convert.record_to_proto(null_deref())
    mutate(msg)
    with pytest.raises(convert.WireError) as err:
        convert.record_from_proto(msg)
    assert err.value.field == field


def test_garbage_signature_json_is_a_wire_error() -> None:
    with pytest.raises(convert.WireError):
        convert.signature_from_json('{"kind": 5')
    with pytest.raises(convert.WireError):
        convert.signature_from_json('{"no_such_field": 1}')


def test_report_request_caps_excerpt_on_a_character_boundary() -> None:
    record = dataclasses.replace(null_deref(), excerpt="é" * convert.MAX_EXCERPT_BYTES)
    request = convert.report_request(record, key="k" * 64, host=crash_pb2.HostFacts(hostname="h"), source_path="/x")
    encoded = request.log_excerpt.encode()
    assert len(encoded) <= convert.MAX_EXCERPT_BYTES and len(encoded) >= convert.MAX_EXCERPT_BYTES - 1


def test_idempotency_key_is_stable_and_index_sensitive() -> None:
    assert convert.idempotency_key("ab", 0) == convert.idempotency_key("ab", 0)
    assert convert.idempotency_key("ab", 0) != convert.idempotency_key("ab", 1)


def test_query_types_round_trip() -> None:
    now = datetime(2026, 11, 25, 12, 0, 1, 123000, tzinfo=UTC)
    cluster = ClusterSummary("c1", "t", "warning", "fp", 3, 2, now, now, ("r",), ("hw",), ("m",), "k1", "g", (0, 1))
    assert convert.cluster_from_proto(convert.cluster_to_proto(cluster)) == cluster
    crash = CrashSummary("k1", "c1", "h", "t", "warning", "fp", "/var/crash/x", None, now, "r", "hw", "g")
    assert convert.crash_from_proto(convert.crash_to_proto(crash)) == crash
    host = HostSummary("h", "r", "x86_64", "hw", "0.1", 2, 1 << 30, ("m",), now, 4)
    assert convert.host_from_proto(convert.host_to_proto(host)) == host
    flt = QueryFilter(since=now, kernel_release="r", host="h", module="m", kind="k", hardware="hw", cluster_id="c")
    assert convert.filter_from_proto(convert.filter_to_proto(flt)) == flt
    assert convert.filter_from_proto(convert.filter_to_proto(QueryFilter())) == QueryFilter()


def test_host_facts_round_trip_keeps_the_vouched_hostname() -> None:
    record = HostRecord(
        "web-1", "6.1.0-26-amd64", "x86_64", "QEMU", "0.1", 4, 8 << 30, ("ext4", "e1000"),
        labels=(("role", "ci"),), hardware_errors=(("edac_ce", 3),), user_faults=(("java", 2), ("node", 1)),
    )
    msg = convert.host_facts_to_proto(record)
    assert convert.host_record_from_proto(msg, "web-1") == record
    # The stored hostname is the one the collector checked, whatever the message claims.
    assert convert.host_record_from_proto(msg, "cert-name").hostname == "cert-name"


def test_user_fault_counts_are_bounded_on_receipt() -> None:
    """A host sending more than the agent would (a bug or a forged heartbeat) is cut to the
    agent's own bound: MAX_PROGRAMS names, long names cut, zero counts dropped, totals kept."""
    msg = crash_pb2.HostFacts(hostname="web-1")
    msg.user_faults.add(binary="x" * 500, count=1000)
    for n in range(200):
        msg.user_faults.add(binary=f"prog{n:03d}", count=n)
    faults = dict(convert.user_faults_from_proto(msg))
    assert len(faults) == MAX_PROGRAMS and OTHER_PROGRAMS in faults
    assert faults["x" * convert.MAX_PROGRAM_CHARS] == 1000
    assert "prog000" not in faults  # a zero count is no fault
    # Entries past twice the bound are not read; what was read is all counted.
    assert sum(faults.values()) == 1000 + sum(range(2 * MAX_PROGRAMS - 1))


def test_stored_json_of_the_received_message_equals_the_records() -> None:
    """The collector stores the JSON of the message it received; it must read back as the record."""
    record = null_deref()
    from_message = convert.signature_message_to_json(convert.record_to_proto(record))
    assert convert.signature_from_json(from_message) == dataclasses.replace(record, excerpt="")
