"""The shared store for several collector replicas: PostgreSQL through psycopg 3.

One connection per thread (the servicers reach the store through `asyncio.to_thread`, whose
pool bounds the thread count), autocommit off except inside explicit `transaction()` blocks.
Deadlocks and serialization failures between replicas are retried; a dropped connection is
replaced and the transaction retried, which is safe because ingest is idempotent by key.
Migrations take a transaction-scoped advisory lock so replicas starting together migrate once.

Heartbeats go through a writer thread of their own (collector.store.writer): the event loop
queues each one (`submit_heartbeat`) and the thread commits what has gathered as one
transaction, hosts in name order. A heartbeat per worker thread and transaction cost the
collector about 2.5 ms of CPU each at 10^5 hosts, most of it thread hand-offs and GIL waits with
the event loop, and its rate swung with how the threads were scheduled (docs/collector.md).
A batch that meets a deadlock, a serialization failure or a dropped connection is rolled back
and run again whole, each write's outcome forgotten first.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors

from collector.store.base import StoreError
from collector.store.sql import SqlStore, Tx
from collector.store.writer import Write, WriterThread

__all__ = ["MIGRATION_LOCK_ID", "PostgresStore"]

log = logging.getLogger(__name__)

T = TypeVar("T")
MIGRATION_LOCK_ID = 0x6366_6D67  # "cfmg": serializes schema migrations across replicas
RETRIES = 5
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
CONNECT_TIMEOUT_S = 10
MAX_BATCH = 64  # heartbeats per transaction of the writer thread
# After a batch of several, the writer waits this long for more (PostgreSQL's commit_delay).
GROUP_LINGER_S = 0.002


def _to_psycopg(sql: str) -> str:
    """`?` placeholders to psycopg's `%s` (the shared SQL contains no literal `?` or `%`)."""
    return sql.replace("?", "%s")


class PostgresStore(SqlStore):
    """A store in one PostgreSQL database; `schema` (optional) isolates it, e.g. per test session."""

    _JSON_AGG = "COALESCE(json_agg(r.j), '[]'::json)"
    _JSON_ARRAY = "json_build_array"
    PIPELINED = True
    RETRY_BATCH = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure, psycopg.OperationalError)

    def __init__(self, url: str, schema: str | None = None) -> None:
        if schema is not None and not SCHEMA_NAME.fullmatch(schema):
            raise StoreError(f"invalid schema name {schema!r} (lower-case letters, digits, _)")
        self.url = url
        self.schema = schema
        self._local = threading.local()
        self._conns: list[psycopg.Connection[Any]] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        self._writer = WriterThread("crashfleet-postgres-writer", self._commit_batch, MAX_BATCH, GROUP_LINGER_S)
        try:
            conn = self._conn()
            with conn.transaction():
                if schema is not None:
                    conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                    conn.execute(f'SET search_path TO "{schema}"')
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
                self._migrate(Tx(conn.cursor(), _to_psycopg))
        except psycopg.Error as exc:
            self.close()
            raise StoreError(f"postgresql: {exc}") from exc
        log.info("store opened backend=postgresql schema=%s", schema or "public")

    def _conn(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed:
            return conn
        if self._closed:
            raise StoreError("postgresql store is closed")
        try:
            conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise StoreError(f"postgresql: cannot connect: {exc}") from exc
        if self.schema is not None:
            conn.execute(f'SET search_path TO "{self.schema}"')
        self._local.conn = conn
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def _drop_conn(self) -> None:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._conns_lock:
                if conn in self._conns:
                    self._conns.remove(conn)
            conn.close()

    @contextmanager
    def _write_tx(self) -> Iterator[Tx]:
        conn = self._conn()
        with conn.transaction(), conn.cursor() as cursor:
            yield self._tx(cursor, _to_psycopg)

    @contextmanager
    def _read_tx(self) -> Iterator[Tx]:
        conn = self._conn()
        try:
            with conn.transaction(), conn.cursor() as cursor:
                cursor.execute("SET TRANSACTION READ ONLY, ISOLATION LEVEL REPEATABLE READ")
                yield self._tx(cursor, _to_psycopg)
        except psycopg.OperationalError as exc:
            self._drop_conn()
            raise StoreError(f"postgresql: {exc}") from exc

    def _retry_write(self, body: Callable[[Tx], T]) -> T:
        for attempt in range(1, RETRIES + 1):
            try:
                with self._write_tx() as tx:
                    return body(tx)
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure) as exc:
                if attempt == RETRIES:
                    raise StoreError(f"postgresql: gave up after {attempt} attempts: {exc}") from exc
                log.warning("store retry reason=%s attempt=%d", type(exc).__name__, attempt)
                time.sleep(0.01 * attempt)
            except psycopg.OperationalError as exc:
                self._drop_conn()
                if attempt == RETRIES:
                    raise StoreError(f"postgresql: {exc}") from exc
                log.warning("store reconnect reason=%s attempt=%d", exc, attempt)
                time.sleep(0.05 * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def submit(self, job: Write) -> Future[Any]:
        return self._writer.submit(job, "postgresql store is closed")

    def _commit_batch(self, batch: list[Write]) -> None:
        """The writer thread's batch as one transaction, retried whole (`_retry_write`)."""

        def body(tx: Tx) -> None:
            for job in batch:
                job.reset()
            self.run_batch(tx, batch)

        try:
            self._retry_write(body)
        except psycopg.Error as exc:
            failure = StoreError(f"postgresql: {exc}")
            for job in batch:
                job.error, job.result = failure, None

    def drop_schema(self) -> None:
        """Drop this store's schema with everything in it (test sessions clean up with this)."""
        if self.schema is None:
            raise StoreError("refusing to drop the default schema")
        conn = self._conn()
        conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def close(self) -> None:
        """Commit every queued heartbeat, then close the connections."""
        self._writer.stop()
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
