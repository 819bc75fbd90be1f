"""Heartbeats in group commits: the heartbeats of one batch are coalesced per host and leave
exactly the hosts — and, on both stores, the exposure bookkeeping — that writing them one by one
leaves; each is answered only after the commit, one failing heartbeat fails alone, and
Ingestor.heartbeat_async works on every store."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from collector.ingest import Ingestor, InvalidReport
from collector.metrics import Metrics
from collector.store import HostRecord, Store
from collector.store.sqlite import SqliteStore
from tests.collector.conftest import NOW
from wire.model import Page, QueryFilter
from wire.v1 import crash_pb2, ingest_service_pb2

# (hostname, minutes after NOW, kernel release, modules) in arrival order: late and out-of-order
# heartbeats of the same host, ties, and module lists that change and change back.
BEATS = [
    ("web-1", 0, "6.1.0-26-amd64", ("e1000e", "nvme")),
    ("web-2", 1, "6.1.0-27-amd64", ("nvme",)),
    ("web-1", 5, "6.1.0-28-amd64", ("xfs",)),
    ("web-1", 3, "6.1.0-20-amd64", ()),  # older than the previous one: must not win
    ("web-3", 2, "6.1.0-26-amd64", ()),
    ("web-2", 1, "6.1.0-29-amd64", ("ext4", "nvme")),  # same time: the later one wins
    ("web-3", 4, "6.1.0-26-amd64", ("e1000e",)),
]


def _record(hostname: str, release: str, modules: tuple[str, ...]) -> HostRecord:
    return HostRecord(hostname, release, "x86_64", "QEMU", "0.1.0", 2, 2 << 30, modules)


def _hosts(store: Store) -> list[Any]:
    return store.list_hosts(QueryFilter(), Page(100))[0]


@contextmanager
def _one_batch(store: SqliteStore) -> Iterator[None]:
    """Everything submitted inside lands in one group commit: the writer is parked on the write
    lock with a plug write it already took from the queue, and the rest queues up behind it."""
    with store._write_lock:
        plug = store.submit_heartbeat(_record("plug", "6.1.0-26-amd64", ()), NOW)
        deadline = time.monotonic() + 10
        while store._writer_thread.queued() and time.monotonic() < deadline:
            time.sleep(0.001)
        assert not store._writer_thread.queued(), "the writer did not take the plug write"
        yield
    plug.result(timeout=10)


def test_coalesced_heartbeats_store_what_one_by_one_stores(tmp_path: Path) -> None:
    reference = SqliteStore(str(tmp_path / "ref.db"))
    for hostname, minutes, release, modules in BEATS:
        reference.heartbeat(_record(hostname, release, modules), NOW + timedelta(minutes=minutes))
    store = SqliteStore(str(tmp_path / "batched.db"))
    with _one_batch(store):
        futures = [
            store.submit_heartbeat(_record(hostname, release, modules), NOW + timedelta(minutes=minutes))
            for hostname, minutes, release, modules in BEATS
        ]
        assert not any(f.done() for f in futures)
    assert [f.result(timeout=10) for f in futures] == [None] * len(BEATS)
    got = [h for h in _hosts(store) if h.hostname != "plug"]
    assert got == _hosts(reference)
    assert [(h.hostname, h.kernel_release, h.modules) for h in got] == [
        ("web-1", "6.1.0-28-amd64", ("xfs",)),
        ("web-2", "6.1.0-29-amd64", ("ext4", "nvme")),
        ("web-3", "6.1.0-26-amd64", ("e1000e",)),
    ]
    assert [h.hostname for h in store.list_hosts(QueryFilter(module="e1000e"), Page())[0]] == ["web-3"]
    store.close()
    reference.close()


# Tables a heartbeat writes, as rows: what "the same state" means for the equivalence below.
HEARTBEAT_TABLES = {
    "hosts": "SELECT hostname, kernel_release, module_set, last_heartbeat FROM hosts ORDER BY hostname",
    "module_sets": "SELECT id, modules FROM module_sets ORDER BY id",
    "host_user_faults": "SELECT hostname, program, faults FROM host_user_faults ORDER BY hostname, program",
    "host_exposure": "SELECT hostname, profile, since, counted_day, counted_profile, seconds, labels,"
    " hardware_errors FROM host_exposure ORDER BY hostname",
    "exposure_profiles": "SELECT id, attrs FROM exposure_profiles ORDER BY id",
    "exposure_profile_days": "SELECT day, profile, seconds, hosts FROM exposure_profile_days ORDER BY day, profile",
    "exposure_days": "SELECT day, dim, value, seconds, hosts FROM exposure_days ORDER BY day, dim, value",
}


def _tables(store: Any) -> dict[str, list[tuple[Any, ...]]]:
    with store._read_tx() as tx:
        return {name: tx.all(sql) for name, sql in HEARTBEAT_TABLES.items()}


def _fleet_rounds() -> list[list[tuple[HostRecord, datetime]]]:
    """Rounds of heartbeats from 24 hosts sharing three profiles: onboarding, a round past the
    exposure cap (every host credited, many to the same day and profile), a round within it (no
    credit), one past midnight, with hosts that change release, labels, hardware errors and
    user-space faults between rounds."""
    rounds = []
    for k, minutes in enumerate((0, 10, 11, 12 * 60 + 5)):
        beats = []
        for i in range(24):
            release = ("6.1.0-26-amd64", "6.1.0-27-amd64", "6.12.9-amd64")[(i + (k == 3 and i < 4)) % 3]
            beats.append((
                HostRecord(
                    f"node-{i:02d}", release, "x86_64", ("R640", "DL360")[i % 2], "0.3.0", 4, 8 << 30,
                    ("e1000e", "nvme") if i % 3 else ("xfs",),
                    labels=(("rack", str(i % 4)),) if k >= 2 else (),
                    hardware_errors=(("mce", k),) if i == 5 and k else (),
                    user_faults=(("nginx", k + 1),) if i % 7 == 0 else (),
                ),
                NOW + timedelta(minutes=minutes, seconds=i),
            ))  # fmt: skip
        rounds.append(beats)
    return rounds


def test_a_batch_of_heartbeats_stores_and_credits_what_one_by_one_does(store: Store, tmp_path: Path) -> None:
    """One transaction per round (the writer thread's batch) against one per heartbeat, on each
    store: the same inventories, module sets, faults, exposure per host and per day and profile."""
    rounds = _fleet_rounds()
    for beats in rounds:
        writes = [store.heartbeat_write(h, at) for h, at in beats]  # type: ignore[attr-defined]
        with store._write_tx() as tx:  # type: ignore[attr-defined]
            store.run_batch(tx, writes)  # type: ignore[attr-defined]
        assert [(w.result, w.error) for w in writes] == [(None, None)] * len(writes)
    batched = _tables(store)
    assert batched["exposure_profile_days"] and batched["exposure_days"], "the rounds credited nothing"
    assert max(row[3] for row in batched["exposure_profile_days"]) > 1, "no two hosts shared a credit row"
    with _twin(store, tmp_path) as reference:
        for beats in rounds:
            for h, at in beats:
                reference.heartbeat(h, at)
        assert batched == _tables(reference)


@contextmanager
def _twin(store: Store, tmp_path: Path) -> Iterator[Any]:
    """An empty store of the same backend as `store`."""
    if isinstance(store, SqliteStore):
        twin: Any = SqliteStore(str(tmp_path / "twin.db"))
        try:
            yield twin
        finally:
            twin.close()
        return
    from collector.store.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    schema = f"{store.schema}_twin"
    twin = PostgresStore(store.url, schema=schema)
    try:
        yield twin
    finally:
        twin.drop_schema()
        twin.close()


def test_a_heartbeat_is_answered_only_after_its_commit(tmp_path: Path) -> None:
    path = tmp_path / "durable.db"
    store = SqliteStore(str(path))
    with _one_batch(store):
        future = store.submit_heartbeat(_record("web-9", "6.1.0-26-amd64", ("nvme",)), NOW)
        time.sleep(0.05)
        assert not future.done()  # the writer cannot commit while the write lock is held
    future.result(timeout=10)
    # Acknowledged means committed: a separate connection sees the row at once.
    with sqlite3.connect(path) as other:
        assert other.execute(
            "SELECT s.modules FROM hosts h JOIN module_sets s ON s.id = h.module_set WHERE h.hostname = 'web-9'"
        ).fetchone() == ('["nvme"]',)
    store.close()


def test_a_failing_heartbeat_fails_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SqliteStore(str(tmp_path / "fail.db"))
    real = store._heartbeats_tx

    def flaky(tx: Any, beats: list[tuple[HostRecord, int]]) -> None:
        real(tx, beats)  # writes, then fails: the write must be rolled back
        if any(host.hostname == "bad" for host, _ in beats):
            raise RuntimeError("injected")

    monkeypatch.setattr(store, "_heartbeats_tx", flaky)
    with _one_batch(store):
        good = store.submit_heartbeat(_record("good", "6.1.0-26-amd64", ()), NOW)
        bad_early = store.submit_heartbeat(_record("bad", "6.1.0-26-amd64", ()), NOW)
        bad = store.submit_heartbeat(_record("bad", "6.1.0-26-amd64", ()), NOW + timedelta(minutes=1))
        later = store.submit_heartbeat(_record("later", "6.1.0-27-amd64", ()), NOW)
    assert good.result(timeout=10) is None and later.result(timeout=10) is None
    for failed in (bad, bad_early):  # the superseded heartbeat shares the outcome of the one written
        with pytest.raises(RuntimeError, match="injected"):
            failed.result(timeout=10)
    assert sorted(h.hostname for h in _hosts(store)) == ["good", "later", "plug"]
    store.close()


def test_heartbeats_between_reports_keep_their_order(tmp_path: Path) -> None:
    """A batch mixing crash reports and heartbeats: a report's host row and a heartbeat's
    inventory both land, in the order they were queued."""
    from tests.collector.conftest import make_crash

    store = SqliteStore(str(tmp_path / "mixed.db"))
    with _one_batch(store):
        before = store.submit_heartbeat(_record("web-1", "6.1.0-26-amd64", ("nvme",)), NOW)
        crash = store.submit_ingest(make_crash("mixed-0001", host="web-1"))
        after = store.submit_heartbeat(
            _record("web-1", "6.1.0-27-amd64", ("xfs",)), NOW + timedelta(minutes=1)
        )
    assert before.result(timeout=10) is None and after.result(timeout=10) is None
    assert not crash.result(timeout=10).duplicate
    [host] = [h for h in _hosts(store) if h.hostname == "web-1"]
    assert (host.kernel_release, host.modules, host.crashes) == ("6.1.0-27-amd64", ("xfs",), 1)
    store.close()


def _request(hostname: str, modules: tuple[str, ...] = ()) -> ingest_service_pb2.HeartbeatRequest:
    facts = crash_pb2.HostFacts(hostname=hostname, kernel_release="6.1.0-26-amd64", modules=list(modules))
    return ingest_service_pb2.HeartbeatRequest(host=facts)


def test_heartbeat_async_on_one_loop(store: Store) -> None:
    """Many concurrent heartbeats on one event loop all land (SQLite through the queue, other
    stores through a worker thread), and a malformed one is refused before any write."""
    ingestor = Ingestor(store, Metrics(CollectorRegistry()))

    async def scenario() -> None:
        await asyncio.gather(*(ingestor.heartbeat_async(_request(f"web-{i % 5}", ("nvme",)), f"web-{i % 5}")
                               for i in range(40)))  # fmt: skip
        with pytest.raises(InvalidReport, match=r"host\.hostname"):
            await ingestor.heartbeat_async(_request(""), " ")

    asyncio.run(scenario())
    assert sorted(h.hostname for h in _hosts(store)) == [f"web-{i}" for i in range(5)]
    assert all(h.modules == ("nvme",) for h in _hosts(store))


def test_heartbeat_async_reports_a_closed_store(tmp_path: Path) -> None:
    from collector.store import StoreError

    store = SqliteStore(str(tmp_path / "closed.db"))
    ingestor = Ingestor(store, Metrics(CollectorRegistry()))
    store.close()
    with pytest.raises(StoreError, match="closed"):
        asyncio.run(ingestor.heartbeat_async(_request("web-1"), "web-1"))


def test_heartbeats_from_many_threads_all_commit(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "threads.db"))
    futures: list[Future[None]] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        for i in range(25):
            f = store.submit_heartbeat(_record(f"h-{(k * 25 + i) % 30}", "6.1.0-26-amd64", ()), NOW)
            with lock:
                futures.append(f)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(f.result(timeout=10) is None for f in futures) and len(futures) == 100
    assert len(_hosts(store)) == 30
    store.close()
