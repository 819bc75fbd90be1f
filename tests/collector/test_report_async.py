"""Ingestor.report_async on SQLite's group commit on the event loop: many concurrent reports on one
loop each get their own answer after the commit, failures reach the caller, and stores without
it (PostgreSQL) still work through a worker thread."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.ingest import Ingestor
from collector.metrics import Metrics
from collector.store import GroupCommit, IngestResult, Store, StoreError
from collector.store.sqlite import SqliteStore
from tests.collector.records import null_deref
from wire import convert
from wire.model import Page, QueryFilter
from wire.v1 import crash_pb2, ingest_service_pb2


def _requests(n: int) -> list[ingest_service_pb2.ReportCrashRequest]:
    out = []
    for i in range(n):
        record = null_deref((f"bug_{i % 5}", "proc_reg_write", "vfs_write"))
        host = crash_pb2.HostFacts(hostname=f"web-{i % 3}")
        out.append(convert.report_request(record, key=f"async-key-{i % 40:04d}", host=host, source_path=f"/var/crash/{i}"))
    return out


def _ingestor(store: Store) -> Ingestor:
    return Ingestor(store, Metrics(CollectorRegistry()))


def test_concurrent_reports_on_one_loop_get_their_own_answers(store: Store) -> None:
    ingestor = _ingestor(store)
    requests = _requests(60)

    async def scenario() -> list[IngestResult]:
        return await asyncio.gather(*(ingestor.report_async(r, r.host.hostname) for r in requests))

    results = asyncio.run(scenario())
    assert isinstance(store, GroupCommit) == isinstance(store, SqliteStore)
    assert sum(not r.duplicate for r in results) == 40  # 20 resubmitted keys
    first: dict[str, IngestResult] = {}
    for request, result in zip(requests, results, strict=True):
        known = first.setdefault(request.idempotency_key, result)
        assert result.crash_id == known.crash_id and result.cluster_id == known.cluster_id
    clusters, _ = store.list_clusters(QueryFilter(), Page(100))
    assert sorted(c.count for c in clusters) == [8, 8, 8, 8, 8]


def test_a_failing_commit_reaches_the_caller(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SqliteStore(str(tmp_path / "fail.db"))

    def broken(*args: Any) -> Any:
        raise StoreError("disk gone")

    monkeypatch.setattr(store, "_ingest_batch_tx", broken)
    monkeypatch.setattr(store, "_ingest_tx", broken)
    ingestor = _ingestor(store)
    request = _requests(1)[0]
    with pytest.raises(StoreError, match="disk gone"):
        asyncio.run(ingestor.report_async(request, "web-1"))
    store.close()
    with pytest.raises(StoreError, match="closed"):
        asyncio.run(ingestor.report_async(request, "web-1"))


def test_a_cancelled_caller_does_not_break_the_others(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "cancel.db"))
    ingestor = _ingestor(store)
    requests = _requests(20)

    async def scenario() -> list[Any]:
        tasks = [asyncio.ensure_future(ingestor.report_async(r, r.host.hostname)) for r in requests]
        await asyncio.sleep(0)
        tasks[0].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(scenario())
    assert isinstance(results[0], asyncio.CancelledError)
    assert all(isinstance(r, IngestResult) for r in results[1:])
    store.close()
