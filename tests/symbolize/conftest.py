"""Fixtures shared by the collector-side symbolization tests: a live collector on loopback with
a symbol store, and a small stand-in "vmlinux" compiled with `gcc -g -O2` at test time."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client import CollectorRegistry

from collector.config import CollectorConfig
from collector.metrics import Metrics
from collector.server import RunningCollector, start_collector

PROG = Path(__file__).resolve().parents[1] / "data" / "symbolize" / "prog"
TOKEN = "upload-test-token-0123456789"
T = TypeVar("T")


@dataclass
class Live:
    """A collector serving gRPC and HTTP on loopback from its own event-loop thread."""

    target: str
    db: str
    symbols: Path
    token_file: Path
    collector: RunningCollector
    loop: asyncio.AbstractEventLoop

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run a coroutine on the collector's loop (its Resymbolizer lives there)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=timeout)

    @property
    def http_url(self) -> str:
        assert self.collector.http is not None
        return self.collector.http.url


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    db = f"sqlite:///{tmp_path}/c.db"
    symbols = tmp_path / "symbols"
    loop = asyncio.new_event_loop()
    config = CollectorConfig(
        db=db, listen="127.0.0.1:0", http="127.0.0.1:0", token=TOKEN, symbols_dir=str(symbols)
    )
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    running = asyncio.run_coroutine_threadsafe(
        start_collector(config, metrics=Metrics(CollectorRegistry())), loop
    ).result(timeout=30)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    try:
        yield Live(running.grpc_target, db, symbols, token_file, running, loop)
    finally:
        asyncio.run_coroutine_threadsafe(running.stop(grace=0), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in vmlinux with DWARF and a GNU build-id (two compile units, inlined helpers)."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    elf = tmp_path_factory.mktemp("upload") / "vmlinux"
    subprocess.run(["gcc", "-g", "-O2", "-Wl,--build-id=sha1", "-o", str(elf), str(PROG / "main.c"),
                    str(PROG / "walk.c")], check=True, timeout=120)
    return elf
