"""Hardware-error counts from the live kernel log and from captured kernel logs.

Live log: the daemon feeds every /dev/kmsg record to a counter (the pattern table is analysis.hwerrors)
and writes the counts to `hardware-errors.json` in the state directory whenever they change
(atomically: a temporary file renamed over it). The worker reads the file when it sends a
heartbeat. The counts are those since the daemon started (the kernel's ring buffer is read from
its start, so a restart counts what the buffer still holds again; the collector keeps the latest
counts per host, never a sum).

Captured logs: the worker counts the kernel log of every capture it reads (the dump's own log
buffer, or the `dmesg.<stamp>` / `vmcore-dmesg.txt` / pstore text it read instead) with the same
pattern table, and the spool keeps the counts per capture, committed with the capture's "handled"
mark (agent.spool): a capture is counted once, whatever restarts happen, and a capture read again
replaces its own counts. At most MAX_CAPTURE_LOG_BYTES of a log are read. A captured log is an
earlier boot's, so the heartbeat sends the sum of the two.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from analysis.hwerrors import KINDS, HardwareErrorCounter

__all__ = [
    "FILE_NAME",
    "MAX_CAPTURE_LOG_BYTES",
    "HardwareErrorFile",
    "capture_log_hardware_errors",
    "merge_counts",
    "read_hardware_errors",
]

log = logging.getLogger(__name__)

FILE_NAME = "hardware-errors.json"
# The kernel's log buffer is at most 32 MiB (CONFIG_LOG_BUF_SHIFT 25); captured logs are read
# capped well below that (agent.extract), and the counting reads no more than this either.
MAX_CAPTURE_LOG_BYTES = 16 * 1024 * 1024


class HardwareErrorFile:
    """A counter that persists itself to `state_dir / FILE_NAME` on every change."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self.counter = HardwareErrorCounter()

    def feed(self, text: str) -> None:
        kind = self.counter.feed(text)
        if kind is None:
            return
        log.warning("hardware error in kernel log kind=%s", kind)
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(dict(self.counter.counts), sort_keys=True))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error("cannot write hardware-error counts path=%s error=%s", self.path, exc.strerror)


def read_hardware_errors(state_dir: Path) -> tuple[tuple[str, int], ...]:
    """The counts the daemon wrote; () when there are none or the file is unreadable."""
    try:
        raw = json.loads((state_dir / FILE_NAME).read_text())
    except (OSError, ValueError):
        return ()
    if not isinstance(raw, dict):
        return ()
    return tuple(sorted((k, int(v)) for k, v in raw.items() if k in KINDS and isinstance(v, int) and v > 0))


def capture_log_hardware_errors(text: bytes) -> tuple[tuple[str, int], ...]:
    """The hardware-error events of one captured kernel log (bytes as read: any encoding, NULs,
    a cut last line); (kind, count) sorted, () when none."""
    counter = HardwareErrorCounter()
    for line in text[:MAX_CAPTURE_LOG_BYTES].decode("utf-8", errors="replace").splitlines():
        counter.feed(line)
    return counter.counts


def merge_counts(*parts: Iterable[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """Sum (kind, count) pairs of several sources; unknown kinds and non-positive counts are left out."""
    counter = HardwareErrorCounter()
    for part in parts:
        counter.add(part)
    return counter.counts
