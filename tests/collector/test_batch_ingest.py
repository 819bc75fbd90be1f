"""Batched ingest (SqlStore._ingest_batch_tx, what SQLite's group-commit leader runs) stores
exactly what storing the same crashes one at a time stores: same results, clusters, aggregates,
hosts. Checked on both backends against the one-by-one path, plus concurrent reports through the
public API and a batch that must fall back to one by one."""

from __future__ import annotations

import dataclasses
import random
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from collector.store import IngestResult, NewCrash, Store
from collector.store.sql import SqlStore
from collector.store.sqlite import SqliteStore
from tests.collector.conftest import NOW, make_crash
from wire.model import Page, QueryFilter

BASE = ("e1000_clean_rx_irq", "e1000_clean", "net_rx_action", "__do_softirq", "run_ksoftirqd")


def _crashes(seed: int, n: int) -> list[NewCrash]:
    """Repeated keys, repeated and similar signatures, several hosts, modules, days, crash times."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        key = f"key-{rng.randrange(n * 3 // 4):05d}"  # about a quarter are resubmissions
        frames = list(BASE)
        if rng.random() < 0.5:
            frames[rng.randrange(1, len(frames))] = f"helper_{rng.randrange(4)}"  # similar: joins
        if rng.random() < 0.2:
            frames = [f"other_{rng.randrange(3)}", *frames[1:]]  # another guilty frame: own cluster
        modules = tuple(rng.sample(["e1000e", "nvme", "ext4", "crashme"], rng.randrange(0, 4)))
        crash = make_crash(
            key,
            host=f"web-{rng.randrange(5)}",
            frames=tuple(frames),
            release=rng.choice(["6.1.0-26-amd64", "6.1.0-28-amd64"]),
            hardware=rng.choice(["QEMU", ""]),
            modules=modules,
            received_at=NOW + timedelta(minutes=i),
            crash_time=NOW - timedelta(days=rng.randrange(3), minutes=rng.randrange(100)),
        )
        out.append(dataclasses.replace(crash, idempotency_key=key))
    return out


def _one_by_one(crashes: list[NewCrash]) -> tuple[SqlStore, list[IngestResult]]:
    reference = SqliteStore(":memory:")
    results = [reference._retry_write(lambda tx, c=c: reference._ingest_tx(tx, c)) for c in crashes]
    return reference, results


def _batched(store: SqlStore, crashes: list[NewCrash], sizes: random.Random) -> list[IngestResult]:
    results: list[IngestResult] = []
    start = 0
    while start < len(crashes):
        part = crashes[start : start + sizes.randrange(1, 40)]
        results += store._retry_write(lambda tx, part=part: store._ingest_batch_tx(tx, part))
        start += len(part)
    return results


def _state(store: Store, crash_ids: dict[str, str]) -> dict[str, Any]:
    """Everything a reader can see, with random crash ids replaced by their idempotency keys."""
    clusters, _ = store.list_clusters(QueryFilter(), Page(1000))
    details = [store.get_cluster(c.id) for c in clusters]
    crashes, _ = store.list_crashes(QueryFilter(), Page(1000))
    hosts, _ = store.list_hosts(QueryFilter(), Page(1000))
    return {
        "clusters": sorted(
            (dataclasses.replace(c, representative_crash_id=crash_ids[c.representative_crash_id]) for c in clusters),
            key=lambda c: c.id,
        ),
        "details": sorted(
            (d.summary.id, d.by_host, d.by_kernel_release, d.by_hardware, d.by_module, sorted(d.fingerprints))
            for d in details
            if d is not None
        ),
        "crashes": sorted((crash_ids[k.id], k.cluster_id, k.fingerprint, k.host) for k in crashes),
        "hosts": sorted(hosts, key=lambda h: h.hostname),
    }


def _comparable(results: list[IngestResult], crash_ids: dict[str, str]) -> list[tuple[Any, ...]]:
    return [
        (crash_ids[r.crash_id], r.cluster_id, r.duplicate, r.cluster_created, r.cluster_new_host, r.similarity)
        for r in results
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batches_store_what_one_by_one_stores(store: Store, seed: int) -> None:
    assert isinstance(store, SqlStore)
    crashes = _crashes(seed, 120)
    reference, expected = _one_by_one(crashes)
    got = _batched(store, crashes, random.Random(seed))
    # Crash ids are random; name each by the key of the crash that created it.
    expected_ids = {r.crash_id: c.idempotency_key for r, c in zip(expected, crashes, strict=True)}
    got_ids = {r.crash_id: c.idempotency_key for r, c in zip(got, crashes, strict=True)}
    assert _comparable(got, got_ids) == _comparable(expected, expected_ids)
    assert sum(not r.duplicate for r in got) == len({c.idempotency_key for c in crashes})
    assert _state(store, got_ids) == _state(reference, expected_ids)
    reference.close()


def test_concurrent_reports_share_commits_and_count_once(tmp_path: Path) -> None:
    """Through the public API from many threads: every report answered, every key stored once,
    aggregates equal to storing them one by one (exact fingerprints only, so order cannot matter)."""
    crashes = [
        make_crash(f"conc-{i % 150:04d}", host=f"web-{i % 7}", frames=(f"bug_{i % 9}", *BASE[1:]),
                   received_at=NOW, crash_time=NOW - timedelta(hours=i % 30))
        for i in range(200)
    ]  # fmt: skip
    store = SqliteStore(str(tmp_path / "c.db"))
    results: list[IngestResult | None] = [None] * len(crashes)
    barrier = threading.Barrier(8)

    def worker(offset: int) -> None:
        barrier.wait()
        for i in range(offset, len(crashes), 8):
            results[i] = store.ingest(crashes[i])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = [r for r in results if r is not None]
    assert len(stored) == len(crashes)
    assert sum(not r.duplicate for r in stored) == 150
    by_key: dict[str, set[str]] = {}
    for crash, result in zip(crashes, stored, strict=True):
        by_key.setdefault(crash.idempotency_key, set()).add(result.crash_id)
    assert all(len(ids) == 1 for ids in by_key.values())  # a resubmission answers with the first id
    reference, _ = _one_by_one(crashes)
    clusters = {c.id: (c.count, c.hosts, c.first_seen, c.last_seen) for c in store.list_clusters(QueryFilter(), Page(100))[0]}
    want = {c.id: (c.count, c.hosts, c.first_seen, c.last_seen) for c in reference.list_clusters(QueryFilter(), Page(100))[0]}
    assert clusters == want
    assert store.list_hosts(QueryFilter(), Page(100))[0] == reference.list_hosts(QueryFilter(), Page(100))[0]
    store.close()
    reference.close()


def test_a_failing_batch_is_redone_one_by_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the batched statements fail, nothing of the batch stays and each report is stored alone."""
    store = SqliteStore(str(tmp_path / "f.db"))

    def broken(tx: Any, crashes: Any) -> Any:
        store._ingest_tx(tx, crashes[0])  # writes something, then fails: must be rolled back
        raise RuntimeError("injected")

    monkeypatch.setattr(store, "_ingest_batch_tx", broken)
    first = store.ingest(make_crash("fallback-1"))
    again = store.ingest(make_crash("fallback-1"))
    assert not first.duplicate and again.duplicate and again.crash_id == first.crash_id
    [cluster] = store.list_clusters(QueryFilter(), Page(10))[0]
    assert cluster.count == 1  # the rolled-back batch write left nothing behind
    store.close()
