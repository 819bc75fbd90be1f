"""The first-window rate of new clusters (collector.analytics.newclusters)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collector.analytics.newclusters import MIN_CRASHES, NewCluster, first_window_rate, peak_new_cluster_rate

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def test_rate_is_crashes_per_1000_host_days_since_the_first_crash() -> None:
    cluster = NewCluster("c", 12, NOW - timedelta(hours=6))
    assert first_window_rate(cluster, 2000, NOW) == pytest.approx(12 / (2000 * 0.25) * 1000)


def test_a_minutes_old_cluster_counts_at_least_an_hour() -> None:
    fresh = NewCluster("c", 3, NOW - timedelta(minutes=2))
    assert first_window_rate(fresh, 1000, NOW) == pytest.approx(3 / (1000 / 24) * 1000)
    skewed = NewCluster("c", 3, NOW + timedelta(minutes=30))  # a crash clock ahead of the collector's
    assert first_window_rate(skewed, 1000, NOW) == first_window_rate(fresh, 1000, NOW)


def test_no_reporting_hosts_means_no_rate() -> None:
    assert first_window_rate(NewCluster("c", 50, NOW - timedelta(hours=1)), 0, NOW) == 0.0


def test_peak_skips_clusters_with_too_few_crashes() -> None:
    few = NewCluster("few", MIN_CRASHES - 1, NOW - timedelta(minutes=1))
    slow = NewCluster("slow", MIN_CRASHES, NOW - timedelta(hours=20))
    fast = NewCluster("fast", 10, NOW - timedelta(hours=2))
    assert peak_new_cluster_rate([few], 100, NOW) == 0.0
    assert peak_new_cluster_rate([few, slow, fast], 100, NOW) == first_window_rate(fast, 100, NOW)
    assert peak_new_cluster_rate([], 100, NOW) == 0.0
