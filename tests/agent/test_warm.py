"""The warm worker (agent.warm): real processes, the daemon's own supervision.

Every capture is read by a fresh fork of one pre-started process (no interpreter start per
capture), and every isolation guarantee of the cold worker holds: a looping, crashing or
memory-hungry input costs a worker, is reported as a failed capture with the reason, and the
next capture is still read; a warm process that died is replaced.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.layouts import Root
from agent.service import AgentService, _capture_job
from agent.warm import WarmWorker
from agent.worker import open_spool
from tests.agent import builders
from tests.agent.test_service import WARNING_LOG, Running, make_config, wait_for
from tests.agent.warm_analyzers import RECORD_ENV
from wire.v1 import ingest_service_pb2

REPO = Path(__file__).resolve().parents[2]
START_SECONDS = 90.0  # the zygote's imports on a loaded 2-core machine, with room to spare


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The zygote imports the test analyzers from this checkout, whatever the current directory."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))


def _config(tmp_path: Path, **changes: object) -> AgentConfig:
    # No collector: reports stay in the spool, where the test reads them.
    return dataclasses.replace(make_config(tmp_path), collector="", **changes)


def _spooled(config: AgentConfig) -> list[ingest_service_pb2.ReportCrashRequest]:
    spool = open_spool(config)
    try:
        return [ingest_service_pb2.ReportCrashRequest.FromString(i.payload) for i in spool.due(100)]
    finally:
        spool.close()


def _log(tag: str) -> bytes:
    """The WARNING fixture with a line of its own: a capture with its own content and key."""
    return WARNING_LOG + f"[  100.000000] {tag}\n".encode()


@pytest.fixture
def warm_service(tmp_path: Path) -> Iterator[tuple[AgentService, WarmWorker]]:
    launcher = WarmWorker(analyzer="tests.agent.warm_analyzers:hostile")
    service = AgentService(_config(tmp_path, worker_timeout_seconds=1.0), launcher=launcher, environ={})
    yield service, launcher
    launcher.close()


def test_captures_are_read_by_forks_of_one_warm_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = tmp_path / "readers"
    monkeypatch.setenv(RECORD_ENV, str(record))
    config = _config(tmp_path)
    launcher = WarmWorker(analyzer="tests.agent.warm_analyzers:recording")
    service = AgentService(config, launcher=launcher, environ={})
    try:
        with Running(service):
            assert launcher.ready.wait(START_SECONDS), "the warm worker never finished importing"
            for i in range(3):
                builders.debian(config.crash_dir, None, _log(f"capture {i}"), f"20261125120{i}")
                wait_for(lambda n=i + 1: len(_spooled(config)) == n, f"capture {i} spooled", timeout=30)
    finally:
        launcher.close()
    assert sorted(r.signature.title for r in _spooled(config)) == ["WARNING in example_xmit"] * 3
    readers = [tuple(int(x) for x in line.split()) for line in record.read_text().splitlines()]
    assert len(readers) == 3
    pids = {pid for pid, _parent in readers}
    # Each capture in a process of its own, none of them the zygote, all of them its children:
    # forked from the warm process, not interpreters the daemon started.
    assert len(pids) == 3
    assert launcher.zygote_pid not in pids and os.getpid() not in pids
    assert {parent for _pid, parent in readers} == {launcher.zygote_pid}
    assert launcher.interpreters_started == 1
    assert launcher.runs >= 3


@pytest.mark.parametrize(
    ("marker", "daemon_says"),
    [("HOSTILE-LOOP", "worker hung, killed"), ("HOSTILE-SEGFAULT", "worker failed status=-11")],
)
def test_a_worker_killing_capture_is_read_twice_then_failed_and_the_next_is_read(
    tmp_path: Path,
    warm_service: tuple[AgentService, WarmWorker],
    caplog: pytest.LogCaptureFixture,
    marker: str,
    daemon_says: str,
) -> None:
    service, launcher = warm_service
    config = service.config
    caplog.set_level(logging.INFO, logger="agent.service")
    with Running(service):
        assert launcher.ready.wait(START_SECONDS), "the warm worker never finished importing"
        # Both complete in the same instant, the hostile one first: they may share its worker.
        builders.debian(config.crash_dir, None, _log(marker), "202611251200")
        builders.debian(config.crash_dir, None, _log("good"), "202611251201")
        wait_for(lambda: len(_spooled(config)) == 2, "both captures reported", timeout=60)
    by_title = {r.signature.title: r for r in _spooled(config)}
    assert sorted(by_title) == ["WARNING in example_xmit", "failed capture (debian)"]
    failed = by_title["failed capture (debian)"]
    assert "reading it stopped the extractor 2 times (crash, kill or timeout); not read again" in (
        failed.signature.corrupted_reason
    )
    assert marker.encode() in failed.log_excerpt.encode()
    assert sum(daemon_says in r.getMessage() for r in caplog.records) == 2
    # The zygote never read the capture: the same warm process served every run.
    assert launcher.interpreters_started == 1


def test_a_memory_hungry_capture_fails_with_its_reason_and_the_next_is_read(
    tmp_path: Path, warm_service: tuple[AgentService, WarmWorker]
) -> None:
    service, launcher = warm_service
    service.config = config = dataclasses.replace(service.config, worker_memory_max_mb=512, worker_timeout_seconds=60.0)
    with Running(service):
        assert launcher.ready.wait(START_SECONDS), "the warm worker never finished importing"
        builders.debian(config.crash_dir, None, _log("HOSTILE-MEMORY"), "202611251200")
        builders.debian(config.crash_dir, None, _log("good"), "202611251201")
        wait_for(lambda: len(_spooled(config)) == 2, "both captures reported", timeout=60)
    by_title = {r.signature.title: r for r in _spooled(config)}
    assert sorted(by_title) == ["WARNING in example_xmit", "failed capture (debian)"]
    assert "internal error while reading: MemoryError" in by_title["failed capture (debian)"].signature.corrupted_reason
    assert launcher.interpreters_started == 1


def test_a_dead_warm_process_is_replaced(tmp_path: Path, warm_service: tuple[AgentService, WarmWorker]) -> None:
    service, launcher = warm_service
    service.config = config = dataclasses.replace(service.config, worker_timeout_seconds=START_SECONDS)
    with Running(service):
        assert launcher.ready.wait(START_SECONDS), "the warm worker never finished importing"
        first = launcher.zygote_pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        builders.debian(config.crash_dir, None, _log("after"), "202611251200")
        wait_for(lambda: len(_spooled(config)) == 1, "the capture read by a new warm process", timeout=START_SECONDS)
    assert [r.signature.title for r in _spooled(config)] == ["WARNING in example_xmit"]
    assert launcher.interpreters_started == 2
    assert launcher.zygote_pid != first


def test_a_worker_dies_with_its_warm_process(tmp_path: Path) -> None:
    """A zygote killed mid-run takes its child along (parent-death signal): no orphan reads on."""
    config = _config(tmp_path)
    directory = builders.debian(config.crash_dir, None, _log("HOSTILE-LOOP"), "202611251200")
    spool = open_spool(config)
    spool.add_job(*_job(directory))
    spool.close()
    launcher = WarmWorker(analyzer="tests.agent.warm_analyzers:hostile")
    try:
        handle = launcher(config, False, 0.0)
        assert handle._started.wait(START_SECONDS), "the run never started"
        child = handle.pid
        assert child is not None and launcher.zygote_pid is not None
        assert handle.wait(0.5) is None  # looping
        os.kill(launcher.zygote_pid, signal.SIGKILL)
        assert handle.wait(10) == -signal.SIGKILL
        wait_for(lambda: not _alive(child), "the orphaned worker to be gone")
    finally:
        launcher.close()


def test_kill_on_timeout_goes_through_the_zygote(tmp_path: Path) -> None:
    """The daemon's kill() ends the child only; the warm process stays and serves the next run."""
    config = _config(tmp_path)
    directory = builders.debian(config.crash_dir, None, _log("HOSTILE-LOOP"), "202611251200")
    spool = open_spool(config)
    spool.add_job(*_job(directory))
    spool.close()
    launcher = WarmWorker(analyzer="tests.agent.warm_analyzers:hostile")
    try:
        zygote = None
        for attempt in (1, 2):
            handle = launcher(config, False, 0.0)
            # Reading it: the attempt is committed before the reader starts (and then loops).
            wait_for(lambda n=attempt: _attempts(config) == n, f"attempt {attempt} counted", timeout=START_SECONDS)
            assert handle.wait(0.5) is None
            zygote = zygote or launcher.zygote_pid
            killer = threading.Thread(target=handle.kill)
            killer.start()
            killer.join(15)
            assert handle.poll() == -signal.SIGKILL
            assert zygote is not None and _alive(zygote)
        # The job cost two workers: the third run gives up on it without reading.
        assert launcher(config, False, 0.0).wait(60) == 0
        assert [r.signature.title for r in _spooled(config)] == ["failed capture (debian)"]
        assert launcher.interpreters_started == 1 and launcher.zygote_pid == zygote
    finally:
        launcher.close()


def _attempts(config: AgentConfig) -> int:
    with sqlite3.connect(config.state_dir / "spool.sqlite3") as db:
        row = db.execute("SELECT attempts FROM jobs").fetchone()
    return -1 if row is None else int(row[0])


def _job(directory: Path) -> tuple[str, str, str]:
    key, data = _capture_job(Root.CRASH, directory, None)
    return key, "capture", data


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
