"""The embedded store: one SQLite file in WAL mode.

One writer connection (SQLite allows one writer at a time anyway; queueing in Python is cheaper
than busy-waiting in SQLite), `BEGIN IMMEDIATE` so a write transaction holds the write lock from
its first statement, and one reader connection per thread so queries run beside ingest.
synchronous=FULL: a report is acknowledged only once its commit is on disk.

Group commit: the fsync of a commit costs more than the ingest statements themselves, so writes
that arrive together share one transaction. A batch of writes runs in one transaction —
consecutive crash reports as one batched ingest (`SqlStore._ingest_batch_tx`, a fixed number of
statements per batch), consecutive heartbeats coalesced per host (the one a sequential run would
leave in place: the latest) under one SAVEPOINT, any other write in its own SAVEPOINT so that one
failing write rolls back alone — commits once, and only then answers every write of the batch.

Two ways in. The event loop batches and commits on its own thread (`ingest_write` /
`heartbeat_write`, then `commit`; collector.groupcommit): when a writer thread committed for it,
the hand-offs and GIL waits between the two cost as much CPU as the SQL. Everyone else
(`ingest`, `heartbeat`, every other write) queues for the writer thread, which takes everything
queued (up to MAX_BATCH) and waits (`submit_ingest` and `submit_heartbeat` return a Future).

The event loop never waits for another writer: its `commit(..., wait=False)` gives up at once
(nothing done) when the write lock is taken — by the writer thread in a long transaction, or by
another process writing the same file (`crashfleet recluster` beside a running collector) — and
the loop hands that batch to the writer thread instead, which waits for the lock with SQLite's
busy timeout. A blocked loop would stop every RPC, health check and watchdog ping.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

from collector.store.base import IngestResult, NewCrash, StoreError
from collector.store.sql import SqlStore, Tx
from collector.store.writer import Write, WriterThread

__all__ = ["BUSY_TIMEOUT_MS", "SqliteStore", "Write"]

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
MAX_BATCH = 64  # writes per group commit
# After a commit that carried several writes, the writer waits this long before the next one
# (PostgreSQL's commit_delay, for the same reason): under load a batch's cost is mostly fixed
# (statements, fsync), so fuller batches cost less CPU per report; alone, nobody waits.
GROUP_LINGER_S = 0.001

T = TypeVar("T")


def _identity(sql: str) -> str:
    return sql


class _Busy(Exception):
    """Another writer holds the database and the caller asked not to wait."""


class SqliteStore(SqlStore):
    """A store in one SQLite database file (`:memory:` keeps everything on one connection)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._memory = path == ":memory:"
        self._write_lock = threading.Lock()
        self._writer_thread = WriterThread("crashfleet-sqlite-writer", self._commit_queued, MAX_BATCH, GROUP_LINGER_S)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        try:
            self._writer = self._connect()
            if not self._memory:
                mode = self._writer.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"{path}: cannot switch to WAL journal mode (got {mode})")
            with self._write_tx() as tx:
                self._migrate(tx)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: {exc}") from exc
        log.info("store opened backend=sqlite path=%s", path)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    @contextmanager
    def _write_tx(self, wait: bool = True) -> Iterator[Tx]:
        """A write transaction; with `wait=False`, _Busy at once where it would wait for another
        writer (this process's writer thread, or another process holding the file's lock)."""
        if not self._write_lock.acquire(blocking=wait):
            raise _Busy
        try:
            if self._closed:
                raise StoreError(f"{self.path}: store is closed")
            cursor = self._writer.cursor()
            try:
                if wait:
                    cursor.execute("BEGIN IMMEDIATE")
                else:
                    self._begin_now(cursor)
                try:
                    yield self._tx(cursor, _identity)
                except BaseException:
                    self._writer.execute("ROLLBACK")
                    raise
                self._writer.execute("COMMIT")
            finally:
                cursor.close()
        finally:
            self._write_lock.release()

    def _begin_now(self, cursor: sqlite3.Cursor) -> None:
        """BEGIN IMMEDIATE without SQLite's busy handler: _Busy if another connection writes."""
        self._writer.execute("PRAGMA busy_timeout=0")
        try:
            cursor.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise _Busy from None
            raise
        finally:
            self._writer.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def _retry_write(self, body: Callable[[Tx], T]) -> T:
        result: T = self.submit(Write(body)).result()
        return result

    def _write_ingest(self, crash: NewCrash) -> IngestResult:
        return self.submit_ingest(crash).result()

    def submit_ingest(self, crash: NewCrash) -> Future[IngestResult]:
        """Queue a crash for the writer thread's next group commit; the Future resolves once it
        is committed (or fails with the reason it was not)."""
        future: Future[IngestResult] = self.submit(self.ingest_write(crash))
        return future

    def submit(self, job: Write) -> Future[Any]:
        """Queue `job` for the writer thread; its Future answers once its batch committed (and
        `job.result` / `job.error` are set)."""
        return self._writer_thread.submit(job, f"{self.path}: store is closed")

    def _commit_queued(self, batch: list[Write]) -> None:
        self.commit(batch)

    def commit(self, writes: Sequence[Write], wait: bool = True) -> bool:
        """Run `writes` as one group commit on the calling thread; each write's `result` or
        `error` is final when this returns True (a failed commit fails every write). With
        `wait=False`, False where that would mean waiting for another writer, the writes left
        untouched — the event loop's way in (collector.groupcommit)."""
        batch = list(writes)
        try:
            with self._write_tx(wait) as tx:
                self.run_batch(tx, batch)
        except _Busy:
            return False
        except BaseException as exc:  # the commit itself failed: nobody's write is stored
            failure = StoreError(f"{self.path}: {exc}") if isinstance(exc, sqlite3.Error) else exc
            for job in batch:
                job.error, job.result = failure, None
        return True

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @contextmanager
    def _read_tx(self) -> Iterator[Tx]:
        if self._memory:
            # A private in-memory database exists on one connection only: read through the writer.
            with self._write_tx() as tx:
                yield tx
            return
        if self._closed:
            raise StoreError(f"{self.path}: store is closed")
        conn = self._reader()
        cursor = conn.cursor()
        cursor.execute("BEGIN")  # one snapshot for a multi-statement read
        try:
            yield self._tx(cursor, _identity)
        finally:
            conn.execute("COMMIT")
            cursor.close()

    def close(self) -> None:
        """Finish every queued write, then close the connections."""
        self._writer_thread.stop()
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._writer.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

