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
