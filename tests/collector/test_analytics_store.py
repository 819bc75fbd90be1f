"""Fleet analytics through the real stores (SQLite and PostgreSQL): exposure from heartbeats,
rates, suspects, regression windows, bad hosts, triage (collector.store.analytics)."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from collector.analytics.triage import TriageError
from collector.store import HostRecord, Resign, Store, StoredSignature
from collector.store.analytics import UnknownCluster, Window
from tests.collector.conftest import make_crash

T0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)  # a UTC midnight
HOUR = timedelta(hours=1)


def _host(name: str, *, modules: tuple[str, ...] = ("ext4",), release: str = "6.1.0-56-amd64",
          hardware: str = "Dell R640", labels: dict[str, str] | None = None,
          errors: dict[str, int] | None = None) -> HostRecord:  # fmt: skip
    return HostRecord(
        hostname=name, kernel_release=release, machine="x86_64", hardware=hardware, agent_version="0.4",
        cpus=4, memory_bytes=1 << 33, modules=modules, labels=tuple(sorted((labels or {}).items())),
        hardware_errors=tuple(sorted((errors or {}).items())),
    )  # fmt: skip


def _rows(store: Store, sql: str) -> list[tuple[Any, ...]]:
    with store._read_tx() as tx:  # type: ignore[attr-defined]
        return list(tx.all(sql))


def _beat(store: Store, record: HostRecord, hours: int, start: datetime = T0) -> None:
    for h in range(hours + 1):
        store.heartbeat(record, start + h * HOUR)


@pytest.fixture
def hourly(store: Store) -> Store:
    """Hourly heartbeats count in full (cap one day): a test fleet needs few heartbeats."""
    store.exposure_cap_s = 86_400  # type: ignore[attr-defined]
    return store


def test_heartbeats_credit_host_days_per_value_without_a_row_per_heartbeat(store: Store) -> None:
    record = _host("web-1", modules=("ext4", "veth"), labels={"role": "ci"})
    for minute in range(0, 61):
        store.heartbeat(record, T0 + timedelta(minutes=minute))
    days = _rows(store, "SELECT day, dim, value, seconds, hosts FROM exposure_days ORDER BY dim, value")
    assert {(d, v, s, n) for _, d, v, s, n in days} == {
        ("agent_version", "0.4", 3600, 1), ("hardware", "Dell R640", 3600, 1),
        ("kernel_release", "6.1.0-56-amd64", 3600, 1), ("label:role", "ci", 3600, 1),
        ("machine", "x86_64", 3600, 1), ("module", "ext4", 3600, 1), ("module", "veth", 3600, 1),
    }  # fmt: skip
    # The second hour adds seconds, not a second host.
    for minute in range(61, 121):
        store.heartbeat(record, T0 + timedelta(minutes=minute))
    assert _rows(
        store, "SELECT seconds, hosts FROM exposure_days WHERE dim = 'module' AND value = 'veth'"
    ) == [(7200, 1)]
    # Silence for a day: three minutes after the last heartbeat count, then the new stretch.
    store.heartbeat(record, T0 + timedelta(hours=30))
    rows = _rows(store, "SELECT day, seconds FROM exposure_profile_days ORDER BY day")
    assert [s for _, s in rows] == [7200 + 180]
    assert _rows(store, "SELECT COUNT(*) FROM exposure_profiles") == [(1,)]


def test_rates_per_dimension_with_exact_intervals(hourly: Store) -> None:
    store = hourly
    for i in range(4):
        _beat(
            store,
            _host(f"h{i}", modules=("ext4", "veth") if i < 2 else ("ext4",), labels={"rack": f"r{i % 2}"}),
            48,
        )
    for i, host in enumerate(["h0", "h0", "h1"]):
        store.ingest(make_crash(f"key-{i:06d}", host=host, release="6.1.0-56-amd64", modules=("ext4", "veth"),
                                received_at=T0 + (10 + i) * HOUR))  # fmt: skip
    window = Window(T0, T0 + timedelta(days=2))
    (fleet,) = store.rates(None, window)  # type: ignore[attr-defined]
    assert (fleet.crashes, fleet.hosts) == (3, 4)
    assert fleet.host_days == pytest.approx(8.0)
    assert fleet.rate_per_1000_host_days == pytest.approx(375.0)
    assert fleet.ci_low == pytest.approx(0.6187 / 8 * 1000, rel=1e-3)  # Garwood, k = 3
    by_module = {r.value: r for r in store.rates("module", window)}  # type: ignore[attr-defined]
    assert (by_module["veth"].crashes, by_module["veth"].hosts, by_module["veth"].host_days) == (3, 2, 4.0)
    assert by_module["ext4"].crashes == 3 and by_module["ext4"].host_days == 8.0
    # A window that leaves a crash out counts crash by crash (the other reads per-cluster totals).
    later = Window(T0 + 11 * HOUR, T0 + timedelta(days=2))
    assert {r.value: r.crashes for r in store.rates("module", later)}["veth"] == 2  # type: ignore[attr-defined]
    assert {r.value: r.crashes for r in store.rates("kernel_release", window)} == {"6.1.0-56-amd64": 3}  # type: ignore[attr-defined]
    by_rack = {r.value: r.crashes for r in store.rates("label:rack", window)}  # type: ignore[attr-defined]
    assert by_rack == {"r0": 2, "r1": 1}
    with pytest.raises(ValueError, match="unknown dimension 'colour'"):
        store.rates("colour", window)  # type: ignore[attr-defined]
    with pytest.raises(UnknownCluster):
        store.rates("module", window, cluster_id="no-such-cluster")  # type: ignore[attr-defined]


def test_suspects_regression_and_triage_through_the_store(hourly: Store) -> None:
    store = hourly
    # 24 hosts for two days; 6 load veth; the cluster hits 5 of those and 1 other.
    for i in range(24):
        modules = ("ext4", "veth") if i < 6 else ("ext4", f"m{i % 3}")
        _beat(
            store,
            _host(f"h{i:02d}", modules=modules, release="6.1.0-55-amd64" if i % 2 else "6.1.0-56-amd64"),
            48,
        )
    crashed = ["h00", "h01", "h02", "h03", "h04", "h10"]
    cluster = ""
    for n, host in enumerate(crashed):
        mods = ("ext4", "veth") if host < "h06" else ("ext4", "m1")
        result = store.ingest(make_crash(f"key-{n:06d}", host=host, modules=mods, release="6.1.0-56-amd64",
                                         received_at=T0 + (5 + n) * HOUR))  # fmt: skip
        cluster = result.cluster_id
    window = Window(T0, T0 + timedelta(days=2))
    report = store.suspects(cluster, window)  # type: ignore[attr-defined]
    first = report.suspects[0]
    assert first.attributes == (("module", "veth"),)
    assert (first.cluster_hosts_with, first.cluster_hosts, first.fleet_hosts_with, first.fleet_hosts) == (
        5,
        6,
        6,
        24,
    )
    assert first.words.startswith("veth loaded: 5 of 6 crashing hosts vs 6 of 24 in the fleet; crash rate ")
    with pytest.raises(UnknownCluster):
        store.suspects("nope", window)  # type: ignore[attr-defined]

    window_text = store.regression(cluster, window).words  # type: ignore[attr-defined]
    assert "first seen on 6.1.0-56-amd64" in window_text

    t = store.set_triage(cluster, "ack", note="bisecting")  # type: ignore[attr-defined]
    assert t.state == "acknowledged"
    t = store.set_triage(cluster, "fixed", fixed_in="6.1.0-57-amd64")  # type: ignore[attr-defined]
    assert (t.state, t.note) == ("fixed", "bisecting")
    with pytest.raises(TriageError, match="kernel release"):
        store.set_triage(cluster, "fixed", fixed_in="6 1")  # type: ignore[attr-defined]
    with pytest.raises(UnknownCluster):
        store.set_triage("nope", "ack")  # type: ignore[attr-defined]
    assert store.fixed_clusters() == {cluster: "6.1.0-57-amd64"}  # type: ignore[attr-defined]

    # Kept across recluster (same fingerprints, same cluster ids).
    def keep(s: StoredSignature) -> Resign:
        return Resign(s.fingerprint, "fp-test", "null-deref", "BUG: kernel NULL pointer dereference",
                      ("crashme_napi_pending", "net_rx_action", "__do_softirq", "run_ksoftirqd"), "t", "g")  # fmt: skip

    store.recluster(keep)
    assert store.get_triage(cluster).state == "fixed"  # type: ignore[attr-defined]
    assert store.mark_regressed(cluster, "6.1.0-56-amd64") is None  # type: ignore[attr-defined]
    regressed = store.mark_regressed(cluster, "6.1.0-58-amd64")  # type: ignore[attr-defined]
    assert regressed is not None and regressed.state == "regressed"
    assert store.count_regressed() == 1  # type: ignore[attr-defined]


def test_bad_host_with_hardware_errors_and_unshared_clusters_is_flagged(hourly: Store) -> None:
    store = hourly
    for i in range(6):
        errors = {"edac_ce": 120, "mce": 1} if i == 0 else None
        _beat(store, _host(f"h{i}", errors=errors), 24)
    for n in range(3):
        store.ingest(
            make_crash(f"key-bad-{n:04d}", host="h0", frames=(f"f{n}", "a", "b"), received_at=T0 + HOUR)
        )
    store.ingest(make_crash("key-shared-01", host="h1", received_at=T0 + HOUR))
    store.ingest(make_crash("key-shared-02", host="h2", received_at=T0 + HOUR))
    ranked = store.bad_hosts()  # type: ignore[attr-defined]
    assert ranked[0].host == "h0" and ranked[0].flagged
    assert ranked[0].unshared_clusters == 3 and ranked[0].hardware_errors == 121
    assert "3 clusters no other host has" in ranked[0].reason
    assert "1 uncorrected hardware errors or machine checks" in ranked[0].reason
    assert all(not b.flagged for b in ranked[1:])


def test_user_space_faults_from_heartbeats_join_the_bad_host_score(hourly: Store) -> None:
    """Many unrelated programs faulting on one host (bad memory): the counts its heartbeats carry
    (HostFacts.user_faults, stored per host) reach the score without being passed in."""
    store = hourly
    faults = tuple(sorted({f"prog{k}": 3 for k in range(12)}.items()))  # 36 faults over 12 programs
    for i in range(4):
        record = _host(f"u{i}")
        if i == 0:
            record = dataclasses.replace(record, user_faults=faults)
        _beat(store, record, 24)
    store.ingest(make_crash("key-uf-0001", host="u0", received_at=T0 + HOUR))
    ranked = {b.host: b for b in store.bad_hosts()}  # type: ignore[attr-defined]
    assert ranked["u0"].user_faults == 36
    assert "36 user-space faults" in ranked["u0"].reason
    assert all(b.user_faults in (None, 0) for h, b in ranked.items() if h != "u0")


def test_exposure_retention_purges_old_days(hourly: Store) -> None:
    store = hourly
    _beat(store, _host("old"), 3, start=T0 - timedelta(days=500))
    _beat(store, _host("new"), 3)
    deleted = store.purge_exposure(now=T0 + HOUR)  # type: ignore[attr-defined]
    assert deleted > 0
    days = {d for (d,) in _rows(store, "SELECT DISTINCT day FROM exposure_profile_days")}
    assert days == {T0.timestamp() // 86400}
    assert not math.isnan(store.rates(None, Window(T0, T0 + HOUR))[0].host_days)  # type: ignore[attr-defined]


def test_new_cluster_rate_gauge_from_the_reporting_hosts(store: Store) -> None:
    """The gauge of new clusters' first-window rate, through the real store and Ingestor: 4 crashes
    of a cluster first seen 2 hours ago on a fleet of 50 reporting hosts is 4 / (50 × 2/24) × 1000
    = 960 per 1,000 host-days; a cluster first seen 2 days ago, or one with 2 crashes, is left out."""
    from prometheus_client import CollectorRegistry

    from collector.ingest import Ingestor
    from collector.metrics import Metrics

    now = T0 + timedelta(days=3)
    for i in range(50):
        store.heartbeat(_host(f"h{i:02d}"), now - timedelta(minutes=5))
    store.heartbeat(_host("gone"), now - timedelta(hours=2))  # not reporting: out of the denominator

    def crash(key: str, frame: str, host: str, at: datetime) -> None:
        store.ingest(make_crash(key, host=host, frames=(frame, "x", "y"), crash_time=at, received_at=now))

    for i in range(4):  # new: first crash 2 hours ago
        crash(f"new-{i}", "fresh_bug", f"h{i:02d}", now - timedelta(hours=2) + i * timedelta(minutes=20))
    for i in range(9):  # old: first crash two days ago, busy since
        crash(f"old-{i}", "old_bug", f"h{i:02d}", now - timedelta(days=2) + i * timedelta(hours=5))
    for i in range(2):  # new but only 2 crashes: below MIN_CRASHES, however high its rate
        crash(f"few-{i}", "rare_bug", f"h{i:02d}", now - timedelta(minutes=10))
    assert sorted(c.crashes for c in store.new_clusters(now - timedelta(hours=24))) == [2, 4]  # type: ignore[attr-defined]
    metrics = Metrics(CollectorRegistry())
    Ingestor(store, metrics, clock=lambda: now).refresh_analytics()
    assert metrics.new_cluster_rate._value.get() == pytest.approx(4 / (50 * 2 / 24) * 1000)


OLD_R, NEW_R = "6.1.0-55-amd64", "6.1.0-56-amd64"
QEMU = "QEMU Standard PC (i440FX + PIIX, 1996)"


def _update_fleet(store: Store, change_hour: int, new_ran_old: bool) -> str:
    """The demo's story in three days of hourly heartbeats: 12 old hosts (Dell R640) on OLD_R until
    `change_hour`, NEW_R after; 8 new hosts (QEMU, veth and bridge) from hour 24 on NEW_R only, or
    (`new_ran_old`) from hour 0 and updated with the old ones. Each new host crashes twice on
    NEW_R, in one cluster, whose id is returned."""
    for i in range(20):
        new = i >= 12
        start = 24 if new and not new_ran_old else 0
        for h in range(start, 73):
            release = OLD_R if h < change_hour and (not new or new_ran_old) else NEW_R
            record = _host(
                f"{'new' if new else 'old'}-{i:02d}", release=release, hardware=QEMU if new else "Dell R640",
                modules=("ext4", "veth", "bridge") if new else ("ext4",),
            )  # fmt: skip
            store.heartbeat(record, T0 + h * HOUR)
    cluster = ""
    for n in range(16):
        crash = make_crash(f"key-up-{n:04d}", host=f"new-{12 + n // 2:02d}", release=NEW_R, hardware=QEMU,
                           modules=("ext4", "veth", "bridge"), received_at=T0 + (48 + n) * HOUR)  # fmt: skip
        cluster = store.ingest(crash).cluster_id
    return cluster


@pytest.mark.parametrize("change_hour", [36, 48], ids=["mid-day", "at-midnight"])
def test_hosts_that_change_release_are_counted_once(hourly: Store, change_hour: int) -> None:
    """fleet_hosts is the number of distinct hosts, not one per profile a host ran (the old hosts
    ran two), on the update day too; the same for the values and the fleet's rate row."""
    store = hourly
    cluster = _update_fleet(store, change_hour, new_ran_old=False)
    window = Window(T0, T0 + timedelta(days=3))
    report = store.suspects(cluster, window)  # type: ignore[attr-defined]
    assert report.suspects, report.summary
    assert {s.fleet_hosts for s in report.suspects} == {20}
    with_ = {s.attributes: s.fleet_hosts_with for s in report.suspects}
    assert with_[(("hardware", QEMU),)] == with_[(("module", "veth"),)] == 8
    assert with_.get((("kernel_release", NEW_R),), 20) == 20
    assert "8 of 8 crashing hosts vs 8 of 20 in the fleet" in report.suspects[0].words
    (fleet,) = store.rates(None, window)  # type: ignore[attr-defined]
    assert fleet.hosts == 20


@pytest.mark.parametrize(
    ("new_ran_old", "claim"),
    [
        # Only the new hosts crash, and they never ran OLD_R: the old hosts' silence on it says
        # nothing about the bug.
        (False, f"too little exposure on {OLD_R} among hosts with "),
        # The new hosts ran OLD_R for a day and a half without a crash: a regression among them.
        (True, f"regression between {OLD_R} and {NEW_R}"),
    ],
    ids=["confounded", "regression-within-the-stratum"],
)
def test_regression_window_within_the_top_suspects_hosts(hourly: Store, new_ran_old: bool, claim: str) -> None:
    from collector.analytics.suspects import regression_stratum

    store = hourly
    cluster = _update_fleet(store, 36, new_ran_old)
    window = Window(T0, T0 + timedelta(days=3))
    stratum = regression_stratum(store.suspects(cluster, window))  # type: ignore[attr-defined]
    assert stratum and set(stratum) <= {("hardware", QEMU), ("module", "veth"), ("module", "bridge")}
    fleet_wide = store.regression(cluster, window)  # type: ignore[attr-defined]
    assert f"regression between {OLD_R} and {NEW_R}" in fleet_wide.words and fleet_wide.stratum == ()
    within = store.regression(cluster, window, stratum)  # type: ignore[attr-defined]
    assert within.stratum == stratum and claim in within.words, within.words
    assert within.words.count("among hosts with") == 1 and within.first_release == NEW_R
    assert within.last_clean_release == (OLD_R if new_ran_old else "")
    rows = {r.release: r for r in within.releases}
    assert rows[NEW_R].crashes == 16 and rows[NEW_R].host_days == pytest.approx(8 * (72 - (36 if new_ran_old else 24)) / 24)
    assert rows[OLD_R].host_days == pytest.approx(8 * 36 / 24 if new_ran_old else 0.0)
