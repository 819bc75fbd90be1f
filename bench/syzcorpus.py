"""Reading syzkaller's annotated oops corpus (`pkg/report/testdata/linux/report/<N>`), once.

A file is header lines (`TITLE:`, `ALT:`, `FRAME:`, `CORRUPTED:` ...) up to the first empty
line, then the console log, then optionally an empty line, `REPORT:` and the expected report.
Neither the header nor the expected report is part of the log: the header's `TITLE: BUG: ...`
line would otherwise parse as a crash of its own. A file without `TITLE:` holds no crash.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CorpusCase", "parse_case", "read_case", "split_case"]


@dataclass(slots=True)
class CorpusCase:
    name: str
    log: bytes
    titles: list[str] = field(default_factory=list)  # TITLE first (when not empty), then every ALT
    frame: str | None = None
    corrupted: bool = False


def _split(raw: bytes) -> tuple[list[tuple[str, str]], bytes]:
    head, sep, log = raw.partition(b"\n\n")
    if not sep:
        head, log = b"", raw
    headers = []
    for line in head.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.isupper():
            headers.append((key, value.strip()))
    if log.startswith(b"REPORT:\n"):
        return headers, b""
    marker = log.find(b"\n\nREPORT:\n")
    return headers, log[:marker] if marker >= 0 else log


def split_case(raw: bytes) -> tuple[dict[str, str], bytes]:
    """The header fields (first value of each key) and the console log of one corpus file."""
    headers, log = _split(raw)
    fields: dict[str, str] = {}
    for key, value in headers:
        fields.setdefault(key, value)
    return fields, log


def parse_case(name: str, raw: bytes) -> CorpusCase:
    """One corpus file with its expectations: every title that names the bug, FRAME:, CORRUPTED:."""
    headers, log = _split(raw)
    case = CorpusCase(name, log)
    for key, value in headers:
        if key == "TITLE" and value:  # an empty TITLE: means "no crash" too
            case.titles.insert(0, value)
        elif key == "ALT":
            case.titles.append(value)
        elif key == "FRAME":
            case.frame = value
        elif key == "CORRUPTED":
            case.corrupted = value == "Y"
    return case


def read_case(path: Path) -> CorpusCase:
    return parse_case(path.name, path.read_bytes())
