"""Kernel log line normalization: strip the transport and printk prefixes, keep the message.

A kernel line reaches us wrapped in whatever carried it: a syslog or journalctl header
(`Mar 28 23:50:56 host kernel: `), a `<N>` console level, the printk timestamp
(`[ 4.357716]`), the CONFIG_PRINTK_CALLER id (`[T123]` task / `[C3]` CPU), a syzkaller
`syzkaller login: ` echo. The oops parser wants the message only, plus the caller id so that
lines of several CPUs printed interleaved can be told apart. Every pattern here is anchored
and bounded, so normalization is linear in the input size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MAX_LINE_CHARS", "LogLine", "decode_log", "normalize_line", "split_lines"]

# A kernel printk record is at most 1024 bytes; anything far longer is garbage or several
# records glued together by a broken console. Cap it so no per-line work can blow up.
MAX_LINE_CHARS = 4096

# Transport headers, tried in order; each strips one layer and may reveal the next.
_SYSLOG = re.compile(
    r"(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"  # RFC 3164: "Mar 28 23:50:56"
    r"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)"  # RFC 3339 / journalctl -o short-iso
    r" \S{1,255} kernel(?:\[\d{1,10}\])?: "
)
_JOURNAL_MONOTONIC = re.compile(r"\[ {0,12}\d{1,12}\.\d{1,9}\] \S{1,255} kernel: ")  # journalctl -o short-monotonic
_DROPPED = re.compile(r"\*\* \d{1,12} printk messages dropped \*\* ")
_LOGIN_ECHO = re.compile(r"(?<![\w.-])[\w.-]{1,64} login: (?=<\d{1,3}>|\[ {0,12}\d)")  # console login prompt glued to a line
_LEVEL = re.compile(r"<(\d{1,3})>")
_TIMESTAMP = re.compile(r"\[ {0,12}(\d{1,12}\.\d{1,9})\]")
# The console prints "[ts][ T123]"; makedumpfile 1.7.4+ (--dump-dmesg, so kdump-tools' dmesg.<stamp>
# from trixie on) "[ts] [    T123]", one space between.
_CALLER = re.compile(r" ?\[ {0,12}([TC]\d{1,10})\]")


@dataclass(frozen=True, slots=True)
class LogLine:
    """One log line with its prefixes removed; `text` keeps the message's own indentation."""

    index: int  # 0-based line number in the input
    text: str
    timestamp: float | None = None
    caller: str | None = None  # "T123" (task) or "C3" (CPU) from CONFIG_PRINTK_CALLER
    level: int | None = None
    prefixed: bool = False  # a printk timestamp was present (console/dmesg output, not a raw paste)


def decode_log(data: bytes | str) -> str:
    """Bytes to text without ever failing: UTF-8 with replacement, NULs dropped."""
    text = data if isinstance(data, str) else data.decode("utf-8", errors="replace")
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text


def normalize_line(raw: str, index: int = 0) -> LogLine:
    """Strip the known prefixes of one line (in any combination the transports produce)."""
    line = raw[:MAX_LINE_CHARS]
    if line.endswith("\r"):
        line = line.rstrip("\r")
    pos = 0
    level: int | None = None
    timestamp: float | None = None
    caller: str | None = None
    m = _SYSLOG.match(line) or _JOURNAL_MONOTONIC.match(line)
    if m:
        pos = m.end()
    m = _DROPPED.match(line, pos)
    if m:
        pos = m.end()
    m = _LOGIN_ECHO.match(line, pos)
    if m:
        pos = m.end()
    m = _LEVEL.match(line, pos)
    if m:
        level = int(m.group(1))
        pos = m.end()
    m = _TIMESTAMP.match(line, pos)
    if m:
        timestamp = float(m.group(1))
        pos = m.end()
        m = _CALLER.match(line, pos)
        if m:
            caller = m.group(1)
            pos = m.end()
        if line.startswith(" ", pos):
            pos += 1  # the single separator printk puts after its prefix
    elif level is not None and line.startswith(" ", pos) and not line.startswith("  ", pos):
        pos += 1
    if level is None and timestamp is not None:
        m = _LEVEL.match(line, pos)  # some consoles print the level after the timestamp
        if m:
            level = int(m.group(1))
            pos = m.end()
    return LogLine(
        index=index,
        text=line[pos:],
        timestamp=timestamp,
        caller=caller,
        level=level,
        prefixed=timestamp is not None,
    )


def split_lines(data: bytes | str) -> list[LogLine]:
    """Decode and normalize a whole log; `\\r\\n`, `\\n` and lone `\\r` all end a line."""
    text = decode_log(data)
    return [normalize_line(raw, i) for i, raw in enumerate(text.splitlines())]
