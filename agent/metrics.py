"""The agent's Prometheus metrics: the one place their names live.

Served over HTTP on a localhost port, or written atomically (temp file + rename, which is what
node_exporter's textfile collector needs to never read half a file) into a textfile directory.
Each agent builds its own registry, so tests and a reload never collide on global state.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from agent.spool import DropReason

__all__ = ["AgentMetrics"]

log = logging.getLogger(__name__)

PREFIX = "crashfleet_agent"

# Labels whose values are a closed set: anything else from the worker's counts is refused rather
# than minted as a new time series.
CLOSED_LABELS: dict[str, frozenset[str]] = {
    "spool_dropped": frozenset(DropReason),
}


class AgentMetrics:
    """Counters and gauges of one agent; `serve`/`write_textfile` expose them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.crashes_detected = Counter(
            f"{PREFIX}_crashes_detected",
            "Crash reports extracted (dumps, pstore, live kernel log).",
            ["source"],
            registry=r,
        )
        self.crashes_shipped = Counter(
            f"{PREFIX}_crashes_shipped", "Reports the collector acknowledged.", registry=r
        )
        self.ship_failures = Counter(
            f"{PREFIX}_ship_failures",
            "Failed attempts to ship a report, by gRPC status.",
            ["code"],
            registry=r,
        )
        self.parse_failures = Counter(
            f"{PREFIX}_parse_failures",
            "Captures that could not be read or held no crash (failed captures).",
            registry=r,
        )
        self.spool_dropped = Counter(
            f"{PREFIX}_spool_dropped",
            "Reports dropped from the spool, by reason: too_old, spool_full, rejected.",
            ["reason"],
            registry=r,
        )
        for reason in DropReason:
            # Every series exists from the start (at 0), so increase() sees the first drop.
            self.spool_dropped.labels(reason)
        self.spool_depth = Gauge(f"{PREFIX}_spool_depth", "Reports waiting in the spool.", registry=r)
        self.spool_bytes = Gauge(
            f"{PREFIX}_spool_bytes", "Bytes of reports waiting in the spool.", registry=r
        )
        self.spool_oldest_age = Gauge(
            f"{PREFIX}_spool_oldest_age_seconds",
            "Age of the oldest report in the spool (0 when empty).",
            registry=r,
        )
        self.heartbeats = Counter(
            f"{PREFIX}_heartbeats", "Heartbeats the collector acknowledged.", registry=r
        )
        self.symbolized = Counter(
            f"{PREFIX}_crashes_symbolized",
            "Crash reports given source lines from this host's debuginfo before shipping.",
            registry=r,
        )
        self.watch_unreadable = Gauge(
            f"{PREFIX}_watch_dir_unreadable",
            "1 while a watched directory cannot be listed (e.g. permission denied): its crashes go unseen.",
            ["root"],
            registry=r,
        )
        self.state_dir_full = Gauge(
            f"{PREFIX}_state_dir_full",
            "1 while the state directory has no room for the spool's reserve: spooled reports still ship"
            " and are deleted, new crashes are stored only while they fit.",
            registry=r,
        )
        self.state_dir_full_events = Counter(
            f"{PREFIX}_state_dir_full_events",
            "Times the state directory was found full (a write of the spool failed for lack of space).",
            registry=r,
        )
        self.up = Gauge(
            f"{PREFIX}_collector_up", "1 when the last call to the collector succeeded.", registry=r
        )
        self._server: Any = None

    def apply_counts(self, counts: dict[str, float]) -> None:
        """Add what a worker counted (`name` or `name:label`, see agent.worker) to the counters."""
        labelled = {
            "crashes_detected": self.crashes_detected,
            "ship_failures": self.ship_failures,
            "spool_dropped": self.spool_dropped,
        }
        plain = {
            "crashes_shipped": self.crashes_shipped,
            "parse_failures": self.parse_failures,
            "heartbeats": self.heartbeats,
            "symbolized": self.symbolized,
        }
        for key, value in counts.items():
            name, _, label = key.partition(":")
            if name in CLOSED_LABELS and label not in CLOSED_LABELS[name]:
                log.warning("worker count with unknown label ignored name=%s", key)
            elif label and name in labelled:
                labelled[name].labels(label).inc(value)
            elif not label and name in plain:
                plain[name].inc(value)
            else:
                log.warning("unknown worker count ignored name=%s", key)

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics on host:port (port 0 picks one); returns the bound port."""
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        bound = int(server.server_address[1])
        log.info("metrics listening addr=%s port=%d", host, bound)
        return bound

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def write_textfile(self, directory: Path, name: str = "crashfleet_agent.prom") -> None:
        """Write the metrics for node_exporter: a temp file in the same directory, then an atomic
        rename, so node_exporter never reads half a file (metrics need no fsync)."""
        data = generate_latest(self.registry)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), 0o644)
            os.replace(tmp, directory / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
