"""Query plans for the plan tests: a store filled to realistic size, and a verdict per statement.

`fill` writes thousands of hosts, clusters and crashes with multi-row INSERTs (seconds, not the
minutes the ingest path would take), then ANALYZEs, so that both planners choose as they would
in a fleet. `full_scans` EXPLAINs one statement (SQLite: EXPLAIN QUERY PLAN; PostgreSQL:
EXPLAIN (FORMAT JSON) with enable_seqscan off, so that a Seq Scan means "no index serves this")
and returns what it reads whole: a growing table without an index, or an index end to end
without a LIMIT to stop it.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from collector.clustering import bucket_keys, cluster_id_for
from collector.store.postgres import PostgresStore, _to_psycopg
from collector.store.sql import GROWING_TABLES, SqlStore, Tx, _insert_values, module_set_id
from collector.store.sqlite import SqliteStore

DAY_US = 86_400_000_000
NOW_US = 1_795_000_000 * 1_000_000
KINDS = ("null-deref", "warning", "bug", "general-protection", "soft-lockup")
MODULES = tuple(f"mod_{i:03d}" for i in range(300))


@dataclass
class World:
    """What `fill` wrote, for the drivers to aim at real rows."""

    hosts: list[str] = field(default_factory=list)
    clusters: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    fingerprints: list[str] = field(default_factory=list)
    module_sets: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)


def _hex(text: str, n: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def module_set(i: int, size: int = 50) -> tuple[str, ...]:
    """The i-th of a fleet's module sets: 50 modules out of 300, different per set."""
    return tuple(sorted(MODULES[(i * 7 + j * 3) % len(MODULES)] for j in range(size)))


def fill(store: SqlStore, hosts: int = 5000, clusters: int = 1000, crashes: int = 10000, sets: int = 40) -> World:
    world = World()
    world.module_sets = [(module_set_id(module_set(i)), module_set(i)) for i in range(sets)]
    world.hosts = [f"host-{i:06d}.dc{i % 7}.example" for i in range(hosts)]
    world.fingerprints = [_hex(f"fp{i}", 32) for i in range(clusters)]
    world.clusters = [cluster_id_for(fp) for fp in world.fingerprints]
    world.crashes = [f"{NOW_US // 1000 - (crashes - i) * 1000:012x}{_hex(f'c{i}', 8)}" for i in range(crashes)]

    def body(tx: Tx) -> None:
        _insert_values(
            tx, "INSERT INTO module_sets (id, modules, module_count, created_at)", 4,
            [(sid, json.dumps(list(mods)), len(mods), NOW_US) for sid, mods in world.module_sets], "",
        )  # fmt: skip
        _insert_values(
            tx, "INSERT INTO module_set_members (set_id, module)", 2,
            [(sid, m) for sid, mods in world.module_sets for m in mods], "",
        )  # fmt: skip
        _insert_values(
            tx,
            "INSERT INTO hosts (hostname, kernel_release, machine, hardware, agent_version, cpus,"
            " memory_bytes, module_set, last_heartbeat, crashes)",
            10,
            [
                (h, f"6.1.0-{i % 30}-amd64", "x86_64", "Dell R640", "0.3", 32, 2**37,
                 world.module_sets[i % sets][0], NOW_US - i, 2)
                for i, h in enumerate(world.hosts)
            ],
            "",
        )
        cluster_rows, fp_rows, bucket_rows, dim_rows, day_rows = [], [], [], [], []
        for i, (cid, fp) in enumerate(zip(world.clusters, world.fingerprints, strict=True)):
            kind = KINDS[i % len(KINDS)]
            frames = [f"func_{i}", f"caller_{i % 50}", "do_syscall_64"]
            cluster_rows.append(
                (cid, fp, "r1", f"BUG in func_{i}", kind, f"reason {kind}", f"func_{i}", json.dumps(frames),
                 crashes // clusters, 3, NOW_US - DAY_US * 30, NOW_US - i * 1000, world.crashes[i])
            )  # fmt: skip
            fp_rows.append((fp, cid, "fp-1", 1.0, NOW_US))
            bucket_rows += [(b, cid) for b in bucket_keys(kind, f"reason {kind}", frames)]
            for j in range(3):
                dim_rows.append((cid, "host", world.hosts[(i * 3 + j) % hosts], 3))
            dim_rows += [(cid, "kernel_release", f"6.1.0-{i % 30}-amd64", 10), (cid, "hardware", "Dell R640", 10)]
            dim_rows += [(cid, "module", m, 10) for m in module_set(i % sets)[:10]]
            day_rows += [(cid, NOW_US // DAY_US - d, 3) for d in range(5)]
        _insert_values(
            tx,
            "INSERT INTO clusters (id, fingerprint, rules_version, title, kind, normalized_reason, guilty_frame,"
            " frames, count, hosts, first_seen, last_seen, representative_crash_id)",
            13, cluster_rows, "",
        )  # fmt: skip
        _insert_values(
            tx, "INSERT INTO cluster_fingerprints (fingerprint, cluster_id, fingerprint_version, similarity,"
            " created_at)", 5, fp_rows, "",
        )  # fmt: skip
        _insert_values(tx, "INSERT INTO cluster_buckets (bucket, cluster_id)", 2, bucket_rows, "")
        _insert_values(tx, "INSERT INTO cluster_dims (cluster_id, dim, value, count)", 4, dim_rows, "")
        _insert_values(tx, "INSERT INTO cluster_days (cluster_id, day, count)", 3, day_rows, "")
        crash_rows, module_rows = [], []
        for i, crash_id in enumerate(world.crashes):
            c = i % clusters
            host = world.hosts[(c * 3 + i % 3) % hosts]
            mods = module_set(c % sets)[:5]
            received = NOW_US - (crashes - i) * 1_000_000
            crash_rows.append(
                (crash_id, _hex(f"key{i}", 32), world.clusters[c], host, f"BUG in func_{c}", KINDS[c % len(KINDS)],
                 "reason", world.fingerprints[c], "fp-1", "[]", "/var/crash/x", None, received, received,
                 f"6.1.0-{c % 30}-amd64", "Dell R640", f"func_{c}", json.dumps(list(mods)), "{}", "{}", "", "", "")
            )  # fmt: skip
            module_rows += [(m, crash_id) for m in mods]
        _insert_values(
            tx,
            "INSERT INTO crashes (id, idempotency_key, cluster_id, host, title, kind, normalized_reason,"
            " fingerprint, fingerprint_version, frames, source, crash_time, occurred_at, received_at,"
            " kernel_release, hardware, guilty_frame, modules, host_facts, signature_json, excerpt,"
            " symbolized_json, build_id)",
            23, crash_rows, "",
        )  # fmt: skip
        _insert_values(tx, "INSERT INTO crash_modules (module, crash_id)", 2, module_rows, "")

    store._retry_write(body)
    store._retry_write(lambda tx: tx.run("ANALYZE"))
    return world


_TABLE_REF = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+([a-z_]+)(?:\s+(?:AS\s+)?([a-z_]+))?", re.IGNORECASE)
_NOT_ALIAS = {"where", "on", "join", "left", "set", "values", "order", "group", "limit", "inner", "select"}
_SQLITE_SCAN = re.compile(r"^SCAN (\S+)(?: USING (?:COVERING )?INDEX (\S+))?")


def _tables(sql: str) -> dict[str, str]:
    """Alias (and name) -> table for every table the statement names."""
    found: dict[str, str] = {}
    for table, alias in _TABLE_REF.findall(sql):
        found[table] = table
        if alias and alias.lower() not in _NOT_ALIAS:
            found[alias] = table
    return found


def is_query(sql: str) -> bool:
    return sql.lstrip().split(None, 1)[0].upper() in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")


def full_scans(store: SqlStore, conn: Any, sql: str, params: tuple[Any, ...]) -> list[str]:
    """What the statement reads whole: ["SCAN crashes", "index crashes_recent without LIMIT"]."""
    tables = _tables(sql)
    limited = re.search(r"\bLIMIT\b", sql, re.IGNORECASE) is not None
    problems: list[str] = []
    if isinstance(store, SqliteStore):
        assert isinstance(conn, sqlite3.Connection)
        for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall():
            m = _SQLITE_SCAN.match(row[3])
            if m is None:
                continue
            table = tables.get(m.group(1), m.group(1))
            if table not in GROWING_TABLES:
                continue
            if m.group(2) is None:
                problems.append(f"SCAN {table}")
            elif not limited:
                problems.append(f"index {m.group(2)} of {table} end to end (no LIMIT)")
        return problems
    assert isinstance(store, PostgresStore)
    with conn.cursor() as cursor:
        cursor.execute("EXPLAIN (FORMAT JSON) " + _to_psycopg(sql), params)
        plan = cursor.fetchone()[0][0]["Plan"]
    for node, under_limit in _pg_nodes(plan, False):
        table = node.get("Relation Name", "")
        if table not in GROWING_TABLES:
            continue
        kind = node["Node Type"]
        if kind == "Seq Scan":
            problems.append(f"Seq Scan on {table}")
        elif kind in ("Index Scan", "Index Only Scan") and "Index Cond" not in node and not under_limit:
            problems.append(f"{kind} of {node.get('Index Name')} on {table} end to end (no LIMIT)")
    return problems


def _pg_nodes(node: dict[str, Any], under_limit: bool) -> Iterator[tuple[dict[str, Any], bool]]:
    under_limit = under_limit or node["Node Type"] == "Limit"
    yield node, under_limit
    for child in node.get("Plans", []):
        yield from _pg_nodes(child, under_limit)


def explain_connection(store: SqlStore) -> Any:
    """A connection of its own to the store's database, for EXPLAIN."""
    if isinstance(store, SqliteStore):
        return sqlite3.connect(store.path)
    assert isinstance(store, PostgresStore)
    import psycopg

    conn = psycopg.connect(store.url, autocommit=True)
    if store.schema is not None:
        conn.execute(f'SET search_path TO "{store.schema}"')
    # At test sizes PostgreSQL rightly prefers reading a few pages whole to 50 index probes; with
    # sequential scans priced out, a Seq Scan in the plan means that no index can serve it.
    conn.execute("SET enable_seqscan = off")
    return conn
