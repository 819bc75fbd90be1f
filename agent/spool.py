"""The agent's durable outbox: a crash report is on disk before anything else happens to it.

SQLite in WAL mode with synchronous=FULL: a committed enqueue survives power loss and `kill -9`.
Rows are deleted only when the collector acknowledges. The row key is the report's idempotency
key (derived from content), so extracting the same capture twice — a restart between enqueue and
the "capture done" mark, or a start-up scan after a crash of the agent — inserts nothing new,
and a resend after an ack that was lost on the way back is a duplicate the collector drops.

The spool is bounded by bytes and by age: past either bound the oldest reports are dropped, with
a log line and a metric, because a host must not fill its disk over a collector that never returns.
It also remembers which captures were handled (so the start-up scan skips them) and which
(boot id, fingerprint) pairs the live kernel log already reported.

A full file system must degrade, not stop the agent. Beside the database the spool keeps a
reserve file (`RESERVE_BYTES` of zeros, made whenever there is room). A write that only adds
(a new report, a job) fails at once with `SpoolFull` and the caller keeps its work for later; a
write that frees space or keeps the agent going (deleting acknowledged reports, the pause and
"collector up" marks, counts, job attempts) that meets a full disk deletes the reserve and is
tried once more. So an agent whose state directory filled up still ships and deletes what it
has, and takes new crashes again once deleting made room inside the database or on the disk.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from analysis.errors import CrashfleetError
from wire.retry import backoff_delay

if TYPE_CHECKING:
    from agent.config import AgentConfig

__all__ = [
    "EXIT_DISK_FULL",
    "Backoff",
    "DropReason",
    "Job",
    "NewReport",
    "Spool",
    "SpoolError",
    "SpoolFull",
    "SpoolItem",
    "SpoolStats",
    "open_spool",
]

log = logging.getLogger(__name__)

SPOOL_FILE = "spool.sqlite3"  # under the state dir
EXIT_DISK_FULL = 75  # EX_TEMPFAIL: the worker's exit status when the state directory was full
RESERVE_SUFFIX = ".reserve"  # beside it: space held back for deletes when the disk is full
RESERVE_BYTES = 4 * 1024 * 1024  # what a checkpoint of a full WAL (1000 pages of 4 KiB) may need

# Meta rows the worker (agent.worker) leaves for the daemon (agent.service) and the next worker.
PAUSED_UNTIL = "paused_until"  # the collector is down or throttling: no shipping before this time
STREAK = "failure_streak"  # consecutive unreachable/throttled answers: the backoff exponent
COLLECTOR_UP = "collector_up"
HEARTBEAT_SUGGESTED = "heartbeat_suggested_seconds"  # the collector's interval from its last heartbeat reply
USER_FAULTS = "user_faults"  # JSON {program: count}: user-space faults this boot, for the heartbeat (bounded)
# Hardware-error counts of captured kernel logs: one row per capture (its key), so a capture read
# again (a restart, a capture that changed) replaces its own row instead of adding to the total.
# Past this many rows the oldest are folded into the row of capture "" (RETIRED_CAPTURES).
MAX_COUNTED_CAPTURES = 256
RETIRED_CAPTURES = ""
MAX_HARDWARE_ERROR_COUNT = 10**12  # per kind, summed over captures: far beyond any real host


class DropReason(StrEnum):
    """Why reports left the spool unshipped: the `reason` label of `crashfleet_agent_spool_dropped_total`.

    A closed set because every label value is a time series kept forever; the collector's
    free-text refusal message goes to the log line, never into the label.
    """

    TOO_OLD = "too_old"  # older than the age bound (`[spool] max_age_days`)
    SPOOL_FULL = "spool_full"  # oldest reports dropped to get back under `[spool] max_bytes`
    REJECTED = "rejected"  # the collector refused the report for good (INVALID_ARGUMENT, ...)


SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt, created);
CREATE TABLE IF NOT EXISTS captures (
    capture TEXT PRIMARY KEY,
    identity TEXT NOT NULL,
    outcome TEXT NOT NULL,
    reports INTEGER NOT NULL,
    handled REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS boot_reports (
    boot_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    marker TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (boot_id, fingerprint)
);
CREATE INDEX IF NOT EXISTS boot_reports_fp ON boot_reports (fingerprint);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS capture_hardware_errors (
    capture TEXT PRIMARY KEY,
    counts TEXT NOT NULL,
    counted REAL NOT NULL
);
"""


class SpoolError(CrashfleetError):
    """The spool database cannot be opened or written (disk full, permissions, corruption)."""


class SpoolFull(SpoolError):
    """The state directory's file system is full: nothing new fits until something is deleted."""


def _is_full(exc: sqlite3.DatabaseError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(exc)


def _enospc() -> int:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _no_room(directory: Path) -> bool:
    """The file system under `directory` has less free space than SQLite needs to open a database."""
    try:
        stat = os.statvfs(directory)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < 1024 * 1024


@dataclass(frozen=True, slots=True)
class NewReport:
    """A report to enqueue: its idempotency key, what it is, and the serialized request."""

    key: str
    kind: str  # "crash", "failed-capture", "kmsg"
    payload: bytes


@dataclass(frozen=True, slots=True)
class SpoolItem:
    key: str
    kind: str
    payload: bytes
    created: float
    attempts: int
    last_error: str


@dataclass(frozen=True, slots=True)
class Job:
    """Work the daemon hands to the worker: a capture to extract or a live-log block to analyze."""

    key: str
    kind: str  # "capture" or "kmsg"
    data: str  # capture: JSON {root, path, failure}; kmsg: the block text
    attempts: int  # workers that started on it and did not finish (died, killed, hung)


@dataclass(frozen=True, slots=True)
class SpoolStats:
    depth: int
    bytes: int
    oldest_created: float | None


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with "equal jitter": half the step fixed, half random, capped.

    The fixed half keeps a retry from firing at once; the random half spreads a fleet that lost
    its collector at the same moment so it does not come back in lockstep.
    """

    initial: float = 1.0
    maximum: float = 300.0

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        return backoff_delay(attempt, self.initial, self.maximum, rand)


class Spool:
    """The outbox. Thread-safe: the service loop, the kmsg reader and a metrics scrape share it."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        max_age_seconds: float = 30 * 86400.0,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        on_drop: Callable[[int, DropReason], None] | None = None,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_age_seconds = max_age_seconds
        self.backoff = backoff or Backoff()
        self._clock = clock
        self._rand = rand
        self._on_drop = on_drop
        self._lock = threading.Lock()
        self.reserve_path = path.with_name(path.name + RESERVE_SUFFIX)
        self.full = False  # the last write met a full file system (reset once the reserve is back)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpoolError(f"{path}: cannot create state directory: {exc.strerror}") from None
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            # Opening makes the WAL and shared-memory files; on a full disk that fails (as a
            # "disk I/O error"): the reserve pays for them, so a restart on a full disk still ships.
            if not _no_room(path.parent) or not self._release_reserve():
                raise SpoolError(f"{path}: cannot open spool: {exc}") from None
            self.full = True
            try:
                self._db = self._open()
            except sqlite3.DatabaseError as again:
                raise SpoolError(f"{path}: cannot open spool: {again}") from None

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta (name, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise SpoolError(f"{self.path}: spool schema {row[0]}, this agent knows {SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, body: Callable[[sqlite3.Connection], int], *, essential: bool = True) -> int:
        """Run `body` in one IMMEDIATE transaction; a failure rolls back and raises SpoolError.

        On a full file system an `essential` write (one that frees space or keeps shipping
        going) releases the reserve and is tried once more; any other raises SpoolFull at once.
        """
        try:
            return self._transaction(body)
        except sqlite3.DatabaseError as exc:
            if not _is_full(exc):
                raise SpoolError(f"{self.path}: {exc}") from None
            self.full = True
            if not essential or not self._release_reserve():
                raise SpoolFull(f"{self.path}: {exc}") from None
        try:
            return self._transaction(body)
        except sqlite3.DatabaseError as exc:
            error = SpoolFull if _is_full(exc) else SpoolError
            raise error(f"{self.path}: {exc}") from None

    def _transaction(self, body: Callable[[sqlite3.Connection], int]) -> int:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                result = body(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return result

    def _release_reserve(self) -> bool:
        """Delete the reserve file; False when there was none to give."""
        try:
            self.reserve_path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.error("cannot release the spool reserve path=%s error=%s", self.reserve_path, exc.strerror)
            return False
        log.warning(
            "state directory full: released the spool reserve to keep shipping path=%s bytes=%d",
            self.reserve_path,
            RESERVE_BYTES,
        )
        return True

    def ensure_reserve(self) -> bool:
        """Make the reserve file if it is missing; True when it exists (the disk has room again).

        Written in full, never sparse, so the blocks are really held; a file system that cannot
        take it leaves no partial file behind.
        """
        try:
            if self.reserve_path.stat().st_size == RESERVE_BYTES:
                self.full = False
                return True
        except FileNotFoundError:
            pass
        except OSError:
            return False
        partial = self.reserve_path.with_name(self.reserve_path.name + ".tmp")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                block = bytes(65536)
                written = 0
                while written < RESERVE_BYTES:  # a short write is how a full disk ends it, at times
                    written += os.write(fd, block[: RESERVE_BYTES - written]) or _enospc()
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(partial, self.reserve_path)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                log.warning("cannot make the spool reserve path=%s error=%s", self.reserve_path, exc.strerror)
            return False
        if self.full:
            log.info("state directory has room again: spool reserve restored path=%s", self.reserve_path)
        self.full = False
        return True

    # --- the outbox -------------------------------------------------------------------------

    def enqueue(
        self,
        reports: Iterable[NewReport],
        *,
        capture: tuple[str, str, str] | None = None,
        boot_keys: Iterable[tuple[str, str, str, str]] = (),
    ) -> int:
        """Store reports (and optionally mark a capture handled) atomically; returns how many were new.

        `capture` is (capture key, identity, outcome); `boot_keys` are (boot id, fingerprint,
        marker line, key) rows: what the live-log reader reported, so a later dump of the same
        boot that holds the same crash is sent under the same key.
        """
        return self.enqueue_captures([(list(reports), capture)], boot_keys=boot_keys)

    def enqueue_captures(
        self,
        entries: Iterable[tuple[list[NewReport], tuple[str, str, str] | None]],
        *,
        boot_keys: Iterable[tuple[str, str, str, str]] = (),
        done_jobs: Iterable[str] = (),
        hardware_errors: dict[str, tuple[tuple[str, int], ...]] | None = None,
    ) -> int:
        """Several captures' reports, "handled" marks and finished jobs in one transaction.

        One fsync for a whole batch of a start-up backlog; and a job is deleted in the same
        transaction that stores its reports, so a worker killed in between redoes it, never loses it.
        `hardware_errors`: the hardware-error counts of each capture's kernel log, by capture key,
        committed with the capture's "handled" mark, so that no capture is counted twice.
        """
        batch = list(entries)
        rows = list(boot_keys)
        jobs = [(k,) for k in done_jobs]
        now = self._clock()
        counted = [
            (key, json.dumps(dict(counts), sort_keys=True), now)
            for key, counts in sorted((hardware_errors or {}).items())
            if key != RETIRED_CAPTURES
        ]

        def body(db: sqlite3.Connection) -> int:
            added = 0
            db.executemany("DELETE FROM jobs WHERE key = ?", jobs)
            if counted:
                db.executemany(
                    "INSERT OR REPLACE INTO capture_hardware_errors (capture, counts, counted) VALUES (?, ?, ?)",
                    counted,
                )
                _retire_counted_captures(db, now)
            for reports, capture in batch:
                for item in reports:
                    cur = db.execute(
                        "INSERT OR IGNORE INTO outbox (key, kind, payload, size, created, next_attempt)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (item.key, item.kind, item.payload, len(item.payload), now, now),
                    )
                    added += cur.rowcount
                if capture is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO captures (capture, identity, outcome, reports, handled)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (capture[0], capture[1], capture[2], len(reports), now),
                    )
            for boot_id, fingerprint, marker, key in rows:
                db.execute(
                    "INSERT OR IGNORE INTO boot_reports (boot_id, fingerprint, marker, key) VALUES (?, ?, ?, ?)",
                    (boot_id, fingerprint, marker, key),
                )
            return added

        added = self._write(body, essential=False)
        self.enforce_bounds()
        return added

    def due(self, limit: int = 64) -> list[SpoolItem]:
        """Reports whose next attempt is now or past, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, kind, payload, created, attempts, last_error FROM outbox"
                " WHERE next_attempt <= ? ORDER BY next_attempt, created, rowid LIMIT ?",
                (self._clock(), limit),
            ).fetchall()
        return [SpoolItem(r[0], r[1], bytes(r[2]), r[3], r[4], r[5]) for r in rows]

    def next_due(self) -> float | None:
        """When the earliest report becomes due (None: the outbox is empty)."""
        with self._lock:
            row = self._db.execute("SELECT MIN(next_attempt) FROM outbox").fetchone()
        return None if row[0] is None else float(row[0])

    def ack(self, *keys: str) -> None:
        """The collector committed these reports: only now are they deleted (one transaction).

        Acks may be batched: a report acknowledged but not yet deleted when the agent dies is
        sent again, and the collector answers duplicate=true.
        """
        if keys:
            self._write(
                lambda db: db.executemany("DELETE FROM outbox WHERE key = ?", [(k,) for k in keys]).rowcount
            )

    def retry_later(self, key: str, error: str, *, delay: float | None = None) -> float:
        """Count a failed attempt and schedule the next one with backoff; returns the delay."""

        def body(db: sqlite3.Connection) -> int:
            row = db.execute("SELECT attempts FROM outbox WHERE key = ?", (key,)).fetchone()
            if row is None:
                return 0
            attempts = int(row[0])
            wait = delay if delay is not None else self.backoff.delay(attempts, self._rand)
            db.execute(
                "UPDATE outbox SET attempts = ?, next_attempt = ?, last_error = ? WHERE key = ?",
                (attempts + 1, self._clock() + wait, error[:500], key),
            )
            holder.append(wait)
            return 1

        holder: list[float] = []
        self._write(body)
        return holder[0] if holder else 0.0

    def drop(self, key: str, code: str, detail: str) -> None:
        """Give up on one report the collector refused for good (status `code`, its message `detail`).

        Counted under the closed label `rejected`; the collector's free text goes only to the log.
        """
        removed = self._write(lambda db: db.execute("DELETE FROM outbox WHERE key = ?", (key,)).rowcount)
        if removed:
            log.error(
                "spool dropped report key=%s reason=%s code=%s detail=%r",
                key,
                DropReason.REJECTED,
                code,
                detail,
            )
            if self._on_drop is not None:
                self._on_drop(removed, DropReason.REJECTED)

    def enforce_bounds(self) -> int:
        """Drop reports older than max age, then the oldest until under max bytes; returns how many."""
        cutoff = self._clock() - self.max_age_seconds
        dropped: dict[DropReason, int] = {}

        def body(db: sqlite3.Connection) -> int:
            aged = db.execute("DELETE FROM outbox WHERE created < ?", (cutoff,)).rowcount
            if aged:
                dropped[DropReason.TOO_OLD] = aged
            total = int(db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0])
            if total > self.max_bytes:
                over = 0
                victims = []
                for key, size in db.execute("SELECT key, size FROM outbox ORDER BY created, key"):
                    if total - over <= self.max_bytes:
                        break
                    victims.append(key)
                    over += int(size)
                db.executemany("DELETE FROM outbox WHERE key = ?", [(k,) for k in victims])
                dropped[DropReason.SPOOL_FULL] = len(victims)
            return sum(dropped.values())

        count = self._write(body)
        for reason, n in dropped.items():
            log.error(
                "spool full: dropped oldest reports count=%d reason=%s max_bytes=%d max_age_seconds=%g",
                n,
                reason,
                self.max_bytes,
                self.max_age_seconds,
            )
            if self._on_drop is not None:
                self._on_drop(n, reason)
        return count

    def stats(self) -> SpoolStats:
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0), MIN(created) FROM outbox"
            ).fetchone()
        return SpoolStats(depth=int(row[0]), bytes=int(row[1]), oldest_created=row[2])

    # --- bookkeeping ------------------------------------------------------------------------

    def capture_identity(self, capture: str) -> str | None:
        """The identity a capture had when it was handled (None: never handled)."""
        with self._lock:
            row = self._db.execute("SELECT identity FROM captures WHERE capture = ?", (capture,)).fetchone()
        return None if row is None else str(row[0])

    def handled_captures(self) -> dict[str, str]:
        with self._lock:
            return dict(self._db.execute("SELECT capture, identity FROM captures").fetchall())

    def forget_captures(self, keep: Iterable[str]) -> int:
        """Forget handled captures that no longer exist on disk (the operator deleted them)."""
        keep_set = set(keep)

        def body(db: sqlite3.Connection) -> int:
            gone = [c for (c,) in db.execute("SELECT capture FROM captures") if c not in keep_set]
            db.executemany("DELETE FROM captures WHERE capture = ?", [(c,) for c in gone])
            return len(gone)

        return self._write(body)

    def boot_report_key(self, boot_id: str, fingerprint: str) -> str | None:
        """The key a crash of this boot with this fingerprint was already reported under, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT key FROM boot_reports WHERE boot_id = ? AND fingerprint = ?", (boot_id, fingerprint)
            ).fetchone()
        return None if row is None else str(row[0])

    def boot_reports(self, fingerprint: str) -> list[tuple[str, str]]:
        """(marker line, key) of every live-log report with this fingerprint, any boot."""
        with self._lock:
            rows = self._db.execute(
                "SELECT marker, key FROM boot_reports WHERE fingerprint = ?", (fingerprint,)
            ).fetchall()
        return [(str(m), str(k)) for m, k in rows]

    # --- work for the worker, and what it counted -------------------------------------------

    def add_job(self, key: str, kind: str, data: str) -> None:
        """Queue work for the worker; the same key again updates its data but keeps its attempts."""
        now = self._clock()
        self._write(
            lambda db: (
                db.execute(
                    "INSERT INTO jobs (key, kind, data, attempts, created) VALUES (?, ?, ?, 0, ?)"
                    " ON CONFLICT (key) DO UPDATE SET data = excluded.data",
                    (key, kind, data, now),
                ).rowcount
            ),
            essential=False,
        )

    def take_jobs(self, limit: int) -> list[Job]:
        """The oldest jobs, each counted as attempted (committed before the work starts).

        A worker that dies or hangs on a job leaves the count raised: the next worker sees a job
        that already cost a worker and can stop reading it (a poisonous dump is read at most twice).
        A job that already cost a worker is taken alone, and fresh jobs are never batched with
        it: a dump that kills workers can only count against itself, so the good captures that
        happened to share its first worker are read normally by the next ones.
        """
        taken: list[Job] = []

        def body(db: sqlite3.Connection) -> int:
            rows = db.execute(
                "SELECT key, kind, data, attempts FROM jobs ORDER BY created, key LIMIT ?", (limit,)
            ).fetchall()
            if rows and int(rows[0][3]) > 0:
                rows = rows[:1]
            else:
                rows = list(itertools.takewhile(lambda r: int(r[3]) == 0, rows))
            db.executemany("UPDATE jobs SET attempts = attempts + 1 WHERE key = ?", [(r[0],) for r in rows])
            taken.extend(Job(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows)
            return len(rows)

        self._write(body, essential=False)
        return taken

    def release_jobs(self, keys: Iterable[str]) -> None:
        """Jobs taken but not done for want of disk space: the attempt does not count against them."""
        rows = [(k,) for k in keys]
        if rows:
            self._write(
                lambda db: (
                    db.executemany(
                        "UPDATE jobs SET attempts = MAX(attempts - 1, 0) WHERE key = ?", rows
                    ).rowcount
                )
            )

    def due_now(self) -> int:
        """Make every report due now (an agent starting with a spool tries all of it at once)."""
        now = self._clock()
        return self._write(
            lambda db: (
                db.execute("UPDATE outbox SET next_attempt = ? WHERE next_attempt > ?", (now, now)).rowcount
            )
        )

    def job_count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])

    def drop_job(self, key: str) -> None:
        self._write(lambda db: db.execute("DELETE FROM jobs WHERE key = ?", (key,)).rowcount)

    def add_counters(self, deltas: dict[str, float]) -> None:
        """The worker's counts, for the daemon's metrics (the worker's process is gone by then)."""
        rows = [(name, value) for name, value in deltas.items() if value]
        if rows:
            self._write(
                lambda db: (
                    db.executemany(
                        "INSERT INTO counters (name, value) VALUES (?, ?)"
                        " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                        rows,
                    ).rowcount
                )
            )

    def take_counters(self) -> dict[str, float]:
        """Read and reset the counts the worker left."""
        taken: dict[str, float] = {}

        def body(db: sqlite3.Connection) -> int:
            taken.update({str(n): float(v) for n, v in db.execute("SELECT name, value FROM counters")})
            return db.execute("DELETE FROM counters").rowcount

        self._write(body)
        return taken

    def capture_hardware_errors(self) -> tuple[tuple[str, int], ...]:
        """Hardware-error events counted in captured kernel logs, every capture once: (kind, count)."""
        with self._lock:
            rows = self._db.execute("SELECT counts FROM capture_hardware_errors").fetchall()
        total: dict[str, int] = {}
        for (text,) in rows:
            for kind, n in _counts(text).items():
                total[kind] = min(MAX_HARDWARE_ERROR_COUNT, total.get(kind, 0) + n)
        return tuple(sorted((k, n) for k, n in total.items() if n > 0))

    def get_meta(self, name: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        self._write(
            lambda db: (
                db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value)).rowcount
            )
        )


def _counts(text: str) -> dict[str, int]:
    """A stored counts object; anything malformed counts as nothing (the table is ours, but a
    damaged row must not stop heartbeats)."""
    try:
        raw = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {
        str(k): min(int(v), MAX_HARDWARE_ERROR_COUNT)
        for k, v in raw.items()
        if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v > 0
    }


def _retire_counted_captures(db: sqlite3.Connection, now: float) -> None:
    """Keep the per-capture table bounded: fold the oldest rows past MAX_COUNTED_CAPTURES into
    the RETIRED_CAPTURES row (their counts still count; they just can no longer be replaced)."""
    old = db.execute(
        "SELECT capture, counts FROM capture_hardware_errors WHERE capture <> ? ORDER BY counted DESC, capture"
        " LIMIT -1 OFFSET ?",
        (RETIRED_CAPTURES, MAX_COUNTED_CAPTURES),
    ).fetchall()
    if not old:
        return
    row = db.execute(
        "SELECT counts FROM capture_hardware_errors WHERE capture = ?", (RETIRED_CAPTURES,)
    ).fetchone()
    total = _counts(row[0]) if row is not None else {}
    for _capture, text in old:
        for kind, n in _counts(text).items():
            total[kind] = min(MAX_HARDWARE_ERROR_COUNT, total.get(kind, 0) + n)
    db.executemany("DELETE FROM capture_hardware_errors WHERE capture = ?", [(c,) for c, _ in old])
    db.execute(
        "INSERT OR REPLACE INTO capture_hardware_errors (capture, counts, counted) VALUES (?, ?, ?)",
        (RETIRED_CAPTURES, json.dumps(total, sort_keys=True), now),
    )


def open_spool(
    config: AgentConfig,
    on_drop: Callable[[int, DropReason], None] | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> Spool:
    """The state dir's spool with the configured bounds and backoff (daemon and worker alike)."""
    return Spool(
        config.state_dir / SPOOL_FILE,
        max_bytes=config.spool_max_bytes,
        max_age_seconds=config.spool_max_age_seconds,
        backoff=Backoff(config.backoff_initial_seconds, config.backoff_max_seconds),
        clock=clock,
        on_drop=on_drop,
    )
