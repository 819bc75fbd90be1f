"""Prometheus metrics of the collector, served at `/metrics` on the HTTP port.

Label policy: every label has a small, bounded value set. There is deliberately no host,
cluster, crash or fingerprint label: a fleet has thousands of hosts and clusters, each label
value is a separate time series held forever by Prometheus, and a hostile or buggy agent could
create new values at will. Per-host and per-cluster questions are answered by the query API
(`/api/v1/...`), which reads the store. The labels that remain are:

- `result`: one of `REPORT_RESULTS`;
- `kind`: one of the analyzer's `CrashKind` values (anything else becomes `unknown`);
- `kernel_release`: bounded by the builds a fleet runs, and additionally capped at
  `MAX_KERNEL_RELEASES` distinct values per process (the rest are counted under `other`), so a
  flood of invented release strings cannot blow up the series count;
- `method` / `code`: gRPC method names and status code names, fixed sets;
- `operation`: store operations named by the collector's own code;
- `version`: the collector's own version (one value).

No `_created` series: prometheus_client would add one per counter and histogram (and per label
set), holding the process start time, so `crashfleet_clusters_created_total` came with a
`crashfleet_clusters_created_created` that reads like a metric of its own. Prometheus does not use
them (it detects counter resets itself), so importing this module turns them off process-wide
(`prometheus_client.disable_created_metrics`; the environment variable
`PROMETHEUS_DISABLE_CREATED_SERIES=true` does the same for any Python exporter).

The metric names are constants below (`METRIC_NAMES`) because the Prometheus alert rules and the
Grafana dashboard under deploy/ reference them; a rename here must be a rename there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from importlib import metadata
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics

from analysis.model import CrashKind

__all__ = [
    "BACKFILL_AGE",
    "BUILD_INFO",
    "CLUSTERS",
    "CLUSTERS_CREATED",
    "CLUSTERS_REGRESSED",
    "CLUSTER_NEW_HOST",
    "CRASHES",
    "CRASHES_BACKFILL",
    "HARDWARE_SUSPECTS",
    "HEARTBEATS",
    "HOSTS",
    "HOSTS_REPORTING",
    "METRIC_NAMES",
    "NEW_CLUSTER_RATE",
    "REPORTS_RECEIVED",
    "REPORT_RESULTS",
    "RPC_DURATION",
    "STORE_DURATION",
    "Metrics",
]

# Exposed names (what PromQL sees). Counters get `_total` appended by prometheus_client; the
# constants are the full exposed family names so the deploy/ rules can grep for them verbatim.
REPORTS_RECEIVED: Final = "crashfleet_reports_received_total"
CRASHES: Final = "crashfleet_crashes_total"
CRASHES_BACKFILL: Final = "crashfleet_crashes_backfill_total"
HEARTBEATS: Final = "crashfleet_heartbeats_total"
CLUSTERS: Final = "crashfleet_clusters"
CLUSTERS_CREATED: Final = "crashfleet_clusters_created_total"
CLUSTER_NEW_HOST: Final = "crashfleet_cluster_new_host_total"
RPC_DURATION: Final = "crashfleet_rpc_duration_seconds"  # histogram: _bucket, _sum, _count
STORE_DURATION: Final = "crashfleet_store_duration_seconds"  # histogram: _bucket, _sum, _count
# Fleet analytics (docs/analytics.md): the denominator for a crash rate per host, triage, bad hosts.
HOSTS_REPORTING: Final = "crashfleet_hosts_reporting"
CLUSTERS_REGRESSED: Final = "crashfleet_clusters_regressed"
HARDWARE_SUSPECTS: Final = "crashfleet_hardware_suspect_hosts"
# The highest crash rate per 1,000 host-days among clusters in their first day (collector.analytics.newclusters).
NEW_CLUSTER_RATE: Final = "crashfleet_new_cluster_rate_per_1000_host_days"
HOSTS_REPORTING_TOP = 10  # kernel releases shown by name; the rest are summed under `other`
HOSTS: Final = "crashfleet_hosts"
BUILD_INFO: Final = "crashfleet_build_info"

METRIC_NAMES: Final[tuple[str, ...]] = (
    REPORTS_RECEIVED,
    CRASHES,
    CRASHES_BACKFILL,
    HEARTBEATS,
    CLUSTERS,
    CLUSTERS_CREATED,
    CLUSTER_NEW_HOST,
    RPC_DURATION,
    STORE_DURATION,
    HOSTS,
    BUILD_INFO,
    HOSTS_REPORTING,
    CLUSTERS_REGRESSED,
    HARDWARE_SUSPECTS,
    NEW_CLUSTER_RATE,
)

# A new crash that happened longer ago than this before it was received (a backfill through
# `crashfleet submit`, a spool that waited out a long outage) is counted in CRASHES_BACKFILL, not
# in CRASHES: the panic-rate alerts read CRASHES, and old crashes arriving together are no storm.
BACKFILL_AGE: Final = timedelta(hours=1)

REPORT_RESULTS: Final[tuple[str, ...]] = ("new", "duplicate", "invalid")
"""Outcomes of one ReportCrash: stored as a new occurrence, recognised as a resubmission, rejected."""

KINDS: Final[frozenset[str]] = frozenset(k.value for k in CrashKind)
UNKNOWN_KIND: Final = CrashKind.UNKNOWN.value
MAX_KERNEL_RELEASES: Final = 256
OTHER_RELEASE: Final = "other"
MAX_OPERATION_NAMES: Final = 64
MAX_RPC_METHODS: Final = 64

# RPC latency is loopback-to-WAN sized (sub-millisecond up to a few seconds); store latency
# starts lower because a SQLite point read is tens of microseconds.
RPC_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STORE_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


disable_created_metrics()  # type: ignore[no-untyped-call]  # see the module docstring: no `_created` series in this process


def _version() -> str:
    try:
        return metadata.version("crashfleet")
    except metadata.PackageNotFoundError:
        return "unknown"


class _BoundedLabel:
    """Admits at most `limit` distinct values of one label; later newcomers map to `overflow`."""

    def __init__(self, limit: int, overflow: str) -> None:
        self._limit = limit
        self._overflow = overflow
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self._limit:
                return self._overflow
            self._seen.add(value)
            return value


class Metrics:
    """Every metric the collector exports, registered on one registry.

    One instance per collector process (tests make their own with a fresh registry, so they never
    see each other's counts). The attributes are the raw prometheus_client objects; the methods
    apply the label policy and are what the collector code should call.
    """

    def __init__(self, registry: CollectorRegistry | None = None, version: str | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.reports_received = Counter(
            "crashfleet_reports_received",
            "ReportCrash calls by outcome (new, duplicate, invalid) and crash kind.",
            ("result", "kind"),
            registry=r,
        )
        self.crashes_by_release = Counter(
            "crashfleet_crashes",
            "Genuine new crash occurrences stored, by the crashed kernel's release.",
            ("kernel_release",),
            registry=r,
        )
        self.crashes_backfill = Counter(
            "crashfleet_crashes_backfill",
            "New crash occurrences stored that happened more than an hour before they were received"
            " (backfill, a long outage), by the crashed kernel's release; not in crashfleet_crashes_total.",
            ("kernel_release",),
            registry=r,
        )
        self.heartbeats = Counter("crashfleet_heartbeats", "Heartbeat calls accepted.", registry=r)
        self.clusters = Gauge("crashfleet_clusters", "Clusters currently in the store.", registry=r)
        self.clusters_created = Counter(
            "crashfleet_clusters_created", "Clusters created by this process.", registry=r
        )
        self.cluster_host_spread = Counter(
            "crashfleet_cluster_new_host",
            "Times a cluster gained a new distinct host (a bug spreading over the fleet).",
            registry=r,
        )
        self.rpc_latency = Histogram(
            "crashfleet_rpc_duration_seconds",
            "gRPC handler latency by method and status code.",
            ("method", "code"),
            buckets=RPC_BUCKETS,
            registry=r,
        )
        self.store_latency = Histogram(
            "crashfleet_store_duration_seconds",
            "Store operation latency by operation.",
            ("operation",),
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self.hosts = Gauge(
            "crashfleet_hosts",
            "Hosts known to the collector, by the kernel release of their last heartbeat.",
            ("kernel_release",),
            registry=r,
        )
        self.hosts_reporting = Gauge(
            "crashfleet_hosts_reporting",
            "Hosts that heartbeated in the last 10 minutes, by kernel release: the top"
            f" {HOSTS_REPORTING_TOP} releases by name, the rest as `other`.",
            ("kernel_release",),
            registry=r,
        )
        self.clusters_regressed = Gauge(
            "crashfleet_clusters_regressed",
            "Clusters marked fixed in a release that crashed again on that release or a later one.",
            registry=r,
        )
        self.hardware_suspects = Gauge(
            "crashfleet_hardware_suspect_hosts", "Hosts the bad-host rules flag as hardware suspects.", registry=r
        )
        self.new_cluster_rate = Gauge(
            NEW_CLUSTER_RATE,
            "Highest crash rate per 1,000 host-days of the reporting hosts among clusters first seen in the"
            " last 24 hours with at least 3 crashes, over the time since their first crash (at least an hour);"
            " 0 when there is none.",
            registry=r,
        )
        self.build_info = Info("crashfleet_build", "Version of the running collector.", registry=r)
        self.build_info.info({"version": version if version is not None else _version()})
        self._release_label = _BoundedLabel(MAX_KERNEL_RELEASES, OTHER_RELEASE)
        self._operation_label = _BoundedLabel(MAX_OPERATION_NAMES, "other")
        self._method_label = _BoundedLabel(MAX_RPC_METHODS, "other")

    # Label normalisation -------------------------------------------------------------------

    @staticmethod
    def kind_label(kind: str) -> str:
        """A CrashKind value, or `unknown` for anything a client invented."""
        return kind if kind in KINDS else UNKNOWN_KIND

    def release_label(self, kernel_release: str) -> str:
        """The release itself while fewer than MAX_KERNEL_RELEASES were seen, else `other`."""
        return self._release_label(kernel_release or "unknown")

    # Recording -----------------------------------------------------------------------------

    def report(self, result: str, kind: str, kernel_release: str = "", *, backfill: bool = False) -> None:
        """Count one ReportCrash outcome; a `new` one also counts a crash of its kernel release,
        in the backfill counter when it happened more than BACKFILL_AGE before it arrived."""
        if result not in REPORT_RESULTS:
            raise ValueError(f"result must be one of {REPORT_RESULTS}, not {result!r}")
        self.reports_received.labels(result=result, kind=self.kind_label(kind)).inc()
        if result == "new":
            counter = self.crashes_backfill if backfill else self.crashes_by_release
            counter.labels(kernel_release=self.release_label(kernel_release)).inc()

    def heartbeat(self) -> None:
        self.heartbeats.inc()

    def cluster_created(self) -> None:
        """A new cluster: counts it and bumps the live gauge (the store re-syncs it with set_clusters)."""
        self.clusters_created.inc()
        self.clusters.inc()

    def cluster_gained_host(self) -> None:
        self.cluster_host_spread.inc()

    def set_clusters(self, total: int) -> None:
        self.clusters.set(total)

    def set_hosts(self, by_release: dict[str, int]) -> None:
        """Replace the hosts gauge with a fresh count per kernel release (from the store)."""
        merged: dict[str, int] = {}
        for release, count in by_release.items():
            label = self.release_label(release)
            merged[label] = merged.get(label, 0) + count
        self.hosts.clear()
        for label, count in merged.items():
            self.hosts.labels(kernel_release=label).set(count)

    def set_hosts_reporting(self, by_release: dict[str, int]) -> None:
        """The top HOSTS_REPORTING_TOP releases by hosts, the rest summed as `other` (a bounded
        label set chosen by size, not by arrival order)."""
        ranked = sorted(by_release.items(), key=lambda item: (-item[1], item[0]))
        self.hosts_reporting.clear()
        for release, count in ranked[:HOSTS_REPORTING_TOP]:
            self.hosts_reporting.labels(kernel_release=release or "unknown").set(count)
        rest = sum(count for _, count in ranked[HOSTS_REPORTING_TOP:])
        if rest:
            self.hosts_reporting.labels(kernel_release=OTHER_RELEASE).set(rest)

    def set_analytics(self, regressed: int, hardware_suspects: int) -> None:
        self.clusters_regressed.set(regressed)
        self.hardware_suspects.set(hardware_suspects)

    def set_new_cluster_rate(self, per_1000_host_days: float) -> None:
        self.new_cluster_rate.set(per_1000_host_days)

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        """`method` is the RPC's short name (`ReportCrash`), `code` a grpc.StatusCode name (`OK`)."""
        self.rpc_latency.labels(method=self._method_label(method), code=code).observe(seconds)

    def observe_store(self, operation: str, seconds: float) -> None:
        self.store_latency.labels(operation=self._operation_label(operation)).observe(seconds)

    @contextmanager
    def time_store(self, operation: str) -> Iterator[None]:
        """`with metrics.time_store("insert_crash"): ...` — observed even when the body raises."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe_store(operation, time.perf_counter() - start)
