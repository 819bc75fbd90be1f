"""The one place that converts analysis dataclasses to protobuf messages and back.

Agents, `crashfleet submit` and the collector all go through here, so a field added to
`analysis.model.CrashRecord` needs one change (plus the .proto) and the round-trip test catches
a forgotten one. A record always reaches the wire: a number its field cannot carry (a negative
address, a register wider than 64 bits) is left out and named in `corrupt_fields`
(`analysis.bounds`), so one bad field never costs a crash its report. Anything else the wire
cannot carry raises `WireError` naming the field instead of protobuf's bare ValueError deep in a
constructor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from analysis.bounds import fit_record, fit_system
from analysis.model import (
    CallFrame,
    CodeDecode,
    CrashKind,
    CrashRecord,
    Fingerprint,
    PageFaultCode,
    Rip,
    SkippedFrame,
    SourceLocation,
    StackContext,
    SystemFacts,
)
from analysis.userfaults import MAX_PROGRAMS, bound_counts
from wire.model import (
    Breakdown,
    ClusterDetail,
    ClusterMerge,
    ClusterSummary,
    CrashDetail,
    CrashSummary,
    HostRecord,
    HostSummary,
    QueryFilter,
)
from wire.v1 import crash_pb2, ingest_service_pb2, query_service_pb2

__all__ = [
    "MAX_EXCERPT_BYTES",
    "WireError",
    "cluster_detail_from_proto",
    "cluster_detail_to_proto",
    "cluster_from_proto",
    "cluster_to_proto",
    "crash_detail_from_proto",
    "crash_detail_to_proto",
    "crash_from_proto",
    "crash_to_proto",
    "datetime_from_timestamp",
    "filter_from_proto",
    "filter_to_proto",
    "host_facts_to_proto",
    "host_from_proto",
    "host_record_from_proto",
    "host_to_proto",
    "idempotency_key",
    "record_from_proto",
    "record_to_proto",
    "report_request",
    "signature_from_json",
    "signature_message_to_json",
    "signature_to_json",
    "system_from_proto",
    "system_to_proto",
    "timestamp_from_datetime",
    "user_faults_from_proto",
]

# The log excerpt cap. The collector refuses larger excerpts (INVALID_ARGUMENT is wrong for a
# well-formed but oversized field, so it answers RESOURCE_EXHAUSTED); senders truncate to fit.
MAX_EXCERPT_BYTES = 64 * 1024

T = TypeVar("T")


class WireError(ValueError):
    """A value cannot travel on the wire (or came off it malformed); `field` names which."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# Proto3 `optional` fields: unset on the wire is None in the dataclass. The readers below spell
# out `msg.x if msg.HasField("x") else None` per field rather than call a helper: they run for
# every field of every report the collector takes, where a call per field was a tenth of its CPU.

# Enum members by wire value: a dict lookup, not an Enum call per frame.
_CRASH_KINDS = {kind.value: kind for kind in CrashKind}
_STACK_CONTEXTS = {context.value: context for context in StackContext}


def _build(field: str, factory: Callable[[], T]) -> T:
    """Run a message constructor, turning protobuf's range errors into a WireError for `field`."""
    try:
        return factory()
    except (ValueError, TypeError) as exc:
        raise WireError(field, str(exc)) from None


def _source_to_proto(source: tuple[SourceLocation, ...]) -> list[crash_pb2.SourceLocation]:
    return [crash_pb2.SourceLocation(function=s.function, file=s.file, line=s.line) for s in source]


def _source_from_proto(msgs: Sequence[crash_pb2.SourceLocation]) -> tuple[SourceLocation, ...]:
    if not msgs:  # the usual case (agents rarely symbolize): no generator to set up per frame
        return ()
    return tuple(SourceLocation(function=m.function, file=m.file, line=m.line) for m in msgs)


def _rip_to_proto(rip: Rip) -> crash_pb2.Rip:
    return _build(
        "rip",
        lambda: crash_pb2.Rip(
            function=rip.function,
            offset=rip.offset,
            size=rip.size,
            module=rip.module,
            address=rip.address,
            source=_source_to_proto(rip.source),
        ),
    )


def _rip_from_proto(msg: crash_pb2.Rip) -> Rip:
    return Rip(
        function=msg.function,
        offset=msg.offset if msg.HasField("offset") else None,
        size=msg.size if msg.HasField("size") else None,
        module=msg.module if msg.HasField("module") else None,
        address=msg.address if msg.HasField("address") else None,
        source=_source_from_proto(msg.source),
    )


def _frame_to_proto(index: int, frame: CallFrame) -> crash_pb2.CallFrame:
    return _build(
        f"call_trace[{index}]",
        lambda: crash_pb2.CallFrame(
            function=frame.function,
            offset=frame.offset,
            size=frame.size,
            module=frame.module,
            reliable=frame.reliable,
            context=frame.context.value,
            address=frame.address,
            source=_source_to_proto(frame.source),
        ),
    )


def _frame_from_proto(index: int, msg: crash_pb2.CallFrame) -> CallFrame:
    context = _STACK_CONTEXTS.get(msg.context)
    if context is None:
        raise WireError(f"call_trace[{index}].context", f"unknown stack context {msg.context!r}")
    return CallFrame(
        function=msg.function,
        offset=msg.offset if msg.HasField("offset") else None,
        size=msg.size if msg.HasField("size") else None,
        module=msg.module if msg.HasField("module") else None,
        reliable=msg.reliable,
        context=context,
        address=msg.address if msg.HasField("address") else None,
        source=_source_from_proto(msg.source),
    )


def _code_to_proto(code: CodeDecode) -> crash_pb2.CodeDecode:
    return _build(
        "code",
        lambda: crash_pb2.CodeDecode(
            arch=code.arch,
            code_bytes=code.code_bytes,
            fault_offset=code.fault_offset,
            instruction=code.instruction,
            base_register=code.base_register,
            index_register=code.index_register,
            displacement=code.displacement,
            bad_register=code.bad_register,
            bad_register_value=code.bad_register_value,
            access=code.access,
            operation=code.operation,
            error=code.error,
        ),
    )


def _code_from_proto(msg: crash_pb2.CodeDecode) -> CodeDecode:
    return CodeDecode(
        arch=msg.arch,
        code_bytes=bytes(msg.code_bytes),
        fault_offset=msg.fault_offset,
        instruction=msg.instruction if msg.HasField("instruction") else None,
        base_register=msg.base_register if msg.HasField("base_register") else None,
        index_register=msg.index_register if msg.HasField("index_register") else None,
        displacement=msg.displacement if msg.HasField("displacement") else None,
        bad_register=msg.bad_register if msg.HasField("bad_register") else None,
        bad_register_value=msg.bad_register_value if msg.HasField("bad_register_value") else None,
        access=msg.access if msg.HasField("access") else None,
        operation=msg.operation if msg.HasField("operation") else None,
        error=msg.error if msg.HasField("error") else None,
    )


def _fingerprint_to_proto(fp: Fingerprint) -> crash_pb2.Fingerprint:
    return crash_pb2.Fingerprint(
        value=fp.value,
        version=fp.version,
        kind=fp.kind,
        reason=fp.reason,
        frames=list(fp.frames),
        skipped=[crash_pb2.SkippedFrame(function=s.function, rule=s.rule) for s in fp.skipped],
    )


def _fingerprint_from_proto(msg: crash_pb2.Fingerprint) -> Fingerprint:
    skipped = msg.skipped  # mostly empty: no generator to set up then
    return Fingerprint(
        value=msg.value,
        version=msg.version,
        kind=msg.kind,
        reason=msg.reason,
        frames=tuple(msg.frames),
        skipped=tuple(SkippedFrame(function=s.function, rule=s.rule) for s in skipped) if skipped else (),
    )


def record_to_proto(record: CrashRecord) -> crash_pb2.CrashSignature:
    """The structured signature of `record`; the excerpt travels separately (see module doc)."""
    record = fit_record(record)
    page_fault = record.oops_code.value if record.oops_code is not None else None
    msg = _build(
        "signature",
        lambda: crash_pb2.CrashSignature(
            kind=record.kind.value,
            reason=record.reason,
            normalized_reason=record.normalized_reason,
            title=record.title,
            guilty_frame=record.guilty_frame,
            arch=record.arch,
            fault_address=record.fault_address,
            page_fault_code=page_fault,
            oops_code_raw=record.oops_code_raw,
            oops_number=record.oops_number,
            oops_flags=list(record.oops_flags),
            tainted=record.tainted,
            taint_flags=list(record.taint_flags),
            cpu=record.cpu,
            pid=record.pid,
            comm=record.comm,
            kernel_release=record.kernel_release,
            kernel_build=record.kernel_build,
            hardware=record.hardware,
            bios=record.bios,
            modules=list(record.modules),
            module_taints=dict(record.module_taints),
            last_unloaded=record.last_unloaded,
            panic_message=record.panic_message,
            code_line=record.code_line,
            corrupted=record.corrupted,
            corrupted_reason=record.corrupted_reason,
            related=list(record.related),
            first_line=record.first_line,
            last_line=record.last_line,
            corrupt_fields=list(record.corrupt_fields),
        ),
    )
    for name, value in record.registers.items():
        try:
            msg.registers[name] = value
        except (ValueError, TypeError) as exc:
            raise WireError(f"registers[{name}]", str(exc)) from None
    if record.rip is not None:
        msg.rip.CopyFrom(_rip_to_proto(record.rip))
    msg.call_trace.extend(_frame_to_proto(i, f) for i, f in enumerate(record.call_trace))
    if record.code is not None:
        msg.code.CopyFrom(_code_to_proto(record.code))
    if record.fingerprint is not None:
        msg.fingerprint.CopyFrom(_fingerprint_to_proto(record.fingerprint))
    return msg


def record_from_proto(msg: crash_pb2.CrashSignature, excerpt: str = "") -> CrashRecord:
    """The CrashRecord a signature describes; WireError names a field the dataclass cannot hold."""
    kind = _CRASH_KINDS.get(msg.kind)
    if kind is None:
        raise WireError("signature.kind", f"unknown crash kind {msg.kind!r}")
    page_fault = PageFaultCode.decode(msg.page_fault_code) if msg.HasField("page_fault_code") else None
    return CrashRecord(
        kind=kind,
        reason=msg.reason,
        normalized_reason=msg.normalized_reason,
        title=msg.title,
        guilty_frame=msg.guilty_frame if msg.HasField("guilty_frame") else None,
        arch=msg.arch,
        fault_address=msg.fault_address if msg.HasField("fault_address") else None,
        oops_code=page_fault,
        oops_code_raw=msg.oops_code_raw if msg.HasField("oops_code_raw") else None,
        oops_number=msg.oops_number if msg.HasField("oops_number") else None,
        oops_flags=tuple(msg.oops_flags),
        tainted=msg.tainted if msg.HasField("tainted") else None,
        taint_flags=tuple(msg.taint_flags),
        cpu=msg.cpu if msg.HasField("cpu") else None,
        pid=msg.pid if msg.HasField("pid") else None,
        comm=msg.comm if msg.HasField("comm") else None,
        kernel_release=msg.kernel_release if msg.HasField("kernel_release") else None,
        kernel_build=msg.kernel_build if msg.HasField("kernel_build") else None,
        hardware=msg.hardware if msg.HasField("hardware") else None,
        bios=msg.bios if msg.HasField("bios") else None,
        modules=tuple(msg.modules),
        module_taints=dict(msg.module_taints),
        last_unloaded=msg.last_unloaded if msg.HasField("last_unloaded") else None,
        panic_message=msg.panic_message if msg.HasField("panic_message") else None,
        rip=_rip_from_proto(msg.rip) if msg.HasField("rip") else None,
        call_trace=tuple(_frame_from_proto(i, f) for i, f in enumerate(msg.call_trace)),
        registers=dict(msg.registers),
        code_line=msg.code_line if msg.HasField("code_line") else None,
        code=_code_from_proto(msg.code) if msg.HasField("code") else None,
        fingerprint=_fingerprint_from_proto(msg.fingerprint) if msg.HasField("fingerprint") else None,
        corrupted=msg.corrupted,
        corrupted_reason=msg.corrupted_reason if msg.HasField("corrupted_reason") else None,
        related=tuple(msg.related),
        first_line=msg.first_line,
        last_line=msg.last_line,
        corrupt_fields=tuple(msg.corrupt_fields),
        excerpt=excerpt,
    )


def system_to_proto(facts: SystemFacts) -> crash_pb2.SystemFacts:
    """The facts a dump gave; a number no field can hold (a corrupt CRASHTIME) is left out."""
    facts, _ = fit_system(facts)
    return _build(
        "system",
        lambda: crash_pb2.SystemFacts(
            format=facts.format,
            release=facts.release,
            version=facts.version,
            nodename=facts.nodename,
            machine=facts.machine,
            cpus=facts.cpus,
            memory_bytes=facts.memory_bytes,
            crash_time=facts.crash_time,
            build_id=facts.build_id,
            page_size=facts.page_size,
            kernel_offset=facts.kernel_offset,
            panic_message=facts.panic_message,
            panic_cpu=facts.panic_cpu,
            panic_pid=facts.panic_pid,
            panic_comm=facts.panic_comm,
        ),
    )


def system_from_proto(msg: crash_pb2.SystemFacts) -> SystemFacts:
    return SystemFacts(
        format=msg.format,
        release=msg.release if msg.HasField("release") else None,
        version=msg.version if msg.HasField("version") else None,
        nodename=msg.nodename if msg.HasField("nodename") else None,
        machine=msg.machine if msg.HasField("machine") else None,
        cpus=msg.cpus if msg.HasField("cpus") else None,
        memory_bytes=msg.memory_bytes if msg.HasField("memory_bytes") else None,
        crash_time=msg.crash_time if msg.HasField("crash_time") else None,
        build_id=msg.build_id if msg.HasField("build_id") else None,
        page_size=msg.page_size if msg.HasField("page_size") else None,
        kernel_offset=msg.kernel_offset if msg.HasField("kernel_offset") else None,
        panic_message=msg.panic_message if msg.HasField("panic_message") else None,
        panic_cpu=msg.panic_cpu if msg.HasField("panic_cpu") else None,
        panic_pid=msg.panic_pid if msg.HasField("panic_pid") else None,
        panic_comm=msg.panic_comm if msg.HasField("panic_comm") else None,
    )


def timestamp_from_datetime(when: datetime) -> Timestamp:
    """Naive datetimes are taken as UTC (the store keeps UTC everywhere)."""
    ts = Timestamp()
    ts.FromDatetime(when if when.tzinfo is not None else when.replace(tzinfo=UTC))
    return ts


def datetime_from_timestamp(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def idempotency_key(content_digest: str, crash_index: int) -> str:
    """The key that makes resubmitting one capture a duplicate: digest of its bytes + crash index.

    `content_digest` is the hex sha256 of the capture (dump or log); the index tells apart the
    several crashes one log can hold (a WARNING followed by the oops it led to).
    """
    return hashlib.sha256(f"{content_digest}:{crash_index}".encode()).hexdigest()


class HostFactsSource(Protocol):
    """A host's inventory wherever it is held: the agent's HostInventory, the store's HostRecord."""

    @property
    def hostname(self) -> str: ...
    @property
    def kernel_release(self) -> str: ...
    @property
    def machine(self) -> str: ...
    @property
    def hardware(self) -> str: ...
    @property
    def modules(self) -> tuple[str, ...]: ...
    @property
    def cpus(self) -> int: ...
    @property
    def memory_bytes(self) -> int: ...
    @property
    def agent_version(self) -> str: ...
    @property
    def user_faults(self) -> tuple[tuple[str, int], ...]: ...
    @property
    def labels(self) -> tuple[tuple[str, str], ...]: ...
    @property
    def hardware_errors(self) -> tuple[tuple[str, int], ...]: ...


def host_facts_to_proto(host: HostFactsSource) -> crash_pb2.HostFacts:
    """The HostFacts a report or heartbeat carries."""
    return crash_pb2.HostFacts(
        hostname=host.hostname,
        kernel_release=host.kernel_release,
        machine=host.machine,
        hardware=host.hardware,
        modules=list(host.modules),
        cpus=host.cpus,
        memory_bytes=host.memory_bytes,
        agent_version=host.agent_version,
        labels=dict(host.labels),
        hardware_errors=[crash_pb2.HardwareErrorCount(kind=k, count=n) for k, n in host.hardware_errors],
        user_faults=[crash_pb2.UserFaultCount(binary=name, count=count) for name, count in host.user_faults],
    )


MAX_PROGRAM_CHARS = 64  # a comm is at most 15 characters; anything longer is cut


def user_faults_from_proto(msg: crash_pb2.HostFacts) -> tuple[tuple[str, int], ...]:
    """The user-fault counts a host sent, bounded as the agent bounds them (analysis.userfaults):
    at most MAX_PROGRAMS programs, names cut, counts summed per name, zero counts dropped."""
    counts: dict[str, int] = {}
    for entry in msg.user_faults[: MAX_PROGRAMS * 2]:
        name = entry.binary[:MAX_PROGRAM_CHARS]
        if entry.count > 0 and name:
            counts[name] = min(counts.get(name, 0) + entry.count, 2**63 - 1)
    return tuple(sorted(bound_counts(counts).items()))


def host_record_from_proto(msg: crash_pb2.HostFacts, hostname: str) -> HostRecord:
    """The inventory a heartbeat stores; `hostname` is the one the collector vouched for (the
    certificate identity or the checked field), not necessarily the message's own."""
    return HostRecord(
        hostname=hostname,
        kernel_release=msg.kernel_release,
        machine=msg.machine,
        hardware=msg.hardware,
        agent_version=msg.agent_version,
        cpus=msg.cpus,
        memory_bytes=msg.memory_bytes,
        modules=tuple(msg.modules),
        labels=tuple(sorted(msg.labels.items())),
        hardware_errors=tuple(sorted((e.kind, e.count) for e in msg.hardware_errors)),
        user_faults=user_faults_from_proto(msg),
    )


def report_request(
    record: CrashRecord,
    *,
    key: str,
    host: crash_pb2.HostFacts,
    source_path: str,
    crash_time: datetime | None = None,
    system: SystemFacts | None = None,
) -> ingest_service_pb2.ReportCrashRequest:
    """A complete ReportCrashRequest; the excerpt is cut to MAX_EXCERPT_BYTES on a UTF-8 boundary."""
    excerpt = record.excerpt.encode("utf-8")[:MAX_EXCERPT_BYTES].decode("utf-8", errors="ignore")
    request = ingest_service_pb2.ReportCrashRequest(
        idempotency_key=key,
        signature=record_to_proto(record),
        log_excerpt=excerpt,
        host=host,
        source_path=source_path,
    )
    if system is not None:
        request.system.CopyFrom(system_to_proto(system))
    if crash_time is not None:
        request.crash_time.CopyFrom(timestamp_from_datetime(crash_time))
    return request


def signature_to_json(record: CrashRecord) -> str:
    """The stored form of a signature: CrashSignature in protobuf's canonical JSON mapping.

    Lossless for every CrashRecord field but the excerpt (stored beside it), readable without
    this code, and stable as fields are added, so `crashfleet recluster` can re-sign years-old rows.
    """
    return signature_message_to_json(record_to_proto(record))


def signature_message_to_json(message: crash_pb2.CrashSignature) -> str:
    """signature_to_json for a signature already on the wire (the collector stores what it got)."""
    return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=None)


def signature_from_json(text: str) -> CrashRecord:
    """The record a stored signature describes; WireError when the text is not one."""
    message = crash_pb2.CrashSignature()
    try:
        json_format.Parse(text, message)
    except json_format.ParseError as exc:
        raise WireError("signature_json", str(exc)) from None
    return record_from_proto(message)


# Query types (wire.model) <-> crashfleet.v1 query messages ---------------------------------


def _ts(when: datetime | None) -> Timestamp | None:
    return timestamp_from_datetime(when) if when is not None else None


# The filter's text fields: None ("any") on the Python side travels as proto3's empty string.
_FILTER_TEXT_FIELDS = ("kernel_release", "host", "module", "kind", "hardware", "cluster_id")


def filter_to_proto(flt: QueryFilter) -> query_service_pb2.Filter:
    return query_service_pb2.Filter(
        since=_ts(flt.since),
        until=_ts(flt.until),
        **{name: getattr(flt, name) or "" for name in _FILTER_TEXT_FIELDS},
    )


def filter_from_proto(msg: query_service_pb2.Filter) -> QueryFilter:
    """Empty strings and unset timestamps mean "any"."""
    try:
        since = datetime_from_timestamp(msg.since) if msg.HasField("since") else None
        until = datetime_from_timestamp(msg.until) if msg.HasField("until") else None
    except (ValueError, OverflowError) as exc:
        raise WireError("filter", f"timestamp out of range: {exc}") from None
    return QueryFilter(
        since=since, until=until, **{name: getattr(msg, name) or None for name in _FILTER_TEXT_FIELDS}
    )


def _breakdowns(items: tuple[Breakdown, ...]) -> list[query_service_pb2.Breakdown]:
    return [query_service_pb2.Breakdown(value=b.value, count=b.count) for b in items]


def _breakdowns_back(items: Iterable[query_service_pb2.Breakdown]) -> tuple[Breakdown, ...]:
    return tuple(Breakdown(b.value, b.count) for b in items)


def cluster_to_proto(c: ClusterSummary) -> query_service_pb2.ClusterSummary:
    return query_service_pb2.ClusterSummary(
        id=c.id,
        title=c.title,
        kind=c.kind,
        fingerprint=c.fingerprint,
        count=c.count,
        hosts=c.hosts,
        first_seen=timestamp_from_datetime(c.first_seen),
        last_seen=timestamp_from_datetime(c.last_seen),
        kernel_releases=list(c.kernel_releases),
        hardware=list(c.hardware),
        common_modules=list(c.common_modules),
        representative_crash_id=c.representative_crash_id,
        guilty_frame=c.guilty_frame,
        daily_counts=list(c.daily_counts),
        first_received=timestamp_from_datetime(c.first_received) if c.first_received is not None else None,
        last_received=timestamp_from_datetime(c.last_received) if c.last_received is not None else None,
    )


def cluster_from_proto(m: query_service_pb2.ClusterSummary) -> ClusterSummary:
    return ClusterSummary(
        id=m.id,
        title=m.title,
        kind=m.kind,
        fingerprint=m.fingerprint,
        count=m.count,
        hosts=m.hosts,
        first_seen=datetime_from_timestamp(m.first_seen),
        last_seen=datetime_from_timestamp(m.last_seen),
        kernel_releases=tuple(m.kernel_releases),
        hardware=tuple(m.hardware),
        common_modules=tuple(m.common_modules),
        representative_crash_id=m.representative_crash_id,
        guilty_frame=m.guilty_frame,
        daily_counts=tuple(m.daily_counts),
        first_received=datetime_from_timestamp(m.first_received) if m.HasField("first_received") else None,
        last_received=datetime_from_timestamp(m.last_received) if m.HasField("last_received") else None,
    )


def cluster_detail_to_proto(d: ClusterDetail) -> query_service_pb2.ClusterDetail:
    return query_service_pb2.ClusterDetail(
        summary=cluster_to_proto(d.summary),
        by_host=_breakdowns(d.by_host),
        by_kernel_release=_breakdowns(d.by_kernel_release),
        by_hardware=_breakdowns(d.by_hardware),
        by_module=_breakdowns(d.by_module),
        fingerprints=list(d.fingerprints),
        merges=[
            query_service_pb2.ClusterMerge(
                fingerprint=m.fingerprint, reason=m.reason, detail=m.detail, similarity=m.similarity,
                fingerprint_version=m.fingerprint_version,
                joined=timestamp_from_datetime(m.joined) if m.joined is not None else None,
            )
            for m in d.merges
        ],
    )


def cluster_detail_from_proto(m: query_service_pb2.ClusterDetail) -> ClusterDetail:
    return ClusterDetail(
        summary=cluster_from_proto(m.summary),
        by_host=_breakdowns_back(m.by_host),
        by_kernel_release=_breakdowns_back(m.by_kernel_release),
        by_hardware=_breakdowns_back(m.by_hardware),
        by_module=_breakdowns_back(m.by_module),
        fingerprints=tuple(m.fingerprints),
        merges=tuple(
            ClusterMerge(
                fingerprint=g.fingerprint, reason=g.reason, detail=g.detail, similarity=g.similarity,
                fingerprint_version=g.fingerprint_version,
                joined=datetime_from_timestamp(g.joined) if g.HasField("joined") else None,
            )
            for g in m.merges
        ),
    )


def crash_to_proto(c: CrashSummary) -> query_service_pb2.CrashSummary:
    return query_service_pb2.CrashSummary(
        id=c.id,
        cluster_id=c.cluster_id,
        host=c.host,
        title=c.title,
        kind=c.kind,
        fingerprint=c.fingerprint,
        source=c.source,
        crash_time=_ts(c.crash_time),
        received_at=timestamp_from_datetime(c.received_at),
        kernel_release=c.kernel_release,
        hardware=c.hardware,
        guilty_frame=c.guilty_frame,
    )


def crash_from_proto(m: query_service_pb2.CrashSummary) -> CrashSummary:
    return CrashSummary(
        id=m.id,
        cluster_id=m.cluster_id,
        host=m.host,
        title=m.title,
        kind=m.kind,
        fingerprint=m.fingerprint,
        source=m.source,
        crash_time=datetime_from_timestamp(m.crash_time) if m.HasField("crash_time") else None,
        received_at=datetime_from_timestamp(m.received_at),
        kernel_release=m.kernel_release,
        hardware=m.hardware,
        guilty_frame=m.guilty_frame,
    )


def crash_detail_to_proto(d: CrashDetail) -> query_service_pb2.CrashDetail:
    return query_service_pb2.CrashDetail(
        summary=crash_to_proto(d.summary),
        signature_json=d.signature_json,
        excerpt=d.excerpt,
        modules=list(d.modules),
        host_facts=dict(d.host_facts),
        symbolized_json=d.symbolized_json,
    )


def crash_detail_from_proto(m: query_service_pb2.CrashDetail) -> CrashDetail:
    return CrashDetail(
        summary=crash_from_proto(m.summary),
        signature_json=m.signature_json,
        excerpt=m.excerpt,
        modules=tuple(m.modules),
        host_facts=dict(m.host_facts),
        symbolized_json=m.symbolized_json,
    )


def host_to_proto(h: HostSummary) -> query_service_pb2.HostSummary:
    return query_service_pb2.HostSummary(
        hostname=h.hostname,
        kernel_release=h.kernel_release,
        machine=h.machine,
        hardware=h.hardware,
        agent_version=h.agent_version,
        cpus=h.cpus,
        memory_bytes=h.memory_bytes,
        modules=list(h.modules),
        last_heartbeat=_ts(h.last_heartbeat),
        crashes=h.crashes,
    )


def host_from_proto(m: query_service_pb2.HostSummary) -> HostSummary:
    return HostSummary(
        hostname=m.hostname,
        kernel_release=m.kernel_release,
        machine=m.machine,
        hardware=m.hardware,
        agent_version=m.agent_version,
        cpus=m.cpus,
        memory_bytes=m.memory_bytes,
        modules=tuple(m.modules),
        last_heartbeat=datetime_from_timestamp(m.last_heartbeat) if m.HasField("last_heartbeat") else None,
        crashes=m.crashes,
    )
