"""A full state directory degrades the agent, never stops it: on a real, small tmpfs (needs root).

Spooled reports keep shipping and are deleted (the spool's reserve pays for the deletes), the
worker neither dies nor loses a capture's signature, the daemon says so in its log and a metric,
and new crashes go in once there is room.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.layouts import Root
from agent.service import _capture_job
from agent.spool import EXIT_DISK_FULL, RESERVE_BYTES, NewReport, SpoolFull
from agent.worker import open_spool, run_worker
from analysis.signature import analyze
from tests.agent import builders
from tests.agent.test_drain import payload
from tests.agent.test_service import FakeCollector, Running, make_config, service_for, wait_for
from tests.agent.test_worker import WARNING_LOG, config_for

TMPFS_BYTES = 12 * 1024 * 1024


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 12 MiB tmpfs at tmp_path/fs, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write zeros until the file system says ENOSPC; the filler file, to delete for room."""
    filler = directory / "filler"
    block = bytes(65536)
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)
        except OSError:
            pass
        for size in (4096, 512, 1):  # the last few blocks too
            try:
                while True:
                    f.write(bytes(size))
            except OSError:
                pass
    return filler


def on_fs(config: AgentConfig, mount: Path) -> AgentConfig:
    state = mount / "state"
    state.mkdir()
    return dataclasses.replace(config, state_dir=state)


def test_worker_on_a_full_disk_ships_deletes_and_takes_new_crashes_once_there_is_room(
    tmp_path: Path, small_fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = on_fs(config_for(tmp_path), small_fs)
    spool = open_spool(config)
    assert spool.ensure_reserve() and spool.reserve_path.stat().st_size == RESERVE_BYTES
    keys = [f"full-{i:04d}-{builders.STAMP}" for i in range(20)]
    for key in keys:
        spool.enqueue([NewReport(key, "crash", payload(key))])
    directory = builders.debian(config.crash_dir, None, WARNING_LOG)
    job_key, job_data = _capture_job(Root.CRASH, directory, None)
    spool.add_job(job_key, "capture", job_data)
    # The spool stays open, as the daemon holds it, while the disk fills up.
    filler = fill(small_fs)
    with pytest.raises(SpoolFull):
        spool.enqueue([NewReport("no-room-0000", "crash", payload("no-room-0000"))])
    assert spool.reserve_path.exists(), "adding must never spend the reserve"

    collector = FakeCollector()
    rc = run_worker(config, heartbeat=True, shipper_factory=lambda _c: collector, analyzer=analyze)
    spool.close()
    # Still full: the worker said so, shipped and deleted every spooled report, kept the capture queued.
    assert rc == EXIT_DISK_FULL
    assert sorted(collector.received) == keys and len(collector.heartbeats) == 1
    assert "state directory full" in caplog.text
    spool = open_spool(config)
    assert spool.stats().depth == 0
    assert spool.job_count() == 1
    (job,) = spool.take_jobs(1)
    assert job.attempts == 0, "a full disk must not count against the capture (it would become a failed capture)"
    spool.release_jobs([job.key])
    spool.close()

    filler.unlink()
    rc = run_worker(config, heartbeat=False, shipper_factory=lambda _c: collector, analyzer=analyze)
    assert rc == 0
    titles = [r.signature.title for k, r in collector.received.items() if k not in keys]
    assert titles == ["WARNING in example_xmit"], "the capture's real signature, not a failed capture"
    spool = open_spool(config)
    assert spool.stats().depth == 0 and spool.job_count() == 0
    assert spool.reserve_path.stat().st_size == RESERVE_BYTES, "the reserve is back once there is room"


def test_daemon_on_a_full_disk_keeps_running_says_so_and_catches_up(tmp_path: Path, small_fs: Path) -> None:
    config = on_fs(make_config(tmp_path), small_fs)
    spool = open_spool(config)
    spool.ensure_reserve()
    keys = [f"daemon-{i:04d}-{builders.STAMP}" for i in range(5)]
    for key in keys:
        spool.enqueue([NewReport(key, "crash", payload(key))])
    spool.close()
    filler = fill(small_fs)
    collector = FakeCollector()
    service = service_for(config, collector)
    with Running(service):
        wait_for(lambda: sorted(collector.received) == keys, "the spooled reports to ship on a full disk")
        wait_for(lambda: service.spool.stats().depth == 0, "the shipped reports to be deleted")
        # It started on a full disk (the reserve paid for opening the spool) and says so.
        assert service.metrics.state_dir_full._value.get() == 1
        assert service.metrics.state_dir_full_events._value.get() >= 1
        # A crash meanwhile is not lost: stored when it fits, held in memory and queued when it does not.
        builders.debian(config.crash_dir, None, WARNING_LOG)
        filler.unlink()
        wait_for(lambda: len(collector.received) == len(keys) + 1, "the new crash once there is room", timeout=30)
        wait_for(lambda: service.metrics.state_dir_full._value.get() == 0, "the gauge to clear", timeout=15)
    new = [r for k, r in collector.received.items() if k not in keys]
    assert [r.signature.title for r in new] == ["WARNING in example_xmit"]


def test_a_dump_with_no_room_to_unpack_waits_instead_of_failing(
    tmp_path: Path, small_fs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An apport report's VmCore is unpacked under the state directory: no room there is no
    reason to file the crash as a failed capture."""
    config = on_fs(config_for(tmp_path), small_fs)
    vmcore = WARNING_LOG + b"\n" * (3 * 1024 * 1024)  # 3 MiB unpacked, a few KiB in the report
    report = builders.write_apport(config.crash_dir / "linux-image-6.1.0-56-amd64-202611251200.crash",
                                   vmcore=vmcore)  # fmt: skip
    spool = open_spool(config)
    spool.ensure_reserve()
    job_key, job_data = _capture_job(Root.CRASH, report, None)
    spool.add_job(job_key, "capture", job_data)
    (config.state_dir / "scratch").mkdir()
    filler = fill(small_fs)
    os.truncate(filler, filler.stat().st_size - 1024 * 1024)  # room for the spool's writes, not the VmCore
    collector = FakeCollector()
    rc = run_worker(config, heartbeat=False, shipper_factory=lambda _c: collector, analyzer=analyze)
    assert rc == EXIT_DISK_FULL and collector.received == {}
    assert "captures stay queued" in caplog.text and "no room to unpack its VmCore" in caplog.text
    with sqlite3.connect(f"file:{spool.path}?mode=ro", uri=True) as db:  # no write fits: read it
        assert db.execute("SELECT key, attempts FROM jobs").fetchall() == [(job_key, 0)]
    assert list((config.state_dir / "scratch").iterdir()) == [], "a partly unpacked VmCore was left behind"
    filler.unlink()
    assert run_worker(config, heartbeat=False, shipper_factory=lambda _c: collector, analyzer=analyze) == 0
    spool.close()
    assert [r.signature.title for r in collector.received.values()] == ["WARNING in example_xmit"]
