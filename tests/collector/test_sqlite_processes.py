"""Several processes on one SQLite file (`crashfleet recluster` beside a running collector, a
second collector started by mistake): every write lands, the same new fingerprint makes one
cluster, the same key is stored once. Crash ids sort by the time they were made, which keeps a
batch's index writes on a few pages."""

from __future__ import annotations

import multiprocessing
import re
import time
from pathlib import Path

from collector.store.sql import new_crash_id
from collector.store.sqlite import SqliteStore
from tests.collector.conftest import make_crash
from wire.model import Page, QueryFilter

PER_PROCESS = 60


def _writer(path: str, name: str, start: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    store = SqliteStore(path)
    try:
        start.wait(30)
        for i in range(PER_PROCESS):
            # Both processes report crashes of the same 6 new signatures, and each resubmits
            # every key once.
            crash = make_crash(f"{name}-key-{i:04d}", host=f"{name}-host-{i % 4}", frames=(f"bug_{i % 6}", "vfs_write"))
            first = store.ingest(crash)
            again = store.ingest(crash)
            assert again.duplicate and again.crash_id == first.crash_id
    finally:
        store.close()


def test_two_processes_writing_one_file_lose_nothing_and_split_no_cluster(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    SqliteStore(path).close()  # schema in place before the race
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(path, name, start)) for name in ("a", "b")]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0, 0]
    store = SqliteStore(path)
    try:
        crashes, _ = store.list_crashes(QueryFilter(), Page(size=1000))
        assert len(crashes) == 2 * PER_PROCESS
        clusters, _ = store.list_clusters(QueryFilter(), Page(size=1000))
        assert len(clusters) == 6
        assert sorted(c.count for c in clusters) == [2 * PER_PROCESS // 6] * 6
        assert all(c.hosts == 4 for c in clusters)  # bug_k meets 2 of the 4 hosts of each process
    finally:
        store.close()


def test_crash_ids_are_unique_and_sort_by_creation_time() -> None:
    ids = []
    for _ in range(5):
        ids += [new_crash_id() for _ in range(2000)]
        time.sleep(0.002)
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{20}", i) for i in ids)
    prefixes = [i[:12] for i in ids]
    assert prefixes == sorted(prefixes)  # time first: ids of later batches sort after earlier ones
    assert int(prefixes[-1], 16) - int(prefixes[0], 16) < 60_000  # milliseconds, made just now
