"""Journald-friendly logging for the daemon and its worker.

Under systemd with stderr connected to the journal ($JOURNAL_STREAM names stderr's device and
inode), each line carries an `<N>` syslog priority prefix and no timestamp — journald adds its
own; anywhere else, a timestamped line. Messages themselves are `key=value` fields.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

__all__ = ["JournalFormatter", "configure_logging", "under_journald"]

# syslog priorities for journald's `<N>` line prefix (sd-daemon(3)).
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """`<N>name: message` — journald turns the prefix into the priority and adds its own timestamp."""

    def format(self, record: logging.LogRecord) -> str:
        prio = _PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        text = super().format(record)
        return "\n".join(f"<{prio}>{line}" for line in text.splitlines())


def under_journald(environ: Mapping[str, str]) -> bool:
    """JOURNAL_STREAM names stderr's device:inode when systemd connected it to the journal."""
    value = environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    if not dev.isdigit() or not ino.isdigit():
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return st.st_dev == int(dev) and st.st_ino == int(ino)


def configure_logging(level: str, environ: Mapping[str, str] = os.environ) -> None:
    """Root logging for the daemon: priority prefixes and no timestamps under journald."""
    handler = logging.StreamHandler(sys.stderr)
    if under_journald(environ):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
