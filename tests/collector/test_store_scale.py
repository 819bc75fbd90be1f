"""Module sets, counts, id prefixes, filters and purge: the store contract on both backends."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from collector.store import AmbiguousId, HostRecord, Store
from collector.store.sql import MIN_ID_PREFIX, SqlStore, load_migrations, module_set_id
from collector.store.sqlite import SqliteStore
from tests.collector.conftest import NOW, at, make_crash
from wire.model import Page, QueryFilter

ANY = QueryFilter()


def _host(name: str, modules: tuple[str, ...], release: str = "6.1.0-26-amd64") -> HostRecord:
    return HostRecord(name, release, "x86_64", "QEMU Standard PC", "0.3", 4, 2**33, modules)


def _rows(store: Store, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    assert isinstance(store, SqlStore)
    with store._read_tx() as tx:
        return tx.all(sql, params)


def test_hosts_share_one_stored_module_set(store: Store) -> None:
    mods = ("e1000e", "nvme", "xfs")
    for i in range(5):
        store.heartbeat(_host(f"web-{i}", mods), at(i))
    store.heartbeat(_host("db-1", ("nvme", "zfs")), at(1))
    assert _rows(store, "SELECT COUNT(*) FROM module_sets") == [(2,)]
    assert _rows(store, "SELECT COUNT(*) FROM module_set_members") == [(5,)]
    hosts, _ = store.list_hosts(ANY, Page())
    assert {h.hostname: h.modules for h in hosts}["web-3"] == mods
    assert isinstance(store, SqlStore)
    assert store.host_module_set("web-3") == module_set_id(mods)
    assert store.module_set(module_set_id(mods)) == mods
    assert store.module_set("") == ()
    assert store.host_module_set("nobody") is None
    # a module change points the host elsewhere; the old set stays for the hosts still on it
    store.heartbeat(_host("web-0", ("e1000e", "nvme")), at(10))
    assert store.host_module_set("web-0") == module_set_id(("nvme", "e1000e"))
    assert _rows(store, "SELECT COUNT(*) FROM module_sets") == [(3,)]
    [web0] = store.list_hosts(QueryFilter(host="web-0"), Page())[0]
    assert web0.modules == ("e1000e", "nvme")
    # the module filter reads the set members
    assert [h.hostname for h in store.list_hosts(QueryFilter(module="zfs"), Page())[0]] == ["db-1"]
    assert store.count_hosts(QueryFilter(module="xfs")) == 4


def test_a_swept_set_is_stored_again_by_the_next_heartbeat(store: Store) -> None:
    assert isinstance(store, SqlStore)
    store.heartbeat(_host("a", ("m1", "m2")), at(0))
    store.heartbeat(_host("a", ("m3",)), at(1))
    assert store.sweep_module_sets() == 1  # ("m1", "m2") is used by nobody now
    store._retry_write(lambda tx: tx.run("DELETE FROM module_sets"))  # as if a sweep raced a heartbeat
    store.heartbeat(_host("a", ("m3",)), at(2))
    assert store.module_set(module_set_id(("m3",))) == ("m3",)


def test_counts_come_from_the_store(store: Store) -> None:
    for i in range(7):
        store.ingest(make_crash(f"k-{i}", host=f"h{i % 3}", received_at=at(i)))
    store.ingest(make_crash("w-1", kind="warning", reason="WARNING", frames=("f",), received_at=at(9)))
    assert store.count_crashes() == 8
    assert store.count_clusters() == 2
    assert store.count_crashes(QueryFilter(kind="WARN")) == 1
    assert store.count_hosts() == 4  # hosts known from crashes alone
    rows, token = store.list_crashes(ANY, Page(size=3))
    assert len(rows) == 3 and token


def test_id_prefixes_resolve_when_unique(store: Store) -> None:
    first = store.ingest(make_crash("k-1"))
    detail = store.get_cluster(first.cluster_id[:MIN_ID_PREFIX].upper())
    assert detail is not None and detail.summary.id == first.cluster_id
    crash = store.get_crash(first.crash_id[:-3])
    assert crash is not None and crash.summary.id == first.crash_id
    assert store.get_crash(first.crash_id[:3]) is None  # shorter than 4 digits: not a prefix
    assert store.get_cluster("zzzz") is None
    [row] = store.list_crashes(QueryFilter(cluster_id=first.cluster_id[:6]), Page())[0]
    assert row.id == first.crash_id
    assert store.list_crashes(QueryFilter(cluster_id="ffffffffff"), Page()) == ([], "")
    assert store.count_crashes(QueryFilter(cluster_id="ffffffffff")) == 0


def test_ambiguous_prefix_lists_the_candidates(store: Store) -> None:
    assert isinstance(store, SqlStore)
    ids = ["abcd0000000000000001", "abcd0000000000000002", "abce0000000000000003"]

    def body(tx: Any) -> None:
        for i, crash_id in enumerate(ids):
            tx.run(
                "INSERT INTO crashes (id, idempotency_key, cluster_id, host, title, kind, normalized_reason,"
                " fingerprint, fingerprint_version, frames, source, occurred_at, received_at, kernel_release,"
                " hardware, guilty_frame, modules, host_facts, signature_json, excerpt, symbolized_json)"
                " VALUES (?, ?, 'c', 'h', 't', 'k', 'r', 'f', 'v', '[]', 's', 0, ?, '', '', '', '[]', '{}', '{}', '', '')",
                (crash_id, f"key-{i}", i),
            )

    store._retry_write(body)
    with pytest.raises(AmbiguousId) as caught:
        store.get_crash("ABCD")
    assert caught.value.candidates == tuple(ids[:2])
    assert "abcd0000000000000001" in str(caught.value) and "give more digits" in str(caught.value)
    detail = store.get_crash("abce")
    assert detail is not None and detail.summary.id == ids[2]


def test_filters_match_case_insensitive_prefixes_and_substrings(store: Store) -> None:
    store.ingest(make_crash("k-1", release="6.1.0-26-amd64", hardware="QEMU Standard PC (i440FX + PIIX, 1996)"))
    store.ingest(make_crash("k-2", release="5.10.0-9-amd64", hardware="Dell Inc. PowerEdge R640", host="db-1",
                            received_at=at(1)))  # fmt: skip
    store.ingest(make_crash("k-3", kind="warning", reason="WARNING", frames=("x",), received_at=at(2)))

    def hosts(flt: QueryFilter) -> list[str]:
        return [c.host for c in store.list_crashes(flt, Page())[0]]

    assert hosts(QueryFilter(kernel_release="6.1")) == ["web-1", "web-1"]
    assert hosts(QueryFilter(kernel_release="5.10.0-9-AMD64")) == ["db-1"]
    assert hosts(QueryFilter(hardware="poweredge")) == ["db-1"]
    assert hosts(QueryFilter(hardware="i440fx")) == ["web-1", "web-1"]
    assert hosts(QueryFilter(kind="NULL")) == ["db-1", "web-1"]
    assert hosts(QueryFilter(hardware="100%_")) == []  # LIKE's wildcards are literal
    assert hosts(QueryFilter(host="db")) == []  # hosts match exactly
    assert [c.kind for c in store.list_clusters(QueryFilter(kernel_release="5.10"), Page())[0]] == ["null-deref"]
    store.heartbeat(_host("web-1", ("nvme",), release="6.1.0-26-amd64"), at(3))
    assert [h.hostname for h in store.list_hosts(QueryFilter(kernel_release="6.1"), Page())[0]] == ["web-1"]


def test_purge_removes_old_crashes_then_empty_clusters(store: Store) -> None:
    old = store.ingest(make_crash("old-1", host="a", received_at=NOW - timedelta(days=40)))
    store.ingest(make_crash("old-2", host="b", received_at=NOW - timedelta(days=35)))
    gone = store.ingest(make_crash("old-w", kind="warning", reason="WARNING", frames=("g",), host="a",
                                   received_at=NOW - timedelta(days=31)))  # fmt: skip
    kept = store.ingest(make_crash("new-1", host="c", modules=("crashme",), received_at=NOW - timedelta(days=1)))
    assert old.cluster_id == kept.cluster_id != gone.cluster_id
    cutoff = NOW - timedelta(days=30)
    dry = store.purge(cutoff, dry_run=True)
    assert (dry.crashes, dry.clusters, dry.dry_run) == (3, 1, True)
    assert store.count_crashes() == 4  # a dry run changes nothing
    report = store.purge(cutoff)
    assert (report.crashes, report.clusters) == (3, 1)
    assert [c.id for c in store.list_crashes(ANY, Page())[0]] == [kept.crash_id]
    [cluster] = store.list_clusters(ANY, Page())[0]
    assert (cluster.id, cluster.count, cluster.hosts) == (kept.cluster_id, 1, 1)
    assert cluster.representative_crash_id == kept.crash_id
    assert cluster.first_seen == cluster.last_seen == NOW - timedelta(days=1)
    assert cluster.common_modules == ("crashme",)
    detail = store.get_cluster(kept.cluster_id)
    assert detail is not None
    assert [(b.value, b.count) for b in detail.by_host] == [("c", 1)]
    assert [(b.value, b.count) for b in detail.by_module] == [("crashme", 1)]
    assert store.get_cluster(gone.cluster_id) is None
    assert _rows(store, "SELECT COUNT(*) FROM cluster_buckets WHERE cluster_id = ?", (gone.cluster_id,)) == [(0,)]
    assert _rows(store, "SELECT COUNT(*) FROM crash_modules WHERE crash_id = ?", (old.crash_id,)) == [(0,)]
    assert {h.hostname: h.crashes for h in store.list_hosts(ANY, Page())[0]} == {"a": 0, "b": 0, "c": 1}
    # the same bug again after its cluster went: a fresh cluster with the same id
    again = store.ingest(make_crash("w-again", kind="warning", reason="WARNING", frames=("g",), received_at=NOW))
    assert again.cluster_created and again.cluster_id == gone.cluster_id
    assert store.purge(cutoff).crashes == 0


def test_migration_3_moves_host_module_lists_into_sets(tmp_path: Path) -> None:
    """A version-2 store with per-host module lists opens as version 3 with the same inventory."""
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
    for migration in load_migrations()[:2]:
        for statement in migration.statements:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (?, ?, 0)", (migration.version, migration.name))
    lists = {"a": ["nvme", "xfs"], "b": ["nvme", "xfs"], "c": ["zfs"], "d": []}
    for name, mods in lists.items():
        conn.execute(
            "INSERT INTO hosts (hostname, kernel_release, machine, hardware, agent_version, cpus, memory_bytes,"
            " modules, last_heartbeat, crashes) VALUES (?, '6.1', 'x86_64', '', '', 1, 1, ?, 1, 0)",
            (name, json.dumps(mods)),
        )
        conn.executemany("INSERT INTO host_modules VALUES (?, ?)", [(m, name) for m in mods])
    conn.close()
    store = SqliteStore(str(path))
    try:
        assert store.schema_version() == len(load_migrations())
        assert {h.hostname: list(h.modules) for h in store.list_hosts(ANY, Page())[0]} == lists
        assert _rows(store, "SELECT COUNT(*) FROM module_sets") == [(2,)]
        tables = {r[0] for r in _rows(store, "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "host_modules" not in tables
    finally:
        store.close()


def _picture(store: Store) -> list[tuple[Any, ...]]:
    """Everything a reader sees of clusters and hosts, crash ids left out (they differ per store)."""
    out: list[tuple[Any, ...]] = []
    for c in store.list_clusters(ANY, Page())[0]:
        d = store.get_cluster(c.id)
        assert d is not None
        out.append((c.id, c.title, c.count, c.hosts, c.first_seen, c.last_seen, c.kernel_releases, c.hardware,
                    c.common_modules, c.daily_counts, d.by_host, d.by_kernel_release, d.by_hardware, d.by_module))  # fmt: skip
    out.append(tuple((h.hostname, h.crashes) for h in store.list_hosts(ANY, Page())[0]))
    return out


def test_purge_in_batches_leaves_what_storing_only_the_rest_would(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("collector.store.sql.PURGE_BATCH", 4)
    crashes = [
        make_crash(f"k-{i}", host=f"h{i % 4}", frames=(f"guilty_{i % 3}", "caller"), release=f"6.1.0-{i % 2}",
                   hardware=f"hw{i % 3}", modules=("a", "b", f"m{i % 5}"), received_at=NOW - timedelta(days=20 - i))
        for i in range(18)
    ]  # fmt: skip
    for c in crashes:
        store.ingest(c)
    cutoff = NOW - timedelta(days=9, hours=12)  # crashes 0..10 go, 11..17 stay
    report = store.purge(cutoff)
    assert report.crashes == 11
    reference = SqliteStore(str(tmp_path / "reference.db"))
    try:
        for c in crashes[11:]:
            reference.ingest(c)
        assert _picture(store) == [*_picture(reference)[:-1], _picture(store)[-1]]
        # hosts keep their rows (they heartbeat), with the crash counts of what is left
        assert dict(_picture(store)[-1]) == {"h0": 2, "h1": 2, "h2": 1, "h3": 2}
    finally:
        reference.close()
