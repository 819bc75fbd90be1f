"""The crash rate of a new cluster over its first window (docs/analytics.md, "New clusters").

A cluster is new for NEW_CLUSTER_WINDOW after its first crash (the crash time, so a backfill of
old dumps makes no new cluster here). Its rate over that first window is its crashes per 1,000
host-days of the fleet that was reporting meanwhile: k / (N × t) × 1000, with N the hosts that
heartbeated in the last 10 minutes (the `crashfleet_hosts_reporting` total) and t the days since
its first crash, at least MIN_ELAPSED so that the first crash of a cluster, a minute old, is not
read as a huge rate. The stored exposure (exposure_profile_days) is not used: it is kept per UTC
day and lags the heartbeats by up to an hour per host, too coarse and too late for a cluster
hours old; the fleet reporting now stands in for the fleet of the last day.

Clusters with fewer than MIN_CRASHES crashes are left out: one or two crashes of a new bug are
the CrashfleetNewCrashCluster alert's business, not a rate. The collector exports the highest
rate among the remaining new clusters as the gauge `crashfleet_new_cluster_rate_per_1000_host_days`;
the threshold lives in the Prometheus rules (deploy/prometheus/rules/crashfleet.rules.yml).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = [
    "MIN_CRASHES",
    "MIN_ELAPSED",
    "NEW_CLUSTER_WINDOW",
    "NewCluster",
    "first_window_rate",
    "peak_new_cluster_rate",
]

NEW_CLUSTER_WINDOW = timedelta(hours=24)
MIN_ELAPSED = timedelta(hours=1)
MIN_CRASHES = 3
PER_HOST_DAYS = 1000.0


@dataclass(frozen=True, slots=True)
class NewCluster:
    cluster_id: str
    crashes: int
    first_seen: datetime


def first_window_rate(cluster: NewCluster, hosts: int, now: datetime) -> float:
    """Crashes per 1,000 host-days of `hosts` hosts since the cluster's first crash (0 without hosts)."""
    if hosts <= 0:
        return 0.0
    days = max(now - cluster.first_seen, MIN_ELAPSED).total_seconds() / 86_400
    return cluster.crashes / (hosts * days) * PER_HOST_DAYS


def peak_new_cluster_rate(clusters: Iterable[NewCluster], hosts: int, now: datetime) -> float:
    """The highest first-window rate among clusters with at least MIN_CRASHES crashes; 0 when none."""
    return max(
        (first_window_rate(c, hosts, now) for c in clusters if c.crashes >= MIN_CRASHES), default=0.0
    )
