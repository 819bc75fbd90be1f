"""The event loop's group commit (collector.groupcommit): which writes share a commit, and that
every caller gets its own answer only after its commit. A recording store stands in for SQLite so
the batches can be read off; timings use lingers ten times longer than the pauses between
writes that must share a batch, so a slow machine cannot flip an assertion."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.groupcommit import LoopGroupCommit
from collector.ingest import Ingestor
from collector.metrics import Metrics
from collector.store.sqlite import SqliteStore
from tests.collector.records import null_deref
from wire import convert
from wire.model import Page, QueryFilter
from wire.v1 import crash_pb2


@dataclass
class _Write:
    value: int
    fail: bool = False
    result: Any = None
    error: BaseException | None = None


class _RecordingStore:
    """Commits on the caller's thread, or refuses to while `busy`; `submit` stands in for the
    store's writer thread (a thread that commits one write, after `release` is set)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.busy = False
        self.queued: list[int] = []
        self.release = threading.Event()

    def ingest_write(self, crash: Any) -> _Write:  # pragma: no cover - the protocol's other half
        raise NotImplementedError

    def heartbeat_write(self, host: Any, at: Any) -> _Write:  # pragma: no cover
        raise NotImplementedError

    def commit(self, writes: Sequence[_Write], wait: bool = True) -> bool:
        if self.busy and not wait:
            return False
        self.batches.append([w.value for w in writes])
        for w in writes:
            if w.fail:
                w.error = RuntimeError(f"write {w.value} refused")
            else:
                w.result = w.value * 10
        return True

    def submit(self, write: _Write) -> Future[Any]:
        self.queued.append(write.value)
        done: Future[Any] = Future()

        def later() -> None:
            self.release.wait(10)
            self.commit([write])
            done.set_result(None)

        threading.Thread(target=later, daemon=True).start()
        return done


def _committer(store: _RecordingStore, linger: float = 0.3, max_batch: int = 64) -> LoopGroupCommit:
    return LoopGroupCommit(store, asyncio.get_running_loop(), linger=linger, max_batch=max_batch)


def test_writes_of_one_loop_turn_share_one_commit_and_each_gets_its_answer() -> None:
    store = _RecordingStore()

    async def scenario() -> list[Any]:
        committer = _committer(store)
        return await asyncio.gather(*(committer.write(_Write(i)) for i in range(10)))

    assert asyncio.run(scenario()) == [i * 10 for i in range(10)]
    assert store.batches == [list(range(10))]


def test_a_lone_write_does_not_wait_for_the_linger() -> None:
    store = _RecordingStore()

    async def scenario() -> float:
        committer = _committer(store, linger=5.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await committer.write(_Write(1))
        return loop.time() - start

    assert asyncio.run(scenario()) < 1.0  # a linger-long wait would be 5 s
    assert store.batches == [[1]]


def test_after_a_busy_batch_the_next_lingers_for_more_writes() -> None:
    store = _RecordingStore()

    async def scenario() -> float:
        committer = _committer(store, linger=0.3)
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(committer.write(_Write(i)) for i in range(3)))  # busy: batch of 3
        start = loop.time()
        tasks = []
        for i in range(3, 7):  # arrive 20 ms apart: one batch
            tasks.append(asyncio.ensure_future(committer.write(_Write(i))))
            await asyncio.sleep(0.02)
        await asyncio.gather(*tasks)
        return loop.time() - start

    took = asyncio.run(scenario())
    assert store.batches == [[0, 1, 2], [3, 4, 5, 6]]
    assert took >= 0.3  # the batch stayed open for the linger


def test_linger_closes_a_batch_that_writes_keep_joining() -> None:
    store = _RecordingStore()

    async def scenario() -> None:
        committer = _committer(store, linger=0.1)
        await asyncio.gather(*(committer.write(_Write(i)) for i in range(2)))
        tasks = []
        for i in range(2, 32):  # a write every 20 ms for 0.6 s
            tasks.append(asyncio.ensure_future(committer.write(_Write(i))))
            await asyncio.sleep(0.02)
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    later = store.batches[1:]
    assert sum(len(b) for b in later) == 30 and len(later) >= 3  # each batch closed by the linger


def test_max_batch_splits_a_burst() -> None:
    store = _RecordingStore()

    async def scenario() -> list[Any]:
        committer = _committer(store, max_batch=4)
        return await asyncio.gather(*(committer.write(_Write(i)) for i in range(10)))

    assert asyncio.run(scenario()) == [i * 10 for i in range(10)]
    assert store.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_failed_write_raises_for_its_caller_only() -> None:
    store = _RecordingStore()

    async def scenario() -> list[Any]:
        committer = _committer(store)
        writes = [_Write(0), _Write(1, fail=True), _Write(2)]
        return await asyncio.gather(*(committer.write(w) for w in writes), return_exceptions=True)

    good, bad, other = asyncio.run(scenario())
    assert (good, other) == (0, 20)
    assert isinstance(bad, RuntimeError) and "write 1 refused" in str(bad)


def test_a_caller_cancelled_before_the_commit_is_left_out() -> None:
    store = _RecordingStore()

    async def scenario() -> list[Any]:
        committer = _committer(store)
        tasks = [asyncio.ensure_future(committer.write(_Write(i))) for i in range(3)]
        await asyncio.sleep(0)  # the writes are queued, the commit is the next callback
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    first, cancelled, last = asyncio.run(scenario())
    assert (first, last) == (0, 20)
    assert isinstance(cancelled, asyncio.CancelledError)
    assert store.batches == [[0, 2]]


@pytest.mark.parametrize(("linger", "max_batch"), [(0.0, 64), (-1.0, 64), (0.1, 0)])
def test_settings_must_be_positive(linger: float, max_batch: int) -> None:
    async def scenario() -> None:
        _committer(_RecordingStore(), linger=linger, max_batch=max_batch)

    with pytest.raises(ValueError, match="linger > 0 and max_batch >= 1"):
        asyncio.run(scenario())


def test_while_another_writer_holds_the_store_batches_go_to_its_writer_in_order() -> None:
    store = _RecordingStore()
    store.busy = True

    async def scenario() -> list[Any]:
        committer = _committer(store, linger=0.01)
        first = [asyncio.ensure_future(committer.write(_Write(i))) for i in range(2)]
        await asyncio.sleep(0.05)  # the loop is not blocked: timers run while the writes wait
        store.busy = False  # free again, but the deferred batch is not committed yet ...
        second = [asyncio.ensure_future(committer.write(_Write(i))) for i in range(2, 4)]
        await asyncio.sleep(0.05)
        assert not any(t.done() for t in first + second)
        store.release.set()
        return await asyncio.gather(*first, *second)

    assert asyncio.run(scenario()) == [0, 10, 20, 30]
    assert store.queued == [0, 1, 2, 3]  # ... so the later batch followed it to the writer


def test_the_loop_keeps_serving_while_another_process_holds_the_sqlite_write_lock(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    store = SqliteStore(path)
    other = sqlite3.connect(path, isolation_level=None)  # e.g. `crashfleet recluster` mid-transaction
    other.execute("BEGIN IMMEDIATE")
    ingestor = Ingestor(store, Metrics(CollectorRegistry()))
    record = null_deref(("bug_a", "vfs_write"))
    request = convert.report_request(record, key="locked-key-0001", host=crash_pb2.HostFacts(hostname="web-1"),
                                  source_path="/var/crash/1")  # fmt: skip

    async def scenario() -> int:
        report = asyncio.ensure_future(ingestor.report_async(request, "web-1"))
        ticks = 0
        for _ in range(20):  # 0.4 s in which the loop must keep turning
            await asyncio.sleep(0.02)
            ticks += 1
        assert not report.done()  # acknowledged only once committed, and it cannot commit yet
        other.execute("COMMIT")
        result = await asyncio.wait_for(report, 15)
        assert not result.duplicate
        return ticks

    try:
        assert asyncio.run(scenario()) == 20
        crashes, _ = store.list_crashes(QueryFilter(), Page(size=10))
        assert [c.host for c in crashes] == ["web-1"]
    finally:
        other.close()
        store.close()
