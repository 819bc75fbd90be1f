"""Open whatever a host left after a crash and hand back the kernel log (and `sys` facts).

`open_capture(path)` accepts a kernel log text file (plain or gzip-wrapped), a crash dump of any
format `analysis.vmcore` reads (recognised by content, not name), or a kdump directory of any
distribution's layout. In a directory the dump is preferred; the kernel-log text kdump saved
beside it is the fallback when the dump is unreadable, incomplete or still being written.
"""

from __future__ import annotations

import fnmatch
import gzip
import os
from dataclasses import dataclass
from typing import Protocol

from analysis.errors import CrashfleetInputError, DumpFormatError
from analysis.model import SystemFacts

__all__ = [
    "DUMP_NAMES",
    "INCOMPLETE_NAMES",
    "MAX_LOG_BYTES",
    "TEXT_NAMES",
    "Capture",
    "open_capture",
    "read_log_file",
]

# What kdump tools leave in a crash directory, as globs in order of preference:
# RHEL/Fedora `vmcore` + `vmcore-dmesg.txt`, Debian/Ubuntu `dump.<stamp>` + `dmesg.<stamp>`,
# SUSE `vmcore` + `dmesg.txt`/`dmesg`; flattened copies as `vmcore.flat`.
DUMP_NAMES: tuple[str, ...] = ("vmcore", "vmcore.flat", "vmcore.*", "dump.*", "dump")
TEXT_NAMES: tuple[str, ...] = ("vmcore-dmesg.txt", "dmesg.txt", "dmesg.*", "dmesg", "kexec-dmesg.log")
# Names a dump carries while it is being written (renamed when the copy finishes).
INCOMPLETE_NAMES: tuple[str, ...] = (
    "vmcore-incomplete",
    "vmcore.flat-incomplete",
    "dump-incomplete",
    "dump-incomplete.*",
    "*-incomplete",
)

MAX_LOG_BYTES = 256 * 1024 * 1024  # a kernel log larger than this is not a kernel log


@dataclass(frozen=True, slots=True)
class Capture:
    """A crash capture opened: the log bytes, where they came from, and the dump's facts if any."""

    path: str  # what the caller named
    source: str  # the file the log was read from (the dump, or the text beside it)
    log: bytes
    format: str  # "text", "text+gzip", or a dump format (see SystemFacts.format)
    system: SystemFacts | None = None
    dump_error: str | None = None  # why a dump beside the text was not used (directory fallback)


def read_log_file(path: str) -> bytes:
    """Read a text log, unwrapping gzip; refuse empty, oversized and binary files by name and reason."""
    return _read_log(path)[0]


def _read_log(path: str) -> tuple[bytes, bool]:
    """`read_log_file`'s bytes, and whether they were gzip-wrapped (one open, one read)."""
    try:
        with open(path, "rb") as f:
            wrapped = f.read(2) == b"\x1f\x8b"
            f.seek(0)
            if wrapped:
                try:
                    with gzip.GzipFile(fileobj=f) as gz:
                        data = _read_text_stream(path, gz)
                except (OSError, EOFError) as exc:
                    raise CrashfleetInputError(path, f"corrupt gzip: {exc}") from None
            else:
                data = _read_text_stream(path, f)
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
    # No second text check: _read_text_stream judged this same first 64 KiB sample.
    return data, wrapped


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _read_text_stream(path: str, f: _Readable) -> bytes:
    """Judge the first 64 KiB before reading on: a multi-GiB binary file fails without being read."""
    first = b""
    while len(first) < 65536:  # a pipe may hand over less than asked; judge a full sample
        chunk = f.read(65536 - len(first))
        if not chunk:
            break
        first += chunk
    if first and not _looks_like_text(first):
        raise CrashfleetInputError(path, "binary data, not a kernel log")
    return first + f.read(MAX_LOG_BYTES + 1 - len(first))


def _looks_like_text(data: bytes) -> bool:
    """Kernel logs are mostly printable ASCII/UTF-8; a few stray control bytes are tolerated."""
    sample = data[:65536]
    if b"\x00" in sample and sample.count(b"\x00") > len(sample) // 100:
        return False
    bad = sum(1 for b in sample if b < 9 or (13 < b < 32 and b != 27))
    return bad <= len(sample) // 50


def _open_text(path: str, shown: str, dump_error: str | None = None) -> Capture:
    data, wrapped = _read_log(path)
    return Capture(
        path=shown, source=path, log=data, format="text+gzip" if wrapped else "text", dump_error=dump_error
    )


def _is_incomplete(path: str) -> bool:
    """The file's name says the dump is still being written."""
    return any(fnmatch.fnmatchcase(os.path.basename(path), pattern) for pattern in INCOMPLETE_NAMES)


def _open_dump(path: str, shown: str) -> Capture:
    from analysis.vmcore import read_dump

    if _is_incomplete(path):
        raise DumpFormatError(path, "dump incomplete: still being written (kdump renames it when the copy ends)")
    result = read_dump(path)
    return Capture(path=shown, source=path, log=result.log, format=result.system.format, system=result.system)


def _pick(names: list[str], patterns: tuple[str, ...], exclude: tuple[str, ...] = ()) -> list[str]:
    """Directory entries matching `patterns`, in pattern order, each once."""
    picked: list[str] = []
    for pattern in patterns:
        for name in sorted(names):
            excluded = any(fnmatch.fnmatchcase(name, e) for e in exclude)
            if fnmatch.fnmatchcase(name, pattern) and name not in picked and not excluded:
                picked.append(name)
    return picked


def _open_directory(path: str) -> Capture:
    from analysis.vmcore import looks_like_dump

    try:
        names = [n for n in os.listdir(path) if os.path.isfile(os.path.join(path, n))]
    except OSError as exc:
        raise CrashfleetInputError(path, exc.strerror or str(exc)) from None
    texts = _pick(names, TEXT_NAMES, exclude=INCOMPLETE_NAMES)
    incomplete = _pick(names, INCOMPLETE_NAMES)
    dumps = _pick(names, DUMP_NAMES, exclude=(*TEXT_NAMES, *INCOMPLETE_NAMES))
    # Anything else that is a dump by content (a renamed or hand-copied vmcore) comes last.
    dumps += [n for n in sorted(names) if n not in dumps and n not in texts and n not in incomplete
              and looks_like_dump(os.path.join(path, n))]  # fmt: skip
    errors: list[str] = [f"{name}: dump incomplete (still being written)" for name in incomplete]
    for name in dumps:
        try:
            return _open_dump(os.path.join(path, name), path)
        except CrashfleetInputError as exc:
            errors.append(f"{name}: {exc.reason}")
    reason = "; ".join(errors) or None
    for name in texts:
        try:
            return _open_text(os.path.join(path, name), path, dump_error=reason)
        except CrashfleetInputError as exc:
            errors.append(f"{name}: {exc.reason}")
    if not errors:
        raise CrashfleetInputError(path, "no crash dump or kernel log in this directory")
    raise CrashfleetInputError(path, "; ".join(errors))


def _starts_with_zeros(path: str) -> bool:
    """A preallocated or never-written dump: the dump reader explains it better than the text reader."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return bool(head) and not head.strip(b"\x00")


def open_capture(path: str) -> Capture:
    """Open a log file, a crash dump (any format, by content) or a kdump directory."""
    if os.path.isdir(path):
        return _open_directory(path)
    from analysis.vmcore import looks_like_dump

    if looks_like_dump(path) or _starts_with_zeros(path) or _is_incomplete(path):
        return _open_dump(path, path)
    return _open_text(path, path)
