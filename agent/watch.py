"""Knowing when a capture is ready: inotify events, a start-up scan, settle time and give-up time.

watchdog's inotify observer reports every change under the crash and pstore directories; each
event only marks its capture "dirty" and wakes the service. `CaptureWatcher.poll()` then looks
at the dirty captures (`layouts.assess`) and hands back those that are ready:

- complete and untouched for the settle time -> extract. Layouts whose tool signals "done" (a
  marker renamed away, README.txt written last) settle for `signalled_settle_seconds` (short:
  only a file written right after the signal is waited for); the others (pstore, apport,
  text-only directories) for `settle_seconds`;
- incomplete or empty and untouched for `incomplete_timeout_seconds` -> a failed capture.

At start every existing capture is dirty: the capture kernel wrote the dump before the agent
ever ran. Captures already handled with the same identity (names, sizes, mtimes) are skipped,
so a restart ships nothing twice; a capture that changed since is looked at again.
Nothing runs while idle: the service sleeps until an event or `next_deadline()`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from agent.layouts import Assessment, CaptureState, FoundCapture, Root, assess, capture_for_path, discover

__all__ = ["CaptureWatcher", "Ready"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Ready:
    """A capture to extract now; `failure` is set when it is given up on (never completed)."""

    assessment: Assessment
    failure: str | None


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: CaptureWatcher, root: Root, directory: Path) -> None:
        self._watcher = watcher
        self._root = root
        self._directory = directory

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path]
        dest = getattr(event, "dest_path", "")
        if dest:
            paths.append(dest)
        for raw in paths:
            path = Path(raw if isinstance(raw, str) else raw.decode(errors="surrogateescape"))
            self._watcher.touch(self._root, self._directory, path)


class CaptureWatcher:
    """Tracks dirty captures of the watched roots; thread-safe between the observer and the service."""

    def __init__(
        self,
        roots: list[tuple[Root, Path]],
        *,
        settle_seconds: float,
        incomplete_timeout_seconds: float,
        signalled_settle_seconds: float | None = None,
        is_handled: Callable[[str, str], bool],
        wake: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.roots = roots
        self.settle_seconds = settle_seconds
        self.signalled_settle_seconds = (
            settle_seconds
            if signalled_settle_seconds is None
            else min(settle_seconds, signalled_settle_seconds)
        )
        self.incomplete_timeout_seconds = incomplete_timeout_seconds
        self._is_handled = is_handled
        self._wake = wake
        self._clock = clock
        self._lock = threading.Lock()
        self._dirty: dict[str, FoundCapture] = {}
        self._next: float | None = None
        self._observer: BaseObserver | None = None
        self._unreadable: dict[Root, tuple[Path, str]] = {}
        self._watched: set[Root] = set()

    def start(self) -> list[FoundCapture]:
        """Start inotify watches, then scan: an event between the two is caught by either.

        Returns the captures the scan found (what `present()` would list right now)."""
        observer = Observer()
        for root, directory in self.roots:
            if not directory.is_dir():
                log.warning("not watching missing directory root=%s path=%s", root, directory)
                continue
            self._watch(observer, root, directory)
        observer.start()
        self._observer = observer
        return self._scan()

    def _watch(self, observer: BaseObserver, root: Root, directory: Path) -> None:
        """Add the inotify watch of one root; a root that cannot be listed is noted instead."""
        try:
            # inotify needs the read permission a listing needs: probe first, because one failing
            # watch at start-up makes the observer refuse to start at all.
            with os.scandir(directory):
                pass
            observer.schedule(_Handler(self, root, directory), str(directory), recursive=True)
        except OSError as exc:
            self._note(root, directory, exc)
            return
        self._watched.add(root)
        log.info("watching root=%s path=%s", root, directory)

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
            self._watched.clear()

    def scan(self) -> int:
        """Mark every existing capture dirty (start-up, reload); returns how many were found."""
        return len(self._scan())

    def _scan(self) -> list[FoundCapture]:
        captures = self.present()
        for capture in captures:
            with self._lock:
                self._dirty[capture.key] = capture
        if captures:
            self._wake()
        return captures

    def present(self) -> list[FoundCapture]:
        """Every capture now under the watched roots; a root that cannot be listed is skipped and noted."""
        captures: list[FoundCapture] = []
        for root, directory in self.roots:
            try:
                found = discover(root, directory)
            except OSError as exc:
                self._note(root, directory, exc)
                continue
            self._note(root, directory, None)
            if root not in self._watched and self._observer is not None and directory.is_dir():
                self._watch(self._observer, root, directory)  # readable (or present) again: watch it now
            captures.extend(found)
        return captures

    def unreadable(self) -> dict[Root, tuple[Path, str]]:
        """Roots the last scan could not list: root -> (directory, reason). Empty when all is well."""
        with self._lock:
            return dict(self._unreadable)

    def _note(self, root: Root, directory: Path, error: OSError | None) -> None:
        """Remember whether a root can be listed; log a change once, not on every scan.

        A crash directory the agent cannot read (permission denied on /var/crash, a missing
        CAP_DAC_READ_SEARCH) silently hides every crash in it, so it is a warning, not debug noise.
        """
        reason = None if error is None else (error.strerror or str(error))
        with self._lock:
            before = self._unreadable.get(root)
            if reason is None:
                self._unreadable.pop(root, None)
            else:
                self._unreadable[root] = (directory, reason)
        if reason is not None and before != (directory, reason):
            log.warning(
                "cannot read watched directory root=%s path=%s reason=%s: its crashes are not seen"
                " until it is readable and the agent is reloaded",
                root,
                directory,
                reason,
            )
        elif reason is None and before is not None:
            log.info("watched directory readable again root=%s path=%s", root, directory)

    def touch(self, root: Root, directory: Path, path: Path) -> None:
        """An inotify event at `path`: mark its capture dirty and wake the service."""
        capture = capture_for_path(root, directory, path)
        if capture is None:
            return
        with self._lock:
            self._dirty[capture.key] = capture
        self._wake()

    def next_deadline(self) -> float | None:
        """When a dirty capture will settle or time out (None: nothing is waiting)."""
        with self._lock:
            return self._next

    def pending(self) -> int:
        with self._lock:
            return len(self._dirty)

    def poll(self) -> list[Ready]:
        """Captures ready now; the rest stay dirty and set `next_deadline()`."""
        now = self._clock()
        with self._lock:
            dirty = list(self._dirty.items())
        snapshot = dict(dirty)
        ready: list[Ready] = []
        waiting: list[float] = []
        finished: list[str] = []
        for key, capture in dirty:
            if not capture.path.exists() and not any(m.exists() for m in capture.members):
                finished.append(key)  # deleted before (or after) we got to it
                continue
            assessment = assess(capture)
            if self._is_handled(key, assessment.identity):
                finished.append(key)
                continue
            quiet = now - assessment.newest_mtime
            if assessment.state == CaptureState.COMPLETE:
                # A renamed dump signals the dump only: a directory with only text so far may be
                # one whose dump has not started yet, so it waits the full settle time. A file
                # written after everything (SUSE's README.txt) signals the whole capture.
                rule = capture.rule
                signalled = rule.signals_done and (bool(assessment.dumps) or rule.signals_whole_capture)
                settle = self.signalled_settle_seconds if signalled else self.settle_seconds
                if quiet >= settle:
                    ready.append(Ready(assessment, None))
                    finished.append(key)
                else:
                    waiting.append(assessment.newest_mtime + settle)
            elif quiet >= self.incomplete_timeout_seconds:
                reason = f"{assessment.reason}; untouched for {quiet:.0f}s"
                ready.append(Ready(assessment, reason))
                finished.append(key)
            else:
                waiting.append(assessment.newest_mtime + self.incomplete_timeout_seconds)
        with self._lock:
            for key in finished:
                # An event may have re-dirtied it meanwhile with the same object: drop only ours.
                if self._dirty.get(key) is snapshot[key]:
                    del self._dirty[key]
            self._next = min(waiting) if waiting else None
        return ready
