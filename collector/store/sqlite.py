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
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from collector.store.base import HostRecord, IngestResult, NewCrash, StoreError
from collector.store.base import to_us as _us
from collector.store.sql import SqlStore, Tx

__all__ = ["BUSY_TIMEOUT_MS", "SqliteStore", "Write"]

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
MAX_BATCH = 64  # writes per group commit
# After a commit that carried several writes, the writer waits this long before the next one
# (PostgreSQL's commit_delay, for the same reason): under load a batch's cost is mostly fixed
# (statements, fsync), so fuller batches cost less CPU per report; alone, nobody waits.
GROUP_LINGER_S = 0.001

T = TypeVar("T")


@dataclass(slots=True)
class Write:
    """One write of a group commit; after the commit, `result` or `error` says how it went."""

    body: Callable[[Tx], Any]
    crash: NewCrash | None = None  # set for ingests, which a batch stores as one batched ingest
    # Set for heartbeats: (hostname, time in µs); a batch coalesces them per host.
    heartbeat: tuple[str, int] | None = None
    future: Future[Any] | None = None  # set for writes queued for the writer thread
    result: Any = None
    error: BaseException | None = None

    def finish(self) -> None:
        assert self.future is not None
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            self.future.set_result(self.result)


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
        self._queue: deque[Write] = deque()
        self._queue_ready = threading.Condition()
        self._writer_thread: threading.Thread | None = None
        self._stopping = False
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

    def ingest_write(self, crash: NewCrash) -> Write:
        """A crash to store, for `commit` (result: IngestResult)."""
        return Write(lambda tx: self._ingest_tx(tx, crash), crash)

    def heartbeat_write(self, host: HostRecord, at: datetime) -> Write:
        """A heartbeat to store, for `commit` (result: None)."""
        stamp = _us(at)
        return Write(lambda tx: self._heartbeat_tx(tx, host, stamp), heartbeat=(host.hostname, stamp))

    def heartbeat(self, host: HostRecord, at: datetime) -> None:
        self.submit_heartbeat(host, at).result()

    def submit_heartbeat(self, host: HostRecord, at: datetime) -> Future[None]:
        """Queue a heartbeat for the writer thread's next group commit; the Future resolves once
        it is committed."""
        future: Future[None] = self.submit(self.heartbeat_write(host, at))
        return future

    def submit(self, job: Write) -> Future[Any]:
        """Queue `job` for the writer thread; its Future answers once its batch committed (and
        `job.result` / `job.error` are set)."""
        future: Future[Any] = Future()
        job.future = future
        with self._queue_ready:
            if self._stopping:
                raise StoreError(f"{self.path}: store is closed")
            self._queue.append(job)
            if self._writer_thread is None:
                self._writer_thread = threading.Thread(
                    target=self._write_loop, name="crashfleet-sqlite-writer", daemon=True
                )
                self._writer_thread.start()
            self._queue_ready.notify()
        return future

    def _write_loop(self) -> None:
        """The writer thread: commit batches until the store closes and the queue is drained."""
        last = 0
        while True:
            if last > 1:  # writes are arriving together: let a few more join this commit
                time.sleep(GROUP_LINGER_S)
            with self._queue_ready:
                while not self._queue and not self._stopping:
                    self._queue_ready.wait()
                if not self._queue:
                    return
                taken = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            # A job whose caller gave up (a cancelled RPC) before the batch began is dropped: it
            # was never acknowledged, and the sender retries with the same idempotency key.
            batch = [
                job for job in taken if job.future is not None and job.future.set_running_or_notify_cancel()
            ]
            last = len(batch)
            if batch:
                self.commit(batch)
                for job in batch:
                    job.finish()

    def commit(self, writes: Sequence[Write], wait: bool = True) -> bool:
        """Run `writes` as one group commit on the calling thread; each write's `result` or
        `error` is final when this returns True (a failed commit fails every write). With
        `wait=False`, False where that would mean waiting for another writer, the writes left
        untouched — the event loop's way in (collector.groupcommit)."""
        batch = list(writes)
        try:
            with self._write_tx(wait) as tx:
                self._run_batch(tx, batch)
        except _Busy:
            return False
        except BaseException as exc:  # the commit itself failed: nobody's write is stored
            failure = StoreError(f"{self.path}: {exc}") if isinstance(exc, sqlite3.Error) else exc
            for job in batch:
                job.error, job.result = failure, None
        return True

    def _run_batch(self, tx: Tx, batch: list[Write]) -> None:
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

    @staticmethod
    def _run_job(tx: Tx, job: Write) -> None:
        """One write in its own SAVEPOINT, so that its failure rolls back only itself."""
        tx.run("SAVEPOINT job")
        try:
            job.result = job.body(tx)
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
            for job in winners.values():
                job.result = job.body(tx)
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
        with self._queue_ready:
            self._stopping = True
            thread = self._writer_thread
            self._queue_ready.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._writer.close()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

