"""The watcher's clocks: settle time after a done signal, longer settle without one, give-up time."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from agent.layouts import Root
from agent.watch import CaptureWatcher
from tests.agent import builders


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def watcher(tmp_path: Path, clock: Clock, handled: dict[str, str] | None = None) -> CaptureWatcher:
    seen = handled if handled is not None else {}
    return CaptureWatcher(
        [(Root.CRASH, tmp_path)],
        settle_seconds=5.0,
        signalled_settle_seconds=0.5,
        incomplete_timeout_seconds=60.0,
        is_handled=lambda key, identity: seen.get(key) == identity,
        wake=lambda: None,
        clock=clock,
    )


def age(directory: Path, seconds_ago: float, clock: Clock) -> None:
    when = clock.now - seconds_ago
    for path in [*directory.iterdir(), directory]:
        os.utime(path, (when, when))


def test_signalled_dump_settles_quickly_text_only_waits_longer(tmp_path: Path) -> None:
    clock = Clock()
    dump = tmp_path / "dump"
    dump.write_bytes(b"x")
    with_dump = builders.debian(tmp_path, dump, b"log\n", stamp="202611251200")
    text_only = builders.debian(tmp_path, None, b"log\n", stamp="202611251201")
    age(with_dump, 1.0, clock)
    age(text_only, 1.0, clock)
    w = watcher(tmp_path, clock)
    w.scan()
    ready = w.poll()
    assert [r.assessment.capture.path for r in ready] == [with_dump]
    assert w.pending() == 1
    deadline = w.next_deadline()
    assert deadline is not None and abs(deadline - (clock.now + 4.0)) < 0.01
    clock.now += 4.0
    assert [r.assessment.capture.path for r in w.poll()] == [text_only]
    assert w.next_deadline() is None


def test_a_final_readme_signals_a_text_only_capture_done(tmp_path: Path) -> None:
    """SUSE writes README.txt after everything else: a directory holding only dmesg.txt (the
    vmcore skipped or failed) is done once it is there, and settles as briefly as a dump."""
    clock = Clock()
    text_only = builders.suse(tmp_path, None, b"log\n", name="2026-11-25-12:00")
    age(text_only, 1.0, clock)
    w = watcher(tmp_path, clock)
    w.scan()
    assert [r.assessment.capture.path for r in w.poll()] == [text_only]
    # Without its README.txt it is not complete, however long it has been quiet.
    (text_only / "README.txt").unlink()
    age(text_only, 10.0, clock)
    w.scan()
    assert w.poll() == []


def test_incomplete_capture_is_given_up_after_the_timeout(tmp_path: Path) -> None:
    clock = Clock()
    directory = tmp_path / "202611251200"
    directory.mkdir()
    (directory / "dump-incomplete").write_bytes(b"x")
    age(directory, 10.0, clock)
    w = watcher(tmp_path, clock)
    w.scan()
    assert w.poll() == []
    clock.now += 50.0
    (ready,) = w.poll()
    assert ready.failure is not None and ready.failure.startswith(
        "in progress: dump-incomplete; untouched for 60s"
    )


def test_handled_captures_are_skipped_and_deleted_ones_forgotten(tmp_path: Path) -> None:
    clock = Clock()
    directory = builders.debian(tmp_path, None, b"log\n")
    age(directory, 100.0, clock)
    w = watcher(tmp_path, clock)
    w.scan()
    (ready,) = w.poll()
    handled = {ready.assessment.capture.key: ready.assessment.identity}
    w2 = watcher(tmp_path, clock, handled)
    w2.scan()
    assert w2.poll() == [] and w2.pending() == 0
    (directory / f"dmesg.{builders.STAMP}").write_bytes(b"changed\n")  # a changed capture is read again
    age(directory, 100.0, clock)
    w2.scan()
    assert len(w2.poll()) == 1
    w2.touch(Root.CRASH, tmp_path, tmp_path / "202611251259" / "gone")
    assert w2.poll() == [] and w2.pending() == 0


def test_inotify_events_mark_captures_dirty(tmp_path: Path) -> None:
    clock = Clock()
    woken: list[int] = []
    w = CaptureWatcher(
        [(Root.CRASH, tmp_path)],
        settle_seconds=0.0,
        incomplete_timeout_seconds=60.0,
        is_handled=lambda key, identity: False,
        wake=lambda: woken.append(1),
        clock=clock,
    )
    w.start()
    try:
        builders.debian(tmp_path, None, b"log\n")
        deadline = time.monotonic() + 5
        while w.pending() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert w.pending() == 1 and woken
    finally:
        w.stop()


def deny_listing(monkeypatch: pytest.MonkeyPatch, denied: Path) -> None:
    """`os.scandir(denied)` fails as it does for an unprivileged agent on a root-only 0700 /var/crash.

    Tests run as root in CI, where a chmod cannot take read access away, so the refusal is injected
    at the one call the watcher and the layouts use to list a directory.
    """
    real = os.scandir

    def scandir(path: Any = ".") -> Any:
        if Path(os.fsdecode(path)) == denied:
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_unreadable_root_is_warned_once_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    crash, pstore = tmp_path / "crash", tmp_path / "pstore"
    crash.mkdir()
    pstore.mkdir()
    builders.debian(crash, None, b"log\n")
    w = CaptureWatcher(
        [(Root.CRASH, crash), (Root.PSTORE, pstore)],
        settle_seconds=0.0,
        incomplete_timeout_seconds=60.0,
        is_handled=lambda key, identity: False,
        wake=lambda: None,
    )
    deny_listing(monkeypatch, crash)
    caplog.set_level(logging.INFO, logger="agent.watch")
    w.start()  # must not raise: the observer starts without the unreadable root
    try:
        assert w.unreadable() == {Root.CRASH: (crash, "Permission denied")}
        assert w.scan() == 0 and w.unreadable().keys() == {Root.CRASH}  # the readable root: no error
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert [r.getMessage() for r in warnings] == [
            f"cannot read watched directory root=crash path={crash} reason=Permission denied: "
            "its crashes are not seen until it is readable and the agent is reloaded"
        ]  # once, although start-up probed and scanned it twice
        monkeypatch.undo()
        assert w.scan() == 1 and w.unreadable() == {}
        assert f"watched directory readable again root=crash path={crash}" in caplog.text
        # ... and from then on watched: a new capture is seen without another scan.
        w.poll()
        assert w.pending() == 0
        builders.debian(crash, None, b"log\n", stamp="202611251300")
        deadline = time.monotonic() + 5
        while w.pending() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert w.pending() == 1
    finally:
        w.stop()
