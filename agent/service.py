"""The agent daemon: watch, queue work, run the worker, talk to systemd, serve metrics.

The daemon is the small, always-running half. It never imports the analyzer or grpc: inotify
events and the start-up scan become capture jobs, live-log blocks become kmsg jobs, all in the
spool; when there is work — jobs, reports due, a heartbeat due — it starts the worker
(`agent.worker`, a short-lived process) and wakes when it exits. An idle agent is a sleeping
thread, an inotify watch, a kmsg poll and a metrics socket.

Each turn of the loop: apply a pending reload, queue what became ready, collect a finished
worker's counts into the metrics, start a worker if there is work and none runs, ping the
systemd watchdog, refresh gauges; then sleep until the next deadline (a capture settling, a
retry, a heartbeat, a watchdog ping) or until something wakes it (an inotify event, a kmsg
block, the worker exiting, a signal).

SIGTERM drains: stop watching, queue what the kmsg reader still held, let a running worker finish
(bounded), exit 0 — queued jobs and unshipped reports wait in the spool for the next start.
SIGHUP re-reads the configuration; the next worker runs with it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from agent.config import AgentConfig, ConfigError, check_tls, config_to_json, load_config, parse_address
from agent.heartbeat import heartbeat_interval
from agent.hwcount import HardwareErrorFile
from agent.kmsg import KmsgReader
from agent.layouts import Root
from agent.logs import configure_logging
from agent.metrics import AgentMetrics
from agent.spool import (
    COLLECTOR_UP,
    EXIT_DISK_FULL,
    HEARTBEAT_SUGGESTED,
    PAUSED_UNTIL,
    USER_FAULTS,
    Backoff,
    Spool,
    SpoolFull,
    open_spool,
)
from agent.warm import WarmWorker
from agent.watch import CaptureWatcher
from analysis.userfaults import bound_counts
from wire.sdnotify import Notifier, watchdog_interval

__all__ = ["AgentService", "SubprocessWorker", "WorkerHandle", "WorkerLauncher", "configure_logging"]

log = logging.getLogger(__name__)

PRELAUNCH_SECONDS = 2.0  # start a worker this long before a capture finishes settling
DRAIN_SECONDS = 20.0  # SIGTERM: how long a running worker may finish (systemd's TimeoutStopSec is 30 s)
FULL_RETRY_SECONDS = 5.0  # state directory full: queue held jobs again / look for room this often
FULL_RETRY_MAX_SECONDS = 60.0  # ... and start a worker for queued jobs at most this far apart


class WorkerHandle(Protocol):
    """A running worker: a subprocess.Popen, or a thread in tests."""

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int | None: ...

    def kill(self) -> None: ...

    def started(self) -> bool:
        """Running the work (a warm worker's run may wait for its zygote's imports first)."""
        ...


WorkerLauncher = Callable[[AgentConfig, bool, float], WorkerHandle]  # (config, heartbeat, linger)


class SubprocessWorker:
    """Starts `python -m agent.worker`, the effective configuration as JSON on its stdin."""

    def __call__(self, config: AgentConfig, heartbeat: bool, linger: float) -> WorkerHandle:
        argv = [sys.executable, "-m", "agent.worker", "--linger", f"{linger:.3f}"]
        argv += ["--heartbeat"] if heartbeat else []
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, close_fds=True)
        assert process.stdin is not None
        try:
            process.stdin.write(config_to_json(config).encode())
            process.stdin.close()
        except BrokenPipeError:
            pass  # it died at once; poll() tells
        return _PopenHandle(process)


class _PopenHandle:
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process

    def poll(self) -> int | None:
        return self._process.poll()

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        self._process.kill()
        self._process.wait()

    def started(self) -> bool:
        return True


class AgentService:
    """The daemon. `run()` blocks until `stop()` (or SIGTERM) and returns the exit status."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        config_path: Path | None = None,
        overrides: Mapping[str, Any] | None = None,
        launcher: WorkerLauncher | None = None,
        notifier: Notifier | None = None,
        metrics: AgentMetrics | None = None,
        environ: Mapping[str, str] = os.environ,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._config_path = config_path
        self._overrides = dict(overrides or {})
        self._launcher = launcher  # None: warm or cold subprocess workers, as [agent] warm_worker says
        self._cold = SubprocessWorker()
        self._warm = launcher if isinstance(launcher, WarmWorker) else None
        self._notifier = notifier if notifier is not None else Notifier(environ)
        self.metrics = metrics if metrics is not None else AgentMetrics()
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.started = threading.Event()  # set once start() finished: READY=1 was sent
        self._kmsg_blocks: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._kmsg: KmsgReader | None = None
        self._user_faults: dict[str, int] = {}  # program -> faults this boot (kmsg thread writes, lock)
        self._user_faults_lock = threading.Lock()
        self._user_faults_saved: dict[str, int] = {}
        self._worker: WorkerHandle | None = None
        self._worker_started = 0.0  # when the running worker was launched, then when it started
        self._worker_running = False  # ... it started (the timeout counts from then)
        self._worker_heartbeat = False  # the running worker sends a heartbeat
        self._worker_failures = 0
        self._no_worker_before = 0.0
        self._unqueued: dict[str, tuple[str, str]] = {}  # jobs the full disk did not take yet
        self._state_full = False
        self._next_room_check = 0.0
        self._prelaunched_for: float | None = None
        self._next_heartbeat = 0.0
        self._watchdog_every = watchdog_interval(environ)
        self._next_watchdog = 0.0
        self.metrics_port: int | None = None
        self.workers_run = 0
        self.spool: Spool
        self.watcher: CaptureWatcher

    # --- life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Open everything; a ConfigError or SpoolError here is a start-up error."""
        config = self.config
        # Scratch holds unpacked apport VmCores; what a killed worker left there is garbage.
        shutil.rmtree(config.state_dir / "scratch", ignore_errors=True)
        (config.state_dir / "scratch").mkdir(parents=True, exist_ok=True)
        self.spool = open_spool(
            config, lambda n, reason: self.metrics.spool_dropped.labels(reason).inc(n), clock=self._clock
        )
        if not self.spool.ensure_reserve() or self.spool.full:
            self._set_state_full(True)
        try:
            # An agent starting with a spool tries it at once: whatever pause or per-report
            # backoff the last run left (a collector outage, a restart loop) does not carry over.
            self.spool.set_meta(PAUSED_UNTIL, "0")
            self.spool.due_now()
        except SpoolFull:
            self._set_state_full(True)
        if not config.collector:
            log.warning("no collector configured: crashes are spooled, not shipped")
        if config.metrics_listen:
            host, port = parse_address(config.metrics_listen)
            self.metrics_port = self.metrics.serve(host, port)
        self.watcher = CaptureWatcher(
            _watched_roots(config),
            settle_seconds=config.settle_seconds,
            signalled_settle_seconds=config.signalled_settle_seconds,
            incomplete_timeout_seconds=config.incomplete_timeout_seconds,
            is_handled=lambda key, identity: self.spool.capture_identity(key) == identity,
            wake=self._wake.set,
            clock=self._clock,
        )
        present = [c.key for c in self.watcher.start()]
        # A root that cannot be listed looks empty: forgetting its handled captures would ship
        # them all again once it is readable, so nothing is forgotten until every root is.
        if not self.watcher.unreadable():
            forgotten = self.spool.forget_captures(present)
            if forgotten:
                log.info("forgot handled captures that were deleted count=%d", forgotten)
        if config.kmsg_enabled:
            self._start_kmsg()
        if self._launcher is None and config.warm_worker:
            self._warm = WarmWorker()
        if self._warm is not None:
            self._warm.start()  # warm from the start: the first crash is read without an interpreter start
        self._update_gauges()
        self._notifier.ready(self._status())
        self.started.set()
        log.info(
            "agent started host=%s collector=%s crash_dir=%s pstore_dir=%s pstore_fs_dir=%s state_dir=%s kmsg=%s",
            config.hostname,
            config.collector or "-",
            config.crash_dir,
            config.pstore_dir,
            config.pstore_fs_dir or "off",
            config.state_dir,
            config.kmsg_path if config.kmsg_enabled else "off",
        )

    def run(self, *, install_signals: bool = True) -> int:
        """Start, loop until stopped, drain. Signals need the main thread; tests pass False."""
        if install_signals:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
            signal.signal(signal.SIGHUP, self._on_signal)
        try:
            self.start()
            while not self._stop.is_set():
                self._wake.clear()
                timeout = self.step()
                if self._stop.is_set():
                    break
                self._wake.wait(timeout)
        finally:
            self._drain()
        return 0

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def reload(self) -> None:
        self._reload.set()
        self._wake.set()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.reload()
        else:
            self.stop()

    def _drain(self) -> None:
        """Stop cleanly; each step tolerates a start() that failed half way."""
        log.info("agent stopping: draining")
        self._notifier.stopping()
        if hasattr(self, "watcher"):
            self.watcher.stop()
        if self._kmsg is not None:
            self._kmsg.stop()
            self._kmsg = None
        if hasattr(self, "spool"):
            self._queue_kmsg_blocks()
            if self._worker is not None and self._worker.wait(DRAIN_SECONDS) is None:
                log.warning("worker still busy at shutdown, stopped; its jobs stay queued")
                self._worker.kill()
            self._reap_worker()
            if self._warm is not None:
                self._warm.close()
            self._update_gauges()
            if self._unqueued:
                kmsg = sum(1 for kind, _ in self._unqueued.values() if kind == "kmsg")
                log.error(
                    "state directory full at shutdown: jobs not queued jobs=%d live_log_blocks_lost=%d"
                    " (captures are found again by the next start-up scan)",
                    len(self._unqueued),
                    kmsg,
                )
        self.metrics.stop()
        if hasattr(self, "spool"):
            self.spool.close()
        log.info("agent stopped")

    def now(self) -> float:
        return self._clock()

    # --- one turn of the loop -----------------------------------------------------------------

    def step(self) -> float | None:
        """Do everything that is due; return how long to sleep (None: until woken)."""
        if self._reload.is_set():
            self._reload.clear()
            self._apply_reload()
        for ready in self.watcher.poll():
            capture = ready.assessment.capture
            key, data = _capture_job(capture.rule.root, capture.path, ready.failure)
            self._add_job(key, "capture", data)
        self._queue_kmsg_blocks()
        self._retry_full()
        self._save_user_faults()
        self._reap_worker()
        self._start_worker_if_needed()
        self._watchdog_if_due()
        self._update_gauges()
        deadlines = [d for d in (self.watcher.next_deadline(), self._next_heartbeat) if d]
        if self._worker is not None:
            deadlines.append(self._worker_started + self.config.worker_timeout_seconds)
        else:
            next_due = self.spool.next_due()
            if next_due is not None:
                deadlines.append(max(next_due, self._paused_until(), self._no_worker_before))
            if self.spool.job_count():
                deadlines.append(self._no_worker_before)
        if self._watchdog_every is not None:
            deadlines.append(self._next_watchdog)
        if self._state_full or self._unqueued:
            deadlines.append(self._next_room_check)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - self.now()) + 0.01

    def _add_job(self, key: str, kind: str, data: str) -> None:
        """Queue a job; on a full state directory hold it in memory and queue it when there is room."""
        if not self._unqueued:
            try:
                self.spool.add_job(key, kind, data)
                return
            except SpoolFull:
                self._set_state_full(True)
        self._unqueued[key] = (kind, data)

    def _retry_full(self) -> None:
        """Every FULL_RETRY_SECONDS while the state directory is full: queue held jobs, look for room."""
        if not (self._state_full or self._unqueued) or self.now() < self._next_room_check:
            return
        self._next_room_check = self.now() + FULL_RETRY_SECONDS
        while self._unqueued:
            key, (kind, data) = next(iter(self._unqueued.items()))
            try:
                self.spool.add_job(key, kind, data)
            except SpoolFull:
                return
            del self._unqueued[key]
        if self.spool.ensure_reserve():
            self._set_state_full(False)

    def _set_state_full(self, full: bool) -> None:
        if full and not self._state_full:
            log.warning(
                "state directory full: shipping and deleting spooled reports goes on, new crashes wait"
                " for room path=%s",
                self.config.state_dir,
            )
            self.metrics.state_dir_full_events.inc()
            self._next_room_check = self.now() + FULL_RETRY_SECONDS
        elif not full and self._state_full:
            log.info("state directory has room again path=%s", self.config.state_dir)
        self._state_full = full
        self.metrics.state_dir_full.set(1 if full else 0)

    def _paused_until(self) -> float:
        return float(self.spool.get_meta(PAUSED_UNTIL) or 0.0)

    def heartbeat_interval(self) -> float:
        """The configured interval, or the collector's last suggestion within the configured bounds."""
        try:
            suggested = float(self.spool.get_meta(HEARTBEAT_SUGGESTED) or 0.0)
        except ValueError:
            suggested = 0.0
        config = self.config
        return heartbeat_interval(
            config.heartbeat_interval_seconds,
            suggested,
            config.heartbeat_min_interval_seconds,
            config.heartbeat_max_interval_seconds,
        )

    def _start_worker_if_needed(self) -> None:
        if self._worker is not None or self._stop.is_set():
            return
        now = self.now()
        if now < self._no_worker_before:
            return
        heartbeat = bool(self.config.collector) and now >= self._next_heartbeat
        due = self.spool.next_due()
        # A capture settling within PRELAUNCH_SECONDS: start the worker now; it loads the analyzer
        # while the settle time runs out and picks the job up (process start and imports are off
        # the dump-complete -> acknowledged path).
        settles = self.watcher.next_deadline()
        linger = 0.0
        if settles is not None and settles - now <= PRELAUNCH_SECONDS and settles != self._prelaunched_for:
            linger = (
                settles - now + 0.25
            )  # once per settle deadline: a worker that waited in vain is not redone
        work = (
            self.spool.job_count() > 0
            or heartbeat
            or linger > 0
            or (
                bool(self.config.collector) and due is not None and due <= now and now >= self._paused_until()
            )
        )
        if not work:
            return
        if heartbeat:
            self._next_heartbeat = now + self.heartbeat_interval()
        if linger > 0:
            self._prelaunched_for = settles
        try:
            handle = self._launch()(self.config, heartbeat, max(0.0, linger))
        except OSError as exc:
            log.error("cannot start the worker error=%s", exc)
            self._worker_failed()
            return
        self._worker = handle
        self._worker_started = now
        self._worker_running = False
        self._worker_heartbeat = heartbeat
        self.workers_run += 1
        threading.Thread(target=self._await_worker, args=(handle,), name="worker-wait", daemon=True).start()

    def _launch(self) -> WorkerLauncher:
        if self._launcher is not None:
            return self._launcher
        if self._warm is not None:
            return self._warm
        return self._cold

    def _await_worker(self, handle: WorkerHandle) -> None:
        handle.wait()
        self._wake.set()

    def _reap_worker(self) -> None:
        """A finished worker: its counts into the metrics; a failed or hung one delays the next."""
        if self._worker is None:
            return
        rc = self._worker.poll()
        timeout = self.config.worker_timeout_seconds
        if rc is None:
            if not self._worker_running and self._worker.started():
                # A warm worker's first run may have waited for its zygote's imports: the
                # timeout is for the work (the wait is bounded by one timeout of its own).
                self._worker_running = True
                self._worker_started = self.now()
            if self.now() - self._worker_started < timeout:
                return
            log.error("worker hung, killed seconds=%.0f; its job will be retried", timeout)
            self._worker.kill()
            rc = -9
        self._worker = None
        if self._worker_heartbeat:
            # The reply may have suggested another interval: schedule from when this one was sent.
            interval = self.heartbeat_interval()
            self._next_heartbeat = self._worker_started + interval
            log.debug("next heartbeat in seconds=%.0f", interval)
        try:
            self.metrics.apply_counts(self.spool.take_counters())
        except SpoolFull:
            self._set_state_full(True)
        up = self.spool.get_meta(COLLECTOR_UP)
        if up is not None:
            self.metrics.up.set(float(up))
        if rc == 0:
            self._worker_failures = 0
        elif rc == EXIT_DISK_FULL:
            # Not a failure of the worker: it shipped what it could; queued jobs wait for room.
            self._set_state_full(True)
            delay = min(FULL_RETRY_MAX_SECONDS, FULL_RETRY_SECONDS * 2.0 ** min(self._worker_failures, 10))
            self._worker_failures += 1
            self._no_worker_before = self.now() + delay
        else:
            log.error("worker failed status=%s", rc)
            self._worker_failed()

    def _worker_failed(self) -> None:
        delay = self.spool.backoff.delay(self._worker_failures)
        self._worker_failures += 1
        self._no_worker_before = self.now() + delay

    # --- live kernel log ----------------------------------------------------------------------

    def _start_kmsg(self) -> None:
        self._kmsg = KmsgReader(
            self.config.kmsg_path,
            self._on_kmsg_block,
            quiet_seconds=self.config.kmsg_quiet_seconds,
            on_user_fault=self._on_user_fault,
            on_record=HardwareErrorFile(self.config.state_dir).feed,
        )
        self._kmsg.start()

    def _on_user_fault(self, program: str) -> None:
        with self._user_faults_lock:
            self._user_faults[program] = self._user_faults.get(program, 0) + 1

    def _save_user_faults(self) -> None:
        """Leave the bounded counts in the spool for the worker's next heartbeat (when they changed).

        The reader starts at the ring buffer's oldest record, so after a restart the counts are
        rebuilt from the kernel log rather than added to the saved ones: the saved value is replaced."""
        with self._user_faults_lock:
            if self._user_faults == self._user_faults_saved:
                return
            counts = dict(self._user_faults)
        try:
            self.spool.set_meta(USER_FAULTS, json.dumps(bound_counts(counts), sort_keys=True))
        except SpoolFull:
            return  # kept in memory; saved on a later step, once there is room
        self._user_faults_saved = counts

    def _on_kmsg_block(self, block: str) -> None:
        self._kmsg_blocks.put(block)
        self._wake.set()

    def _queue_kmsg_blocks(self) -> None:
        while True:
            try:
                block = self._kmsg_blocks.get_nowait()
            except queue.Empty:
                return
            key, data = _kmsg_job(block)
            self._add_job(key, "kmsg", data)

    # --- systemd, metrics ---------------------------------------------------------------------

    def _watchdog_if_due(self) -> None:
        if self._watchdog_every is None:
            return
        now = self.now()
        if now >= self._next_watchdog:
            self._notifier.watchdog()
            self._next_watchdog = now + self._watchdog_every

    def _update_gauges(self) -> None:
        stats = self.spool.stats()
        self.metrics.spool_depth.set(stats.depth)
        self.metrics.spool_bytes.set(stats.bytes)
        oldest = 0.0 if stats.oldest_created is None else max(0.0, self.now() - stats.oldest_created)
        self.metrics.spool_oldest_age.set(oldest)
        unreadable = self.watcher.unreadable() if hasattr(self, "watcher") else {}
        for root, _directory in _watched_roots(self.config):
            self.metrics.watch_unreadable.labels(root).set(1 if root in unreadable else 0)
        if self.config.metrics_textfile_dir is not None:
            try:
                self.metrics.write_textfile(self.config.metrics_textfile_dir)
            except OSError as exc:
                log.warning(
                    "cannot write metrics textfile dir=%s error=%s",
                    self.config.metrics_textfile_dir,
                    exc.strerror,
                )

    def _status(self) -> str:
        stats = self.spool.stats()
        watched = ", ".join(str(directory) for _root, directory in _watched_roots(self.config))
        status = f"watching {watched}; {stats.depth} report(s) spooled"
        for directory, reason in self.watcher.unreadable().values():
            status += f"; cannot read {directory}: {reason}"
        return status

    # --- reload -------------------------------------------------------------------------------

    def _apply_reload(self) -> None:
        """SIGHUP: re-read the file; a bad file keeps the running config (and says why)."""
        self._notifier.reloading()
        try:
            new = load_config(self._config_path, self._overrides)
            check_tls(new)
        except ConfigError as exc:
            log.error("reload rejected, keeping the running configuration error=%s", exc)
            self._notifier.status(f"reload rejected: {exc}")
            return
        old = self.config
        restart_only = (
            "warm_worker",
            "state_dir",
            "crash_dir",
            "pstore_dir",
            "pstore_fs_dir",
            "metrics_listen",
            "kmsg_path",
        )
        for name in restart_only:
            if getattr(old, name) != getattr(new, name):
                log.warning("reload cannot change %s; restart the agent to apply it", name)
                new = dataclasses.replace(new, **{name: getattr(old, name)})
        if new.collector != old.collector:
            # A new collector: whatever the old one's outage scheduled does not apply.
            self.spool.set_meta(PAUSED_UNTIL, "0")
        self.spool.max_bytes = new.spool_max_bytes
        self.spool.max_age_seconds = new.spool_max_age_seconds
        self.spool.backoff = Backoff(new.backoff_initial_seconds, new.backoff_max_seconds)
        self.watcher.settle_seconds = new.settle_seconds
        self.watcher.signalled_settle_seconds = min(new.settle_seconds, new.signalled_settle_seconds)
        self.watcher.incomplete_timeout_seconds = new.incomplete_timeout_seconds
        self.config = new
        if new.kmsg_enabled and self._kmsg is None:
            self._start_kmsg()
        elif not new.kmsg_enabled and self._kmsg is not None:
            self._kmsg.stop()
            self._kmsg = None
        logging.getLogger().setLevel(new.log_level.upper())
        self._next_heartbeat = min(self._next_heartbeat, self.now() + self.heartbeat_interval())
        self.spool.enforce_bounds()
        self.watcher.scan()
        self._notifier.status(self._status())
        log.info("configuration reloaded path=%s", self._config_path)


def _watched_roots(config: AgentConfig) -> list[tuple[Root, Path]]:
    """The directories captures appear in; the live pstore filesystem unless turned off or absent
    (no pstore backend, a container: that is normal, not worth the missing-directory warning)."""
    roots = [(Root.CRASH, config.crash_dir), (Root.PSTORE, config.pstore_dir)]
    if config.pstore_fs_dir is not None and config.pstore_fs_dir.is_dir():
        roots.append((Root.PSTORE_FS, config.pstore_fs_dir))
    return roots


def _capture_job(root: Root, path: Path, failure: str | None) -> tuple[str, str]:
    """(job key, job data) for a capture the watcher found ready (agent.worker reads it)."""
    return f"capture:{root}:{path}", json.dumps({"root": str(root), "path": str(path), "failure": failure})


def _kmsg_job(block: str) -> tuple[str, str]:
    """(job key, job data) for a live-log block; the same block twice is one job."""
    return f"kmsg:{hashlib.sha256(block.encode('utf-8', errors='replace')).hexdigest()}", block
