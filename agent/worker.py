"""The agent's heavy half — analysis and gRPC — in a short-lived worker process.

The daemon (`agent.service`) stays small while idle: it watches, owns the kmsg reader, talks to
systemd and serves metrics, and never imports the analyzer or grpc. When there is work — a
capture ready, a live-log block, reports due, a heartbeat due — it starts `python -m
agent.worker`, which does the work through the spool and exits. Everything passes through the
spool (jobs in, reports and counts out), so a worker killed at any point loses nothing: a job is
deleted in the transaction that stores its reports, a report only after the collector's ack.

The split also contains bad input: a dump that crashes or hangs a reader (decompressors and
capstone are C) costs a worker, not the daemon, and a job that already cost a worker
`MAX_JOB_ATTEMPTS` times becomes a failed capture without being read again.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import fcntl
import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import AgentConfig, config_from_json
from agent.extract import (
    Analyzer,
    ExtractedReport,
    Extraction,
    ScratchFull,
    default_analyzer,
    extract_capture,
    report_key,
)
from agent.heartbeat import HostInventory, collect_inventory
from agent.hwcount import capture_log_hardware_errors, merge_counts, read_hardware_errors
from agent.layouts import Root, archived_by_systemd_pstore, assess, capture_for_path
from agent.ship import GrpcShipper, NoCollector, Outcome, Shipper, ShipResult, build_request
from agent.spool import (
    COLLECTOR_UP,
    EXIT_DISK_FULL,
    HEARTBEAT_SUGGESTED,
    PAUSED_UNTIL,
    STREAK,
    USER_FAULTS,
    DropReason,
    Job,
    NewReport,
    Spool,
    SpoolFull,
    SpoolItem,
    open_spool,
)
from analysis.model import CrashRecord, SystemFacts
from analysis.userfaults import bound_counts
from wire.retry import throttle_delay

if TYPE_CHECKING:
    from analysis.symbolize.debuginfo import DebuginfoSearch

__all__ = ["EXIT_DISK_FULL", "MAX_JOB_ATTEMPTS", "ThreadWorker", "Worker", "main", "open_spool", "run_worker"]

log = logging.getLogger("agent.worker")  # also under `python -m agent.worker`, where __name__ is __main__

MAX_JOB_ATTEMPTS = 2  # workers a capture may cost (crash, hang, kill) before it is no longer read
JOB_BATCH = 64  # jobs per spool transaction (a start-up backlog: one fsync per batch)
SHIP_BATCH = 64  # reports per shipping pass; their acks are deleted in one transaction
LINGER_POLL_SECONDS = 0.02  # a lingering worker looks for its job this often (for a second or two)
THROTTLE_WAIT_SECONDS = 10.0  # a limiter pause up to this long is slept in the worker, not the daemon
THROTTLED_RUN_SECONDS = 300.0  # ... for at most this long per worker (the daemon kills one at worker_timeout)

# Jobs come from agent.service: "capture" jobs carry JSON {root, path, failure}, "kmsg" jobs the
# block text. The meta rows the worker leaves for the daemon are named in agent.spool.


_SPACES = re.compile(r"\s+")


def _squash(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def _marker(record: CrashRecord, lines: list[str]) -> str:
    """The block line a live-log record starts at (with its timestamp): what a dump must contain."""
    if 0 <= record.first_line < len(lines):
        return lines[record.first_line]
    return ""


class Worker:
    """One run: extract the queued jobs, ship what is due, heartbeat if asked; counts to the spool."""

    def __init__(
        self,
        config: AgentConfig,
        spool: Spool,
        shipper: Shipper,
        analyzer: Analyzer | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.spool = spool
        self.shipper = shipper
        self._analyzer = analyzer
        self._clock = clock
        self._sleep = sleep
        self._unlink_after_commit: list[Path] = []
        self.disk_full = False  # a write met a full state directory this run (exit status EX_TEMPFAIL)
        self._debuginfo_search: DebuginfoSearch | None = None  # built at the first crash to symbolize
        self._no_debuginfo = False  # no debug root or path exists: not looked for again this run
        self.counts: collections.Counter[str] = collections.Counter()
        # Hardware-error counts of the captured kernel logs read this run, by capture key: the
        # spool stores them with the captures' "handled" marks (agent.hwcount).
        self._capture_hardware_errors: dict[str, tuple[tuple[str, int], ...]] = {}
        self.inventory: HostInventory = collect_inventory(
            config.hostname,
            dmi_dir=config.dmi_dir,
            proc_dir=config.proc_dir,
            boot_id_path=config.boot_id_path,
            labels=config.labels,
            hardware_errors=read_hardware_errors(config.state_dir),
        )

    def run(self, *, heartbeat: bool, linger: float = 0.0) -> None:
        """Jobs, then shipping, then the heartbeat.

        `linger` > 0: the daemon started this worker while a capture is still settling; load the
        analyzer now and wait that long for its job, so the import is not on the latency path.
        """
        self.spool.ensure_reserve()
        try:
            until = time.monotonic() + linger
            if linger > 0:
                self.analyzer()
            while not self.disk_full:
                try:
                    jobs = self.spool.take_jobs(JOB_BATCH)
                except SpoolFull:
                    self._disk_full("jobs stay queued")
                    break
                if jobs:
                    self._do_jobs(jobs)
                    until = 0.0  # what we waited for came: ship it now, no more lingering
                    continue
                if time.monotonic() >= until:
                    break
                time.sleep(LINGER_POLL_SECONDS)
            self._ship_all()
            if heartbeat and self._heartbeat():
                self._ship_all()  # the heartbeat was the probe that found the collector back
        finally:
            try:
                self.spool.add_counters(dict(self.counts))
            except SpoolFull:
                log.warning("state directory full: this run's counts are lost counts=%s", dict(self.counts))

    def _disk_full(self, what: str) -> None:
        """Note a full state directory once per run; the daemon sees it in the exit status."""
        if not self.disk_full:
            log.warning("state directory full: %s until there is room path=%s", what, self.config.state_dir)
        self.disk_full = True

    def analyzer(self) -> Analyzer:
        """Imported at the first crash: a worker that only ships or heartbeats never loads capstone."""
        if self._analyzer is None:
            self._analyzer = default_analyzer()
        return self._analyzer

    # --- jobs ---------------------------------------------------------------------------------

    def _do_jobs(self, jobs: list[Job]) -> None:
        entries: list[tuple[list[NewReport], tuple[str, str, str] | None]] = []
        boot_keys: list[tuple[str, str, str, str]] = []
        done: list[str] = []
        waiting: list[str] = []  # no room to read them: queued again, the attempt not counted
        for job in jobs:
            if job.kind == "kmsg" and job.attempts >= MAX_JOB_ATTEMPTS:
                # No capture to report as failed: the block is dropped and said so, not read a
                # third time (taken alone, it would stop every job behind it).
                log.error(
                    "live kernel log block dropped: reading it stopped the extractor %d times"
                    " (crash, kill or timeout) key=%s lines=%d",
                    job.attempts,
                    job.key,
                    job.data.count("\n"),
                )
                self.counts["parse_failures"] += 1
            elif job.kind == "kmsg":
                payloads, keys = self._kmsg(job.data)
                entries.append((payloads, None))
                boot_keys.extend(keys)
            elif job.kind == "capture":
                try:
                    entries.append(self._capture(job))
                except ScratchFull as exc:
                    self._disk_full(f"captures stay queued ({exc})")
                    waiting.append(job.key)
                    continue
            else:
                log.error("unknown job dropped key=%s kind=%s", job.key, job.kind)
            done.append(job.key)
        counted, self._capture_hardware_errors = self._capture_hardware_errors, {}
        try:
            self.spool.enqueue_captures(entries, boot_keys=boot_keys, done_jobs=done, hardware_errors=counted)
        except SpoolFull:
            # Nothing was stored: the jobs stay queued and are read again once there is room;
            # the pstore records stay where they are.
            self._unlink_after_commit = []
            self._disk_full("new crashes stay queued")
            waiting = [j.key for j in jobs]
        else:
            self._unlink_read_pstore_records()
        if waiting:
            try:
                self.spool.release_jobs(waiting)
            except SpoolFull:
                log.warning("state directory full: job attempts not released jobs=%d", len(waiting))

    def _unlink_read_pstore_records(self) -> None:
        """`pstore_fs_unlink`: free the backend's storage once the reports are committed (never before)."""
        paths, self._unlink_after_commit = self._unlink_after_commit, []
        for path in paths:
            try:
                path.unlink()
                log.info("pstore record removed after spooling path=%s", path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot remove pstore record path=%s error=%s", path, exc.strerror or exc)

    def _root_dir(self, root: Root) -> Path | None:
        return {
            Root.CRASH: self.config.crash_dir,
            Root.PSTORE: self.config.pstore_dir,
            Root.PSTORE_FS: self.config.pstore_fs_dir,
        }[root]

    def _capture(self, job: Job) -> tuple[list[NewReport], tuple[str, str, str] | None]:
        """One capture's reports and its "handled" mark, for the spool to commit together."""
        spec = json.loads(job.data)
        root = Root(spec["root"])
        directory = self._root_dir(root)
        capture = None if directory is None else capture_for_path(root, directory, Path(spec["path"]))
        if capture is None:
            log.info("capture gone before it was read path=%s", spec["path"])
            return [], None
        assessment = assess(capture)
        if root == Root.PSTORE_FS:
            if archived_by_systemd_pstore(capture.members, self.config.pstore_dir):
                log.info("pstore record already archived by systemd-pstore; read there path=%s", capture.path)
                return [], (capture.key, assessment.identity, "archived")
            if self.config.pstore_fs_unlink:
                self._unlink_after_commit.extend(capture.members)
        failure: str | None = spec.get("failure")
        if job.attempts >= MAX_JOB_ATTEMPTS:
            failure = f"reading it stopped the extractor {job.attempts} times (crash, kill or timeout); not read again"
        started = time.monotonic()
        scratch = self.config.state_dir / "scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        reason: str | None = None
        try:
            extraction = extract_capture(assessment, self.analyzer(), scratch=scratch, failure=failure)
            payloads = self._payloads(extraction)
        except ScratchFull:
            raise  # not this capture's fault: it is read again once there is room
        except Exception as exc:
            # A bug in a reader costs one capture its analysis, never the agent.
            log.exception("extraction failed capture=%s", capture.path)
            reason = f"internal error while reading: {type(exc).__name__}: {exc}".rstrip(": ")
        if reason is not None:
            # Outside the handler: the exception, its traceback and the frames holding whatever
            # the reader built (all of the memory, after a MemoryError) are gone by now.
            extraction = extract_capture(assessment, self.analyzer(), scratch=scratch, failure=reason)
            payloads = self._payloads(extraction)
        elapsed = time.monotonic() - started
        if extraction.failed:
            self.counts["parse_failures"] += 1
            log.warning(
                "failed capture layout=%s path=%s reason=%s seconds=%.2f",
                capture.rule.name,
                capture.path,
                extraction.reason,
                elapsed,
            )
        else:
            log.info(
                "crash extracted layout=%s path=%s reports=%d seconds=%.2f detail=%s",
                capture.rule.name,
                capture.path,
                len(payloads),
                elapsed,
                extraction.reason,
            )
        self.counts[f"crashes_detected:{capture.rule.name}"] += len(payloads)
        errors = capture_log_hardware_errors(extraction.log)
        if errors:
            log.warning(
                "hardware errors in captured kernel log path=%s %s",
                capture.path,
                " ".join(f"{kind}={n}" for kind, n in errors),
            )
        self._capture_hardware_errors[capture.key] = errors
        outcome = "failed" if extraction.failed else "ok"
        return payloads, (capture.key, assessment.identity, outcome)

    def _payloads(self, extraction: Extraction) -> list[NewReport]:
        found = list(extraction.reports)
        if not extraction.failed and found:
            records = self.symbolize([r.record for r in found], found[0].system)
            found = [dataclasses.replace(r, record=record) for r, record in zip(found, records, strict=True)]
        reports = []
        for report in found:
            report = self._match_live_report(report)
            reports.append(NewReport(report.key, report.kind, build_request(report, self.inventory)))
        return reports

    def symbolize(self, records: list[CrashRecord], system: SystemFacts | None) -> list[CrashRecord]:
        """Source lines from this host's debuginfo of the crashed build, when there is any.

        Enrichment only: the fingerprint, title and frames stay as they are, and any failure
        leaves the records as the kernel printed them. The symbolizer is imported only when a
        debug root or debuginfo path exists, and its indexes live under the state dir.
        """
        config = self.config
        if not config.symbolize_enabled or not records:
            return records
        if self._no_debuginfo:
            return records
        if self._debuginfo_search is None:
            roots = [str(r) for r in config.debug_roots if r.is_dir()]
            explicit = [str(p) for p in config.debuginfo if p.exists()]
            if not roots and not explicit:
                self._no_debuginfo = True
                return records
            from analysis.symbolize.debuginfo import DebuginfoSearch

            # One search per run: the explicit directories are walked once, not once per capture.
            self._debuginfo_search = DebuginfoSearch(explicit=explicit, debug_roots=roots)
        from analysis.symbolize.enrich import symbolize_capture

        started = time.monotonic()
        try:
            out, _listings = symbolize_capture(
                records, system, self._debuginfo_search, cache_dir=config.state_dir / "symbols"
            )
        except Exception:
            # Debuginfo is an extra: a symbolizer bug must never cost the crash its report.
            log.exception("symbolization failed; shipping without source lines records=%d", len(records))
            return records
        located = sum(1 for r in out if r.rip is not None and r.rip.source)
        if located:
            self.counts["symbolized"] += located
            log.info(
                "symbolized records=%d with_source=%d seconds=%.2f",
                len(out),
                located,
                time.monotonic() - started,
            )
        return out

    def _match_live_report(self, report: ExtractedReport) -> ExtractedReport:
        """A dump of a crash the live log already reported keeps that report's key (counted once).

        The match is exact: same fingerprint, and the live report's first line — with its boot
        timestamp — appears in the dump's log, which only happens for the same boot.
        """
        fingerprint = report.record.fingerprint
        if fingerprint is None or not report.log:
            return report
        rows = self.spool.boot_reports(fingerprint.value)
        if not rows:
            return report
        log_text = _squash(report.log.decode("utf-8", errors="replace"))
        for marker, key in rows:
            if marker and _squash(marker) in log_text:
                log.info("dump matches a live-log report key=%s fingerprint=%s", key, fingerprint.value)
                return dataclasses.replace(report, key=key)
        return report

    def _kmsg(self, block: str) -> tuple[list[NewReport], list[tuple[str, str, str, str]]]:
        """A live-log block's reports, keyed by (host, boot id, fingerprint): one per crash per boot."""
        data = block.encode("utf-8", errors="replace")
        try:
            records = self.analyzer()(data)
        except Exception:
            log.exception("live kernel log block could not be analyzed lines=%d", block.count("\n"))
            return [], []
        records = self.symbolize(records, None)
        lines = block.splitlines()
        boot_id = self.inventory.boot_id
        payloads: list[NewReport] = []
        boot_keys: list[tuple[str, str, str, str]] = []
        for index, record in enumerate(records):
            fp = record.fingerprint.value if record.fingerprint is not None else ""
            if fp and boot_id:
                if self.spool.boot_report_key(boot_id, fp) is not None or any(
                    k[:2] == (boot_id, fp) for k in boot_keys
                ):
                    log.debug("live-log crash already reported this boot fingerprint=%s", fp)
                    continue
                key = report_key(f"kmsg\0{self.config.hostname}\0{boot_id}\0{fp}".encode(), 0)
                boot_keys.append((boot_id, fp, _marker(record, lines), key))
            else:
                key = report_key(data, index)
            report = ExtractedReport(
                key=key,
                kind="kmsg",
                record=record,
                system=None,
                source_path=str(self.config.kmsg_path),
                crash_time=None,
            )
            payloads.append(NewReport(key, "kmsg", build_request(report, self.inventory)))
            log.info("live-log crash kind=%s title=%s key=%s", record.kind, record.title, key)
        self.counts["crashes_detected:kmsg"] += len(payloads)
        return payloads, boot_keys

    # --- shipping -----------------------------------------------------------------------------

    def paused_until(self) -> float:
        return float(self.spool.get_meta(PAUSED_UNTIL) or 0.0)

    def _ship_all(self) -> None:
        """Ship batches while reports are due; a short throttle is waited out in this process.

        A limiter pause of up to THROTTLE_WAIT_SECONDS is slept here rather than handed back to
        the daemon (which would start a new worker for each token), for at most
        THROTTLED_RUN_SECONDS; then the daemon starts the next worker when the pause is over.
        """
        started = self._clock()
        while True:
            try:
                while self._ship_once():
                    pass
            except SpoolFull:
                # Even the reserve is used up: what was shipped but not deleted is sent again
                # next time and answered as a duplicate.
                self._disk_full("acknowledged reports cannot be deleted")
                return
            wait = self.paused_until() - self._clock()
            throttled = self.spool.get_meta(COLLECTOR_UP) == "1"
            if not throttled or not 0 < wait <= THROTTLE_WAIT_SECONDS or not self.spool.due(1):
                return
            if self._clock() + wait - started > THROTTLED_RUN_SECONDS:
                return
            self._sleep(wait)

    def _ship_once(self) -> bool:
        """Ship one batch of due reports; True when another batch is due right away."""
        if self._clock() < self.paused_until():
            return False
        items = self.spool.due(SHIP_BATCH)
        acked: list[str] = []
        try:
            return self._ship(items, acked) and len(items) == SHIP_BATCH
        finally:
            self.spool.ack(*acked)

    def _pause(self, result: ShipResult, *, down: bool) -> None:
        """Hold the whole outbox back: the collector is down, or its limiter said how long to wait.

        No report is aged by this (none of them is at fault): when the pause ends, the oldest due
        report goes first and is the probe. A pause never exceeds `[spool] backoff_max_seconds`,
        so a collector that is back is noticed within that bound (or the next heartbeat, sooner).
        """
        maximum = self.spool.backoff.maximum
        if not down and result.retry_after is not None:
            pause = min(maximum, throttle_delay(result.retry_after))
        else:
            streak = int(self.spool.get_meta(STREAK) or 0)
            pause = self.spool.backoff.delay(streak)
            self.spool.set_meta(STREAK, str(streak + 1))
        self.spool.set_meta(PAUSED_UNTIL, repr(self._clock() + pause))
        if down:
            self.spool.set_meta(COLLECTOR_UP, "0")
            log.warning(
                "collector unreachable code=%s detail=%s retry_in=%.1fs spooled=%d",
                result.code,
                result.detail,
                pause,
                self.spool.stats().depth,
            )
        else:
            log.info("collector throttling this host code=%s retry_in=%.1fs", result.code, pause)

    def _reachable(self) -> None:
        if (
            self.spool.get_meta(STREAK) not in (None, "0")
            or self.spool.get_meta(COLLECTOR_UP) != "1"
            or self.paused_until() > 0
        ):
            if self.spool.get_meta(COLLECTOR_UP) == "0":
                log.info(
                    "collector answers again; shipping the spool oldest first spooled=%d",
                    self.spool.stats().depth,
                )
            self.spool.set_meta(STREAK, "0")
            self.spool.set_meta(PAUSED_UNTIL, "0")
            self.spool.set_meta(COLLECTOR_UP, "1")

    def _ship(self, items: list[SpoolItem], acked: list[str]) -> bool:
        """Send items in order; stop at the first answer that says the collector is not taking any."""
        for item in items:
            result = self.shipper.report(item.payload)
            if result.outcome == Outcome.ACKED:
                acked.append(item.key)
                self.counts["crashes_shipped"] += 1
                self._reachable()
                log.info(
                    "report shipped key=%s kind=%s crash_id=%s duplicate=%s attempts=%d",
                    item.key,
                    item.kind,
                    result.detail,
                    result.duplicate,
                    item.attempts + 1,
                )
                continue
            self.counts[f"ship_failures:{result.code}"] += 1
            if result.outcome == Outcome.REFUSED:
                self.spool.drop(item.key, result.code, result.detail)
                continue
            if result.outcome in (Outcome.THROTTLED, Outcome.UNREACHABLE):
                # Not this report's fault: it keeps its place, the whole outbox waits.
                if result.outcome == Outcome.THROTTLED:
                    self._reachable()  # it answered: up, just busy
                self._pause(result, down=result.outcome == Outcome.UNREACHABLE)
                return False
            delay = self.spool.retry_later(item.key, f"{result.code}: {result.detail}")
            log.warning("report not accepted yet key=%s code=%s retry_in=%.1fs", item.key, result.code, delay)
        return True

    def _saved_user_faults(self) -> tuple[tuple[str, int], ...]:
        """The daemon's user-fault counts from the spool (agent.service); () when none or unreadable."""
        text = self.spool.get_meta(USER_FAULTS)
        if not text:
            return ()
        try:
            data = json.loads(text)
        except ValueError:
            log.warning("user fault counts unreadable in spool reason=bad-json")
            return ()
        if not isinstance(data, dict):
            return ()
        counts = {
            str(k): v for k, v in data.items() if isinstance(v, int) and not isinstance(v, bool) and v > 0
        }
        return tuple(sorted(bound_counts(counts).items()))

    def _heartbeat(self) -> bool:
        """Send the inventory; True when the collector answered (then a pause is over)."""
        inventory = dataclasses.replace(
            self.inventory,
            user_faults=self._saved_user_faults(),
            # The live log's counts (this boot, the daemon's file) and the captured logs' (earlier
            # boots, the spool): different boots, so their sum counts no event twice.
            hardware_errors=merge_counts(
                read_hardware_errors(self.config.state_dir), self.spool.capture_hardware_errors()
            ),
        )
        result = self.shipper.heartbeat(inventory)
        if result.outcome == Outcome.ACKED:
            self.counts["heartbeats"] += 1
            # The daemon schedules the next one from this (bounded by [heartbeat] min/max).
            self.spool.set_meta(HEARTBEAT_SUGGESTED, str(max(0, result.interval_seconds)))
            self._reachable()
            return True
        if result.outcome != Outcome.THROTTLED:
            self.spool.set_meta(COLLECTOR_UP, "0")
        log.warning("heartbeat failed code=%s detail=%s", result.code, result.detail)
        return False


def run_worker(
    config: AgentConfig,
    *,
    heartbeat: bool,
    linger: float = 0.0,
    shipper_factory: Callable[[AgentConfig], Shipper] = GrpcShipper,
    analyzer: Analyzer | None = None,
) -> int:
    """One worker run against the state dir's spool; the exit status for the daemon."""
    counts: collections.Counter[str] = collections.Counter()

    def dropped(n: int, reason: DropReason) -> None:
        counts[f"spool_dropped:{reason}"] += n

    config.state_dir.mkdir(parents=True, exist_ok=True)
    with open(config.state_dir / "worker.lock", "wb") as lock:
        # One worker at a time: one left running by a daemon that was killed -9 finishes first,
        # so no job is counted as attempted by two live workers.
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _run_locked(config, heartbeat, linger, shipper_factory, analyzer, counts, dropped)


def _run_locked(
    config: AgentConfig,
    heartbeat: bool,
    linger: float,
    shipper_factory: Callable[[AgentConfig], Shipper],
    analyzer: Analyzer | None,
    counts: collections.Counter[str],
    dropped: Callable[[int, DropReason], None],
) -> int:
    spool = open_spool(config, dropped)
    try:
        shipper = shipper_factory(config) if config.collector else NoCollector()
        try:
            worker = Worker(config, spool, shipper, analyzer)
            worker.counts = counts
            worker.run(heartbeat=heartbeat, linger=linger)
        finally:
            shipper.close()
    finally:
        spool.close()
    return EXIT_DISK_FULL if worker.disk_full else 0


class ThreadWorker:
    """A worker in a thread of this process (tests, embedding): the daemon's launcher interface."""

    def __init__(
        self,
        shipper_factory: Callable[[AgentConfig], Shipper],
        analyzer: Analyzer | None = None,
    ) -> None:
        self._shipper_factory = shipper_factory
        self._analyzer = analyzer
        self.runs = 0

    def __call__(self, config: AgentConfig, heartbeat: bool, linger: float) -> _ThreadHandle:
        self.runs += 1
        return _ThreadHandle(
            lambda: run_worker(
                config,
                heartbeat=heartbeat,
                linger=linger,
                shipper_factory=self._shipper_factory,
                analyzer=self._analyzer,
            )
        )


class _ThreadHandle:
    def __init__(self, target: Callable[[], int]) -> None:
        self.returncode: int | None = None
        self._done = threading.Event()

        def body() -> None:
            try:
                self.returncode = target()
            except Exception:
                log.exception("worker failed")
                self.returncode = 1
            finally:
                self._done.set()

        self._thread = threading.Thread(target=body, name="worker", daemon=True)
        self._thread.start()

    def poll(self) -> int | None:
        return self.returncode if self._done.is_set() else None

    def wait(self, timeout: float | None = None) -> int | None:
        self._done.wait(timeout)
        return self.poll()

    def kill(self) -> None:
        """A thread cannot be killed; the daemon only kills workers on timeout, which tests avoid."""

    def started(self) -> bool:
        return True


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m agent.worker [--heartbeat]`, the effective configuration as JSON on stdin."""
    from agent.logs import configure_logging

    parser = argparse.ArgumentParser(prog="crashfleet-agent-worker")
    parser.add_argument("--heartbeat", action="store_true", help="also send a heartbeat")
    parser.add_argument("--linger", type=float, default=0.0, help="seconds to wait for a job still settling")
    args = parser.parse_args(argv)
    config = config_from_json(sys.stdin.read())
    configure_logging(config.log_level)
    return run_worker(config, heartbeat=args.heartbeat, linger=min(max(args.linger, 0.0), 60.0))


if __name__ == "__main__":
    sys.exit(main())
