"""Group commit in a writer thread: writes queued together share one transaction.

Both stores use it. Under load a write transaction's cost is mostly per transaction, not per
write: SQLite's fsync; PostgreSQL's BEGIN/COMMIT round trips, its WAL flush, and — larger than
both in a Python collector — one worker thread per request passing the GIL back and forth with
the event loop. A writer thread takes everything queued (up to `max_batch`), runs it as one
transaction through `commit`, and only then answers each write's Future.

`SqlStore.run_batch` is what a batch does inside its transaction: consecutive crash reports as
one batched ingest, consecutive heartbeats coalesced per host, anything else in a SAVEPOINT of
its own, so one failing write rolls back alone.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from collector.store.base import HostRecord, NewCrash, StoreError

__all__ = ["Write", "WriterThread"]


@dataclass(slots=True)
class Write:
    """One write of a group commit; after the commit, `result` or `error` says how it went."""

    body: Callable[[Any], Any]  # called with the batch's transaction (collector.store.sql.Tx)
    crash: NewCrash | None = None  # set for ingests, which a batch stores as one batched ingest
    # Set for heartbeats: (hostname, time in µs), and the host's facts; a batch coalesces them
    # per host and stores the survivors together (SqlStore._heartbeats_tx).
    heartbeat: tuple[str, int] | None = None
    host: HostRecord | None = None
    future: Future[Any] | None = None  # set for writes queued for the writer thread
    result: Any = None
    error: BaseException | None = None

    def reset(self) -> None:
        """Forget the outcome of a transaction that was rolled back as a whole (to retry it)."""
        self.result, self.error = None, None

    def finish(self) -> None:
        assert self.future is not None
        if self.error is not None:
            self.future.set_exception(self.error)
        else:
            self.future.set_result(self.result)


class WriterThread:
    """A queue of writes and the thread that commits them in batches, started on first use.

    `commit(batch)` runs on the thread and must leave every write's `result` or `error` set.
    After a batch of several writes the thread waits `linger_s` before taking the next
    (PostgreSQL's commit_delay, for the same reason): fuller batches cost less per write, and a
    write that arrives alone is taken at once."""

    def __init__(
        self, name: str, commit: Callable[[list[Write]], None], max_batch: int, linger_s: float
    ) -> None:
        self.name = name
        self._commit = commit
        self.max_batch = max_batch
        self.linger_s = linger_s
        self._queue: deque[Write] = deque()
        self._ready = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def submit(self, job: Write, closed_reason: str) -> Future[Any]:
        """Queue `job`; its Future answers once its batch committed. StoreError(`closed_reason`)
        once the writer is stopping."""
        future: Future[Any] = Future()
        job.future = future
        with self._ready:
            if self._stopping:
                raise StoreError(closed_reason)
            self._queue.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._ready.notify()
        return future

    def _loop(self) -> None:
        """Commit batches until stopped and the queue is drained."""
        last = 0
        while True:
            if last > 1:  # writes are arriving together: let a few more join this commit
                time.sleep(self.linger_s)
            with self._ready:
                while not self._queue and not self._stopping:
                    self._ready.wait()
                if not self._queue:
                    return
                taken = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            # A job whose caller gave up (a cancelled RPC) before the batch began is dropped: it
            # was never acknowledged, and the sender retries with the same idempotency key.
            batch = [job for job in taken if job.future is not None and job.future.set_running_or_notify_cancel()]
            last = len(batch)
            if batch:
                try:
                    self._commit(batch)
                except BaseException as exc:  # a commit must answer; never leave a caller hanging
                    for job in batch:
                        job.error, job.result = exc, None
                for job in batch:
                    job.finish()

    def queued(self) -> int:
        """Writes waiting for the thread (not yet taken into a batch)."""
        with self._ready:
            return len(self._queue)

    def stop(self) -> None:
        """Commit everything queued, then end the thread (waits for it unless called from it)."""
        with self._ready:
            self._stopping = True
            thread = self._thread
            self._ready.notify()
        if thread is not None and thread is not threading.current_thread():
            thread.join()

