"""Two collector replicas on one PostgreSQL ingesting the same new signature at the same moment."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from collector.store import IngestResult, NewCrash
from collector.store.postgres import PostgresStore
from tests.collector.conftest import make_crash
from wire.model import Page, QueryFilter

pytestmark = pytest.mark.postgres
ROUNDS = 25


def _race(replicas: list[PostgresStore], crashes: Callable[[int], list[NewCrash]]) -> list[list[IngestResult]]:
    """Each round, every replica ingests its crash after a barrier releases them together."""
    barrier = threading.Barrier(len(replicas))
    results: list[list[IngestResult]] = [[] for _ in replicas]
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            for round_ in range(ROUNDS):
                crash = crashes(round_)[index]
                barrier.wait(timeout=30)
                results[index].append(replicas[index].ingest(crash))
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(replicas))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return results


def test_same_new_fingerprint_makes_one_cluster(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    replicas = [PostgresStore(url, schema=schema) for _ in range(2)]
    try:
        results = _race(
            replicas,
            lambda r: [make_crash(f"r{r}-host{i}", host=f"host{i}", frames=(f"fn_{r}",)) for i in range(2)],
        )
        for a, b in zip(*results, strict=True):
            assert a.cluster_id == b.cluster_id
            assert not a.duplicate and not b.duplicate
            assert [a.cluster_created, b.cluster_created].count(True) == 1
        clusters, _ = replicas[0].list_clusters(QueryFilter(), Page(size=1000))
        assert len(clusters) == ROUNDS
        assert all((c.count, c.hosts) == (2, 2) for c in clusters)
    finally:
        for r in replicas:
            r.close()


def test_same_idempotency_key_from_two_replicas_is_stored_once(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    replicas = [PostgresStore(url, schema=schema) for _ in range(2)]
    try:
        results = _race(replicas, lambda r: [make_crash(f"same-{r}", frames=(f"fn_{r}",))] * 2)
        for a, b in zip(*results, strict=True):
            assert a.crash_id == b.crash_id and a.cluster_id == b.cluster_id
            assert sorted([a.duplicate, b.duplicate]) == [False, True]
        crashes, _ = replicas[0].list_crashes(QueryFilter(), Page(size=1000))
        assert len(crashes) == ROUNDS
        clusters, _ = replicas[1].list_clusters(QueryFilter(), Page(size=1000))
        assert sum(c.count for c in clusters) == ROUNDS
    finally:
        for r in replicas:
            r.close()
