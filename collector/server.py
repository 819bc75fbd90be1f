"""One collector process: store + gRPC server (ingest, query, health, reflection) + HTTP port.

`run_collector(config)` is what `crashfleet collector` runs: it serves until SIGTERM/SIGINT,
then reports NOT_SERVING on the health service (load balancers drain), lets in-flight RPCs
finish for `grace_seconds`, and closes the HTTP port and the store. Logs go to stderr without
timestamps (journald adds them), with a `<N>` syslog-priority prefix when stderr is the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from grpc import aio
from grpc_health.v1 import _async as health_aio  # `health.aio` at runtime; the stubs know only this name
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from analysis.fingerprint import FINGERPRINT_VERSION, PREVIOUS_FINGERPRINT_VERSION
from collector.analytics_api import SERVICE_NAME as ANALYTICS_SERVICE
from collector.analytics_api import AnalyticsServicer, add_analytics_service
from collector.api import IngestServicer, QueryServicer, add_servicers
from collector.config import CollectorConfig, parse_address
from collector.http import HttpLimits, HttpServer, start_http_server
from collector.ingest import Ingestor
from collector.limits import ReportLimiter, TokenBuckets
from collector.metrics import Metrics
from collector.store import Store, open_store
from collector.store.analytics import AnalyticsStore
from collector.symbols import CollectorSymbols, Resymbolizer, add_symbol_service
from wire.grpc_options import server_options
from wire.sdnotify import Notifier, watchdog_interval  # stdlib-only sd_notify, shared with the agent
from wire.tls import server_credentials
from wire.v1 import ingest_service_pb2, query_service_pb2

__all__ = ["GAUGE_REFRESH_S", "RunningCollector", "configure_logging", "run_collector", "start_collector"]

log = logging.getLogger(__name__)

GAUGE_REFRESH_S = 15.0
# Threads running store calls. More than asyncio's default (cpus + 4): PostgreSQL calls wait on
# the network, and concurrent SQLite writes share one group commit, so waiting threads are cheap.
STORE_THREADS = 16
SERVICE_NAMES = (
    ingest_service_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name,
    query_service_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name,
    ANALYTICS_SERVICE,
)
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class _JournalFormatter(logging.Formatter):
    """`<6>crashfleet.collector: message` — journald turns the prefix into the entry's priority."""

    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITY.get(record.levelno, 6)}>{super().format(record)}"


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(name)s: %(message)s"
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter(fmt))
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s " + fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


@dataclass
class RunningCollector:
    """A started collector (tests and `run_collector` hold one): ports, store, and a stop()."""

    config: CollectorConfig
    store: Store
    metrics: Metrics
    server: aio.Server
    health: health_aio.HealthServicer
    grpc_port: int
    http: HttpServer | None
    _refresher: asyncio.Task[None] | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    resymbolizer: Resymbolizer | None = None  # with --symbols-dir: retroactive symbolization

    @property
    def grpc_target(self) -> str:
        host, _ = parse_address(self.config.listen, "listen", "listen")
        return f"{host}:{self.grpc_port}"

    async def stop(self, grace: float | None = None) -> None:
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self._refresher is not None:
            # Not cancel(): that abandons a refresh already running in its thread, which would
            # then use the store after close() below (SQLite crashed the process that way).
            self._stopping.set()
            await self._refresher
        await self.server.stop(self.config.grace_seconds if grace is None else grace)
        if self.http is not None:
            await self.http.close()
        if self.resymbolizer is not None:
            await self.resymbolizer.close()
        self.store.close()
        log.info("collector stopped")


def http_limits(config: CollectorConfig) -> HttpLimits:
    """The HTTP port's deadlines and bounds from the `[http_limits]` settings."""
    return HttpLimits(
        header_timeout=config.http_header_timeout,
        body_timeout=config.http_body_timeout,
        request_timeout=config.http_request_timeout,
        max_connections=config.http_max_connections,
        max_connections_per_client=config.http_max_connections_per_client,
        max_body_bytes=config.http_max_body_bytes,
    )


async def _refresh_gauges(ingestor: Ingestor, stopping: asyncio.Event) -> None:
    """Re-read the gauges every GAUGE_REFRESH_S until `stopping` is set; a refresh under way when
    it is set finishes first, so the store is never closed under one."""
    while not stopping.is_set():
        try:
            await asyncio.to_thread(ingestor.refresh_gauges)
        except Exception as exc:  # a store hiccup must not end the refresher
            log.warning("gauge refresh failed error=%s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), GAUGE_REFRESH_S)


def _transition_until(store: Store, days: float) -> datetime | None:
    """The end of the current fingerprint edition's transition window (docs/collector.md "Rule
    transitions"), counted from when this database first met the edition; None without one."""
    if PREVIOUS_FINGERPRINT_VERSION == FINGERPRINT_VERSION:
        return None
    started = store.begin_transition(FINGERPRINT_VERSION, PREVIOUS_FINGERPRINT_VERSION, datetime.now(UTC))
    until = started + timedelta(days=days)
    log.info(
        "fingerprint rule transition version=%s previous=%s started=%s until=%s active=%s",
        FINGERPRINT_VERSION, PREVIOUS_FINGERPRINT_VERSION, started.isoformat(), until.isoformat(),
        until > datetime.now(UTC),
    )  # fmt: skip
    return until


async def start_collector(
    config: CollectorConfig, metrics: Metrics | None = None, store: Store | None = None
) -> RunningCollector:
    """Open the store, bind the ports and start serving; port 0 in `listen`/`http` picks free ports."""
    store = store if store is not None else open_store(config.db)
    metrics = metrics if metrics is not None else Metrics()
    http: HttpServer | None = None
    try:
        symbols = CollectorSymbols(Path(config.symbols_dir)) if config.symbols_dir else None
        transition_until = await asyncio.to_thread(_transition_until, store, config.transition_days)
        ingestor = Ingestor(
            store, metrics, symbolize=symbols.enrich if symbols is not None else None,
            transition_until=transition_until,
        )  # fmt: skip
        limiter = ReportLimiter(
            TokenBuckets(config.reports_per_second, config.report_burst),
            TokenBuckets(config.peer_reports_per_second, config.peer_report_burst),
        )
        server = aio.server(options=server_options())
        add_servicers(
            server,
            IngestServicer(ingestor, limiter, require_identity=config.mtls),
            QueryServicer(store, metrics, config.token),
        )
        if isinstance(store, AnalyticsStore):
            add_analytics_service(server, AnalyticsServicer(store, metrics, config.token, ingestor))
        resymbolizer = None
        if symbols is not None:
            resymbolizer = Resymbolizer(symbols, store)
            add_symbol_service(server, symbols, config.token, on_installed=resymbolizer.schedule)
        health_servicer = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        if config.tls_cert is not None and config.tls_key is not None:
            credentials = server_credentials(config.tls_cert, config.tls_key, config.client_ca)
            port = server.add_secure_port(config.listen, credentials)
        else:
            port = server.add_insecure_port(config.listen)
        await server.start()
        if config.http:
            http = await start_http_server(
                store,
                metrics.registry,
                parse_address(config.http, "http", "http"),
                config.token,
                limits=http_limits(config),
                on_triage=ingestor.triage_changed,
            )
    except BaseException:
        if http is not None:
            await http.close()
        store.close()
        raise
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    running = RunningCollector(config, store, metrics, server, health_servicer, port, http)
    running._refresher = asyncio.create_task(_refresh_gauges(ingestor, running._stopping))
    if resymbolizer is not None:
        running.resymbolizer = resymbolizer
        try:  # crashes stored before an index was copied in by hand, or before a restart cut a pass
            await resymbolizer.schedule_pending()
        except Exception as exc:  # the collector serves without it; the next start tries again
            log.warning("pending symbolization not scheduled error=%s", exc)
    log.info(
        "collector serving grpc=%s tls=%s mtls=%s query_auth=%s",
        running.grpc_target, config.tls, config.mtls, "token" if config.token else "off",
    )  # fmt: skip
    return running


async def _watchdog(notifier: Notifier, every: float) -> None:
    """WATCHDOG=1 from the event loop itself: a wedged loop stops the pings and systemd restarts us."""
    while True:
        notifier.watchdog()
        await asyncio.sleep(every)


async def _serve(config: CollectorConfig) -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(
        ThreadPoolExecutor(max_workers=STORE_THREADS, thread_name_prefix="crashfleet-store")
    )
    running = await start_collector(config)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # systemd Type=notify (deploy/systemd/crashfleet-collector.service): READY once the store is
    # migrated and both ports listen, watchdog pings while serving, STOPPING on shutdown.
    notifier = Notifier()
    notifier.ready(f"serving grpc={running.grpc_target}")
    every = watchdog_interval()
    pinger = asyncio.create_task(_watchdog(notifier, every)) if every is not None else None
    await stop.wait()
    log.info("collector stopping grace_seconds=%s", config.grace_seconds)
    notifier.stopping()
    if pinger is not None:
        pinger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pinger
    await running.stop()


def run_collector(config: CollectorConfig) -> int:
    """Serve until SIGTERM/SIGINT; the exit status for `crashfleet collector`."""
    asyncio.run(_serve(config))
    return 0
