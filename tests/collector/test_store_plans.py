"""Every hot-path statement has an index plan, on SQLite and PostgreSQL (issue 19).

The hot paths are the store's own registry (collector.store.sql.HOT_PATHS); each is driven here
against a store of realistic size while `statement_observer` records what really runs, and
every recorded statement is EXPLAINed. A full scan of a table that grows with the fleet fails
the test, naming the path, the statement and the plan line.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from collector.store import HostRecord, Store
from collector.store.analytics import Window
from collector.store.sql import HOT_PATHS, SqlStore, _encode_token
from collector.store.sqlite import SqliteStore
from tests.collector.conftest import make_crash
from tests.collector.plans import NOW_US, World, explain_connection, fill, full_scans, is_query, module_set
from wire.model import Page, QueryFilter

AT = datetime.fromtimestamp(NOW_US / 1e6, tz=UTC)
WINDOW = Window(None, AT + timedelta(hours=1))


def _beat(name: str, modules: tuple[str, ...]) -> HostRecord:
    return HostRecord(name, "6.1.0-26-amd64", "x86_64", "Dell R640", "0.3", 32, 2**37, modules)


def _ingest_batch(store: SqlStore, crashes: list[Any]) -> None:
    store._retry_write(lambda tx: store._ingest_batch_tx(tx, crashes))


def _crash(w: World, key: str, cluster: int) -> Any:
    """A crash of an existing cluster (its fingerprint is stored)."""
    return make_crash(key, host=w.hosts[cluster], fingerprint=w.fingerprints[cluster], received_at=AT)


DRIVERS: dict[str, Callable[[SqlStore, World], object]] = {
    "ingest": lambda s, w: s._retry_write(lambda tx: s._ingest_tx(tx, _crash(w, "new-1", 7))),
    "ingest_batch": lambda s, w: _ingest_batch(s, [_crash(w, f"new-b{i}", i * 13) for i in range(20)]),
    "ingest_similar": lambda s, w: s._retry_write(
        lambda tx: s._ingest_tx(
            tx, make_crash("new-sim", frames=("func_3", "other", "do_syscall_64"), kind="bug", reason="reason bug")
        )
    ),
    "ingest_secondary": lambda s, w: s._retry_write(
        lambda tx: s._ingest_tx(
            tx, replace(make_crash("new-sec", frames=("func_9", "other")), secondary_fingerprint=w.fingerprints[9])
        )
    ),
    "ingest_duplicate": lambda s, w: s._retry_write(lambda tx: s._ingest_tx(tx, _crash(w, "new-1", 7))),
    "heartbeat_new": lambda s, w: s._retry_write(
        lambda tx: s._heartbeat_tx(tx, _beat("brand-new-host", w.module_sets[3][1]), NOW_US)
    ),
    "heartbeat_new_set": lambda s, w: s._retry_write(
        lambda tx: s._heartbeat_tx(tx, _beat("another-new-host", (*module_set(5), "zz_new")), NOW_US)
    ),
    "heartbeat_same": lambda s, w: s._retry_write(
        lambda tx: s._heartbeat_tx(tx, replace(_beat(w.hosts[11], w.module_sets[11][1])), NOW_US + 10)
    ),
    "heartbeat_batch": lambda s, w: s._retry_write(
        lambda tx: s._heartbeats_tx(
            tx,
            [(_beat(f"batch-new-{i:02d}", w.module_sets[i % 7][1]), NOW_US) for i in range(32)]
            + [(_beat(w.hosts[100 + i], w.module_sets[i % 5][1]), NOW_US + 600_000_000) for i in range(32)],
        )
    ),
    "list_clusters": lambda s, w: (
        s.list_clusters(QueryFilter(), Page(50)),
        s.list_clusters(QueryFilter(), Page(50, _encode_token("clusters", [NOW_US - 500_000, w.clusters[500]]))),
    ),
    "list_clusters_filtered": lambda s, w: (
        s.list_clusters(QueryFilter(host=w.hosts[30]), Page(50)),
        s.list_clusters(QueryFilter(module="mod_010"), Page(50)),
    ),
    "get_cluster": lambda s, w: (s.get_cluster(w.clusters[42]), s.get_cluster(w.clusters[42][:8])),
    "list_crashes": lambda s, w: (
        s.list_crashes(QueryFilter(), Page(50)),
        s.list_crashes(QueryFilter(), Page(50, _encode_token("crashes", [NOW_US - 5000 * 1_000_000, w.crashes[5000]]))),
    ),
    "list_crashes_of_cluster": lambda s, w: s.list_crashes(QueryFilter(cluster_id=w.clusters[9][:6]), Page(10)),
    "list_crashes_of_host": lambda s, w: s.list_crashes(QueryFilter(host=w.hosts[27]), Page(50)),
    "get_crash": lambda s, w: (s.get_crash(w.crashes[77]), s.get_crash(w.crashes[77][:14])),
    "list_hosts": lambda s, w: (
        s.list_hosts(QueryFilter(), Page(50)),
        s.list_hosts(QueryFilter(), Page(50, _encode_token("hosts", [w.hosts[2500]]))),
    ),
    "list_hosts_of_module": lambda s, w: s.list_hosts(QueryFilter(module=w.module_sets[2][1][0]), Page(50)),
    "counts": lambda s, w: (
        s.count_clusters(QueryFilter()), s.count_crashes(QueryFilter(cluster_id=w.clusters[9])),
        s.count_hosts(QueryFilter()),
    ),
    "new_clusters": lambda s, w: s.new_clusters(AT - timedelta(days=1)),  # type: ignore[attr-defined]
    "analytics_rates": lambda s, w: (
        s.rates(None, WINDOW), s.rates("kernel_release", WINDOW), s.rates("module", WINDOW),  # type: ignore[attr-defined]
    ),
    "analytics_suspects": lambda s, w: s.suspects(w.clusters[9], WINDOW),  # type: ignore[attr-defined]
    "analytics_bad_hosts": lambda s, w: s.bad_hosts(100),  # type: ignore[attr-defined]
    "triage_states": lambda s, w: s.triage_states(w.clusters[:50]),
}


def test_every_hot_path_has_a_driver() -> None:
    assert sorted(DRIVERS) == sorted(HOT_PATHS)


def test_hot_paths_use_indexes(store: Store) -> None:
    assert isinstance(store, SqlStore)
    world = fill(store)
    conn = explain_connection(store)
    problems: list[str] = []
    accepted: list[str] = []
    checked = 0
    try:
        for name, drive in DRIVERS.items():
            seen: list[tuple[str, tuple[Any, ...]]] = []
            store.statement_observer = lambda sql, params, seen=seen: seen.append((sql, params))  # type: ignore[misc]
            try:
                drive(store, world)
            finally:
                store.statement_observer = None
            assert seen, f"hot path {name} ran no statement"
            for sql, params in seen:
                if not is_query(sql):
                    continue
                checked += 1
                found = full_scans(store, conn, sql, params)
                if found and "/* scan:" in sql:
                    accepted.append(f"{name}: {sql.split('/* scan:')[1].split('*/')[0].strip()}: {found}")
                elif found:
                    problems.append(f"{name}: {found} in: {sql[:300]}")
    finally:
        conn.close()
    print(f"statements checked={checked} accepted scans={accepted}")
    assert checked >= len(DRIVERS)
    assert not problems, "full scans on the hot path:\n" + "\n".join(problems)


def test_the_checker_sees_a_full_scan(store: Store) -> None:
    """The plan test can fail: a lookup on an unindexed column of a filled table is reported."""
    assert isinstance(store, SqlStore)
    fill(store, hosts=2000, clusters=200, crashes=2000)
    conn = explain_connection(store)
    try:
        found = full_scans(store, conn, "SELECT id FROM crashes WHERE source = ?", ("/x",))
        walked = full_scans(store, conn, "SELECT id FROM crashes ORDER BY received_at DESC, id DESC", ())
    finally:
        conn.close()
    assert found and "crashes" in found[0]
    assert walked and "crashes" in walked[0]


def test_onboarding_reads_the_same_per_host_at_any_fleet_size(tmp_path: Any) -> None:
    """3,000 distinct hosts' first heartbeats on SQLite: the virtual-machine steps per onboarding
    (SQLite's progress handler counts them, rows read included) stay flat from the first hosts to
    the last. A scan of hosts or of a per-host module table would grow them ~linearly."""
    store = SqliteStore(str(tmp_path / "c.db"))
    try:
        steps = [0]

        def tick() -> int:
            steps[0] += 1
            return 0

        store._writer.set_progress_handler(tick, 10)
        sets = [module_set(i) for i in range(20)]
        per_host: list[int] = []
        for i in range(3000):
            before = steps[0]
            store.heartbeat(_beat(f"onboard-{i:05d}", sets[i % 20]), AT)
            per_host.append(steps[0] - before)
        steady: list[int] = []
        for i in range(2500, 3000):  # the same hosts again, inventory unchanged
            before = steps[0]
            store.heartbeat(_beat(f"onboard-{i:05d}", sets[i % 20]), AT + timedelta(minutes=5))
            steady.append(steps[0] - before)
        store._writer.set_progress_handler(None, 0)
        first = sorted(per_host[100:600])[250]  # medians; the first 20 hosts also write their sets
        last = sorted(per_host[2500:3000])[250]
        again = sorted(steady)[250]
        print(f"vm steps per heartbeat (x10): onboarding hosts 100-600 median={first},"
              f" hosts 2500-3000 median={last}, steady median={again}")  # fmt: skip
        assert last <= first * 1.3 + 5, (first, last)
        assert last <= again * 1.5 + 5, (last, again)
        with sqlite3.connect(store.path) as conn:
            assert conn.execute("SELECT COUNT(*) FROM module_sets").fetchone()[0] == 20
            assert conn.execute("SELECT COUNT(*) FROM hosts").fetchone()[0] == 3000
    finally:
        store.close()


@pytest.mark.postgres
def test_onboarding_plans_on_postgres(pg_schema: tuple[str, str]) -> None:
    """The same on PostgreSQL by plan: 3,000 distinct hosts onboarded, ANALYZEd, then every
    statement of one more host's first heartbeat is EXPLAINed: no Seq Scan of a growing table."""
    from collector.store.postgres import PostgresStore

    url, schema = pg_schema
    store = PostgresStore(url, schema=schema)
    try:
        sets = [module_set(i) for i in range(20)]
        for i in range(3000):
            store.heartbeat(_beat(f"onboard-{i:05d}", sets[i % 20]), AT)
        store._retry_write(lambda tx: tx.run("ANALYZE"))
        seen: list[tuple[str, tuple[Any, ...]]] = []
        store.statement_observer = lambda sql, params: seen.append((sql, params))
        store.heartbeat(_beat("onboard-last", sets[4]), AT)
        store.statement_observer = None
        conn = explain_connection(store)
        try:
            problems = [p for sql, params in seen if is_query(sql) for p in full_scans(store, conn, sql, params)]
        finally:
            conn.close()
        assert len(seen) >= 2 and not problems
        with explain_connection(store) as conn:
            assert conn.execute("SELECT COUNT(*) FROM module_sets").fetchone()[0] == 20
    finally:
        store.close()


@pytest.mark.postgres
def test_heartbeat_plans_made_on_empty_tables_stay_index_probes(pg_schema: tuple[str, str]) -> None:
    """psycopg prepares a statement after a few runs and PostgreSQL may then cache a generic plan,
    made while the tables were empty and kept until they are ANALYZEd (never, where autovacuum
    is off). The heartbeat batches' statements are run that way on an empty store, the tables
    then grow to 20,000 hosts without ANALYZE, and every cached plan is EXPLAINed on the same
    connection: none may scan a table that grows with the fleet. (A batch read as one
    `hostname IN (...)` fails here: its generic plan hash-joins the whole host_exposure.)"""
    from collector.store.postgres import PostgresStore

    url, schema = pg_schema
    store = PostgresStore(url, schema=schema)
    try:
        sets = [module_set(i) for i in range(4)]

        def batch(start: int, size: int, minutes: int) -> None:
            beats = [
                (replace(_beat(f"h-{i:06d}", sets[i % 4]), user_faults=(("nginx", 1),) if i % 3 else ()),
                 NOW_US + minutes * 60_000_000)
                for i in range(start, start + size)
            ]  # fmt: skip
            with store._write_tx() as tx:
                store._heartbeats_tx(tx, beats)

        for round_ in range(14):  # past psycopg's prepare threshold (5), then PostgreSQL's 5 custom plans
            batch(0, 20, round_ * 10)
        conn = store._conn()
        with conn.transaction():
            conn.execute(
                "INSERT INTO hosts (hostname, kernel_release, machine, hardware, agent_version, cpus, memory_bytes,"
                " module_set, last_heartbeat, crashes) SELECT 'g-' || i, 'r', 'x86_64', 'hw', 'a', 1, 1, '', 1, 0"
                " FROM generate_series(1, 20000) AS i"
            )
            conn.execute(
                "INSERT INTO host_exposure (hostname, profile, since, counted_day, counted_profile, seconds,"
                " labels, hardware_errors) SELECT 'g-' || i, 'p', 1, 0, '', 0, '{}', '{}'"
                " FROM generate_series(1, 20000) AS i"
            )
            conn.execute(
                "INSERT INTO host_user_faults (hostname, program, faults)"
                " SELECT 'g-' || i, 'nginx', 1 FROM generate_series(1, 20000) AS i"
            )
        batch(0, 20, 100)
        prepared = conn.execute(
            "SELECT name, statement, parameter_types::text[] FROM pg_prepared_statements WHERE generic_plans > 0"
        ).fetchall()
        assert prepared, "nothing was prepared: the test no longer sees cached plans"
        dummy = {"text": "'x'", "bigint": "0", "integer": "0", "smallint": "0", "double precision": "0"}
        scans = []
        for name, statement, types in prepared:
            args = ", ".join(dummy.get(t, "NULL") for t in types)
            plan = [r[0] for r in conn.execute(f"EXPLAIN EXECUTE {name}({args})" if types else f"EXPLAIN EXECUTE {name}")]
            scans += [f"{statement}\n  {line}" for line in plan
                      if "Seq Scan on" in line and any(f" {t} " in line + " " for t in ("hosts", "host_exposure", "host_user_faults"))]  # fmt: skip
        assert not scans, "\n".join(scans)
    finally:
        store.close()
