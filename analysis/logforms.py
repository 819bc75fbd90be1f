"""Which lines of a log did the kernel write: one rule per input form, the rest is skipped.

A log an operator hands us is rarely the kernel's alone. `journalctl -b -1 > lastboot.log`
and /var/log/syslog hold every daemon's messages, and a daemon that prints `WARNING:` or
quotes a kernel message must not become a kernel crash. Like ABRT's `abrt-dump-oops` and
kerneloops, we read only the kernel's lines, and say how many others we skipped.

`kernel_lines(data)` detects the form of the whole input (`detect_form`) and returns every
line with a verdict. The rules, per form (`FORMS` documents them as data):

* syslog (RFC 3164 and RFC 3339 timestamps) and `journalctl` short, short-iso, short-precise,
  short-full: the identifier before the colon is `kernel` (a `<PRI>` prefix, when present,
  must say facility 0: glibc's syslog() never sends facility kern). A line without a header
  continues the previous message when indented, else it is the journal's own marker
  (`-- Boot ... --`) and skipped.
* RFC 5424 (`<PRI>1 TIMESTAMP HOST APP ...`): APP-NAME `kernel` and facility 0.
* `journalctl -o short-monotonic` (`[ 4.357716] host kernel: `): identifier `kernel`.
* `journalctl -o export` and `-o json` (also json-pretty and json-seq): entries with
  `_TRANSPORT=kernel`; each message line is rendered `[sec.usec] text` from the entry's
  `_SOURCE_MONOTONIC_TIMESTAMP`, as dmesg would print it.
* `/dev/kmsg` records (`prio,seq,usec,flags;text`): facility 0 only — the kernel never lets
  user space write facility 0 (`devkmsg_write` forces LOG_USER when it is 0).
* serial consoles and `dmesg` output: all kernel, except a login prompt, a shell's echo,
  systemd's console status lines, a `dmesg -r` record whose `<PRI>` has a non-zero facility
  and a `dmesg -x` line of another facility.

Every pattern is anchored and bounded; one pass over the input.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from analysis.linear import compile_bytes
from analysis.logtext import MAX_LINE_CHARS, decode_log

__all__ = ["FORMS", "KernelLines", "LogForm", "detect_form", "header_seconds", "is_console_noise", "kernel_lines"]


class LogForm(StrEnum):
    """The input forms told apart; `inspect --json` reports it as `log_form`."""

    CONSOLE = "console"  # serial console, dmesg, vmcore-dmesg, pstore: all kernel
    SYSLOG = "syslog"  # RFC 3164 / RFC 3339 syslog files, journalctl short, short-iso, short-precise, short-full
    RFC5424 = "rfc5424"
    JOURNAL_MONOTONIC = "journal-monotonic"
    JOURNAL_EXPORT = "journal-export"
    JOURNAL_JSON = "journal-json"
    KMSG = "kmsg"


# The rule of each form, as docs/log-parsing.md shows it.
FORMS: tuple[tuple[LogForm, str, str], ...] = (
    (LogForm.SYSLOG, "`Mar 28 23:50:56 host ident[pid]: msg`, ISO/precise/full timestamps",
     "identifier `kernel` (and facility 0 when a `<PRI>` is present)"),
    (LogForm.RFC5424, "`<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD msg`", "APP-NAME `kernel` and facility 0"),
    (LogForm.JOURNAL_MONOTONIC, "`[ 4.357716] host ident: msg`", "identifier `kernel`"),
    (LogForm.JOURNAL_EXPORT, "`journalctl -o export`: KEY=value blocks", "`_TRANSPORT=kernel`"),
    (LogForm.JOURNAL_JSON, "`journalctl -o json` (json-pretty, json-seq)", "`_TRANSPORT` is `kernel`"),
    (LogForm.KMSG, "`/dev/kmsg` records `prio,seq,usec,flags;msg`", "facility (prio >> 3) is 0"),
    (LogForm.CONSOLE, "serial console, `dmesg`, vmcore-dmesg", "all lines but login prompts, shell echo, "
     "systemd status, `dmesg -r`/`-x` lines of another facility"),
)  # fmt: skip

_TS_3164 = r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d{1,9})?"  # short, short-precise, RFC 3164
_TS_ISO = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?"  # short-iso, RFC 3339
_TS_FULL = r"[A-Z][a-z]{2} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?: [A-Za-z]{1,5}|[+-]\d{4})?"  # short-full
_SYSLOG_HEADER = re.compile(
    r"(?:<(?P<pri>\d{1,3})>)?(?:" + _TS_FULL + "|" + _TS_3164 + "|" + _TS_ISO + r")"
    r" (?P<host>\S{1,255}) (?P<ident>[^\s\[\]:]{1,128})(?:\[\d{1,10}\])?: ?"
)
_RFC5424 = re.compile(
    r"<(?P<pri>\d{1,3})>1 \S{1,64} \S{1,255} (?P<app>\S{1,48}) \S{1,128} \S{1,32}"
    r" (?:-|(?:\[[^\]]{0,2048}\]){1,16}) ?(?:\ufeff)?"
)
_MONOTONIC = re.compile(r"\[ {0,12}\d{1,12}\.\d{1,9}\] (?P<host>\S{1,255}) (?P<ident>[^\s\[\]:]{1,128})(?:\[\d{1,10}\])?: ?")
_KMSG = re.compile(r"(?P<pri>\d{1,4}),(?P<seq>\d{1,20}),(?P<usec>\d{1,20}),[^;]{0,16};")
_KMSG_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
_EXPORT_FIELD = re.compile(rb"[A-Z0-9_]{1,64}")
_JOURNAL_MARKER = re.compile(r"-- (?:Boot [0-9a-f]{32} --|Logs begin|Journal begins|No entries|Reboot --)")

# Console lines user space wrote: detection rules as data, searched at the line start.
_CONSOLE_NOISE: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("login-prompt", re.compile(r"[\w.-]{1,64} login:\s*$|Password:\s*$|Last login: ")),
    ("shell-echo", re.compile(r"(?:[\w.-]{1,64}@[\w.-]{1,64}(?::[^\s#$]{0,256})?|/[^\s#$]{0,256}|~)?\s?[#$] \S")),
    ("systemd-status", re.compile(
        r"\[(?:\x1b\[[0-9;]{0,16}m)? {0,2}(?:OK|FAILED|DEPEND|TIME|\*{1,3}) {0,3}\*{0,3}(?:\x1b\[[0-9;]{0,16}m)?\] ")),
    ("dmesg-decoded-user", re.compile(
        r"(?:user|mail|daemon|auth|syslog|lpr|news|uucp|cron|authpriv|ftp|local\d)\s{0,3}:"
        r"(?:emerg|alert|crit|err|warn|notice|info|debug)\s{0,3}: ")),
)  # fmt: skip
_DMESG_DECODED_KERN = re.compile(r"kern\s{0,3}:(?:emerg|alert|crit|err|warn|notice|info|debug)\s{0,3}: ")
_CONSOLE_LEVEL = re.compile(r"<(\d{1,4})>")
_PRINTK_STAMP = re.compile(r"\[ {0,12}\d{1,12}\.\d")  # a console line the kernel printed: the fast path
# A line break before a non-empty line that does not start like _PRINTK_STAMP (with ASCII digits),
# over the input's bytes. RE2 has no lookahead, so the pattern spells the complement out: the
# first character of the line where a stamp would go wrong; `$` (multi-line) ends a line
# without taking its line break, which starts the next match.
_UNSTAMPED = compile_bytes(
    rb"(?m)\n(?:[^\[\r\n]"  # not a `[`
    rb"|\[ {13}"  # too many spaces
    rb"|\[ {0,12}(?:[^ 0-9\n]|$)"  # no digit after the spaces
    rb"|\[ {0,12}[0-9]{13}"  # too many digits
    rb"|\[ {0,12}[0-9]{1,12}(?:[^.0-9\n]|$)"  # no dot after them
    rb"|\[ {0,12}[0-9]{1,12}\.(?:[^0-9\n]|$))"  # no digit after the dot
)
_SAMPLE_LINES = 200  # form detection reads this many non-empty lines
_MONTHS = {m: n for n, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"))}
_HEADER_TIME = re.compile(
    r"(?:<\d{1,3}>1? ?)?(?:[A-Z][a-z]{2} (?=\d{4}))?"
    r"(?:(?P<mon>[A-Z][a-z]{2}) (?P<day>[ \d]\d) |(?P<y>\d{4})-(?P<m>\d\d)-(?P<d>\d\d)[T ])"
    r"(?P<H>\d\d):(?P<M>\d\d):(?P<S>\d\d(?:[.,]\d{1,9})?)"
    r"|\[ {0,12}(?P<mono>\d{1,12}\.\d{1,9})\]"
)


def header_seconds(line: str) -> float | None:
    """The time a syslog/journal header gives a line, in seconds on a scale where only
    differences within one log mean something (wall clock, or monotonic for short-monotonic)."""
    m = _HEADER_TIME.match(line)
    if m is None:
        return None
    if m.group("mono"):
        return float(m.group("mono"))
    if m.group("mon"):
        days = _MONTHS.get(m.group("mon"), 0) * 31 + int(m.group("day"))
    else:
        days = (int(m.group("y")) * 12 + int(m.group("m"))) * 31 + int(m.group("d"))
    return days * 86400.0 + int(m.group("H")) * 3600 + int(m.group("M")) * 60 + float(m.group("S").replace(",", "."))


@dataclass(frozen=True, slots=True)
class KernelLines:
    """The input as lines the oops parser reads: `lines[i]` is "" where `kernel[i]` is False."""

    form: LogForm
    lines: list[str]
    kernel: list[bool]
    skipped: int  # lines (messages' lines for journal forms) other sources wrote
    # Seconds from the transport header (syslog/journal time) per line, None where it has none;
    # None for forms whose lines carry the printk timestamp in their text.
    times: list[float | None] | None = None
    # The input bytes when their `\n`-separated line i holds all of `lines[i]` (a console log
    # given as bytes, without NULs or other line breaks): a whole-log scan (analysis.prefilter)
    # reads them instead of joining and encoding the lines again. None otherwise.
    source: bytes | None = None


def is_console_noise(line: str) -> str | None:
    """The name of the console rule that says user space wrote this line, None for kernel lines."""
    if line.startswith("kern") and _DMESG_DECODED_KERN.match(line):
        return None
    m = _CONSOLE_LEVEL.match(line)
    if m and int(m.group(1)) > 7:
        return "dmesg-raw-facility"
    for name, pattern in _CONSOLE_NOISE:
        if pattern.match(line):
            return name
    return None


def _sample(text: str) -> list[str]:
    out: list[str] = []
    start = 0
    while len(out) < _SAMPLE_LINES and start < len(text):
        end = text.find("\n", start)
        if end < 0:
            end = len(text)
        line = text[start:min(end, start + MAX_LINE_CHARS)].rstrip("\r")
        if line.strip():
            out.append(line)
        start = end + 1
    return out


def detect_form(data: bytes | str) -> LogForm:
    """The form of a whole input, from its first non-empty lines (a majority decides)."""
    head = data[:65536]
    text = head if isinstance(head, str) else head.decode("utf-8", errors="replace")
    sample = _sample(text)
    if not sample:
        return LogForm.CONSOLE
    first = sample[0].lstrip("\x1e")
    if first.startswith(("__CURSOR=", "__REALTIME_TIMESTAMP=")):
        return LogForm.JOURNAL_EXPORT
    if first.startswith("{") and ('"__CURSOR"' in text[:4096] or '"_TRANSPORT"' in text[:65536]):
        return LogForm.JOURNAL_JSON
    half = len(sample) // 2
    if sum(1 for line in sample if _KMSG.match(line)) > half:
        return LogForm.KMSG
    if sum(1 for line in sample if _RFC5424.match(line)) > half:
        return LogForm.RFC5424
    if sum(1 for line in sample if _SYSLOG_HEADER.match(line)) > half:
        return LogForm.SYSLOG
    hosts: Counter[str] = Counter()
    kernel_seen = False
    for line in sample:
        m = _MONOTONIC.match(line)
        if m:
            hosts[m.group("host")] += 1
            kernel_seen = kernel_seen or m.group("ident") == "kernel"
    if kernel_seen and hosts and hosts.most_common(1)[0][1] > half:
        return LogForm.JOURNAL_MONOTONIC
    return LogForm.CONSOLE


def kernel_lines(data: bytes | str) -> KernelLines:
    """Every line of the input with the verdict "the kernel wrote it"; other lines are blanked."""
    form = detect_form(data)
    if form is LogForm.JOURNAL_EXPORT:
        return _export(data if isinstance(data, bytes) else data.encode("utf-8", errors="replace"))
    text = decode_log(data)
    if form is LogForm.JOURNAL_JSON:
        return _json(text)
    raw = text.splitlines()
    if form is LogForm.KMSG:
        return _kmsg(raw)
    if form is LogForm.CONSOLE:
        return _console(text, raw, data if isinstance(data, bytes) else None)
    return _headed(form, raw)


def _console(text: str, raw: list[str], data: bytes | None) -> KernelLines:
    """Every line is the kernel's but the console noise; `raw` is rewritten in place (blanked lines,
    `dmesg -x` prefixes cut). Lines with a printk timestamp, nearly all of a console log, are
    passed over by one scan of the input (`data`, the bytes `text` was decoded from, if any);
    only the others are looked at."""
    kernel = [True] * len(raw)
    skipped = 0
    at_newlines = _split_at_newlines(text, raw)
    if at_newlines:
        # Line i follows the i-th `\n` of the bytes too: decoding keeps every `\n`, and a stamp's
        # ASCII bytes decode to the stamp. A line the scan passes is judged below, as any other.
        encoded = data if data is not None else text.encode("utf-8", errors="surrogatepass")
        candidates: Iterable[int] = _unstamped_lines(encoded, len(raw))
    else:  # other separators (lone \r, \x0b ...) split lines too: look at every line
        candidates = range(len(raw))
    stamp = _PRINTK_STAMP.match
    for i in candidates:
        line = raw[i]
        if line[:1] == "[" and stamp(line):
            continue
        head = line[:MAX_LINE_CHARS]
        d = _DMESG_DECODED_KERN.match(head) if head[:4] == "kern" else None
        if d is not None:  # `dmesg -x`: the facility and level decoded in front of the line
            raw[i] = line[d.end():]
            continue
        m = _SYSLOG_HEADER.match(head)
        if (m is not None and m.group("ident") != "kernel") or (m is None and is_console_noise(head) is not None):
            raw[i] = ""  # a syslog line of another program pasted in, a prompt, an echo
            kernel[i] = False
            skipped += 1
    # Decoding keeps every valid UTF-8 sequence (and drops only NULs), and the loop above only
    # blanks lines or cuts a prefix off them: then line i of the bytes holds all of line i.
    source = data if at_newlines and data is not None and b"\x00" not in data else None
    return KernelLines(LogForm.CONSOLE, raw, kernel, skipped, source=source)


def _split_at_newlines(text: str, raw: list[str]) -> bool:
    """True when `raw` (text.splitlines()) broke the text at its `\n`s only (`\r\n` included):
    line i is what follows the i-th `\n`, no lone `\r` or other separator split one."""
    return len(raw) == text.count("\n") + (1 if text and not text.endswith("\n") else 0)


_DENSE_BYTES = 4096  # after an unstamped line, the lines this close are passed without a search


def _unstamped_lines(data: bytes, count: int) -> Iterator[int]:
    """Indexes below `count`, ascending, of lines that may not start with a printk timestamp:
    every non-empty one that does not, line 0 (no line break before it), and a few that do
    (digits other than ASCII; the lines within _DENSE_BYTES after one found, passed with it
    since where few lines carry a stamp a search call a line would cost more than it saves).
    `count` bounds them by the decoded lines: NULs dropped may leave fewer."""
    if not count:
        return
    yield 0
    breaks = 0  # line breaks in data[:counted]
    counted = 0
    pos = 0
    while (m := _UNSTAMPED.search(data, pos)) is not None:
        brk = m.start()  # the line break before the line found
        breaks += data.count(b"\n", counted, brk + 1)
        counted = brk + 1
        first = breaks
        end = data.find(b"\n", brk + 1 + _DENSE_BYTES)  # the break after the last line passed with it
        last = count - 1 if end < 0 else min(count - 1, first + data.count(b"\n", counted, end))
        if first > last:
            return
        yield from range(first, last + 1)
        if end < 0 or last == count - 1:
            return
        breaks, counted, pos = last, end, end


def _facility_ok(pri: str | None) -> bool:
    return pri is None or int(pri) >> 3 == 0


def _headed(form: LogForm, raw: list[str]) -> KernelLines:
    """syslog, RFC 5424, journalctl short-*: the header names the writer; unheaded lines continue."""
    lines: list[str] = []
    kernel: list[bool] = []
    times: list[float | None] = []
    skipped = 0
    previous = False
    for line in raw:
        head = line[:MAX_LINE_CHARS]
        mine = False
        message = ""
        when: float | None = None
        if form is LogForm.RFC5424:
            r = _RFC5424.match(head)
            if r:
                mine = r.group("app") == "kernel" and _facility_ok(r.group("pri"))
                message = head[r.end():]
                when = header_seconds(head[head.find(" ") + 1:]) if mine else None
            else:
                mine, message = _unheaded(head, previous)
        else:
            m = (_MONOTONIC if form is LogForm.JOURNAL_MONOTONIC else _SYSLOG_HEADER).match(head)
            if m is None and form is LogForm.JOURNAL_MONOTONIC:
                m = _SYSLOG_HEADER.match(head)
            if m:
                pri = m.groupdict().get("pri")
                mine = m.group("ident") == "kernel" and _facility_ok(pri)
                message = head[m.end():]
                when = header_seconds(head) if mine else None
            else:
                mine, message = _unheaded(head, previous)
        previous = mine
        if not mine and line.strip():
            skipped += 1
        lines.append(message if mine else "")
        kernel.append(mine)
        times.append(when)
    return KernelLines(form, lines, kernel, skipped, times)


def _unheaded(line: str, previous: bool) -> tuple[bool, str]:
    """A line without a header: an indented continuation of the previous message, else a marker."""
    if previous and line[:1] in (" ", "\t") and not _JOURNAL_MARKER.match(line.lstrip()):
        return True, line
    return False, ""


def _stamp(usec: int | None) -> str:
    if usec is None:
        return ""
    return f"[{usec // 1_000_000:5d}.{usec % 1_000_000:06d}] "


def _kmsg(raw: list[str]) -> KernelLines:
    lines: list[str] = []
    kernel: list[bool] = []
    skipped = 0
    for line in raw:
        if line.startswith(" "):
            continue  # a record's ` KEY=value` dictionary lines: metadata, not text
        m = _KMSG.match(line[:MAX_LINE_CHARS])
        if m is None:
            if line.strip():
                skipped += 1
            continue
        message = _KMSG_ESCAPE.sub(lambda e: chr(int(e.group(1), 16)), line[m.end():])
        parts = message.split("\n")
        if int(m.group("pri")) >> 3 != 0:
            skipped += len(parts)
            continue
        stamp = _stamp(int(m.group("usec")))
        for part in parts:
            lines.append(stamp + part)
            kernel.append(True)
    return KernelLines(LogForm.KMSG, lines, kernel, skipped)


def _entry_lines(fields: dict[str, str], lines: list[str], kernel: list[bool]) -> int:
    """Append a journal entry's message lines when the kernel wrote it; else how many lines it had."""
    message = fields.get("MESSAGE", "")
    parts = message.split("\n") if message else []
    if fields.get("_TRANSPORT") != "kernel":
        return len(parts)
    usec: int | None = None
    stamp = fields.get("_SOURCE_MONOTONIC_TIMESTAMP", "")
    if stamp.isdigit():
        usec = int(stamp)
    prefix = _stamp(usec)
    for part in parts:
        lines.append(prefix + part)
        kernel.append(True)
    return 0


def _export(data: bytes) -> KernelLines:
    """`journalctl -o export`: `KEY=value` lines, binary fields as `KEY\\n<le64 size><bytes>\\n`."""
    lines: list[str] = []
    kernel: list[bool] = []
    skipped = 0
    fields: dict[str, str] = {}
    pos = 0
    n = len(data)
    while pos < n:
        end = data.find(b"\n", pos)
        if end < 0:
            end = n
        line = data[pos:end]
        pos = end + 1
        if not line:
            if fields:
                skipped += _entry_lines(fields, lines, kernel)
                fields = {}
            continue
        key, eq, value = line.partition(b"=")
        if eq:
            fields[key.decode("ascii", errors="replace")] = value.decode("utf-8", errors="replace")
            continue
        if _EXPORT_FIELD.fullmatch(line) and pos + 8 <= n:
            size = int.from_bytes(data[pos:pos + 8], "little")
            if size > n - pos - 8:
                break  # a length past the end: a cut-off file; what was read stays
            value_bytes = data[pos + 8:pos + 8 + size]
            pos = pos + 8 + size + 1
            fields[line.decode("ascii")] = value_bytes.decode("utf-8", errors="replace").replace("\x00", "")
            continue
        skipped += 1  # not export syntax
    if fields:
        skipped += _entry_lines(fields, lines, kernel)
    return KernelLines(LogForm.JOURNAL_EXPORT, lines, kernel, skipped)


def _json_field(value: object) -> str:
    """journalctl prints a field as a string, as an array of bytes when it is not UTF-8, null when too big."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(b, int) and 0 <= b < 256 for b in value):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, list) and value:
        return _json_field(value[0])  # a field repeated in one entry
    return ""


def _json(text: str) -> KernelLines:
    """`journalctl -o json`, json-pretty or json-seq: a stream of objects, one per entry."""
    decoder = json.JSONDecoder()
    lines: list[str] = []
    kernel: list[bool] = []
    skipped = 0
    pos = 0
    n = len(text)
    while pos < n:
        while pos < n and text[pos] in " \t\r\n\x1e":
            pos += 1
        if pos >= n:
            break
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except ValueError:
            end = text.find("\n", pos)
            pos = n if end < 0 else end + 1
            skipped += 1  # a cut-off or foreign line
            continue
        if not isinstance(obj, dict):
            skipped += 1
            continue
        fields = {k: _json_field(v) for k, v in obj.items() if k in ("MESSAGE", "_TRANSPORT", "_SOURCE_MONOTONIC_TIMESTAMP")}
        skipped += _entry_lines(fields, lines, kernel)
    return KernelLines(LogForm.JOURNAL_JSON, lines, kernel, skipped)
