"""Group commit on the event loop: the writes of RPCs that arrive together share one transaction.

Why on the loop and not in a writer thread: a report's handler and the statements that store it
are both Python, so a writer thread is a second holder of the GIL. Profiles under load showed its
hand-offs with the loop (wake-ups, GIL waits, a Future crossing threads per report) costing as
much CPU as the SQL; committing on the loop cut the collector's CPU per report by a quarter
(docs/collector.md). Handing only the COMMIT to a thread, one hand-off per batch, measured worse
than both. While the loop commits, new requests wait in gRPC and join the next batch.

The loop never waits for another writer: when one holds the database (the store's writer thread
in a long transaction, or another process such as `crashfleet recluster`), `commit(...,
wait=False)` does nothing and the batch goes to the store's writer thread, which waits for it;
until that batch is committed, later batches follow it there, in order. A blocked loop would
stop every RPC, health check and watchdog ping.

When to commit follows PostgreSQL's `commit_delay`: a write that arrives alone is committed on
the next loop turn (no added latency when the fleet is quiet). After a batch of several writes,
the next one waits `linger` seconds for more to join — under load a commit's cost is mostly per
batch (the fsync, the lookups), so fuller batches cost less CPU per report — or until `max_batch`
are waiting. (Closing a batch early when writes stop arriving for a while measured no better for
reports and worse for heartbeats, whose commits are cheap.)
"""

from __future__ import annotations

import asyncio
from typing import Any

from collector.store import GroupCommit, PendingWrite

__all__ = ["LoopGroupCommit"]


class LoopGroupCommit:
    """Batches writes into `store.commit` on one event loop; `write` answers once committed."""

    def __init__(
        self, store: GroupCommit, loop: asyncio.AbstractEventLoop, linger: float, max_batch: int
    ) -> None:
        if not (linger > 0 and max_batch >= 1):
            raise ValueError(f"group commit needs linger > 0 and max_batch >= 1 (got {linger}, {max_batch})")
        self.store = store
        self.loop = loop
        self.linger = linger
        self.max_batch = max_batch
        self._pending: list[tuple[PendingWrite, asyncio.Future[Any]]] = []
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._last_batch = 0
        self._deferred = 0  # batches handed to the store's writer thread, not yet committed

    async def write(self, pending: PendingWrite) -> Any:
        """Commit `pending` with whatever else arrives meanwhile; its result, or its error raised.

        A caller cancelled before its batch commits (the RPC went away) is left out: it was never
        acknowledged, and the sender retries with the same idempotency key."""
        answer: asyncio.Future[Any] = self.loop.create_future()
        self._pending.append((pending, answer))
        if len(self._pending) >= self.max_batch:
            self._schedule(0.0)
        elif self._timer is None:
            self._schedule(self.linger if self._last_batch > 1 else 0.0)
        return await answer

    def _schedule(self, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(delay, self._commit) if delay > 0 else self.loop.call_soon(self._commit)

    def _commit(self) -> None:
        self._timer = None
        taken, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
        if self._pending:  # more than a batch was waiting: the rest goes on the next turn
            self._schedule(0.0)
        batch = [(write, answer) for write, answer in taken if not answer.cancelled()]
        self._last_batch = len(batch)
        if not batch:
            return
        writes = [write for write, _ in batch]
        if self._deferred == 0 and self.store.commit(writes, wait=False):
            self._answer(batch)
            return
        self._deferred += 1
        queued: list[asyncio.Future[Any]] = []
        for write in writes:
            try:
                queued.append(asyncio.wrap_future(self.store.submit(write)))
            except Exception as exc:  # the store closed meanwhile: this write was not queued
                write.error, write.result = exc, None
        done = asyncio.gather(*queued, return_exceptions=True)
        done.add_done_callback(lambda _: self._committed_later(batch))

    def _committed_later(self, batch: list[tuple[PendingWrite, asyncio.Future[Any]]]) -> None:
        self._deferred -= 1
        self._answer(batch)

    @staticmethod
    def _answer(batch: list[tuple[PendingWrite, asyncio.Future[Any]]]) -> None:
        for write, answer in batch:
            if answer.cancelled():  # the RPC went away while the batch waited; the write stands
                continue
            if write.error is not None:
                answer.set_exception(write.error)
            else:
                answer.set_result(write.result)
