"""Grouping across kernel builds and rule editions, end to end: real console logs parsed as an
agent parses them, sent through a collector's gRPC API (SQLite and PostgreSQL), then read back
with GetCluster — which cluster each crash landed in and why each fingerprint joined.

One case per tests/data/collector/grouping/<case>.json (the reports, in order), expected beside
it in <case>.expected.json: the cluster of each report as letters (same letter, same cluster),
the merge reasons of each cluster, and text each cluster's merge details must contain. A report
with `"rules": "previous"` is parsed as an agent from before the current fingerprint edition
would (analysis.title.previous_rules). Logs are paths under tests/data, or `@shared/...` inside
../shared (the case is skipped without it).
"""

from __future__ import annotations

import asyncio
import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
from grpc import aio
from prometheus_client import CollectorRegistry

from analysis.oops import parse_log
from analysis.title import previous_rules
from collector.config import CollectorConfig
from collector.metrics import Metrics
from collector.server import start_collector
from tests.conftest import shared_path
from wire import convert
from wire.v1 import crash_pb2, ingest_service_pb2_grpc, query_service_pb2, query_service_pb2_grpc

DATA = Path(__file__).resolve().parents[1] / "data"
CASES = sorted(p.name.removesuffix(".json") for p in (DATA / "collector" / "grouping").glob("*.json")
               if not p.name.endswith(".expected.json"))  # fmt: skip


def _log(name: str) -> str:
    path = shared_path(*name.removeprefix("@shared/").split("/")) if name.startswith("@shared/") else DATA / name
    return path.read_text(errors="replace")


def _request(report: dict[str, Any], index: int) -> Any:
    with previous_rules() if report.get("rules") == "previous" else nullcontext():
        records = [r for r in parse_log(_log(report["log"])) if r.kind.value == report["kind"]]
    assert records, f"{report['log']} has no {report['kind']} report"
    host = crash_pb2.HostFacts(hostname=report["host"], kernel_release=records[0].kernel_release or "",
                               machine="x86_64", agent_version="test")  # fmt: skip
    return convert.report_request(records[0], key=f"grouping-case-{index:04d}", host=host, source_path=report["log"])


def _db(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/c.db"
    url, schema = request.getfixturevalue("pg_schema")
    return f"{url}?schema={schema}"


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("case", CASES)
def test_grouping_case(case: str, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    spec = json.loads((DATA / "collector" / "grouping" / f"{case}.json").read_text())
    expected = json.loads((DATA / "collector" / "grouping" / f"{case}.expected.json").read_text())
    requests = [_request(r, i) for i, r in enumerate(spec["reports"])]
    config = CollectorConfig(
        db=_db(backend, tmp_path, request), listen="127.0.0.1:0", http="", transition_days=spec["transition_days"]
    )

    async def scenario() -> tuple[list[str], dict[str, Any]]:
        running = await start_collector(config, metrics=Metrics(CollectorRegistry()))
        try:
            async with aio.insecure_channel(running.grpc_target) as channel:
                ingest = ingest_service_pb2_grpc.IngestServiceStub(channel)
                query = query_service_pb2_grpc.QueryServiceStub(channel)
                clusters = [(await ingest.ReportCrash(r)).cluster_id for r in requests]
                details = {
                    cid: (await query.GetCluster(query_service_pb2.GetClusterRequest(cluster_id=cid))).cluster
                    for cid in dict.fromkeys(clusters)
                }
                return clusters, details
        finally:
            await running.stop(grace=0)

    clusters, details = asyncio.run(scenario())
    letters: dict[str, str] = {}
    for cid, letter in zip(clusters, expected["clusters"], strict=True):
        letters.setdefault(letter, cid)
    assert [letters[letter] for letter in expected["clusters"]] == clusters, "reports landed in other clusters"
    assert len(set(letters.values())) == len(letters), "expected clusters collapsed into one"
    for letter, cid in letters.items():
        detail = convert.cluster_detail_from_proto(details[cid])
        assert sorted(m.reason for m in detail.merges) == expected["merges"][letter], (letter, detail.merges)
        assert [m.fingerprint for m in detail.merges] == list(detail.fingerprints)
        if letter in expected["detail_contains"]:
            assert any(expected["detail_contains"][letter] in m.detail for m in detail.merges), (letter, detail.merges)


def test_migration_explains_fingerprints_stored_before_it(tmp_path: Path) -> None:
    """A database at schema 5: each cluster's own fingerprint becomes 'created', the others
    'similar', and GetCluster's merges say so (oldest first)."""
    import sqlite3

    from collector.store import open_store
    from collector.store.sql import load_migrations

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE schema_version (version BIGINT PRIMARY KEY, name TEXT NOT NULL,"
                   " applied_at BIGINT NOT NULL)")  # fmt: skip
        for migration in load_migrations()[:5]:
            for statement in migration.statements:
                db.execute(statement)
            db.execute("INSERT INTO schema_version VALUES (?, ?, 0)", (migration.version, migration.name))
        db.execute(
            "INSERT INTO clusters VALUES ('c1', 'fp-own', 'cl-2', 't', 'null-deref', 'r', 'f', '[\"f\"]', 2, 1,"
            " 0, 0, '')"
        )
        db.executemany(
            "INSERT INTO cluster_fingerprints VALUES (?, 'c1', 'fp-1+4ac041e9', ?, ?)",
            [("fp-own", 1.0, 10), ("fp-later", 0.6, 20)],
        )
    store = open_store(f"sqlite:///{path}")
    try:
        detail = store.get_cluster("c1")
    finally:
        store.close()
    assert detail is not None
    assert [(m.fingerprint, m.reason, m.similarity) for m in detail.merges] == [
        ("fp-own", "created", 1.0), ("fp-later", "similar", 0.6),
    ]  # fmt: skip


def test_a_transition_starts_once_per_database(store: Any) -> None:
    """Restarts and other replicas read the first start back: the window does not move."""
    from datetime import UTC, datetime, timedelta

    first = datetime(2026, 12, 1, tzinfo=UTC)
    assert store.begin_transition("fp-1+new", "fp-1+old", first) == first
    assert store.begin_transition("fp-1+new", "fp-1+old", first + timedelta(days=40)) == first
    later = first + timedelta(days=200)
    assert store.begin_transition("fp-1+newer", "fp-1+new", later) == later
