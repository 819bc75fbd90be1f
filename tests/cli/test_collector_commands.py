"""`crashfleet submit`, `clusters`, `cluster`, `crashes`, `hosts`, `recluster` against a live collector."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from collector.config import CollectorConfig
from collector.metrics import Metrics
from collector.server import RunningCollector, start_collector
from crashfleet.cli import main

DATA = Path(__file__).resolve().parents[1] / "data" / "collector"
CLUSTER_KEYS = {"id", "title", "kind", "count", "hosts", "first_seen", "last_seen"}
CRASH_KEYS = {"id", "cluster_id", "host", "title", "fingerprint", "source", "crash_time", "received_at"}


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A collector on its own event-loop thread: (grpc target, db url)."""
    db = f"sqlite:///{tmp_path}/c.db"
    loop = asyncio.new_event_loop()
    started: list[RunningCollector] = []
    ready = threading.Event()

    async def start() -> None:
        started.append(await start_collector(
            CollectorConfig(db=db, listen="127.0.0.1:0", http=""), metrics=Metrics(CollectorRegistry())))  # fmt: skip
        ready.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    yield started[0].grpc_target, db
    asyncio.run_coroutine_threadsafe(started[0].stop(grace=0), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_submit_query_and_resubmit(collector: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target, db = collector
    log = tmp_path / "dmesg.txt"
    shutil.copy(DATA / "null-deref.log", log)
    assert main(["submit", "--collector", target, "--hostname", "web-1", "--json", str(log)]) == 0
    [first] = _lines(capsys)
    assert first["duplicate"] is False
    assert main(["submit", "--collector", target, "--hostname", "web-1", "--json", str(log)]) == 0
    [again] = _lines(capsys)
    assert again["duplicate"] is True and again["crash_id"] == first["crash_id"]

    assert main(["clusters", "--collector", target, "--json"]) == 0
    [cluster] = _lines(capsys)
    assert set(cluster) >= CLUSTER_KEYS
    assert (cluster["id"], cluster["count"], cluster["hosts"]) == (first["cluster_id"], 1, 1)
    assert cluster["title"] == "BUG: unable to handle kernel NULL pointer dereference in crashme_write"

    assert main(["crashes", "--collector", target, "--json", "--cluster", str(cluster["id"])]) == 0
    [crash] = _lines(capsys)
    assert set(crash) >= CRASH_KEYS
    assert crash["source"] == str(log) and crash["host"] == "web-1"

    assert main(["cluster", str(cluster["id"]), "--collector", target]) == 0
    text = capsys.readouterr().out
    assert "crashme_write" in text and "web-1 (1)" in text

    assert main(["hosts", "--collector", target, "--json"]) == 0
    [host] = _lines(capsys)
    assert host["hostname"] == "web-1" and host["crashes"] == 1

    # Without --json: a header line, then one aligned row per item.
    for command, header, cell in (
        ("clusters", "ID COUNT HOSTS LAST SEEN KIND TITLE", str(cluster["id"])),
        ("crashes", "ID RECEIVED HOST CLUSTER TITLE", crash["id"]),
        ("hosts", "HOST KERNEL CRASHES LAST HEARTBEAT AGENT", "web-1"),
    ):
        assert main([command, "--collector", target]) == 0
        head, row = capsys.readouterr().out.splitlines()
        assert head.split() == header.split() and row.split()[0] == cell

    assert main(["clusters", "--collector", target, "--kind", "warning", "--json"]) == 0
    assert _lines(capsys) == []
    assert main(["cluster", "nope", "--collector", target]) == 2
    assert "NOT_FOUND" in capsys.readouterr().err

    # Same rules: recluster moves nothing.
    assert main(["recluster", "--db", db, "--json"]) == 0
    [summary] = _lines(capsys)
    assert (summary["crashes"], summary["moved"], summary["clusters_after"]) == (1, 0, 1)


def test_submit_reports_unreadable_files(collector: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target, _ = collector
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    assert main(["submit", "--collector", target, str(empty), str(tmp_path / "missing.log")]) == 1
    err = capsys.readouterr().err
    assert "empty file" in err and "no such file" in err


def test_unreachable_collector_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["clusters", "--collector", "127.0.0.1:1", "--timeout", "2"]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err


def _seed(db: str, crashes: int = 5) -> list[str]:
    """Crashes stored straight into the collector's database (the same file, another connection)."""
    from datetime import timedelta

    from collector.store import open_store
    from tests.collector.conftest import NOW, make_crash

    store = open_store(db)
    try:
        ids = [
            store.ingest(make_crash(f"seed-{i}", host=f"web-{i % 2}", received_at=NOW + timedelta(minutes=i))).crash_id
            for i in range(crashes)
        ]
    finally:
        store.close()
    return ids


def test_limit_says_how_many_are_left_and_all_shows_them(
    collector: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    target, db = collector
    _seed(db, 5)
    assert main(["crashes", "--collector", target, "--json", "--limit", "2"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 2
    assert "2 of 5 shown; --all for more" in err
    assert main(["crashes", "--collector", target, "--all"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 + 5 and err == ""  # the header and every row, no note
    assert main(["hosts", "--collector", target, "--limit", "1"]) == 0
    assert "1 of 2 shown" in capsys.readouterr().err


def test_filters_that_match_nothing_say_so(collector: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    target, db = collector
    assert main(["clusters", "--collector", target]) == 0
    assert "no clusters stored yet" in capsys.readouterr().err
    _seed(db, 2)
    assert main(["crashes", "--collector", target, "--kernel-release", "9.9", "--host", "web-0"]) == 0
    assert "no crashes match filter host=web-0, kernel-release=9.9" in capsys.readouterr().err
    assert main(["crashes", "--collector", target, "--kernel-release", "6.1", "--json"]) == 0
    assert len(_lines(capsys)) == 2  # a release prefix matches


def test_crash_and_cluster_by_unique_prefix(collector: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    target, db = collector
    ids = _seed(db, 2)
    assert main(["crash", ids[1][:16], "--collector", target]) == 0
    text = capsys.readouterr().out
    assert text.startswith(ids[1]) and "host web-1" in text and "BUG: kernel NULL pointer dereference" in text
    assert main(["crash", ids[0], "--collector", target, "--json"]) == 0
    [doc] = _lines(capsys)
    assert doc["id"] == ids[0] and doc["signature"]["kind"] == "null-deref" and doc["modules"] == ["crashme", "e1000e"]
    common = next(n for n in range(4, 20) if ids[0][:n] != ids[1][:n]) - 1
    assert common >= 4  # ids start with the time in ms: two of one second share 9 leading digits
    assert main(["crash", ids[0][:common], "--collector", target]) == 1
    err = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in err and "ambiguous" in err and ids[0] in err and ids[1] in err
    assert main(["crash", "0000", "--collector", target]) == 2
    assert "no crash 0000" in capsys.readouterr().err
    assert main(["clusters", "--collector", target, "--json"]) == 0
    [cluster] = _lines(capsys)
    assert main(["cluster", str(cluster["id"])[:5], "--collector", target]) == 0
    text = capsys.readouterr().out
    assert text.startswith(str(cluster["id"])) and ids[0] in text


def test_purge_dry_run_then_purge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from datetime import UTC, datetime, timedelta

    from collector.store import open_store
    from tests.collector.conftest import make_crash

    db = f"sqlite:///{tmp_path}/p.db"
    store = open_store(db)
    now = datetime.now(UTC)
    store.ingest(make_crash("old", received_at=now - timedelta(days=100)))
    store.ingest(make_crash("new", frames=("other",), received_at=now - timedelta(days=1)))
    store.close()
    assert main(["purge", "--db", db, "--older-than", "90", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("would remove 1 crashes received before ")
    assert main(["purge", "--db", db, "--older-than", "90", "--json"]) == 0
    [report] = _lines(capsys)
    assert (report["dry_run"], report["crashes"], report["clusters"]) == (False, 1, 1)
    with pytest.raises(SystemExit):
        main(["purge", "--db", db, "--older-than", "-3"])
    assert "must be more than 0 days" in capsys.readouterr().err


def test_pages_follow_tokens_and_keep_the_first_total() -> None:
    from crashfleet.commands._query import paginate

    rows = list(range(7))
    calls: list[tuple[str, int]] = []

    def fetch(token: str, size: int) -> tuple[list[int], str, int]:
        calls.append((token, size))
        start = int(token or 0)
        end = min(start + 3, len(rows))  # the server pages by 3 whatever was asked
        return rows[start:end], str(end) if end < len(rows) else "", 7 if not token else 0

    pages = paginate(fetch, 0)
    assert list(pages) == rows and (pages.total, pages.shown) == (7, 7)
    assert [t for t, _ in calls] == ["", "3", "6"]
    calls.clear()
    pages = paginate(fetch, 4)
    assert list(pages) == [0, 1, 2, 3] and pages.total == 7
    assert calls == [("", 4), ("3", 1)]


def test_total_count_rides_on_the_first_page_only(collector: tuple[str, str]) -> None:
    import grpc

    from wire.v1 import query_service_pb2 as q
    from wire.v1 import query_service_pb2_grpc

    target, db = collector
    _seed(db, 5)
    with grpc.insecure_channel(target) as channel:
        stub = query_service_pb2_grpc.QueryServiceStub(channel)
        first = stub.ListCrashes(q.ListCrashesRequest(page_size=2), timeout=10)
        assert (len(first.crashes), first.total_count) == (2, 5) and first.next_page_token
        second = stub.ListCrashes(q.ListCrashesRequest(page_size=2, page_token=first.next_page_token), timeout=10)
        assert (len(second.crashes), second.total_count) == (2, 0)
        hosts = stub.ListHosts(q.ListHostsRequest(filter=q.Filter(host="web-1")), timeout=10)
        assert (len(hosts.hosts), hosts.total_count) == (1, 1)
        none = stub.ListClusters(q.ListClustersRequest(filter=q.Filter(kind="oops")), timeout=10)
        assert (len(none.clusters), none.total_count, none.next_page_token) == (0, 0, "")


def test_cluster_shows_why_each_fingerprint_joined(
    collector: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The crashme NULL dereference from 6.12 amd64 and 6.1 arm64 (real consoles): one cluster, the
    arm64 fingerprint joined by similarity, and `cluster` says so in text and JSON."""
    target, _ = collector
    real = DATA.parent / "vmcore" / "real"
    for host, case in (("amd64", "debian13-6.12-amd64-null"), ("arm64", "debian12-6.1-arm64-null")):
        log = tmp_path / f"{case}.log"
        shutil.copy(real / case / "serial.log", log)
        assert main(["submit", "--collector", target, "--hostname", host, "--json", str(log)]) == 0
    submitted = _lines(capsys)
    assert len({s["cluster_id"] for s in submitted}) == 1
    cluster_id = str(submitted[0]["cluster_id"])
    assert main(["cluster", cluster_id, "--collector", target]) == 0
    text = capsys.readouterr().out
    assert "fingerprints (why each joined):" in text
    assert "  created\n" in text
    assert "similar: bug class bad-access, guilty frame crashme_napi_pending, frame similarity 0.60 (cl-2)" in text
    assert main(["cluster", cluster_id, "--collector", target, "--json"]) == 0
    [doc] = _lines(capsys)
    merges = doc["merges"]
    assert isinstance(merges, list)
    assert [m["reason"] for m in merges] == ["created", "similar"]
    assert [m["fingerprint"] for m in merges] == doc["fingerprints"]
