"""Shipping to the collector over gRPC: deadlines, mTLS, and what each status code means for a retry.

The spool stores the serialized `ReportCrashRequest`, built once here by `build_request` (through
`wire.convert`, the only record <-> protobuf conversion). `GrpcShipper.report()` sends it with
a deadline and classifies the outcome by status code with the `CLASSIFICATION` table: ack,
retry later (the collector or the network is down; the whole outbox waits), or refused for
good (the collector will never accept this request; the spool drops it, counted and logged).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Protocol

import grpc

from agent.config import AgentConfig
from agent.extract import ExtractedReport
from agent.heartbeat import HostInventory
from wire import convert
from wire.channel import ClientConfig, open_channel
from wire.retry import call_retry_after
from wire.tls import TlsConfigError
from wire.v1 import ingest_service_pb2, ingest_service_pb2_grpc

__all__ = [
    "CLASSIFICATION",
    "GrpcShipper",
    "NoCollector",
    "Outcome",
    "ShipResult",
    "Shipper",
    "build_request",
    "client_config",
]

log = logging.getLogger(__name__)


class Outcome(enum.StrEnum):
    ACKED = "acked"
    RETRY = "retry"  # an answer about this report alone: it moves back on its own backoff
    UNREACHABLE = "unreachable"  # the collector or the way to it is down: the whole outbox waits
    THROTTLED = "throttled"  # the collector's limiter says "not now": the whole outbox waits its hint
    REFUSED = "refused"  # permanent: the collector will never take this request


# Status code -> what it means for the report. Codes missing here are treated as RETRY: an
# unknown failure must never lose a crash. Only RETRY ages a report (agent.spool.retry_later);
# UNREACHABLE and THROTTLED are about the collector or the path to it and pause the outbox as a
# whole, every report keeping its place, so that it drains oldest first once the collector answers.
CLASSIFICATION: dict[grpc.StatusCode, Outcome] = {
    grpc.StatusCode.OK: Outcome.ACKED,
    grpc.StatusCode.ALREADY_EXISTS: Outcome.ACKED,  # stored before; the ack was lost on its way back
    grpc.StatusCode.UNAVAILABLE: Outcome.UNREACHABLE,  # down, restarting, shutting down, unreachable
    grpc.StatusCode.DEADLINE_EXCEEDED: Outcome.UNREACHABLE,  # a half-open connection or a stalled server
    grpc.StatusCode.CANCELLED: Outcome.UNREACHABLE,  # the channel went away under the call
    grpc.StatusCode.UNAUTHENTICATED: Outcome.UNREACHABLE,  # certificate/token problem: fixed by an operator
    grpc.StatusCode.PERMISSION_DENIED: Outcome.UNREACHABLE,
    grpc.StatusCode.ABORTED: Outcome.RETRY,
    grpc.StatusCode.INTERNAL: Outcome.RETRY,
    grpc.StatusCode.UNKNOWN: Outcome.RETRY,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Outcome.THROTTLED,  # the rate limit; an oversized report is REFUSED
    grpc.StatusCode.INVALID_ARGUMENT: Outcome.REFUSED,
    grpc.StatusCode.OUT_OF_RANGE: Outcome.REFUSED,
    grpc.StatusCode.FAILED_PRECONDITION: Outcome.RETRY,
    grpc.StatusCode.UNIMPLEMENTED: Outcome.UNREACHABLE,  # not a crashfleet collector (yet): keep the crash
    grpc.StatusCode.NOT_FOUND: Outcome.UNREACHABLE,
}


@dataclass(frozen=True, slots=True)
class ShipResult:
    outcome: Outcome
    code: str  # gRPC status name, "OK" on success
    detail: str = ""
    duplicate: bool = False
    interval_seconds: int = 0  # heartbeat: the collector's preferred interval (0: no preference)
    retry_after: float | None = None  # THROTTLED: the collector's `retry-after-ms` hint, in seconds


class Shipper(Protocol):
    """What the service needs from a transport; tests substitute a fake."""

    def report(self, payload: bytes) -> ShipResult: ...

    def heartbeat(self, inventory: HostInventory) -> ShipResult: ...

    def close(self) -> None: ...


def build_request(report: ExtractedReport, inventory: HostInventory) -> bytes:
    """The serialized ReportCrashRequest the spool keeps (built once, sent as is on every retry)."""
    request = convert.report_request(
        report.record,
        key=report.key,
        host=convert.host_facts_to_proto(inventory),
        source_path=report.source_path,
        crash_time=report.crash_time,
        system=report.system,
    )
    return request.SerializeToString()


def client_config(config: AgentConfig) -> ClientConfig:
    """The shared client settings (wire.channel) for the agent's collector section."""
    token = None
    if config.token_file is not None:
        try:
            token = config.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise TlsConfigError(str(config.token_file), f"cannot read token: {exc}") from None
        if not token:
            raise TlsConfigError(str(config.token_file), "token file is empty")
    return ClientConfig(
        target=config.collector,
        ca_file=str(config.ca) if config.ca else None,
        cert_file=str(config.cert) if config.cert else None,
        key_file=str(config.key) if config.key else None,
        token=token,
        server_name=config.server_name or None,
    )


class GrpcShipper:
    """The IngestService client: one channel, a deadline per call, results classified."""

    def __init__(self, config: AgentConfig, channel: grpc.Channel | None = None) -> None:
        if channel is None:
            channel = open_channel(client_config(config))  # wire.tls validates the files
        self._channel = channel
        self._stub = ingest_service_pb2_grpc.IngestServiceStub(self._channel)
        self._deadline = config.deadline_seconds

    def _failure(self, exc: grpc.RpcError) -> ShipResult:
        code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
        detail = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        outcome = CLASSIFICATION.get(code, Outcome.RETRY)
        hint = call_retry_after(exc)
        if outcome == Outcome.THROTTLED and hint is None:
            # The limiter always sends a hint; RESOURCE_EXHAUSTED without one is about this report
            # (gRPC's message cap, a field cap) or from a collector older than the hint: the report
            # moves back on its own backoff and must not hold the whole outbox up.
            outcome = Outcome.RETRY
        return ShipResult(outcome, code.name, detail or "", retry_after=hint)

    def report(self, payload: bytes) -> ShipResult:
        try:
            request = ingest_service_pb2.ReportCrashRequest.FromString(payload)
        except Exception as exc:  # protobuf's DecodeError: a spool row from a corrupted disk
            return ShipResult(Outcome.REFUSED, "CORRUPT_SPOOL_ROW", str(exc))
        try:
            response = self._stub.ReportCrash(request, timeout=self._deadline)
        except grpc.RpcError as exc:
            return self._failure(exc)
        return ShipResult(Outcome.ACKED, "OK", response.crash_id, duplicate=response.duplicate)

    def heartbeat(self, inventory: HostInventory) -> ShipResult:
        request = ingest_service_pb2.HeartbeatRequest(host=convert.host_facts_to_proto(inventory))
        try:
            response = self._stub.Heartbeat(request, timeout=self._deadline)
        except grpc.RpcError as exc:
            return self._failure(exc)
        return ShipResult(Outcome.ACKED, "OK", interval_seconds=int(response.interval_seconds))

    def close(self) -> None:
        self._channel.close()


class NoCollector:
    """No collector configured: everything stays in the spool (an air-gapped host, a first install)."""

    def report(self, payload: bytes) -> ShipResult:
        return ShipResult(Outcome.UNREACHABLE, "NO_COLLECTOR", "no collector address configured")

    def heartbeat(self, inventory: HostInventory) -> ShipResult:
        return self.report(b"")

    def close(self) -> None:
        return None
