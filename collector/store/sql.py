"""The SQL both stores share: ingest (dedupe + cluster + insert), heartbeats, queries, recluster.

Statements are written once, in the subset SQLite 3.35+ and PostgreSQL 12+ both accept
(INSERT ... ON CONFLICT, `excluded.`, CASE instead of GREATEST/MAX), with `?` placeholders that
the PostgreSQL store rewrites to `%s`. Subclasses provide connections and transactions; nothing
here knows which database it talks to.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, Protocol, TypeVar

from collector.clustering import (
    CLUSTER_RULES_VERSION,
    MAX_CANDIDATES_PER_BUCKET,
    Candidate,
    Match,
    best_match,
    bucket_keys,
    bug_class,
    cluster_id_for,
)
from collector.signature import as_report_json
from collector.store.analytics import EXPOSURE_COLUMNS, AnalyticsStore
from collector.store.base import (
    AmbiguousId,
    BuildCrash,
    ClusterMove,
    HostRecord,
    IngestResult,
    InvalidPageToken,
    NewCrash,
    PurgeReport,
    ReclusterReport,
    Resign,
    StoredSignature,
    StoreError,
)
from collector.store.base import from_us as _dt
from collector.store.base import to_us as _us
from collector.store.writer import Write
from wire.model import (
    Breakdown,
    ClusterDetail,
    ClusterMerge,
    ClusterSummary,
    CrashDetail,
    CrashSummary,
    HostSummary,
    Page,
    QueryFilter,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "FILTER_MATCH",
    "GROWING_TABLES",
    "HOT_PATHS",
    "MAX_PAGE_SIZE",
    "SPARKLINE_DAYS",
    "Migration",
    "SqlStore",
    "StatementObserver",
    "Tx",
    "load_migrations",
    "module_set_id",
    "new_crash_id",
]

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
SPARKLINE_DAYS = 14
DAY_US = 86_400_000_000
# A crash_time later than this past received_at is a wrong clock, not a crash from the future.
CLOCK_SKEW = timedelta(minutes=10)
DIMENSIONS = ("host", "kernel_release", "hardware", "module")
RECLUSTER_BATCH = 1000  # crashes read per query while re-signing
PURGE_BATCH = 500  # crashes removed per transaction: a running collector waits at most one batch

T = TypeVar("T")
Row = tuple[Any, ...]
# Sees every statement a store runs, `?`-style SQL and its parameters (the first row of an
# executemany): how the plan tests and benchmarks learn what a request really runs.
StatementObserver = Callable[[str, tuple[Any, ...]], None]


class Cursor(Protocol):
    """What sqlite3 and psycopg cursors have in common, as far as this module uses them."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, params: Sequence[Sequence[Any]], /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Tx:
    """One transaction's cursor with the placeholder style of its database."""

    def __init__(
        self,
        cursor: Cursor,
        convert: Callable[[str], str],
        observer: StatementObserver | None = None,
        pipelined: bool = False,
    ) -> None:
        self._cursor = cursor
        self._convert = convert
        self._observer = observer
        # psycopg: `executemany(..., returning=True)` sends every row's statement in one pipeline
        self._pipelined = pipelined

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        if self._observer is not None:
            self._observer(sql, tuple(params))
        self._cursor.execute(self._convert(sql), tuple(params))
        return self._cursor.rowcount

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            if self._observer is not None:
                self._observer(sql, tuple(rows[0]))
            self._cursor.executemany(self._convert(sql), [tuple(r) for r in rows])

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        if self._observer is not None:
            self._observer(sql, tuple(params))
        self._cursor.execute(self._convert(sql), tuple(params))
        row = self._cursor.fetchone()
        return tuple(row) if row is not None else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        if self._observer is not None:
            self._observer(sql, tuple(params))
        self._cursor.execute(self._convert(sql), tuple(params))
        return [tuple(r) for r in self._cursor.fetchall()]

    def one_each(self, sql: str, rows: Sequence[Sequence[Any]]) -> list[Row | None]:
        """`one` for each parameter row, in order. On PostgreSQL all of them go in one round trip
        (a pipeline), each with the plan of the single-row statement: a lookup by key stays an
        index probe whatever the table's size, where one `IN (...)` over the same keys gets a
        cached generic plan that, made while the tables were small, hash-joins whole tables."""
        if not rows:
            return []
        if self._observer is not None:
            self._observer(sql, tuple(rows[0]))
        converted = self._convert(sql)
        found: list[Row | None] = []
        if not self._pipelined:
            for params in rows:
                self._cursor.execute(converted, tuple(params))
                row = self._cursor.fetchone()
                found.append(tuple(row) if row is not None else None)
            return found
        cursor: Any = self._cursor  # a psycopg cursor: executemany's `returning`, nextset()
        cursor.executemany(converted, [tuple(params) for params in rows], returning=True)
        while True:
            row = cursor.fetchone()
            found.append(tuple(row) if row is not None else None)
            if not cursor.nextset():
                return found


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def load_migrations() -> tuple[Migration, ...]:
    """collector/store/migrations/NNNN_name.sql in order; statements end at a line holding ';'."""
    folder = resources.files("collector.store.migrations")
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        number, _, name = entry.name.removesuffix(".sql").partition("_")
        statements: list[str] = []
        current: list[str] = []
        for line in entry.read_text(encoding="utf-8").splitlines():
            if line.strip() == ";":
                text = "\n".join(current).strip()
                if text:
                    statements.append(text)
                current = []
            elif not line.lstrip().startswith("--"):
                current.append(line)
        if "\n".join(current).strip():
            raise StoreError(f"migration {entry.name}: last statement is not terminated by a ';' line")
        found.append(Migration(int(number), name, tuple(statements)))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise StoreError(f"migrations must be numbered 1..N without gaps, found {versions}")
    return tuple(found)


def _occurred(crash_time: datetime | None, received_at: datetime) -> datetime:
    """When the crash happened as far as the store trusts it: the reported crash time unless the
    sender's clock put it in the future."""
    if crash_time is None:
        return received_at
    if crash_time.tzinfo is None:
        crash_time = crash_time.replace(tzinfo=UTC)
    return crash_time if crash_time <= received_at + CLOCK_SKEW else received_at


def _encode_token(kind: str, values: Sequence[Any]) -> str:
    raw = json.dumps([kind, *values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(kind: str, token: str, types: tuple[type, ...]) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidPageToken("page token is not one this collector issued") from None
    if (
        not isinstance(values, list)
        or len(values) != len(types) + 1
        or values[0] != kind
        or not all(isinstance(v, t) and not isinstance(v, bool) for v, t in zip(values[1:], types, strict=True))
    ):
        raise InvalidPageToken(f"page token is not a {kind} list token")
    return values[1:]


def _page_size(page: Page) -> int:
    if page.size <= 0:
        return DEFAULT_PAGE_SIZE
    return min(page.size, MAX_PAGE_SIZE)


# How each filter of QueryFilter matches (docs/collector.md, "Filters"). Exact filters run on an
# index (a host's crashes, a module's hosts); the others are case-insensitive and are checked
# row by row while the list walks its order index, stopping when the page is full.
FILTER_MATCH: dict[str, str] = {
    "host": "exact",  # hostnames are identities: crashes_host / hosts primary key
    "module": "exact",  # module names as the kernel spells them: crash_modules / module_set_members
    "kind": "prefix",  # "null" matches null-deref; case-insensitive
    "kernel_release": "prefix",  # "6.1" matches 6.1.0-26-amd64; case-insensitive
    "hardware": "substring",  # "qemu" matches "QEMU Standard PC (i440FX + PIIX, 1996)"
    # cluster_id: a full id or a unique prefix of at least MIN_ID_PREFIX hex digits (resolve_id)
}
MIN_ID_PREFIX = 4
MAX_ID_CANDIDATES = 10  # candidates an ambiguous prefix lists


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass
class _ListQuery:
    """A List* query: WHERE terms with their parameters (built side by side so they cannot drift)
    and one page of it, read one row past the page to learn whether another page follows."""

    select: str
    terms: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def where(self, term: str, *params: Any) -> None:
        self.terms.append(term)
        self.params.extend(params)

    def equal(self, *columns: tuple[str, str | None]) -> None:
        """`column = value` for every value the filter sets."""
        for column, value in columns:
            if value:
                self.where(f"{column} = ?", value)

    def match(self, name: str, column: str, value: str | None) -> None:
        """`column` against a filter value the way FILTER_MATCH says filter `name` matches."""
        if not value:
            return
        how = FILTER_MATCH[name]
        if how == "exact":
            self.where(f"{column} = ?", value)
        else:
            pattern = _like_escape(value.lower())
            pattern = pattern + "%" if how == "prefix" else "%" + pattern + "%"
            self.where(f"lower({column}) LIKE ? ESCAPE '\\'", pattern)

    def between(self, since_column: str, until_column: str, flt: QueryFilter) -> None:
        if flt.since is not None:
            self.where(f"{since_column} >= ?", _us(flt.since))
        if flt.until is not None:
            self.where(f"{until_column} < ?", _us(flt.until))

    def resume_newest_first(self, kind: str, page: Page, order_column: str, id_column: str) -> None:
        """Continue a newest-first list (`order_column` DESC, `id_column` DESC) after the token's row."""
        if page.token:
            last, ident = _decode_token(kind, page.token, (int, str))
            self.where(f"({order_column} < ? OR ({order_column} = ? AND {id_column} < ?))", last, last, ident)

    def count(self, tx: Tx) -> int:
        """How many rows the filter matches (`select` is a COUNT(*) query)."""
        sql = self.select
        if self.terms:
            sql += " WHERE " + " AND ".join(self.terms)
        row = tx.one(sql, self.params)
        return int(row[0]) if row is not None else 0

    def page(
        self, tx: Tx, order: str, page: Page, kind: str, key: Callable[[Row], list[Any]]
    ) -> tuple[list[Row], str]:
        """The page's rows and the token of the next page ("" on the last), keyed by `key` of the last row."""
        size = _page_size(page)
        sql = self.select
        if self.terms:
            sql += " WHERE " + " AND ".join(self.terms)
        rows = tx.all(f"{sql} ORDER BY {order} LIMIT ?", [*self.params, size + 1])
        more = len(rows) > size
        rows = rows[:size]
        return rows, _encode_token(kind, key(rows[-1])) if more and rows else ""


class _DuplicateKey(Exception):
    """Another transaction stored the same idempotency key first; ours is rolled back."""


class _BatchConflict(Exception):
    """A batched ingest met a row its lookups did not predict; redo the batch crash by crash."""


# The store's hot paths: every method a collector runs per request or heartbeat, in the forms
# that run different SQL. tests/collector/test_store_plans.py drives each one against a store of
# realistic size on SQLite and PostgreSQL, records every statement it runs (statement_observer)
# and fails on a full scan of a table that grows with the fleet (GROWING_TABLES), and on an
# index walked end to end without a LIMIT. A statement that reads a whole table or index by
# design carries a `/* scan: why */` comment, which the test accepts and prints.
HOT_PATHS: dict[str, str] = {
    "ingest": "ReportCrash one crash per transaction (PostgreSQL; SQLite's one-by-one fallback)",
    "ingest_batch": "ReportCrash through SQLite's group commit: many crashes, few statements",
    "ingest_similar": "a crash with an unseen fingerprint: the similarity candidates by bucket",
    "ingest_secondary": "a crash with an unseen fingerprint whose previous-rules fingerprint is known (a rule transition)",
    "ingest_duplicate": "a report whose idempotency key is stored: dedupe",
    "heartbeat_new": "the first heartbeat of a host (onboarding) with a known module set",
    "heartbeat_new_set": "a heartbeat introducing a module set nobody reported before",
    "heartbeat_same": "a known host, inventory unchanged",
    "heartbeat_batch": "a writer thread's batch of heartbeats: new hosts, and known ones credited exposure",
    "list_clusters": "ListClusters, first and next page",
    "list_clusters_filtered": "ListClusters by host and module",
    "get_cluster": "GetCluster by id and by unique prefix",
    "list_crashes": "ListCrashes, first and next page",
    "list_crashes_of_cluster": "ListCrashes of one cluster (crashfleet cluster ID)",
    "list_crashes_of_host": "ListCrashes of one host",
    "get_crash": "GetCrash by id and by unique prefix",
    "list_hosts": "ListHosts, first and next page",
    "list_hosts_of_module": "ListHosts running one module",
    "counts": "the totals a listing's first page carries",
    "new_clusters": "the gauge refresh: clusters first seen in the last day (their first-window rate)",
    "analytics_rates": "crashfleet rates: the fleet, by kernel release, by module (bench/analytics_bench.py)",
    "analytics_suspects": "crashfleet suspects CLUSTER: its crashing hosts and the window's exposure",
    "analytics_bad_hosts": "crashfleet hosts --suspect, and the gauge refresh's count of flagged hosts",
    "triage_states": "the triage badges of a page of clusters (the web page's cluster list)",
}
# Tables whose rows grow with hosts, crashes or clusters; module sets grow with the number of
# distinct sets a fleet runs, a few hundred at most, and may be read whole.
GROWING_TABLES = (
    "hosts", "crashes", "crash_modules", "clusters", "cluster_fingerprints", "cluster_buckets",
    "cluster_dims", "cluster_days", "cluster_triage",
)  # fmt: skip

# Parameters per multi-row statement: under SQLite's (32766) and PostgreSQL's (65535) limits.
MAX_VARIABLES = 8000
MAX_IN_LIST = 500

_CRASH_INSERT = (
    "INSERT INTO crashes (id, idempotency_key, cluster_id, host, title, kind, normalized_reason,"
    " fingerprint, fingerprint_version, frames, source, crash_time, occurred_at, received_at,"
    " kernel_release, hardware, guilty_frame, modules, host_facts, signature_json, excerpt, symbolized_json,"
    " build_id, secondary_fingerprint)"
)
_CRASH_CONFLICT = "ON CONFLICT (idempotency_key) DO NOTHING"
_HOST_INSERT = (
    "INSERT INTO hosts (hostname, kernel_release, machine, hardware, agent_version, cpus,"
    " memory_bytes, crashes)"
)
_HOST_CONFLICT = "ON CONFLICT (hostname) DO UPDATE SET crashes = hosts.crashes + excluded.crashes"
_DIM_INSERT = "INSERT INTO cluster_dims (cluster_id, dim, value, count)"
_DIM_CONFLICT = "ON CONFLICT (cluster_id, dim, value) DO UPDATE SET count = cluster_dims.count + excluded.count"
_DAY_INSERT = "INSERT INTO cluster_days (cluster_id, day, count)"
_DAY_CONFLICT = "ON CONFLICT (cluster_id, day) DO UPDATE SET count = cluster_days.count + excluded.count"


def new_crash_id() -> str:
    """20 hex digits: milliseconds since the epoch (12), then 32 random bits (8).

    Time first so that every index holding crash ids (the primary key, crash_modules,
    crashes_build) grows at its right edge: a batch of new crashes dirties a few index pages
    instead of one random page per crash and index (13.5 -> 9.7 pages written per report on a
    store of 20 000 crashes). The random part keeps ids of one millisecond (and of other replicas) apart; a clash is
    a primary-key conflict, never a silent merge.
    """
    return f"{time.time_ns() // 1_000_000:012x}{random.getrandbits(32):08x}"


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _insert_values(tx: Tx, head: str, width: int, rows: Sequence[Sequence[Any]], tail: str) -> int:
    """`head VALUES (..), (..) tail` for many rows in few statements; returns the rows affected."""
    group = f"({_marks(width)})"
    total = 0
    for chunk in _chunks(rows, max(1, MAX_VARIABLES // width)):
        sql = f"{head} VALUES {', '.join([group] * len(chunk))} {tail}"
        total += tx.run(sql, [value for row in chunk for value in row])
    return total


def _crash_row(crash_id: str, cluster_id: str, c: NewCrash, occurred: int) -> tuple[Any, ...]:
    return (
        crash_id, c.idempotency_key, cluster_id, c.host, c.title, c.kind, c.normalized_reason,
        c.fingerprint, c.fingerprint_version, json.dumps(list(c.frames)), c.source,
        _us(c.crash_time) if c.crash_time is not None else None, occurred, _us(c.received_at),
        c.kernel_release, c.hardware, c.guilty_frame, json.dumps(list(c.modules)),
        json.dumps(c.host_facts, sort_keys=True), c.signature_json, c.excerpt, c.symbolized_json, c.build_id,
        c.secondary_fingerprint,
    )  # fmt: skip


def _host_row(c: NewCrash, crashes: int) -> tuple[Any, ...]:
    """A hosts row for a host first seen through a crash (a heartbeat fills in the rest)."""
    return (
        c.host, c.host_facts.get("kernel_release", c.kernel_release), c.host_facts.get("machine", ""),
        c.host_facts.get("hardware", c.hardware), c.host_facts.get("agent_version", ""),
        _int_fact(c.host_facts, "cpus"), _int_fact(c.host_facts, "memory_bytes"), crashes,
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Occurrence:
    """The parts of a crash that cluster aggregates are made of."""

    crash_id: str
    host: str
    kernel_release: str
    hardware: str
    modules: tuple[str, ...]
    occurred_us: int


@dataclass(frozen=True, slots=True)
class _Assignment:
    cluster_id: str
    created: bool
    similarity: float
    match: str = "exact"  # 'exact', 'created', 'similar', 'secondary'


@dataclass(slots=True)
class _ClusterDelta:
    count: int = 0
    new_hosts: int = 0
    first_seen: int = 0
    last_seen: int = 0
    first_crash_id: str = ""


class _BatchAggregates:
    """What a batch of crashes adds to cluster aggregates, summed so each table takes one
    multi-row upsert (the per-crash path, `SqlStore._account`, does the same one crash at a time)."""

    def __init__(self) -> None:
        self.clusters: dict[str, _ClusterDelta] = {}
        self.host_pairs: dict[tuple[str, str], int] = {}
        self.dims: dict[tuple[str, str, str], int] = {}
        self.days: dict[tuple[str, int], int] = {}
        self.hosts: dict[str, tuple[NewCrash, int]] = {}
        self.modules: set[tuple[str, str]] = set()
        self.outcomes: list[tuple[int, _Assignment, str, tuple[str, str]]] = []

    def add(self, index: int, assignment: _Assignment, o: _Occurrence, crash: NewCrash) -> None:
        cid = assignment.cluster_id
        delta = self.clusters.get(cid)
        if delta is None:
            delta = self.clusters[cid] = _ClusterDelta(0, 0, o.occurred_us, o.occurred_us, o.crash_id)
        delta.count += 1
        delta.first_seen = min(delta.first_seen, o.occurred_us)
        delta.last_seen = max(delta.last_seen, o.occurred_us)
        pair = (cid, o.host)
        self.host_pairs[pair] = self.host_pairs.get(pair, 0) + 1
        values = [("kernel_release", o.kernel_release), ("hardware", o.hardware)]
        values += [("module", m) for m in sorted(set(o.modules))]
        for dim, value in values:
            if value:
                self.dims[(cid, dim, value)] = self.dims.get((cid, dim, value), 0) + 1
        day = (cid, o.occurred_us // DAY_US)
        self.days[day] = self.days.get(day, 0) + 1
        first, n = self.hosts.get(o.host, (crash, 0))
        self.hosts[o.host] = (first, n + 1)
        self.modules.update((m, o.crash_id) for m in set(o.modules))
        self.outcomes.append((index, assignment, o.crash_id, pair))

    def write(
        self, tx: Tx, json_rows: Callable[[Tx, Sequence[tuple[str, str]], Sequence[Any]], list[list[Any]]]
    ) -> set[tuple[str, str]]:
        """Apply everything; returns the (cluster, host) pairs the clusters had not seen before."""
        pairs = sorted(self.host_pairs)
        seen: set[tuple[str, str]] = set()
        for chunk in _chunks(pairs, MAX_IN_LIST):
            clusters = sorted({cid for cid, _ in chunk})
            hosts = sorted({host for _, host in chunk})
            where = f"dim = 'host' AND cluster_id IN ({_marks(len(clusters))}) AND value IN ({_marks(len(hosts))})"
            rows = json_rows(tx, [("cluster_id, value", f"FROM cluster_dims WHERE {where}")], [*clusters, *hosts])
            seen.update((cid, host) for cid, host in rows)
        new_hosts = {pair for pair in pairs if pair not in seen}
        for cid, _host in new_hosts:
            self.clusters[cid].new_hosts += 1
        dim_rows = [(cid, "host", host, n) for (cid, host), n in sorted(self.host_pairs.items())]
        dim_rows += [(cid, dim, value, n) for (cid, dim, value), n in sorted(self.dims.items())]
        _insert_values(tx, _DIM_INSERT, 4, dim_rows, _DIM_CONFLICT)
        cluster_rows = [
            (cid, d.count, d.new_hosts, d.first_seen, d.last_seen, d.first_crash_id)
            for cid, d in sorted(self.clusters.items())
        ]
        for part in _chunks(cluster_rows, MAX_VARIABLES // 6):
            # VALUES columns are column1..column6 in SQLite and PostgreSQL alike.
            tx.run(
                "UPDATE clusters SET count = clusters.count + v.column2, hosts = clusters.hosts + v.column3,"
                " first_seen = CASE WHEN v.column4 < clusters.first_seen THEN v.column4 ELSE clusters.first_seen END,"
                " last_seen = CASE WHEN v.column5 > clusters.last_seen THEN v.column5 ELSE clusters.last_seen END,"
                " representative_crash_id = CASE WHEN clusters.representative_crash_id = '' THEN v.column6"
                " ELSE clusters.representative_crash_id END"
                f" FROM (VALUES {', '.join(['(?, ?, ?, ?, ?, ?)'] * len(part))}) AS v WHERE clusters.id = v.column1",
                [value for row in part for value in row],
            )
        day_rows = [(cid, day, n) for (cid, day), n in sorted(self.days.items())]
        _insert_values(tx, _DAY_INSERT, 3, day_rows, _DAY_CONFLICT)
        host_rows = [_host_row(first, n) for _host, (first, n) in sorted(self.hosts.items())]
        _insert_values(tx, _HOST_INSERT, 8, host_rows, _HOST_CONFLICT)
        module_rows = sorted(self.modules)
        _insert_values(tx, "INSERT INTO crash_modules (module, crash_id)", 2, module_rows, "ON CONFLICT DO NOTHING")
        return new_hosts


class SqlStore(AnalyticsStore, ABC):
    """Everything but connections. Subclasses implement `_write_tx`, `_read_tx` and `close`."""

    # Called with every statement this store runs (plan tests and benchmarks set it; None in service).
    statement_observer: StatementObserver | None = None

    # Whether Tx.one_each pipelines its statements (PostgreSQL) or runs them one by one (SQLite,
    # in process: nothing to save).
    PIPELINED = False

    def _tx(self, cursor: Cursor, convert: Callable[[str], str]) -> Tx:
        return Tx(cursor, convert, self.statement_observer, self.PIPELINED)

    # Subclass hooks ---------------------------------------------------------------------------

    @abstractmethod
    def _write_tx(self) -> AbstractContextManager[Tx]:
        """A write transaction that commits on normal exit and rolls back on an exception."""

    @abstractmethod
    def _read_tx(self) -> AbstractContextManager[Tx]:
        """A read-only transaction (one consistent snapshot for a multi-statement read)."""

    @abstractmethod
    def close(self) -> None: ...

    def _retry_write(self, body: Callable[[Tx], T]) -> T:
        """Run `body` in a write transaction; PostgreSQL overrides this to retry deadlocks."""
        with self._write_tx() as tx:
            return body(tx)

    # Schema -----------------------------------------------------------------------------------

    def _migrate(self, tx: Tx) -> int:
        """Apply pending migrations inside the caller's (locked) transaction; returns the version."""
        tx.run(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
        )
        applied = {int(r[0]) for r in tx.all("SELECT version FROM schema_version")}
        current = max(applied, default=0)
        migrations = load_migrations()
        known = migrations[-1].version if migrations else 0
        if current > known:
            raise StoreError(f"database schema version {current} is newer than this collector knows ({known})")
        now = _us(datetime.now(UTC))
        # Each migration not yet recorded, in order (a database is never missing an earlier one
        # while holding a later: they are applied in one transaction each, in order).
        for migration in (m for m in migrations if m.version not in applied):
            for statement in migration.statements:
                tx.run(statement)
            if migration.name in _DATA_STEPS:
                _DATA_STEPS[migration.name](tx)
            tx.run(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, now),
            )
            log.info("store migrated version=%d name=%s", migration.version, migration.name)
        return known

    def schema_version(self) -> int:
        with self._read_tx() as tx:
            row = tx.one("SELECT MAX(version) FROM schema_version")
        return int(row[0]) if row is not None and row[0] is not None else 0

    # Ingest -----------------------------------------------------------------------------------

    def ingest(self, crash: NewCrash) -> IngestResult:
        try:
            return self._write_ingest(crash)
        except _DuplicateKey:
            with self._read_tx() as tx:
                row = tx.one(
                    "SELECT id, cluster_id FROM crashes WHERE idempotency_key = ?", (crash.idempotency_key,)
                )
            if row is None:  # pragma: no cover - the conflicting row was committed before we looked
                raise StoreError("idempotency key conflicted but no stored crash has it") from None
            return IngestResult(crash_id=row[0], cluster_id=row[1], duplicate=True)

    # How a dialect folds rows into one JSON array text (SQLite; PostgreSQL overrides): one row
    # to fetch instead of one per result row.
    _JSON_AGG = "'[' || COALESCE(group_concat(r.j, ','), '') || ']'"
    _JSON_ARRAY = "json_array"

    def _json_rows(self, tx: Tx, arms: Sequence[tuple[str, str]], params: Sequence[Any]) -> list[list[Any]]:
        """The rows of `SELECT columns rest UNION ALL ...` (one arm per (columns, rest)), fetched
        as one JSON value in one row."""
        inner = " UNION ALL ".join(f"SELECT {self._JSON_ARRAY}({columns}) AS j {rest}" for columns, rest in arms)
        row = tx.one(f"SELECT {self._JSON_AGG} FROM ({inner}) r", params)
        value = row[0] if row is not None else "[]"
        rows = json.loads(value) if isinstance(value, str) else value
        return [list(r) for r in rows]

    def _write_ingest(self, crash: NewCrash) -> IngestResult:
        """Store one crash in its own write transaction; SQLite overrides this to batch."""
        return self._retry_write(lambda tx: self._ingest_tx(tx, crash))

    def _ingest_batch_tx(self, tx: Tx, crashes: Sequence[NewCrash]) -> list[IngestResult]:
        """The same as `_ingest_tx` for each crash in order, in a number of statements that does
        not grow with the batch (apart from one UPDATE per touched cluster and the similarity
        search for fingerprints nobody has seen).

        Why: in the collector process every statement releases and re-takes the GIL, and with
        the event loop and the validating threads busy each re-take can wait up to the switch
        interval; statements per report, not their SQL, bounded the group-commit writer.
        Only for a writer that holds the database's write lock (SQLite's BEGIN IMMEDIATE): the
        key and fingerprint lookups at the start stay true for the whole batch. A crash insert
        that conflicts anyway raises _BatchConflict, and the caller redoes the batch one by one.
        """
        stored: dict[str, tuple[str, str]] = {}
        known: dict[str, str] = {}
        keys = sorted({c.idempotency_key for c in crashes})
        fingerprints = sorted({c.fingerprint for c in crashes})
        for start in range(0, max(len(keys), len(fingerprints)), MAX_IN_LIST):
            some_keys, some_fps = keys[start : start + MAX_IN_LIST], fingerprints[start : start + MAX_IN_LIST]
            # One statement, one row: every returned row would cost another GIL round trip.
            arms = [
                ("'k', idempotency_key, id, cluster_id", f"FROM crashes WHERE idempotency_key IN ({_marks(len(some_keys))})"),
                ("'f', fingerprint, cluster_id, ''", f"FROM cluster_fingerprints WHERE fingerprint IN ({_marks(len(some_fps))})"),
            ]  # fmt: skip
            if not some_keys or not some_fps:
                arms = arms[:1] if some_keys else arms[1:]
            for tag, name, first, second in self._json_rows(tx, arms, [*some_keys, *some_fps]):
                if tag == "k":
                    stored[name] = (first, second)
                else:
                    known[name] = first
        batch = _BatchAggregates()
        results: list[IngestResult | None] = []
        crash_rows: list[tuple[Any, ...]] = []
        for c in crashes:
            if c.idempotency_key in stored:
                crash_id, cluster_id = stored[c.idempotency_key]
                results.append(IngestResult(crash_id=crash_id, cluster_id=cluster_id, duplicate=True))
                continue
            occurred = _us(_occurred(c.crash_time, c.received_at))
            if c.fingerprint in known:
                assignment = _Assignment(known[c.fingerprint], False, 1.0)
            else:
                assignment = self._assign(
                    tx, c.fingerprint, c.fingerprint_version, c.kind, c.normalized_reason, c.frames,
                    c.title, c.guilty_frame, occurred, c.secondary_fingerprint,
                )  # fmt: skip
                known[c.fingerprint] = assignment.cluster_id
            crash_id = new_crash_id()
            stored[c.idempotency_key] = (crash_id, assignment.cluster_id)
            crash_rows.append(_crash_row(crash_id, assignment.cluster_id, c, occurred))
            batch.add(
                len(results), assignment,
                _Occurrence(crash_id, c.host, c.kernel_release, c.hardware, c.modules, occurred), c,
            )  # fmt: skip
            results.append(None)
        if crash_rows:
            inserted = _insert_values(tx, _CRASH_INSERT, len(crash_rows[0]), crash_rows, _CRASH_CONFLICT)
            if inserted != len(crash_rows):
                raise _BatchConflict(f"{len(crash_rows) - inserted} crash rows conflicted")
            new_hosts = batch.write(tx, self._json_rows)
            for index, assignment, crash_id, pair in batch.outcomes:
                results[index] = IngestResult(
                    crash_id=crash_id,
                    cluster_id=assignment.cluster_id,
                    duplicate=False,
                    cluster_created=assignment.created,
                    cluster_new_host=pair in new_hosts,
                    similarity=assignment.similarity,
                    match=assignment.match,
                )
                new_hosts.discard(pair)  # only the first crash from a host is news to its cluster
        return [r for r in results if r is not None]

    def _ingest_tx(self, tx: Tx, c: NewCrash) -> IngestResult:
        existing = tx.one("SELECT id, cluster_id FROM crashes WHERE idempotency_key = ?", (c.idempotency_key,))
        if existing is not None:
            return IngestResult(crash_id=existing[0], cluster_id=existing[1], duplicate=True)
        occurred = _us(_occurred(c.crash_time, c.received_at))
        assignment = self._assign(
            tx, c.fingerprint, c.fingerprint_version, c.kind, c.normalized_reason, c.frames,
            c.title, c.guilty_frame, occurred, c.secondary_fingerprint,
        )  # fmt: skip
        crash_id = new_crash_id()
        row = _crash_row(crash_id, assignment.cluster_id, c, occurred)
        inserted = _insert_values(tx, _CRASH_INSERT, len(row), [row], _CRASH_CONFLICT)
        if inserted == 0:
            raise _DuplicateKey
        tx.many(
            "INSERT INTO crash_modules (module, crash_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(m, crash_id) for m in sorted(set(c.modules))],
        )
        occurrence = _Occurrence(crash_id, c.host, c.kernel_release, c.hardware, c.modules, occurred)
        new_host = self._account(tx, assignment.cluster_id, occurrence)
        _insert_values(tx, _HOST_INSERT, 8, [_host_row(c, 1)], _HOST_CONFLICT)
        return IngestResult(
            crash_id=crash_id,
            cluster_id=assignment.cluster_id,
            duplicate=False,
            cluster_created=assignment.created,
            cluster_new_host=new_host,
            similarity=assignment.similarity,
            match=assignment.match,
        )

    def _candidates(self, tx: Tx, kind: str, reason: str, buckets: Sequence[str]) -> list[Candidate]:
        seen: dict[str, Candidate] = {}
        wanted = bug_class(kind, reason)
        for bucket in buckets:
            rows = tx.all(
                "SELECT c.id, c.frames, c.kind, c.normalized_reason FROM cluster_buckets b"
                " JOIN clusters c ON c.id = b.cluster_id WHERE b.bucket = ? ORDER BY b.cluster_id LIMIT ?",
                (bucket, MAX_CANDIDATES_PER_BUCKET),
            )
            for cluster_id, frames, c_kind, c_reason in rows:
                if cluster_id not in seen and bug_class(c_kind, c_reason) == wanted:
                    seen[cluster_id] = Candidate(cluster_id, tuple(json.loads(frames)))
        return list(seen.values())

    def _assign(
        self,
        tx: Tx,
        fingerprint: str,
        version: str,
        kind: str,
        reason: str,
        frames: tuple[str, ...],
        title: str,
        guilty_frame: str,
        occurred: int,
        secondary: str = "",
    ) -> _Assignment:
        """Exact fingerprint, else the cluster of the secondary fingerprint (a rule transition),
        else the most similar indexed cluster, else a new cluster. The fingerprint row records
        which of these it was and what matched (`reason`, `detail`): every merge is explained.

        Race-free across replicas: whoever inserts the fingerprint row first decides its cluster;
        a loser's INSERT ... ON CONFLICT DO NOTHING waits for the winner's commit, inserts nothing,
        and the SELECT after it reads the winner's decision.
        """
        row = tx.one("SELECT cluster_id FROM cluster_fingerprints WHERE fingerprint = ?", (fingerprint,))
        if row is not None:
            return _Assignment(row[0], False, 1.0)
        match: Match | None = None
        why, detail = "created", ""
        buckets = bucket_keys(kind, reason, frames)
        declined = ""
        if secondary and secondary != fingerprint:
            row = tx.one("SELECT cluster_id FROM cluster_fingerprints WHERE fingerprint = ?", (secondary,))
            if row is not None:
                # The new edition split what the old one merged: the first guilty frame to come
                # back through the old cluster keeps it; another is another bug under the new rules.
                other = tx.one(
                    "SELECT guilty_frame FROM cluster_fingerprints WHERE cluster_id = ? AND reason = 'secondary'"
                    " AND guilty_frame <> ? LIMIT 1",
                    (row[0], guilty_frame),
                )
                if other is None:
                    match = Match(row[0], 1.0)
                    why, detail = "secondary", f"fingerprint under the previous rules {secondary}"
                else:
                    declined = f"; not {row[0]} by its previous-rules fingerprint: that went on with {other[0]}"
        if match is None and buckets:
            match = best_match(frames, self._candidates(tx, kind, reason, buckets))
            if match is not None:
                why = "similar"
                detail = (
                    f"bug class {bug_class(kind, reason).replace(chr(0x1F), ' ')}, guilty frame {frames[0]},"
                    f" frame similarity {match.similarity:.2f} ({CLUSTER_RULES_VERSION})"
                )
        detail = (detail + declined).removeprefix("; ")
        cluster_id = match.cluster_id if match is not None else cluster_id_for(fingerprint)
        score = match.similarity if match is not None else 1.0
        won = tx.run(
            "INSERT INTO cluster_fingerprints (fingerprint, cluster_id, fingerprint_version, similarity,"
            " created_at, reason, detail, guilty_frame) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (fingerprint) DO NOTHING",
            (fingerprint, cluster_id, version, score, _us(datetime.now(UTC)), why, detail, guilty_frame),
        )
        if won == 0:
            row = tx.one("SELECT cluster_id FROM cluster_fingerprints WHERE fingerprint = ?", (fingerprint,))
            if row is None:  # pragma: no cover - a conflicting row is committed before the SELECT
                raise StoreError(f"fingerprint {fingerprint} conflicted but is not stored")
            return _Assignment(row[0], False, 1.0)
        if match is not None:
            return _Assignment(cluster_id, False, score, why)
        tx.run(
            "INSERT INTO clusters (id, fingerprint, rules_version, title, kind, normalized_reason,"
            " guilty_frame, frames, count, hosts, first_seen, last_seen, representative_crash_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?, '') ON CONFLICT DO NOTHING",
            (
                cluster_id, fingerprint, CLUSTER_RULES_VERSION, title, kind, reason, guilty_frame,
                json.dumps(list(frames)), occurred, occurred,
            ),
        )  # fmt: skip
        tx.many(
            "INSERT INTO cluster_buckets (bucket, cluster_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(b, cluster_id) for b in buckets],
        )
        return _Assignment(cluster_id, True, 1.0, "created")

    def _account(self, tx: Tx, cluster_id: str, o: _Occurrence) -> bool:
        """Add one occurrence to a cluster's aggregates; True when the cluster gained a new host."""
        new_host = tx.run(
            "INSERT INTO cluster_dims (cluster_id, dim, value, count) VALUES (?, 'host', ?, 1)"
            " ON CONFLICT DO NOTHING",
            (cluster_id, o.host),
        )
        if not new_host:
            tx.run(
                "UPDATE cluster_dims SET count = count + 1 WHERE cluster_id = ? AND dim = 'host' AND value = ?",
                (cluster_id, o.host),
            )
        tx.run(
            "UPDATE clusters SET count = count + 1, hosts = hosts + ?,"
            " first_seen = CASE WHEN ? < first_seen THEN ? ELSE first_seen END,"
            " last_seen = CASE WHEN ? > last_seen THEN ? ELSE last_seen END,"
            " representative_crash_id = CASE WHEN representative_crash_id = '' THEN ?"
            " ELSE representative_crash_id END WHERE id = ?",
            (1 if new_host else 0, o.occurred_us, o.occurred_us, o.occurred_us, o.occurred_us, o.crash_id, cluster_id),
        )
        dims = [("kernel_release", o.kernel_release), ("hardware", o.hardware)]
        dims += [("module", m) for m in sorted(set(o.modules))]
        tx.many(
            "INSERT INTO cluster_dims (cluster_id, dim, value, count) VALUES (?, ?, ?, 1)"
            " ON CONFLICT (cluster_id, dim, value) DO UPDATE SET count = cluster_dims.count + 1",
            [(cluster_id, dim, value) for dim, value in dims if value],
        )
        tx.run(
            "INSERT INTO cluster_days (cluster_id, day, count) VALUES (?, ?, 1)"
            " ON CONFLICT (cluster_id, day) DO UPDATE SET count = cluster_days.count + 1",
            (cluster_id, o.occurred_us // DAY_US),
        )
        return bool(new_host)

    # Group commit: what a batch of writes does inside its one transaction (collector.store.writer)

    # Errors after which the whole batch's transaction is rolled back and run again (PostgreSQL:
    # deadlocks, serialization failures, a dropped connection) rather than failing one write.
    RETRY_BATCH: tuple[type[BaseException], ...] = ()

    def ingest_write(self, crash: NewCrash) -> Write:
        """A crash to store, for `commit` (result: IngestResult)."""
        return Write(lambda tx: self._ingest_tx(tx, crash), crash)

    def heartbeat_write(self, host: HostRecord, at: datetime) -> Write:
        """A heartbeat to store, for `commit` (result: None)."""
        stamp = _us(at)
        return Write(lambda tx: self._heartbeat_tx(tx, host, stamp), heartbeat=(host.hostname, stamp), host=host)

    def heartbeat(self, host: HostRecord, at: datetime) -> None:
        self.submit_heartbeat(host, at).result()

    def submit_heartbeat(self, host: HostRecord, at: datetime) -> Future[None]:
        """Queue a heartbeat for the writer thread's next group commit; the Future resolves once
        it is committed."""
        future: Future[None] = self.submit(self.heartbeat_write(host, at))
        return future

    @abstractmethod
    def submit(self, job: Write) -> Future[Any]:
        """Queue `job` for the store's writer thread (collector.store.writer); its Future answers
        once its batch committed."""

    def run_batch(self, tx: Tx, batch: list[Write]) -> None:
        """The writes in order: runs of ingests and of heartbeats batched, the rest one by one."""
        start = 0
        while start < len(batch):
            end = start
            while end < len(batch) and batch[end].crash is not None:
                end += 1
            if end > start:
                self._run_ingest_batch(tx, batch[start:end])
                start = end
                continue
            while end < len(batch) and batch[end].heartbeat is not None:
                end += 1
            if end > start:
                self._run_heartbeat_batch(tx, batch[start:end])
                start = end
            else:
                self._run_job(tx, batch[start])
                start += 1

    def _run_job(self, tx: Tx, job: Write) -> None:
        """One write in its own SAVEPOINT, so that its failure rolls back only itself."""
        tx.run("SAVEPOINT job")
        try:
            job.result = job.body(tx)
        except self.RETRY_BATCH:
            raise
        except Exception as exc:
            job.error = exc
            tx.run("ROLLBACK TO job")
        tx.run("RELEASE job")

    def _run_ingest_batch(self, tx: Tx, jobs: list[Write]) -> None:
        """Consecutive ingest jobs as one batched ingest (SqlStore._ingest_batch_tx); if that
        fails, roll it back and run the jobs one by one, so one bad report fails alone."""
        tx.run("SAVEPOINT batch")
        try:
            results = self._ingest_batch_tx(tx, [job.crash for job in jobs if job.crash is not None])
        except self.RETRY_BATCH:
            raise
        except Exception as exc:
            tx.run("ROLLBACK TO batch")
            tx.run("RELEASE batch")
            log.warning("batched ingest failed, storing one by one reports=%d error=%s", len(jobs), exc)
            for job in jobs:
                self._run_job(tx, job)
            return
        tx.run("RELEASE batch")
        for job, result in zip(jobs, results, strict=True):
            job.result = result

    def _run_heartbeat_batch(self, tx: Tx, jobs: list[Write]) -> None:
        """Consecutive heartbeats: per host only the one that a sequential run would leave in
        place (the latest; the last queued on a tie) is written, and every heartbeat of that host
        shares its outcome. All hosts run under one SAVEPOINT; if that fails, roll it back and
        run the survivors one by one, so one bad heartbeat fails alone."""
        winners: dict[str, Write] = {}
        for job in jobs:
            assert job.heartbeat is not None
            hostname, stamp = job.heartbeat
            best = winners.get(hostname)
            if best is None or best.heartbeat is None or stamp >= best.heartbeat[1]:
                winners[hostname] = job
        tx.run("SAVEPOINT beats")
        try:
            # In hostname order: replicas committing overlapping batches lock hosts' rows in one
            # order, so they wait for each other rather than deadlock (PostgreSQL).
            beats = []
            for _, job in sorted(winners.items()):
                assert job.host is not None and job.heartbeat is not None
                beats.append((job.host, job.heartbeat[1]))
            self._heartbeats_tx(tx, beats)
        except self.RETRY_BATCH:
            raise
        except Exception as exc:
            tx.run("ROLLBACK TO beats")
            tx.run("RELEASE beats")
            log.warning(
                "batched heartbeats failed, storing one by one heartbeats=%d error=%s", len(winners), exc
            )
            for job in winners.values():
                self._run_job(tx, job)
        else:
            tx.run("RELEASE beats")
        for job in jobs:
            assert job.heartbeat is not None
            winner = winners[job.heartbeat[0]]
            if winner is not job:
                job.result, job.error = winner.result, winner.error

    # Hosts ------------------------------------------------------------------------------------

    def _heartbeat_tx(self, tx: Tx, h: HostRecord, at: int) -> None:
        """One host's heartbeat: a batch of one."""
        self._heartbeats_tx(tx, [(h, at)])

    def _heartbeats_tx(self, tx: Tx, beats: Sequence[tuple[HostRecord, int]]) -> None:
        """Hosts' inventories (distinct hostnames, each with its heartbeat's time in µs): a row of
        each host's own plus a pointer to its (shared) module set, and the exposure bookkeeping of
        fleet analytics (collector.store.analytics).

        A fixed number of round trips per batch, whatever its size: one read of every host's
        stored state, then one write per table (`executemany`; on PostgreSQL each is one
        pipeline of single-row statements). Every statement is a primary-key probe or an insert,
        whatever the fleet's size: a new host costs what a known one does
        (tests/collector/test_store_plans.py holds it to that, also for plans cached while the
        tables were empty).
        """
        # One read for the inventory, its module set and the exposure bookkeeping, per host.
        stored = tx.one_each(
            f"SELECT h.module_set, h.last_heartbeat, s.id, {EXPOSURE_COLUMNS} FROM hosts h"
            " LEFT JOIN module_sets s ON s.id = h.module_set"
            " LEFT JOIN host_exposure e ON e.hostname = h.hostname WHERE h.hostname = ?",
            [(h.hostname,) for h, _ in beats],
        )
        new_sets: dict[str, tuple[tuple[str, ...], int]] = {}
        host_rows: list[tuple[Any, ...]] = []
        known: list[str] = []
        fault_rows: list[tuple[str, str, int]] = []
        exposures: list[tuple[str, HostRecord, int, int | None, Row | None]] = []
        for (h, at), row in zip(beats, stored, strict=True):
            if row is not None and row[1] is not None and row[1] > at:
                continue  # a late, out-of-order heartbeat must not roll the inventory back
            modules = tuple(sorted(set(h.modules)))
            set_id = module_set_id(modules)
            if set_id and (row is None or row[0] != set_id or row[2] is None):
                new_sets.setdefault(set_id, (modules, at))
            host_rows.append(
                (h.hostname, h.kernel_release, h.machine, h.hardware, h.agent_version, h.cpus,
                 h.memory_bytes, set_id, at)
            )  # fmt: skip
            # The heartbeat carries this boot's user-space fault counts (a snapshot): they replace
            # the stored ones. A new host has nothing to delete.
            if row is not None:
                known.append(h.hostname)
            fault_rows += [(h.hostname, program, count) for program, count in dict(h.user_faults).items()]
            prior = row[3:] if row is not None and row[3] is not None else None
            exposures.append((h.hostname, h, at, row[1] if row is not None else None, prior))
        for set_id, (modules, at) in sorted(new_sets.items()):
            _put_module_set(tx, set_id, modules, at)
        tx.many(
            "INSERT INTO hosts (hostname, kernel_release, machine, hardware, agent_version, cpus,"
            " memory_bytes, module_set, last_heartbeat, crashes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)"
            " ON CONFLICT (hostname) DO UPDATE SET kernel_release = excluded.kernel_release,"
            " machine = excluded.machine, hardware = excluded.hardware,"
            " agent_version = excluded.agent_version, cpus = excluded.cpus,"
            " memory_bytes = excluded.memory_bytes, module_set = excluded.module_set,"
            " last_heartbeat = excluded.last_heartbeat",
            host_rows,
        )
        tx.many("DELETE FROM host_user_faults WHERE hostname = ?", [(name,) for name in known])
        tx.many("INSERT INTO host_user_faults (hostname, program, faults) VALUES (?, ?, ?)", fault_rows)
        self._exposures_tx(tx, exposures)

    # Module sets: the API for readers of host inventories (analytics joins on these tables) ----

    def module_set(self, set_id: str) -> tuple[str, ...] | None:
        """The sorted module names of set `set_id` (() for the empty set ""), None if unknown."""
        if not set_id:
            return ()
        with self._read_tx() as tx:
            row = tx.one("SELECT modules FROM module_sets WHERE id = ?", (set_id,))
        return tuple(json.loads(row[0])) if row is not None else None

    def host_module_set(self, hostname: str) -> str | None:
        """The module-set id host `hostname` last reported ("" for none), None for an unknown host."""
        with self._read_tx() as tx:
            row = tx.one("SELECT module_set FROM hosts WHERE hostname = ?", (hostname,))
        return str(row[0]) if row is not None else None

    def sweep_module_sets(self) -> int:
        """Delete module sets no host points at any more (a fleet that changed modules leaves
        its old sets behind); returns how many went. Run by purge: storage stays one row per
        distinct set in use. A heartbeat racing with the sweep re-creates its set on the host's
        next heartbeat (`_heartbeat_tx` checks the set still exists)."""

        def body(tx: Tx) -> int:
            unused = [
                r[0]
                for r in tx.all(
                    "SELECT s.id FROM module_sets s WHERE NOT EXISTS"
                    " (SELECT 1 FROM hosts h WHERE h.module_set = s.id) /* scan: periodic sweep, not per request */"
                )
            ]
            for chunk in _chunks(unused, MAX_IN_LIST):
                tx.run(f"DELETE FROM module_set_members WHERE set_id IN ({_marks(len(chunk))})", chunk)
                tx.run(f"DELETE FROM module_sets WHERE id IN ({_marks(len(chunk))})", chunk)
            return len(unused)

        return self._retry_write(body)

    def user_faults(self, hostname: str) -> dict[str, int]:
        with self._read_tx() as tx:
            rows = tx.all("SELECT program, faults FROM host_user_faults WHERE hostname = ?", (hostname,))
        return {str(program): int(faults) for program, faults in rows}

    def hosts_by_release(self) -> dict[str, int]:
        with self._read_tx() as tx:
            rows = tx.all(
                "SELECT kernel_release, COUNT(*) FROM hosts WHERE last_heartbeat IS NOT NULL GROUP BY kernel_release"
            )
        return {release: int(count) for release, count in rows}

    # Queries ----------------------------------------------------------------------------------

    _CLUSTER_COLUMNS = (
        "c.id, c.title, c.kind, c.fingerprint, c.count, c.hosts, c.first_seen, c.last_seen,"
        " c.representative_crash_id, c.guilty_frame"
    )

    class _NoMatch(Exception):
        """A filter names a cluster that does not exist: the answer is empty without a query."""

    def _resolve_filter_cluster(self, tx: Tx, flt: QueryFilter) -> str | None:
        """The cluster id a filter's `cluster_id` (an id or a unique prefix) stands for."""
        if not flt.cluster_id:
            return None
        resolved = self._resolve(tx, "clusters", flt.cluster_id)
        if resolved is None:
            raise SqlStore._NoMatch
        return resolved

    def _cluster_query(self, tx: Tx, select: str, flt: QueryFilter) -> _ListQuery:
        q = _ListQuery(select)
        q.match("kind", "c.kind", flt.kind)
        q.equal(("c.id", self._resolve_filter_cluster(tx, flt)))
        for dim, value in (
            ("host", flt.host), ("kernel_release", flt.kernel_release),
            ("hardware", flt.hardware), ("module", flt.module),
        ):  # fmt: skip
            if not value:
                continue
            inner = _ListQuery("")
            inner.match(dim, "d.value", value)
            q.where(
                "EXISTS (SELECT 1 FROM cluster_dims d WHERE d.cluster_id = c.id AND d.dim = ? AND "
                + inner.terms[0] + ")",
                dim,
                *inner.params,
            )
        q.between("c.last_seen", "c.first_seen", flt)
        return q

    def list_clusters(self, flt: QueryFilter, page: Page) -> tuple[list[ClusterSummary], str]:
        with self._read_tx() as tx:
            try:
                q = self._cluster_query(tx, f"SELECT {self._CLUSTER_COLUMNS} FROM clusters c", flt)
            except SqlStore._NoMatch:
                return [], ""
            q.resume_newest_first("clusters", page, "c.last_seen", "c.id")
            rows, token = q.page(tx, "c.last_seen DESC, c.id DESC", page, "clusters", lambda r: [r[7], r[0]])
            return self._summaries(tx, rows), token

    def count_clusters(self, flt: QueryFilter | None = None) -> int:
        """Clusters the filter matches (all of them without one): the total beside a listing's
        first page. A count reads every matching index entry: once per listing, not per page."""
        with self._read_tx() as tx:
            try:
                q = self._cluster_query(tx, "SELECT COUNT(*) /* scan: a listing's total */ FROM clusters c",
                                        flt or QueryFilter())  # fmt: skip
            except SqlStore._NoMatch:
                return 0
            return q.count(tx)

    def _resolve(self, tx: Tx, table: str, text: str) -> str | None:
        """The id in `table` ("clusters" or "crashes") that `text` is, or is the unique prefix of
        (at least MIN_ID_PREFIX hex digits, any case); None when none is. AmbiguousId lists the
        candidates when several ids start with it. A range scan of the primary key: no full scan."""
        ident = text.strip().lower()
        if tx.one(f"SELECT id FROM {table} WHERE id = ?", (ident,)) is not None:
            return ident
        if len(ident) < MIN_ID_PREFIX or any(ch not in "0123456789abcdef" for ch in ident):
            return None
        # Ids are lower-case hex, and every hex digit sorts below "g" in any collation.
        rows = tx.all(
            f"SELECT id FROM {table} WHERE id >= ? AND id < ? ORDER BY id LIMIT ?",
            (ident, ident + "g", MAX_ID_CANDIDATES + 1),
        )
        if not rows:
            return None
        if len(rows) > 1:
            raise AmbiguousId("cluster" if table == "clusters" else "crash", ident, [r[0] for r in rows])
        return str(rows[0][0])

    def resolve_id(self, table: str, text: str) -> str | None:
        """Public form of `_resolve` for "clusters" and "crashes" (the CLI's `cluster ID`, `crash ID`)."""
        if table not in ("clusters", "crashes"):
            raise ValueError(f"no ids to resolve in {table!r}")
        with self._read_tx() as tx:
            return self._resolve(tx, table, text)

    def _summaries(self, tx: Tx, rows: list[Row]) -> list[ClusterSummary]:
        if not rows:
            return []
        ids = [r[0] for r in rows]
        marks = ", ".join("?" for _ in ids)
        dims: dict[tuple[str, str], list[tuple[str, int]]] = {}
        for cluster_id, dim, value, count in tx.all(
            f"SELECT cluster_id, dim, value, count FROM cluster_dims WHERE cluster_id IN ({marks})"
            " AND dim IN ('kernel_release', 'hardware', 'module') ORDER BY count DESC, value",
            ids,
        ):
            dims.setdefault((cluster_id, dim), []).append((value, int(count)))
        today = _us(datetime.now(UTC)) // DAY_US
        first_day = today - SPARKLINE_DAYS + 1
        days: dict[str, list[int]] = {cid: [0] * SPARKLINE_DAYS for cid in ids}
        for cluster_id, day, count in tx.all(
            f"SELECT cluster_id, day, count FROM cluster_days WHERE cluster_id IN ({marks}) AND day >= ?",
            [*ids, first_day],
        ):
            if first_day <= day <= today:
                days[cluster_id][day - first_day] = int(count)
        # When the first and last crash arrived, beside when they happened (first/last_seen): two
        # lookups per cluster on the crashes_cluster index, a loose index scan in both databases.
        received: dict[str, tuple[int | None, int | None]] = {
            cid: (lo, hi)
            for cid, lo, hi in tx.all(
                "SELECT c.id,"
                " (SELECT MIN(k.received_at) FROM crashes k WHERE k.cluster_id = c.id),"
                " (SELECT MAX(k.received_at) FROM crashes k WHERE k.cluster_id = c.id)"
                f" FROM clusters c WHERE c.id IN ({marks})",
                ids,
            )
        }
        result = []
        for cid, title, kind, fp, count, hosts, first, last, rep, guilty in rows:
            first_received, last_received = received.get(cid, (None, None))
            modules = [v for v, n in dims.get((cid, "module"), []) if n == count]
            result.append(
                ClusterSummary(
                    id=cid,
                    title=title,
                    kind=kind,
                    fingerprint=fp,
                    count=int(count),
                    hosts=int(hosts),
                    first_seen=_dt(first),
                    last_seen=_dt(last),
                    kernel_releases=tuple(v for v, _ in dims.get((cid, "kernel_release"), [])),
                    hardware=tuple(v for v, _ in dims.get((cid, "hardware"), [])),
                    common_modules=tuple(sorted(modules)),
                    representative_crash_id=rep,
                    guilty_frame=guilty,
                    daily_counts=tuple(days[cid]),
                    first_received=_dt(first_received) if first_received is not None else None,
                    last_received=_dt(last_received) if last_received is not None else None,
                )
            )
        return result

    def get_cluster(self, cluster_id: str) -> ClusterDetail | None:
        """One cluster by id or unique id prefix (AmbiguousId when the prefix is not unique)."""
        with self._read_tx() as tx:
            resolved = self._resolve(tx, "clusters", cluster_id)
            if resolved is None:
                return None
            cluster_id = resolved
            rows = tx.all(f"SELECT {self._CLUSTER_COLUMNS} FROM clusters c WHERE c.id = ?", (cluster_id,))
            if not rows:
                return None
            summary = self._summaries(tx, rows)[0]
            breakdown: dict[str, list[Breakdown]] = {d: [] for d in DIMENSIONS}
            for dim, value, count in tx.all(
                "SELECT dim, value, count FROM cluster_dims WHERE cluster_id = ? ORDER BY count DESC, value",
                (cluster_id,),
            ):
                breakdown[dim].append(Breakdown(value, int(count)))
            fingerprints = tx.all(
                "SELECT fingerprint, reason, detail, similarity, fingerprint_version, created_at"
                " FROM cluster_fingerprints WHERE cluster_id = ? ORDER BY created_at, fingerprint",
                (cluster_id,),
            )
        return ClusterDetail(
            summary=summary,
            by_host=tuple(breakdown["host"]),
            by_kernel_release=tuple(breakdown["kernel_release"]),
            by_hardware=tuple(breakdown["hardware"]),
            by_module=tuple(breakdown["module"]),
            fingerprints=tuple(r[0] for r in fingerprints),
            merges=tuple(
                ClusterMerge(str(fp), str(why), str(detail), float(score), str(version), _dt(int(at)))
                for fp, why, detail, score, version, at in fingerprints
            ),
        )

    _CRASH_COLUMNS = (
        "k.id, k.cluster_id, k.host, k.title, k.kind, k.fingerprint, k.source, k.crash_time,"
        " k.received_at, k.kernel_release, k.hardware, k.guilty_frame"
    )

    @staticmethod
    def _crash_summary(row: Row) -> CrashSummary:
        return CrashSummary(
            id=row[0],
            cluster_id=row[1],
            host=row[2],
            title=row[3],
            kind=row[4],
            fingerprint=row[5],
            source=row[6],
            crash_time=_dt(row[7]) if row[7] is not None else None,
            received_at=_dt(row[8]),
            kernel_release=row[9],
            hardware=row[10],
            guilty_frame=row[11],
        )

    def _crash_query(self, tx: Tx, select: str, flt: QueryFilter) -> _ListQuery:
        q = _ListQuery(select)
        q.equal(("k.cluster_id", self._resolve_filter_cluster(tx, flt)))
        q.match("host", "k.host", flt.host)
        q.match("kind", "k.kind", flt.kind)
        q.match("kernel_release", "k.kernel_release", flt.kernel_release)
        q.match("hardware", "k.hardware", flt.hardware)
        if flt.module:
            q.where("EXISTS (SELECT 1 FROM crash_modules m WHERE m.module = ? AND m.crash_id = k.id)", flt.module)
        q.between("k.occurred_at", "k.occurred_at", flt)
        return q

    def list_crashes(self, flt: QueryFilter, page: Page) -> tuple[list[CrashSummary], str]:
        with self._read_tx() as tx:
            try:
                q = self._crash_query(tx, f"SELECT {self._CRASH_COLUMNS} FROM crashes k", flt)
            except SqlStore._NoMatch:
                return [], ""
            q.resume_newest_first("crashes", page, "k.received_at", "k.id")
            rows, token = q.page(tx, "k.received_at DESC, k.id DESC", page, "crashes", lambda r: [r[8], r[0]])
        return [self._crash_summary(r) for r in rows], token

    def count_crashes(self, flt: QueryFilter | None = None) -> int:
        """Crashes the filter matches: the total beside a listing's first page."""
        with self._read_tx() as tx:
            try:
                q = self._crash_query(tx, "SELECT COUNT(*) /* scan: a listing's total */ FROM crashes k",
                                      flt or QueryFilter())  # fmt: skip
            except SqlStore._NoMatch:
                return 0
            return q.count(tx)

    def get_crash(self, crash_id: str) -> CrashDetail | None:
        """One crash by id or unique id prefix (AmbiguousId when the prefix is not unique)."""
        with self._read_tx() as tx:
            resolved = self._resolve(tx, "crashes", crash_id)
            if resolved is None:
                return None
            row = tx.one(
                f"SELECT {self._CRASH_COLUMNS}, k.signature_json, k.excerpt, k.modules, k.host_facts,"
                " k.symbolized_json FROM crashes k WHERE k.id = ?",
                (resolved,),
            )
        if row is None:
            return None
        return CrashDetail(
            summary=self._crash_summary(row[:12]),
            signature_json=as_report_json(row[12]),  # rows written before the report format are converted
            excerpt=row[13],
            modules=tuple(json.loads(row[14])),
            host_facts=dict(json.loads(row[15])),
            symbolized_json=row[16],
        )

    def _host_query(self, tx: Tx, select: str, flt: QueryFilter) -> _ListQuery:
        q = _ListQuery(select)
        q.match("host", "h.hostname", flt.host)
        q.match("kernel_release", "h.kernel_release", flt.kernel_release)
        q.match("hardware", "h.hardware", flt.hardware)
        if flt.module:
            # The sets holding the module, then their hosts (hosts_module_set): a count of one
            # module's hosts reads those hosts' index entries, not every host.
            q.where("h.module_set IN (SELECT m.set_id FROM module_set_members m WHERE m.module = ?)", flt.module)
        if flt.kind:
            inner = _ListQuery("")
            inner.match("kind", "k.kind", flt.kind)
            q.where("EXISTS (SELECT 1 FROM crashes k WHERE k.host = h.hostname AND " + inner.terms[0] + ")",
                    *inner.params)  # fmt: skip
        cluster_id = self._resolve_filter_cluster(tx, flt)
        if cluster_id:
            q.where(
                "EXISTS (SELECT 1 FROM cluster_dims d WHERE d.cluster_id = ? AND d.dim = 'host'"
                " AND d.value = h.hostname)",
                cluster_id,
            )
        q.between("h.last_heartbeat", "h.last_heartbeat", flt)
        return q

    def list_hosts(self, flt: QueryFilter, page: Page) -> tuple[list[HostSummary], str]:
        with self._read_tx() as tx:
            try:
                q = self._host_query(
                    tx,
                    "SELECT h.hostname, h.kernel_release, h.machine, h.hardware, h.agent_version, h.cpus,"
                    " h.memory_bytes, s.modules, h.last_heartbeat, h.crashes FROM hosts h"
                    " LEFT JOIN module_sets s ON s.id = h.module_set",
                    flt,
                )
            except SqlStore._NoMatch:
                return [], ""
            if page.token:
                (hostname,) = _decode_token("hosts", page.token, (str,))
                q.where("h.hostname > ?", hostname)
            rows, token = q.page(tx, "h.hostname", page, "hosts", lambda r: [r[0]])
        hosts = [
            HostSummary(
                hostname=r[0],
                kernel_release=r[1],
                machine=r[2],
                hardware=r[3],
                agent_version=r[4],
                cpus=int(r[5]),
                memory_bytes=int(r[6]),
                modules=tuple(json.loads(r[7])) if r[7] else (),
                last_heartbeat=_dt(r[8]) if r[8] is not None else None,
                crashes=int(r[9]),
            )
            for r in rows
        ]
        return hosts, token

    def count_hosts(self, flt: QueryFilter | None = None) -> int:
        """Hosts the filter matches: the total beside a listing's first page."""
        with self._read_tx() as tx:
            try:
                q = self._host_query(tx, "SELECT COUNT(*) /* scan: a listing's total */ FROM hosts h",
                                     flt or QueryFilter())  # fmt: skip
            except SqlStore._NoMatch:
                return 0
            return q.count(tx)

    # Retention --------------------------------------------------------------------------------

    def purge(self, before: datetime, dry_run: bool = False) -> PurgeReport:
        cutoff = _us(before)
        if dry_run:
            with self._read_tx() as tx:
                crashes = tx.one("SELECT COUNT(*) FROM crashes WHERE received_at < ?", (cutoff,))
                clusters = tx.one(
                    "SELECT COUNT(*) FROM clusters c WHERE NOT EXISTS"
                    " (SELECT 1 FROM crashes k WHERE k.cluster_id = c.id AND k.received_at >= ?)",
                    (cutoff,),
                )
                sets = tx.one(
                    "SELECT COUNT(*) FROM module_sets s WHERE NOT EXISTS (SELECT 1 FROM hosts h WHERE h.module_set = s.id)"
                )
            return PurgeReport(
                crashes=int(crashes[0]) if crashes else 0,
                clusters=int(clusters[0]) if clusters else 0,
                module_sets=int(sets[0]) if sets else 0,
                dry_run=True,
            )
        crashes_removed = clusters_removed = 0
        touched: set[str] = set()
        while True:
            n, of_batch = self._retry_write(lambda tx: self._purge_batch_tx(tx, cutoff))
            if n == 0:
                break
            crashes_removed += n
            touched |= of_batch
        # Once per touched cluster, not per batch: its first/last seen and representative come
        # from a pass over its remaining crashes, which for a large cluster is the costly part.
        for chunk in _chunks(sorted(touched), 100):
            clusters_removed += self._retry_write(functools.partial(self._settle_clusters_tx, cluster_ids=chunk))
        swept = self.sweep_module_sets()
        log.info("store purged crashes=%d clusters=%d module_sets=%d", crashes_removed, clusters_removed, swept)
        return PurgeReport(crashes=crashes_removed, clusters=clusters_removed, module_sets=swept)

    def _purge_batch_tx(self, tx: Tx, cutoff: int) -> tuple[int, set[str]]:
        """Remove the oldest PURGE_BATCH crashes received before `cutoff` and subtract them from
        the counts they were added to; returns (crashes removed, their clusters)."""
        rows = tx.all(
            "SELECT id, cluster_id, host, kernel_release, hardware, modules, occurred_at FROM crashes"
            " WHERE received_at < ? ORDER BY received_at, id LIMIT ?",
            (cutoff, PURGE_BATCH),
        )
        if not rows:
            return 0, set()
        counts: dict[str, int] = {}
        dims: dict[tuple[str, str, str], int] = {}
        days: dict[tuple[str, int], int] = {}
        hosts: dict[str, int] = {}
        modules: list[tuple[str, str]] = []
        for crash_id, cid, host, release, hardware, modules_json, occurred in rows:
            counts[cid] = counts.get(cid, 0) + 1
            names = sorted({m for m in json.loads(modules_json) if isinstance(m, str)})
            values = [("host", host), ("kernel_release", release), ("hardware", hardware)]
            for dim, value in values + [("module", m) for m in names]:
                if value:
                    dims[(cid, dim, value)] = dims.get((cid, dim, value), 0) + 1
            days[(cid, occurred // DAY_US)] = days.get((cid, occurred // DAY_US), 0) + 1
            hosts[host] = hosts.get(host, 0) + 1
            modules.extend((m, crash_id) for m in names)
        ids = [r[0] for r in rows]
        tx.many("DELETE FROM crash_modules WHERE module = ? AND crash_id = ?", modules)
        for chunk in _chunks(ids, MAX_IN_LIST):
            tx.run(f"DELETE FROM crashes WHERE id IN ({_marks(len(chunk))})", chunk)
        tx.many(
            "UPDATE cluster_dims SET count = count - ? WHERE cluster_id = ? AND dim = ? AND value = ?",
            [(n, *key) for key, n in sorted(dims.items())],
        )
        tx.many(
            "DELETE FROM cluster_dims WHERE cluster_id = ? AND dim = ? AND value = ? AND count <= 0", sorted(dims)
        )
        tx.many(
            "UPDATE cluster_days SET count = count - ? WHERE cluster_id = ? AND day = ?",
            [(n, *key) for key, n in sorted(days.items())],
        )
        tx.many("DELETE FROM cluster_days WHERE cluster_id = ? AND day = ? AND count <= 0", sorted(days))
        tx.many(
            "UPDATE hosts SET crashes = CASE WHEN crashes > ? THEN crashes - ? ELSE 0 END WHERE hostname = ?",
            [(n, n, host) for host, n in sorted(hosts.items())],
        )
        tx.many("UPDATE clusters SET count = count - ? WHERE id = ?", [(n, cid) for cid, n in sorted(counts.items())])
        return len(rows), set(counts)

    def _settle_clusters_tx(self, tx: Tx, cluster_ids: Sequence[str]) -> int:
        """After a purge: drop the clusters left empty, recompute the others' distinct hosts,
        first/last seen and (when it was purged) representative; returns the clusters dropped."""
        removed = 0
        for cid in cluster_ids:
            left = tx.one(
                "SELECT MIN(occurred_at), MAX(occurred_at), MIN(id) FROM crashes WHERE cluster_id = ?", (cid,)
            )
            if left is None or left[0] is None:
                removed += self._drop_cluster(tx, cid)
                continue
            hosts_left = tx.one("SELECT COUNT(*) FROM cluster_dims WHERE cluster_id = ? AND dim = 'host'", (cid,))
            tx.run(
                "UPDATE clusters SET hosts = ?, first_seen = ?, last_seen = ?, representative_crash_id ="
                " CASE WHEN EXISTS (SELECT 1 FROM crashes k WHERE k.id = clusters.representative_crash_id)"
                " THEN representative_crash_id ELSE ? END WHERE id = ?",
                (int(hosts_left[0]) if hosts_left else 0, left[0], left[1], left[2], cid),
            )
        return removed

    def _drop_cluster(self, tx: Tx, cluster_id: str) -> int:
        """Remove an empty cluster with its index rows; 0 when it gained a crash meanwhile."""
        row = tx.one("SELECT kind, normalized_reason, frames FROM clusters WHERE id = ? AND count <= 0", (cluster_id,))
        if row is None:
            return 0
        buckets = bucket_keys(row[0], row[1], tuple(json.loads(row[2])))
        tx.many("DELETE FROM cluster_buckets WHERE bucket = ? AND cluster_id = ?", [(b, cluster_id) for b in buckets])
        for table, column in (
            ("cluster_fingerprints", "cluster_id"), ("cluster_dims", "cluster_id"),
            ("cluster_days", "cluster_id"), ("clusters", "id"),
        ):  # fmt: skip
            tx.run(f"DELETE FROM {table} WHERE {column} = ?", (cluster_id,))
        return 1

    # Symbolization ----------------------------------------------------------------------------

    def crashes_of_build(
        self, build_id: str, after: str = "", limit: int = 200, pending_only: bool = False
    ) -> list[BuildCrash]:
        if not build_id:
            return []  # '' marks crashes whose build nobody knows; no index is for them
        sql = "SELECT id, signature_json, host_facts FROM crashes WHERE build_id = ? AND id > ?"
        if pending_only:
            sql += " AND symbolized_json = ''"
        with self._read_tx() as tx:
            rows = tx.all(sql + " ORDER BY id LIMIT ?", (build_id, after, max(1, limit)))
        return [BuildCrash(crash_id, text, _offset_fact(facts)) for crash_id, text, facts in rows]

    def set_symbolized(self, updates: Sequence[tuple[str, str]]) -> int:
        if not updates:
            return 0
        rows = [(text, crash_id) for crash_id, text in updates]

        def body(tx: Tx) -> int:
            return sum(tx.run("UPDATE crashes SET symbolized_json = ? WHERE id = ?", row) for row in rows)

        return self._retry_write(body)

    def builds_to_symbolize(self) -> list[str]:
        with self._read_tx() as tx:
            rows = tx.all(
                "SELECT DISTINCT build_id FROM crashes WHERE build_id <> '' AND symbolized_json = '' ORDER BY build_id"
            )
        return [r[0] for r in rows]

    # Recluster --------------------------------------------------------------------------------

    def begin_transition(self, version: str, previous_version: str, at: datetime) -> datetime:
        def body(tx: Tx) -> datetime:
            tx.run(
                "INSERT INTO rule_transitions (version, previous_version, started_at) VALUES (?, ?, ?)"
                " ON CONFLICT (version) DO NOTHING",
                (version, previous_version, _us(at)),
            )
            row = tx.one("SELECT started_at FROM rule_transitions WHERE version = ?", (version,))
            if row is None:  # pragma: no cover - inserted or already there in this transaction
                raise StoreError(f"rule transition {version} not stored")
            return _dt(int(row[0]))

        return self._retry_write(body)

    def recluster(self, resign: Callable[[StoredSignature], Resign]) -> ReclusterReport:
        return self._retry_write(lambda tx: self._recluster_tx(tx, resign))

    def _iter_crashes(self, tx: Tx) -> Iterator[Row]:
        """All crashes oldest first, in keyset batches so memory stays bounded."""
        last: tuple[int, str] = (-1, "")
        while True:
            rows = tx.all(
                "SELECT id, signature_json, fingerprint, fingerprint_version, kind, normalized_reason, frames,"
                " title, guilty_frame, host, kernel_release, hardware, modules, occurred_at, received_at,"
                " cluster_id FROM crashes WHERE received_at > ? OR (received_at = ? AND id > ?)"
                " ORDER BY received_at, id LIMIT ?",
                (last[0], last[0], last[1], RECLUSTER_BATCH),
            )
            if not rows:
                return
            yield from rows
            last = (rows[-1][14], rows[-1][0])

    def _recluster_tx(self, tx: Tx, resign: Callable[[StoredSignature], Resign]) -> ReclusterReport:
        titles = {cid: title for cid, title in tx.all("SELECT id, title FROM clusters")}
        clusters_before = len(titles)
        for table in ("clusters", "cluster_fingerprints", "cluster_buckets", "cluster_dims", "cluster_days"):
            tx.run(f"DELETE FROM {table}")
        moved: dict[tuple[str, str], int] = {}
        failed: list[tuple[str, str]] = []
        crashes = refingerprinted = 0
        for row in self._iter_crashes(tx):  # batches; the UPDATEs below keep the keyset order
            (crash_id, signature_json, old_fp, old_version, kind, reason, frames_json, title, guilty,
             host, release, hardware, modules_json, occurred, _received, old_cluster) = row  # fmt: skip
            crashes += 1
            try:
                new = resign(StoredSignature(crash_id, signature_json, old_fp))
            except Exception as exc:  # a signer bug must not lose the other crashes' clusters
                failed.append((crash_id, f"{type(exc).__name__}: {exc}"))
                new = Resign(old_fp, old_version, kind, reason, tuple(json.loads(frames_json)), title, guilty)
            if new.fingerprint != old_fp:
                refingerprinted += 1
            assignment = self._assign(
                tx, new.fingerprint, new.fingerprint_version, new.kind, new.normalized_reason, new.frames,
                new.title, new.guilty_frame, occurred,
            )  # fmt: skip
            self._account(
                tx, assignment.cluster_id,
                _Occurrence(crash_id, host, release, hardware, tuple(json.loads(modules_json)), occurred),
            )  # fmt: skip
            tx.run(
                "UPDATE crashes SET cluster_id = ?, fingerprint = ?, fingerprint_version = ?, kind = ?,"
                " normalized_reason = ?, frames = ?, title = ?, guilty_frame = ?, signature_json = ? WHERE id = ?",
                (assignment.cluster_id, new.fingerprint, new.fingerprint_version, new.kind,
                 new.normalized_reason, json.dumps(list(new.frames)), new.title, new.guilty_frame,
                 new.signature_json or signature_json, crash_id),
            )  # fmt: skip
            if assignment.cluster_id != old_cluster:
                moved[(old_cluster, assignment.cluster_id)] = moved.get((old_cluster, assignment.cluster_id), 0) + 1
        new_titles = {cid: title for cid, title in tx.all("SELECT id, title FROM clusters")}
        moves = tuple(
            ClusterMove(old, titles.get(old, ""), new, new_titles.get(new, ""), n)
            for (old, new), n in sorted(moved.items(), key=lambda item: (-item[1], item[0]))
        )
        return ReclusterReport(
            crashes=crashes,
            clusters_before=clusters_before,
            clusters_after=len(new_titles),
            refingerprinted=refingerprinted,
            moves=moves,
            failed=tuple(failed),
        )


def module_set_id(modules: Sequence[str]) -> str:
    """The content address of a module set: 32 hex digits of SHA-256 over the sorted, distinct
    names ("" for no modules). Equal sets get equal ids on every replica, so a set is stored
    once however many hosts (or collectors) report it."""
    names = sorted(set(modules))
    if not names:
        return ""
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:32]


def _put_module_set(tx: Tx, set_id: str, modules: Sequence[str], at: int) -> None:
    """Store set `set_id` and its members unless it is stored already (one primary-key probe then)."""
    names = sorted(set(modules))
    inserted = tx.run(
        "INSERT INTO module_sets (id, modules, module_count, created_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (id) DO NOTHING",
        (set_id, json.dumps(names), len(names), at),
    )
    if inserted:
        tx.many(
            "INSERT INTO module_set_members (set_id, module) VALUES (?, ?) ON CONFLICT DO NOTHING",
            [(set_id, m) for m in names],
        )


def _host_module_sets(tx: Tx) -> None:
    """Migration 0003's data step: every host's own module list becomes a pointer to a shared
    set; then the per-host copies (hosts.modules, host_modules) go."""
    last = ""
    moved = 0
    now = _us(datetime.now(UTC))
    while True:
        rows = tx.all("SELECT hostname, modules FROM hosts WHERE hostname > ? ORDER BY hostname LIMIT ?",
                      (last, RECLUSTER_BATCH))  # fmt: skip
        if not rows:
            break
        updates = []
        for hostname, text in rows:
            try:
                names = [m for m in json.loads(text) if isinstance(m, str)]
            except ValueError:
                names = []
            set_id = module_set_id(names)
            if set_id:
                _put_module_set(tx, set_id, names, now)
                updates.append((set_id, hostname))
        tx.many("UPDATE hosts SET module_set = ? WHERE hostname = ?", updates)
        moved += len(updates)
        last = rows[-1][0]
    tx.run("DROP TABLE host_modules")
    tx.run("ALTER TABLE hosts DROP COLUMN modules")
    log.info("host module sets migrated hosts=%d", moved)


def _backfill_build_ids(tx: Tx) -> None:
    """Fill `crashes.build_id` of rows stored before the column from the build-id their
    host_facts recorded (JSON parsing in Python: SQLite and PostgreSQL spell it differently)."""
    last = ""
    filled = 0
    while True:
        rows = tx.all(
            "SELECT id, host_facts FROM crashes WHERE id > ? AND host_facts LIKE ? ORDER BY id LIMIT ?",
            (last, '%"build_id"%', RECLUSTER_BATCH),
        )
        if not rows:
            break
        updates = [(build_id, crash_id) for crash_id, facts in rows if (build_id := _fact(facts, "build_id"))]
        tx.many("UPDATE crashes SET build_id = ? WHERE id = ?", updates)
        filled += len(updates)
        last = rows[-1][0]
    log.info("crash build-ids backfilled crashes=%d", filled)


# Data migrations run right after the SQL migration of the same name, in its transaction.
_DATA_STEPS: dict[str, Callable[[Tx], None]] = {
    "crash_build_id": _backfill_build_ids,
    "module_sets": _host_module_sets,
}


def _fact(host_facts: str, name: str) -> str:
    """One value of a stored host_facts JSON object; "" when absent or the text is not one."""
    try:
        facts = json.loads(host_facts)
    except ValueError:
        return ""
    value = facts.get(name) if isinstance(facts, dict) else None
    return value if isinstance(value, str) else ""


def _offset_fact(host_facts: str) -> int | None:
    """The KASLR slide the ingest path kept in host_facts (hex), None when unknown."""
    text = _fact(host_facts, "kernel_offset")
    try:
        return int(text, 16) if text else None
    except ValueError:
        return None


def _int_fact(facts: dict[str, str], name: str) -> int:
    try:
        return max(0, int(facts.get(name, "0")))
    except ValueError:
        return 0
