"""The small error family of the analysis library.

Everything a caller can get from bad input is a `CrashfleetInputError` naming the file and the
reason; anything else escaping the library is a bug.
"""

from __future__ import annotations

__all__ = ["CrashfleetError", "CrashfleetInputError", "DebuginfoError", "DumpFormatError"]


class CrashfleetError(Exception):
    """Base of every error crashfleet raises on purpose."""


class CrashfleetInputError(CrashfleetError):
    """An input (log, dump, directory) cannot be read; `path` and `reason` say which and why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class DumpFormatError(CrashfleetInputError):
    """A crash dump is truncated, corrupt, of an unknown format, or lies about itself."""


class DebuginfoError(CrashfleetInputError):
    """Debug information is missing, of the wrong build, or its DWARF is unreadable."""
