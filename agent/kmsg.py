"""The live kernel log: /dev/kmsg records -> blocks of text that hold a non-fatal crash report.

A WARNING, a non-fatal oops, a soft lockup or a hung task never produces a dump; the only place
it exists is the kernel log of the running boot. `parse_record` is a pure function over one
record (`prio,seq,usec,flags;message` plus ` KEY=value` continuation lines); records of a
facility other than 0 were written by user space and are never read as kernel text, and
user-space fault lines (analysis.userfaults) are counted per program, not collected; `BlockCollector`
is a pure state machine that turns a record stream into report-sized text blocks (a trigger line
starts one; an end marker, a quiet gap or a size cap ends it); `KmsgReader` is the thin thread
that feeds it from the device. The analyzer, not this module, decides what the block contains.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from analysis.userfaults import COMM_LOOKAHEAD, register_dump_comm, user_fault

__all__ = [
    "END_MARKERS",
    "TRIGGERS",
    "BlockCollector",
    "KmsgReader",
    "KmsgRecord",
    "parse_record",
]

log = logging.getLogger(__name__)

# Lines that open a report worth analyzing, most specific first. The kernel prints each as the
# first line of its report (after an optional "------------[ cut here ]------------").
TRIGGERS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^WARNING: CPU: \d+ PID: \d+ at "),
    re.compile(r"^BUG: "),
    re.compile(r"^watchdog: BUG: soft lockup"),
    re.compile(r"^INFO: task .+ blocked for more than \d+ seconds"),
    re.compile(r"^kernel BUG at "),
    re.compile(r"^Oops: "),
    re.compile(r"^general protection fault"),
    re.compile(r"^(?:INFO|rcu): rcu_\w+ (?:self-)?detected (?:stalls|stall)"),
    re.compile(r"^Watchdog detected hard LOCKUP"),
    re.compile(r"^UBSAN: "),
    re.compile(r"^list_(?:add|del) corruption"),
    re.compile(r"^divide error: "),
    re.compile(r"^invalid opcode: "),
)

# Lines that close a report: the kernel's end-of-trace banner.
END_MARKERS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^---\[ end trace [0-9a-f]+ \]---"),
    re.compile(r"^---\[ end Kernel panic"),
)

CONTEXT_LINES = 4  # lines kept before a trigger ("cut here", the "Modules linked in" of some arches)
MAX_BLOCK_LINES = 1000  # a report never needs more; a flood must not grow memory


@dataclass(frozen=True, slots=True)
class KmsgRecord:
    """One /dev/kmsg record (see Documentation/ABI/testing/dev-kmsg)."""

    level: int  # 0 emerg .. 7 debug
    facility: int
    seq: int
    usec: int  # monotonic microseconds since boot
    continuation: bool  # flag 'c': continues the previous record (pr_cont)
    text: str
    fields: tuple[tuple[str, str], ...] = ()  # SUBSYSTEM=, DEVICE= continuation lines

    def line(self) -> str:
        """The record as dmesg prints it, which is what the analyzer reads."""
        return f"[{self.usec // 1_000_000:5d}.{self.usec % 1_000_000:06d}] {self.text}"


_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def parse_record(raw: bytes) -> KmsgRecord | None:
    """One record (its first line and any ` KEY=value` lines) -> KmsgRecord; None when malformed."""
    text = raw.decode("utf-8", errors="replace").rstrip("\n")
    head, _, rest = text.partition("\n")
    prefix, sep, message = head.partition(";")
    if not sep:
        return None
    parts = prefix.split(",")
    if len(parts) < 3:
        return None
    try:
        prio, seq, usec = int(parts[0]), int(parts[1]), int(parts[2])
    except ValueError:
        return None
    if prio < 0 or seq < 0 or usec < 0:
        return None
    flags = parts[3] if len(parts) > 3 else "-"
    fields = []
    for extra in rest.split("\n") if rest else ():
        key, eq, value = extra.strip().partition("=")
        if eq:
            fields.append((key, value))
    # \x0a inside a message is an escaped newline; other escapes are control bytes shown as-is.
    message = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)) if m.group(1) != "0a" else " ", message)
    return KmsgRecord(
        level=prio & 7,
        facility=prio >> 3,
        seq=seq,
        usec=usec,
        continuation=flags.startswith("c"),
        text=message,
        fields=tuple(fields),
    )


class BlockCollector:
    """Groups records into report blocks. Pure: time is passed in, output is returned."""

    def __init__(self, quiet_seconds: float = 2.0) -> None:
        self.quiet_seconds = quiet_seconds
        self._history: deque[str] = deque(maxlen=CONTEXT_LINES)
        self._block: list[str] = []
        self._last_arrival = 0.0
        self._last_usec = 0

    @property
    def active(self) -> bool:
        return bool(self._block)

    def feed(self, record: KmsgRecord, now: float) -> list[str]:
        """Add a record that arrived at `now`; returns the blocks it completed (usually none)."""
        done: list[str] = []
        line = record.line()
        if self._block and (record.usec - self._last_usec) / 1e6 >= self.quiet_seconds:
            done.extend(self._finish())
        self._last_arrival = now
        self._last_usec = record.usec
        if self._block:
            self._block.append(line)
            if any(p.search(record.text) for p in END_MARKERS) or len(self._block) >= MAX_BLOCK_LINES:
                done.extend(self._finish())
            return done
        if any(p.search(record.text) for p in TRIGGERS):
            self._block = [*self._history, line]
            self._history.clear()
        else:
            self._history.append(line)
        return done

    def flush(self, now: float, *, force: bool = False) -> list[str]:
        """Blocks that went quiet (or all, with force): hung-task reports have no end marker."""
        if self._block and (force or now - self._last_arrival >= self.quiet_seconds):
            return self._finish()
        return []

    def _finish(self) -> list[str]:
        block = "\n".join(self._block) + "\n"
        self._block = []
        return [block]


class KmsgReader:
    """A thread reading /dev/kmsg (or any file of records) into a BlockCollector.

    Opened non-blocking and polled together with a wake-up pipe, so it costs nothing while the
    kernel is quiet and `stop()` returns at once. /dev/kmsg returns one record per read and
    EPIPE when records were overwritten before we read them (we log and go on); a regular file
    or a FIFO is read line by line until its end, which is what tests use.
    """

    def __init__(
        self,
        path: Path,
        on_block: Callable[[str], None],
        *,
        quiet_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        on_user_fault: Callable[[str], None] | None = None,
        on_record: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self._on_block = on_block
        self._on_user_fault = on_user_fault
        self._on_record = on_record  # every kernel record's text (hardware-error counting, agent.hwcount)
        self._collector = BlockCollector(quiet_seconds)
        self._clock = clock
        self._wake_r, self._wake_w = os.pipe()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kmsg", daemon=True)
        self.records = 0
        self.foreign_records = 0  # records user space wrote (facility != 0): never read as kernel text
        self._fault_wait = 0  # records left to find the program of a fault line that did not name it

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Wake the thread, wait for it to flush its last block; safe to call twice."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        os.write(self._wake_w, b"x")
        if self._thread.ident is not None:
            self._thread.join(timeout)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def _emit(self, blocks: list[str]) -> None:
        for block in blocks:
            try:
                self._on_block(block)
            except Exception:
                log.exception("kmsg block handler failed lines=%d", block.count("\n"))

    def _run(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            log.error("cannot open kernel log path=%s error=%s", self.path, exc.strerror)
            return
        log.info("reading kernel log path=%s", self.path)
        pending = b""
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        try:
            while not self._stopping.is_set():
                timeout_ms = int(self._collector.quiet_seconds * 1000) if self._collector.active else -1
                events = poller.poll(timeout_ms)
                if self._stopping.is_set():
                    break
                if not events:
                    self._emit(self._collector.flush(self._clock()))
                    continue
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    if exc.errno == errno.EPIPE:
                        log.warning(
                            "kernel log records were overwritten before they were read path=%s", self.path
                        )
                        continue
                    log.error("kernel log read failed path=%s error=%s", self.path, exc.strerror)
                    break
                if not chunk:
                    break  # end of a regular file / FIFO writer gone; /dev/kmsg never ends
                pending += chunk
                pending = self._consume(pending)
            if pending:
                self._consume(pending + b"\n")
            self._emit(self._collector.flush(self._clock(), force=True))
        finally:
            os.close(fd)

    def _consume(self, data: bytes) -> bytes:
        """Feed the complete lines of `data`, returning the unfinished tail.

        A record's continuation lines start with a space. /dev/kmsg hands over whole records per
        read, so a record is complete once its chunk's lines are; a file split mid-record at a
        chunk boundary costs at most one ignored continuation line.
        """
        lines = data.split(b"\n")
        rest = lines.pop()
        record: list[bytes] = []
        for line in lines:
            if line.startswith(b" ") and record:
                record.append(line)
                continue
            if record:
                self._feed(b"\n".join(record))
            record = [line] if line else []
        if record:
            self._feed(b"\n".join(record))
        return rest

    def _count_user_fault(self, text: str) -> None:
        """Report each user-space fault's program; `potentially unexpected fatal signal` names it
        only on the register dump's `Comm:` line a few records later."""
        assert self._on_user_fault is not None
        if self._fault_wait:
            self._fault_wait -= 1
            comm = register_dump_comm(text)
            if comm is not None:
                self._fault_wait = 0
                self._on_user_fault(comm)
                return
            if not self._fault_wait:
                self._on_user_fault("?")
        fault = user_fault(text)
        if fault is None:
            return
        if fault.comm is None:
            self._fault_wait = COMM_LOOKAHEAD
        else:
            self._on_user_fault(fault.comm)

    def _feed(self, raw: bytes) -> None:
        parsed = parse_record(raw)
        if parsed is None:
            return
        self.records += 1
        if parsed.facility != 0:
            # Anything may write /dev/kmsg, but the kernel turns facility 0 from user space into
            # LOG_USER (devkmsg_write): only facility 0 is the kernel's own text.
            self.foreign_records += 1
            return
        if self._on_record is not None:
            try:
                self._on_record(parsed.text)
            except Exception:
                log.exception("kmsg record handler failed")
        if self._on_user_fault is not None:
            self._count_user_fault(parsed.text)
        self._emit(self._collector.feed(parsed, self._clock()))
