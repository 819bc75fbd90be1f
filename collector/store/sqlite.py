"""The embedded store: one SQLite file in WAL mode.

One writer connection (SQLite allows one writer at a time anyway; queueing in Python is cheaper
than busy-waiting in SQLite), `BEGIN IMMEDIATE` so a write transaction holds the write lock from
its first statement, and one reader connection per thread so queries run beside ingest.
synchronous=FULL: a report is acknowledged only once its commit is on disk.

Group commit: the fsync of a commit costs more than the ingest statements themselves, so writes
that arrive together share one transaction. Writes go into a queue; one writer thread takes
everything queued (up to MAX_BATCH), runs it in one transaction — consecutive crash reports as
one batched ingest (`SqlStore._ingest_batch_tx`, a fixed number of statements per batch),
consecutive heartbeats coalesced per host (the one a sequential run would leave in place: the
latest) under one SAVEPOINT, any other write in its own SAVEPOINT so that one failing write
rolls back alone — commits once, and only then answers every write of the batch. Callers either
wait (`ingest`, every other write) or get a Future (`submit_ingest`, `submit_heartbeat`, which
the gRPC servicer awaits on the event loop without a worker thread per call).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from collector.store.base import HostRecord, IngestResult, NewCrash, StoreError
from collector.store.sql import SqlStore, Tx, _us

__all__ = ["BUSY_TIMEOUT_MS", "SqliteStore"]

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
MAX_BATCH = 64  # writes per group commit
# After a commit that carried several writes, the writer waits this long before the next one
# (PostgreSQL's commit_delay, for the same reason): under load a batch's cost is mostly fixed
# (statements, fsync), so fuller batches cost less CPU per report; alone, nobody waits.
GROUP_LINGER_S = 0.001

T = TypeVar("T")


@dataclass(slots=True)
class _Job:
    body: Callable[[Tx], Any]
    crash: NewCrash | None = None  # set for ingest jobs, which the writer stores as one batch
    # Set for heartbeat jobs: (hostname, time in µs); the writer coalesces them per host.
    heartbeat: tuple[str, int] | None = None
    future: Future[Any] = field(default_factory=Future)
    result: Any = None
    error: BaseException | None = None

    def finish(self) -> None:
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            self.future.set_result(self.result)


def _identity(sql: str) -> str:
    return sql


class SqliteStore(SqlStore):
    """A store in one SQLite database file (`:memory:` keeps everything on one connection)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._memory = path == ":memory:"
        self._write_lock = threading.Lock()
        self._queue: deque[_Job] = deque()
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
    def _write_tx(self) -> Iterator[Tx]:
        with self._write_lock:
            if self._closed:
                raise StoreError(f"{self.path}: store is closed")
            cursor = self._writer.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(cursor, _identity)
            except BaseException:
                self._writer.execute("ROLLBACK")
                raise
            else:
                self._writer.execute("COMMIT")
            finally:
                cursor.close()

    def _retry_write(self, body: Callable[[Tx], T]) -> T:
        result: T = self._submit(_Job(body)).future.result()
        return result

    def _write_ingest(self, crash: NewCrash) -> IngestResult:
        return self.submit_ingest(crash).result()

    def submit_ingest(self, crash: NewCrash) -> Future[IngestResult]:
        """Queue a crash for the next group commit; the Future resolves once it is committed
        (or fails with the reason it was not)."""
        job = self._submit(_Job(lambda tx: self._ingest_tx(tx, crash), crash))
        future: Future[IngestResult] = job.future
        return future

    def heartbeat(self, host: HostRecord, at: datetime) -> None:
        self.submit_heartbeat(host, at).result()

    def submit_heartbeat(self, host: HostRecord, at: datetime) -> Future[None]:
        """Queue a heartbeat for the next group commit; the Future resolves once it is committed."""
        stamp = _us(at)
        job = self._submit(
            _Job(lambda tx: self._heartbeat_tx(tx, host, stamp), heartbeat=(host.hostname, stamp))
        )
        future: Future[None] = job.future
        return future

    def _submit(self, job: _Job) -> _Job:
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
        return job

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
            batch = [job for job in taken if job.future.set_running_or_notify_cancel()]
            last = len(batch)
            if batch:
                self._commit_batch(batch)

    def _commit_batch(self, batch: list[_Job]) -> None:
        try:
            with self._write_tx() as tx:
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
        except BaseException as exc:  # the commit itself failed: nobody's write is stored
            failure = StoreError(f"{self.path}: {exc}") if isinstance(exc, sqlite3.Error) else exc
            for job in batch:
                job.error, job.result = failure, None
        for job in batch:
            job.finish()

    @staticmethod
    def _run_job(tx: Tx, job: _Job) -> None:
        """One write in its own SAVEPOINT, so that its failure rolls back only itself."""
        tx.run("SAVEPOINT job")
        try:
            job.result = job.body(tx)
        except Exception as exc:
            job.error = exc
            tx.run("ROLLBACK TO job")
        tx.run("RELEASE job")

    def _run_ingest_batch(self, tx: Tx, jobs: list[_Job]) -> None:
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

    def _run_heartbeat_batch(self, tx: Tx, jobs: list[_Job]) -> None:
        """Consecutive heartbeats: per host only the one that a sequential run would leave in
        place (the latest; the last queued on a tie) is written, and every heartbeat of that host
        shares its outcome. All hosts run under one SAVEPOINT; if that fails, roll it back and
        run the survivors one by one, so one bad heartbeat fails alone."""
        winners: dict[str, _Job] = {}
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
            yield Tx(cursor, _identity)
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
