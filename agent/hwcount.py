"""Hardware-error counts from the live kernel log, handed from the daemon to the worker.

The daemon feeds every /dev/kmsg record to a counter (the pattern table is analysis.hwerrors)
and writes the counts to `hardware-errors.json` in the state directory whenever they change
(atomically: a temporary file renamed over it). The worker reads the file when it sends a
heartbeat. The counts are those since the daemon started (the kernel's ring buffer is read from
its start, so a restart counts what the buffer still holds again; the collector keeps the latest
counts per host, never a sum).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from analysis.hwerrors import KINDS, HardwareErrorCounter

__all__ = ["FILE_NAME", "HardwareErrorFile", "read_hardware_errors"]

log = logging.getLogger(__name__)

FILE_NAME = "hardware-errors.json"


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
