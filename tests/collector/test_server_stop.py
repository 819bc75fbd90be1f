"""Stopping the collector never closes the store under work still running in a thread."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from collector.config import CollectorConfig
from collector.ingest import Ingestor
from collector.metrics import Metrics
from collector.server import start_collector


def test_stop_waits_for_a_gauge_refresh_under_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh running in its thread when stop() comes must finish before the store closes
    (cancelling the task abandoned it, and SQLite then crashed the process)."""
    entered, release = threading.Event(), threading.Event()
    finished: list[float] = []
    real = Ingestor.refresh_gauges

    def slow_refresh(self: Ingestor) -> None:
        if not entered.is_set():
            entered.set()
            release.wait(10)
        real(self)
        finished.append(time.monotonic())

    monkeypatch.setattr(Ingestor, "refresh_gauges", slow_refresh)

    async def scenario() -> tuple[float, float]:
        running = await start_collector(
            CollectorConfig(db=f"sqlite:///{tmp_path / 'c.db'}", listen="127.0.0.1:0", http=""),
            metrics=Metrics(CollectorRegistry()),
        )
        await asyncio.to_thread(entered.wait, 10)
        closed: list[float] = []
        real_close = running.store.close

        def close() -> None:
            closed.append(time.monotonic())
            real_close()

        running.store.close = close  # type: ignore[method-assign]
        stop = asyncio.create_task(running.stop(grace=0))
        await asyncio.sleep(0.3)
        assert not closed, "the store was closed while a refresh was still running"
        release.set()
        await stop
        return finished[0], closed[0]

    done, closed = asyncio.run(scenario())
    assert done <= closed
