"""Open whatever a host left after a crash and hand back the kernel log (and `sys` facts).

`open_capture(path)` accepts a kernel log text file (plain or gzip-wrapped), a crash dump, or a
kdump directory; the dump readers live in `analysis.vmcore` (issue: dumps).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass

from analysis.errors import CrashfleetInputError
from analysis.model import SystemFacts

__all__ = ["MAX_LOG_BYTES", "Capture", "open_capture", "read_log_file"]

MAX_LOG_BYTES = 256 * 1024 * 1024  # a kernel log larger than this is not a kernel log


@dataclass(frozen=True, slots=True)
class Capture:
    """A crash capture opened: the log bytes, where they came from, and the dump's facts if any."""

    path: str  # what the caller named
    source: str  # the file the log was read from (the dump, or the text beside it)
    log: bytes
    format: str  # "text", "text+gzip", or a dump format (see SystemFacts.format)
    system: SystemFacts | None = None


def read_log_file(path: str) -> bytes:
    """Read a text log, unwrapping gzip; refuse empty, oversized and binary files by name and reason."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":
                try:
                    with gzip.GzipFile(fileobj=f) as gz:
                        data = gz.read(MAX_LOG_BYTES + 1)
                except (OSError, EOFError) as exc:
                    raise CrashfleetInputError(path, f"corrupt gzip: {exc}") from None
            else:
                data = f.read(MAX_LOG_BYTES + 1)
    except IsADirectoryError:
        raise CrashfleetInputError(path, "is a directory") from None
    except FileNotFoundError:
        raise CrashfleetInputError(path, "no such file") from None
    except PermissionError:
        raise CrashfleetInputError(path, "permission denied") from None
    except OSError as exc:
        raise CrashfleetInputError(path, exc.strerror or str(exc)) from None
    if not data:
        raise CrashfleetInputError(path, "empty file")
    if len(data) > MAX_LOG_BYTES:
        raise CrashfleetInputError(path, f"larger than {MAX_LOG_BYTES} bytes; not a kernel log")
    if not _looks_like_text(data):
        raise CrashfleetInputError(path, "binary data, not a kernel log")
    return data


def _looks_like_text(data: bytes) -> bool:
    """Kernel logs are mostly printable ASCII/UTF-8; a few stray control bytes are tolerated."""
    sample = data[:65536]
    if b"\x00" in sample and sample.count(b"\x00") > len(sample) // 100:
        return False
    bad = sum(1 for b in sample if b < 9 or (13 < b < 32 and b != 27))
    return bad <= len(sample) // 50


def open_capture(path: str) -> Capture:
    """Open a log file; dumps and kdump directories are added by `analysis.vmcore`."""
    if os.path.isdir(path):
        raise CrashfleetInputError(path, "is a directory")
    data = read_log_file(path)
    with open(path, "rb") as f:
        wrapped = f.read(2) == b"\x1f\x8b"
    return Capture(path=path, source=path, log=data, format="text+gzip" if wrapped else "text")
