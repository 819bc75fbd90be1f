"""The ingest path: validate -> fingerprint -> (dedupe + cluster + store in one transaction) -> metrics.

Transport-free (the gRPC servicers in collector.api await `report_async`, or call it from a
worker thread), so tests and benches drive exactly the code production runs. Every rejection is
an `IngestError` saying which field is wrong and why; the servicers map `InvalidReport` to
INVALID_ARGUMENT and `ReportTooLarge` / `RateLimited` to RESOURCE_EXHAUSTED. Nothing is written before validation passes, and the store
writes everything or nothing.

The fingerprint is recomputed here with the collector's analysis.fingerprint, not taken from the
agent: agents on older releases would otherwise sign with older rules and split clusters, and a
sender could aim its crashes at any cluster. collector.signing memoizes the computation per
signature. The signature is stored in the report JSON format (collector.signature).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from google.protobuf.message import Message

from analysis import editions
from analysis import fingerprint as fingerprint_rules
from analysis.model import CrashRecord, Fingerprint, SystemFacts
from collector import fields
from collector import signature as stored_signature
from collector.analytics.newclusters import NEW_CLUSTER_WINDOW, peak_new_cluster_rate
from collector.groupcommit import LoopGroupCommit
from collector.metrics import BACKFILL_AGE, Metrics
from collector.signing import CachedSigner
from collector.store import (
    GroupCommit,
    HostRecord,
    IngestResult,
    NewCrash,
    QueuedHeartbeats,
    Resign,
    Store,
    StoredSignature,
)
from collector.store.analytics import AnalyticsStore
from wire import convert
from wire.model import LABEL_KEY, MAX_LABEL_VALUE_CHARS, MAX_LABELS, label_problem
from wire.v1 import crash_pb2, ingest_service_pb2

__all__ = [
    "BUILD_ID",
    "MAX_EXCERPT_BYTES",
    "IngestError",
    "Ingestor",
    "InvalidReport",
    "RateLimited",
    "ReportTooLarge",
    "resign_stored",
]

log = logging.getLogger(__name__)


MAX_EXCERPT_BYTES = convert.MAX_EXCERPT_BYTES
MAX_REPEATED = fields.MAX_REPEATED  # frames, modules, registers ... per list or map
MIN_KEY_CHARS, MAX_KEY_CHARS = 8, 128
MAX_HOSTNAME_CHARS = 253
# The event loop's group commit (collector.groupcommit): under load a batch waits GROUP_LINGER_S
# for more writes, or until GROUP_MAX_BATCH wait. Measured with bench/ingest_bench.py (32 clients):
# 1 ms made batches so small that CPU per report rose by a third; 2, 3, 4 and 6 ms gave
# heartbeats 4230, 4350, 4390 and 3240 calls/s and reports 1610, 1770, 1810 and 1840.
GROUP_LINGER_S = 0.004
REPORTING_WINDOW = timedelta(minutes=10)  # a host heartbeating within it counts as reporting
PURGE_EVERY_S = 86_400.0
GROUP_MAX_BATCH = 64
# String fields: a bound and a character set each, as a table in collector.fields.
BUILD_ID = re.compile(r"[0-9a-f]{8,128}")  # a GNU build-id note: sha1 is 40 digits, md5 32, uuid 32


class IngestError(Exception):
    """A report or heartbeat the collector refuses; `field` and `reason` say why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidReport(IngestError):
    """Missing or malformed field: INVALID_ARGUMENT."""


class ReportTooLarge(IngestError):
    """Well-formed but over a size cap: RESOURCE_EXHAUSTED."""


class RateLimited(IngestError):
    """The host or peer sends faster than its token bucket allows: RESOURCE_EXHAUSTED, retry after
    `retry_after` seconds (collector.limits)."""

    def __init__(self, field: str, reason: str, retry_after: float = 0.0) -> None:
        super().__init__(field, reason)
        self.retry_after = retry_after


def _check_strings(msg: Message, path: str) -> None:
    """Every string field of a message tree against its bound and character set
    (collector.fields.FIELD_RULES); the error names the field."""
    try:
        fields.check_strings(msg, path)
    except fields.FieldError as exc:
        raise (ReportTooLarge if exc.too_large else InvalidReport)(exc.field, exc.reason) from None


def _strings_clean(msg: Message, path: str = "") -> bool:
    """The fast path of `_check_strings`: True when nothing in the message breaks its rules."""
    return fields.strings_clean(msg, path)


def _check_hostname(field: str, name: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidReport(field, "missing")
    # Of the characters str.isspace() takes, only " " is printable, so this refuses both.
    if len(name) > MAX_HOSTNAME_CHARS or not name.isprintable() or " " in name:
        raise InvalidReport(field, "not a host name")
    return name


# Host labels and hardware-error counts (fleet analytics, docs/analytics.md): bounded, because
# every label value becomes exposure rows and a `label:KEY` dimension.
MAX_HARDWARE_ERROR_KINDS = 16


def _check_host_extras(facts: crash_pb2.HostFacts) -> None:
    """Labels: at most MAX_LABELS, keys LABEL_KEY, printable values up to MAX_LABEL_VALUE_CHARS;
    hardware-error counts: at most MAX_HARDWARE_ERROR_KINDS kinds named like label keys, once each."""
    if len(facts.labels) > MAX_LABELS:
        raise ReportTooLarge("host.labels", f"{len(facts.labels)} labels, more than {MAX_LABELS}")
    for key, value in facts.labels.items():
        problem = label_problem(key, value)
        if problem.startswith("key"):
            raise InvalidReport(f"host.labels[{key[:40]!r}]", problem)
        if len(value) > MAX_LABEL_VALUE_CHARS:
            raise ReportTooLarge(f"host.labels[{key!r}]", problem)
        if problem:
            raise InvalidReport(f"host.labels[{key!r}]", problem)
    if len(facts.hardware_errors) > MAX_HARDWARE_ERROR_KINDS:
        raise ReportTooLarge(
            "host.hardware_errors", f"{len(facts.hardware_errors)} kinds, more than {MAX_HARDWARE_ERROR_KINDS}"
        )
    kinds = [e.kind for e in facts.hardware_errors]
    for i, kind in enumerate(kinds):
        if not LABEL_KEY.fullmatch(kind) or kind in kinds[:i]:
            raise InvalidReport(f"host.hardware_errors[{i}].kind", "not 1-32 of a-z 0-9 _, or repeated")


def _build_id(system: SystemFacts | None) -> str:
    """The kernel build-id to store with a crash: lowercase hex as uploads name it, else "".
    Anything else cannot match an index, and must not reach an indexed column unbounded."""
    value = (system.build_id or "").strip().lower() if system is not None else ""
    return value if BUILD_ID.fullmatch(value) else ""


def _check_key(key: str) -> None:
    if not key:
        raise InvalidReport("idempotency_key", "missing")
    # "!" .. "~": printable ASCII but the space, tested in C rather than per character
    printable = key.isascii() and key.isprintable() and " " not in key
    if not MIN_KEY_CHARS <= len(key) <= MAX_KEY_CHARS or not printable:
        raise InvalidReport(
            "idempotency_key", f"must be {MIN_KEY_CHARS}..{MAX_KEY_CHARS} printable ASCII characters"
        )


Signer = Callable[[CrashRecord], Fingerprint]


def _kind_label(request: ingest_service_pb2.ReportCrashRequest) -> str:
    return request.signature.kind if request.HasField("signature") else ""


_NO_SECONDARY = Fingerprint(value="", version="", kind="", reason="", frames=(), skipped=())


def _secondary_of(record: CrashRecord) -> Fingerprint:
    """The record's fingerprint under the previous rule edition, or one with an empty value."""
    found = editions.secondary_fingerprint(record, record.excerpt, fingerprint_rules.compute(record))
    return found if found is not None else _NO_SECONDARY


class Ingestor:
    """Turns ReportCrash/Heartbeat requests into store writes; thread-safe, synchronous."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        signer: Signer | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        symbolize: Callable[[CrashRecord, SystemFacts | None], CrashRecord | None] | None = None,
        transition_until: datetime | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        # The collector's own fingerprint for every report, remembered per signature (collector.signing).
        self.signer: Signer = signer if signer is not None else CachedSigner()
        self.clock = clock
        # Source lines from the collector's symbol store (collector.symbols), kept beside the signed
        # record as symbolized_json; None when it has no index of the crash's build. Never changes
        # the fingerprint: that is computed before, from the record as sent.
        self.symbolize = symbolize
        # Until then (a rule transition, collector.config transition_days) each crash also gets its
        # fingerprint under the previous rule edition (analysis.editions), which the store matches
        # when the new one is unknown; None: no transition.
        self.transition_until = transition_until
        # Re-reading a stall's excerpt under the previous rules costs a parse (tens of ms); the
        # old guilty frame is read from the header and frame names, which the signing key holds,
        # so it is remembered per signature like the fingerprint.
        self._secondary = CachedSigner(_secondary_of)
        # Checked once: isinstance against a runtime Protocol is slow enough to show per report.
        self._group = store if isinstance(store, GroupCommit) else None
        self._queued = store if self._group is None and isinstance(store, QueuedHeartbeats) else None
        self._committer: LoopGroupCommit | None = None
        # Fleet analytics (collector.store.analytics), when the store has it: the fixed clusters
        # each stored crash is checked against (refreshed with the gauges, and by set_triage).
        self.analytics = store if isinstance(store, AnalyticsStore) else None
        self.fixed_clusters: dict[str, str] = {}
        self._last_purge = 0.0

    def validate(self, request: ingest_service_pb2.ReportCrashRequest, host: str) -> NewCrash:
        """The NewCrash a request describes, or InvalidReport/ReportTooLarge naming the field."""
        _check_key(request.idempotency_key)
        excerpt = request.log_excerpt  # each read of a protobuf string field builds a new str
        excerpt_bytes = len(excerpt.encode("utf-8"))
        if excerpt_bytes > MAX_EXCERPT_BYTES:
            raise ReportTooLarge("log_excerpt", f"{excerpt_bytes} bytes, more than {MAX_EXCERPT_BYTES}")
        if not request.HasField("signature"):
            raise InvalidReport("signature", "missing")
        if not _strings_clean(request):
            _check_strings(request, "")  # names the offending field
        signature = request.signature
        for name in ("kind", "reason", "title"):
            if not getattr(signature, name).strip():
                raise InvalidReport(f"signature.{name}", "missing")
        if not request.source_path:
            raise InvalidReport("source_path", "missing")
        try:
            record = convert.record_from_proto(signature, excerpt=excerpt)
            system = convert.system_from_proto(request.system) if request.HasField("system") else None
            crash_time = (
                convert.datetime_from_timestamp(request.crash_time) if request.HasField("crash_time") else None
            )
        except convert.WireError as exc:
            raise InvalidReport(exc.field, exc.reason) from None
        except (ValueError, OverflowError) as exc:  # Timestamp outside year 1..9999
            raise InvalidReport("crash_time", str(exc)) from None
        if crash_time is None and system is not None and system.crash_time is not None:
            crash_time = datetime.fromtimestamp(system.crash_time, tz=UTC)
        try:
            fp = self.signer(record)
        except Exception as exc:  # the signer is pure; anything it raises is about this input
            raise InvalidReport("signature", f"cannot fingerprint: {exc}") from None
        facts = request.host
        host_facts = {
            "kernel_release": facts.kernel_release,
            "machine": facts.machine,
            "hardware": facts.hardware,
            "agent_version": facts.agent_version,
            "cpus": str(facts.cpus),
            "memory_bytes": str(facts.memory_bytes),
        }
        if system is not None:
            host_facts["dump_format"] = system.format
            if system.build_id:
                host_facts["build_id"] = system.build_id
            if system.kernel_offset is not None:  # kept for symbolizing raw addresses later
                host_facts["kernel_offset"] = f"0x{system.kernel_offset:x}"
        received_at = self.clock()
        secondary = ""
        if self.transition_until is not None and received_at < self.transition_until:
            try:
                secondary = self._secondary(record).value
            except Exception:  # the old edition is a fallback: its failure must not lose the report
                log.exception("secondary fingerprint failed key=%s", request.idempotency_key)
        signature_json = stored_signature.stored_json(record, fp)
        symbolized_json = ""
        if self.symbolize is not None:
            try:
                symbolized = self.symbolize(record, system)
            except Exception:  # enrichment only: a symbolizer bug must not lose the report
                log.exception("symbolization failed at ingest key=%s", request.idempotency_key)
            else:
                if symbolized is not None:
                    symbolized_json = stored_signature.stored_json(symbolized, fp)
        return NewCrash(
            idempotency_key=request.idempotency_key,
            host=host,
            title=record.title,
            kind=record.kind.value,
            normalized_reason=fp.reason,
            guilty_frame=record.guilty_frame or (fp.frames[0] if fp.frames else ""),
            fingerprint=fp.value,
            fingerprint_version=fp.version,
            frames=fp.frames,
            source=request.source_path,
            crash_time=crash_time,
            received_at=received_at,
            kernel_release=record.kernel_release
            or (system.release if system else None)
            or facts.kernel_release,
            hardware=record.hardware or facts.hardware,
            modules=record.modules or tuple(facts.modules),
            signature_json=signature_json,
            excerpt=excerpt,
            host_facts={k: v for k, v in host_facts.items() if v and v != "0"},
            build_id=_build_id(system),
            symbolized_json=symbolized_json,
            secondary_fingerprint=secondary,
        )

    def report(self, request: ingest_service_pb2.ReportCrashRequest, host: str) -> IngestResult:
        """Validate and store one crash. `host` is who reported it (certificate identity under
        mTLS, else the request's claim), already decided by the caller."""
        crash = self._validated(request, host)
        with self.metrics.time_store("ingest"):
            result = self.store.ingest(crash)
        return self._stored(crash, result)

    async def report_async(self, request: ingest_service_pb2.ReportCrashRequest, host: str) -> IngestResult:
        """`report` for the event loop. With a store that commits batches on the caller's
        thread (SQLite), validation and the group commit both run on the loop
        (collector.groupcommit): no worker thread per report, whose hand-offs cost more than the
        validation. Symbolization reads files, so with it validation moves to a thread. Other
        stores run `report` in a worker thread."""
        group = self._group
        if group is None:
            return await asyncio.to_thread(self.report, request, host)
        if self.symbolize is not None:
            crash = await asyncio.to_thread(self._validated, request, host)
        else:
            crash = self._validated(request, host)
        start = time.perf_counter()
        try:
            result: IngestResult = await self._loop_committer(group).write(group.ingest_write(crash))
        finally:
            self.metrics.observe_store("ingest", time.perf_counter() - start)
        return self._stored(crash, result)

    def _loop_committer(self, group: GroupCommit) -> LoopGroupCommit:
        committer = self._committer
        loop = asyncio.get_running_loop()
        if committer is None or committer.loop is not loop:
            committer = self._committer = LoopGroupCommit(group, loop, GROUP_LINGER_S, GROUP_MAX_BATCH)
        return committer

    def _validated(self, request: ingest_service_pb2.ReportCrashRequest, host: str) -> NewCrash:
        try:
            return self.validate(request, _check_hostname("host.hostname", host))
        except IngestError:
            self.metrics.report("invalid", _kind_label(request))
            raise

    def _stored(self, crash: NewCrash, result: IngestResult) -> IngestResult:
        """Count and log a stored (or duplicate) report."""
        if result.duplicate:
            self.metrics.report("duplicate", crash.kind)
        else:
            # Counted by when it happened: an old crash arriving now (backfill) is no panic storm.
            backfill = crash.crash_time is not None and crash.received_at - crash.crash_time > BACKFILL_AGE
            self.metrics.report("new", crash.kind, crash.kernel_release, backfill=backfill)
            if result.cluster_created:
                self.metrics.cluster_created()
            if result.cluster_new_host:
                self.metrics.cluster_gained_host()
            if result.cluster_id in self.fixed_clusters and self.analytics is not None:
                self._check_regression(result.cluster_id, crash.kernel_release)
        log.info(
            "crash stored host=%s crash=%s cluster=%s duplicate=%s new_cluster=%s similarity=%.2f",
            crash.host, result.crash_id, result.cluster_id, result.duplicate, result.cluster_created,
            result.similarity,
        )  # fmt: skip
        return result

    def heartbeat(self, request: ingest_service_pb2.HeartbeatRequest, host: str) -> None:
        record = self._host_record(request, host)
        with self.metrics.time_store("heartbeat"):
            self.store.heartbeat(record, self.clock())
        self.metrics.heartbeat()

    async def heartbeat_async(self, request: ingest_service_pb2.HeartbeatRequest, host: str) -> None:
        """`heartbeat` for the event loop: with a group-commit store the checks and the commit
        run on the loop (as `report_async`); with a store whose writer thread batches heartbeats
        (PostgreSQL) the checks run on the loop and the heartbeat is queued for that thread; else
        a worker thread."""
        group, queued = self._group, self._queued
        if group is None and queued is None:
            await asyncio.to_thread(self.heartbeat, request, host)
            return
        record = self._host_record(request, host)
        start = time.perf_counter()
        try:
            if group is not None:
                await self._loop_committer(group).write(group.heartbeat_write(record, self.clock()))
            else:
                assert queued is not None
                await asyncio.wrap_future(queued.submit_heartbeat(record, self.clock()))
        finally:
            self.metrics.observe_store("heartbeat", time.perf_counter() - start)
        self.metrics.heartbeat()

    @staticmethod
    def _host_record(request: ingest_service_pb2.HeartbeatRequest, host: str) -> HostRecord:
        facts = request.host
        hostname = _check_hostname("host.hostname", host)
        if not _strings_clean(facts, "host"):
            _check_strings(facts, "host")  # names the offending field
        _check_host_extras(facts)
        return convert.host_record_from_proto(facts, hostname)

    def refresh_gauges(self) -> None:
        """Re-sync the clusters and hosts gauges with the store (other replicas write too)."""
        with self.metrics.time_store("gauges"):
            clusters = self.store.count_clusters()
            hosts = self.store.hosts_by_release()
        self.metrics.set_clusters(clusters)
        self.metrics.set_hosts(hosts)
        if self.analytics is not None:
            self.refresh_analytics()

    def refresh_analytics(self) -> None:
        """Fleet gauges, the fixed-cluster cache, and once a day the exposure retention."""
        assert self.analytics is not None
        now = self.clock()
        with self.metrics.time_store("analytics_gauges"):
            reporting = self.analytics.hosts_reporting(now - REPORTING_WINDOW)
            new = self.analytics.new_clusters(now - NEW_CLUSTER_WINDOW)
            regressed = self.analytics.count_regressed()
            suspects = sum(1 for b in self.analytics.bad_hosts(limit=1000) if b.flagged)
            self.fixed_clusters = self.analytics.fixed_clusters()
        self.metrics.set_hosts_reporting(reporting)
        self.metrics.set_analytics(regressed, suspects)
        self.metrics.set_new_cluster_rate(peak_new_cluster_rate(new, sum(reporting.values()), now))
        if time.monotonic() - self._last_purge > PURGE_EVERY_S:
            self._last_purge = time.monotonic()
            self.analytics.purge_exposure(self.clock())

    def triage_changed(self, cluster_id: str, state: str, fixed_in: str) -> None:
        """A triage change made over gRPC or HTTP: a cluster fixed now is checked for regressions
        from its next crash on, without waiting for the gauge refresh."""
        if state == "fixed":
            self.fixed_clusters[cluster_id] = fixed_in
        else:
            self.fixed_clusters.pop(cluster_id, None)

    def _check_regression(self, cluster_id: str, release: str) -> None:
        """A crash of a fixed cluster: reopen it when its release is the fixed one or later."""
        assert self.analytics is not None
        try:
            triage = self.analytics.mark_regressed(cluster_id, release, self.clock())
        except Exception:  # the crash is stored; the triage check is retried with the next crash
            log.exception("regression check failed cluster=%s", cluster_id)
            return
        if triage is not None:
            self.fixed_clusters.pop(cluster_id, None)
            self.metrics.clusters_regressed.inc()


def resign_stored(signer: Signer = fingerprint_rules.compute) -> Callable[[StoredSignature], Resign]:
    """The recluster callback: re-read a stored signature (either stored format) and fingerprint it
    with current rules; the returned signature_json is the re-signed record in the current format."""

    def resign(stored: StoredSignature) -> Resign:
        record = stored_signature.record_from_stored(stored.signature_json, f"crash {stored.crash_id}")
        fp = signer(record)
        return Resign(
            fingerprint=fp.value,
            fingerprint_version=fp.version,
            kind=record.kind.value,
            normalized_reason=fp.reason,
            frames=fp.frames,
            title=record.title,
            guilty_frame=record.guilty_frame or (fp.frames[0] if fp.frames else ""),
            signature_json=stored_signature.stored_json(record, fp),
        )

    return resign
