"""The warm worker: a pre-started process that has imported the analyzer and grpc, and forks a
fresh worker for each run.

Starting `python -m agent.worker` costs a new interpreter and the analyzer's and grpc's imports
(about 0.5 s of CPU) every time the daemon has work: for every capture, and for every heartbeat.
The daemon instead keeps one **zygote** (`python -m agent.warm`) running: it imports everything a
worker needs once, then waits on its stdin. For each run the daemon asks it for, it forks a child
that runs exactly what a cold worker runs (`agent.worker.run_worker`) and exits; the zygote
tells the daemon the child's pid when it starts and its exit status when it ends.

Why a fork per run and not one long-lived worker serving capture after capture: every run starts
from the zygote's memory image, which has never read a capture, so nothing one capture left
behind (a parser's cache, a half-built object, a leaked reference, memory fragmented by a huge
dump) can reach the next; the limits (`[agent] worker_memory_max_mb`, the timeout) are set on a
process that lives only for that run; a worker crashed by a hostile dump (a decompressor or
capstone segfault, the memory limit, a kill on timeout) costs that child alone, and the zygote,
which never reads input, forks the next one. A fork costs milliseconds.

The zygote stays single-threaded and never creates a grpc channel, opens the spool or reads a
capture, so forking it is safe; its children set a parent-death signal, so a zygote that dies
takes its running child with it (that run's jobs were counted as attempted and are retried). It
exits when the daemon closes its stdin, after its running children finished (a worker left by a
daemon killed with -9 finishes, as a cold one does; `worker.lock` keeps it alone).

Protocol, one JSON object per line. Daemon -> zygote: `{"run": {"config": {...}, "heartbeat":
bool, "linger": float}}`, `{"kill": pid}`. Zygote -> daemon: `{"ready": pid}` once imported,
`{"started": pid}`, `{"exited": pid, "status": rc}` (rc as `subprocess.Popen.returncode`: the exit
status, or minus the signal that killed it).

This module is imported by the daemon: only the standard library at module level.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

__all__ = ["WarmHandle", "WarmWorker", "main"]

log = logging.getLogger("agent.warm")  # also under `python -m agent.warm`

# What a worker imports, the late imports of the dump readers included (a child that had to
# import them would pay it on every dump): the analyzer with capstone and the title rules, the
# dump readers and their page codecs, grpc and the wire code.
WARM_MODULES = (
    "agent.worker",
    "agent.ship",
    "analysis.signature",
    "analysis.sources",
    "analysis.vmcore",
    "analysis.vmcore.faultframe",
    "analysis.vmcore.sysinfo",
    "bz2",
    "lzma",
    "cramjam",
    "lzallright",
)
KILL_WAIT_SECONDS = 10.0  # how long kill() waits for the zygote to report the child gone
_PR_SET_PDEATHSIG = 1


class WarmHandle:
    """One run in a zygote's child: the daemon's WorkerHandle (poll, wait, kill)."""

    def __init__(self, owner: WarmWorker) -> None:
        self._owner = owner
        self.pid: int | None = None  # the child's, once the zygote started it
        self.returncode: int | None = None
        self._done = threading.Event()
        self._started = threading.Event()

    def poll(self) -> int | None:
        return self.returncode if self._done.is_set() else None

    def wait(self, timeout: float | None = None) -> int | None:
        self._done.wait(timeout)
        return self.poll()

    def kill(self) -> None:
        """SIGKILL the child (through the zygote, which alone knows the pid is still its child)."""
        if self._done.is_set():
            return
        if self.pid is not None and self._owner.send({"kill": self.pid}) and self.wait(KILL_WAIT_SECONDS) is not None:
            return
        # Not started (the zygote is still importing or wedged) or the zygote does not answer:
        # kill the zygote; its child dies with it (parent-death signal).
        self._owner.discard_zygote()
        self._done.wait(KILL_WAIT_SECONDS)

    def started(self) -> bool:
        return self._started.is_set()

    def _set_started(self, pid: int) -> None:
        self.pid = pid
        self._started.set()

    def _set_exited(self, status: int) -> None:
        if not self._done.is_set():
            self.returncode = status
            self._done.set()


class WarmWorker:
    """The daemon's launcher for warm workers: keeps a zygote, asks it for a child per run.

    The zygote is started with the launcher's first run, and again after one died: that run waits
    for its imports (it would have paid them as a cold worker too), the ones after it do not.
    `interpreters_started` counts the zygotes, `runs` the children asked for.
    """

    def __init__(self, *, analyzer: str | None = None, python: str = sys.executable) -> None:
        self._analyzer = analyzer  # "module:function" instead of the analysis library (tests)
        self._python = python
        self._lock = threading.Lock()
        self._zygote: subprocess.Popen[bytes] | None = None
        self._pending: list[WarmHandle] = []  # asked for, not started yet (in request order)
        self._running: dict[int, WarmHandle] = {}
        self.zygote_pid: int | None = None
        self.ready = threading.Event()  # the current zygote has finished importing
        self.interpreters_started = 0
        self.runs = 0

    def __call__(self, config: Any, heartbeat: bool, linger: float) -> WarmHandle:
        from agent.config import config_to_json

        handle = WarmHandle(self)
        request = {"run": {"config": json.loads(config_to_json(config)), "heartbeat": heartbeat, "linger": linger}}
        with self._lock:
            if self._zygote is None or self._zygote.poll() is not None:
                self._start_zygote()
            self._pending.append(handle)
            self.runs += 1
        if not self.send(request):
            self._fail(handle, -int(signal.SIGKILL))
        return handle

    def start(self) -> None:
        """Start the zygote now (the daemon does at start-up, so the first crash finds it warm)."""
        with self._lock:
            if self._zygote is None or self._zygote.poll() is not None:
                self._start_zygote()

    def _start_zygote(self) -> None:
        argv = [self._python, "-m", "agent.warm"]
        if self._analyzer:
            argv += ["--analyzer", self._analyzer]
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True)
        self._zygote = process
        self.zygote_pid = process.pid
        self.ready.clear()
        self.interpreters_started += 1
        log.info("warm worker starting pid=%d", process.pid)
        threading.Thread(target=self._read, args=(process,), name="warm-worker", daemon=True).start()

    def send(self, message: dict[str, Any]) -> bool:
        with self._lock:
            zygote = self._zygote
            if zygote is None or zygote.stdin is None:
                return False
            try:
                zygote.stdin.write(json.dumps(message).encode() + b"\n")
                zygote.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                return False
        return True

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        """The zygote's messages, until it exits; then every run it still owed ends as killed."""
        assert process.stdout is not None
        for line in process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                log.error("warm worker said something unreadable line=%r", line[:200])
                continue
            if "ready" in message:
                log.info("warm worker ready pid=%s", message["ready"])
                if process is self._zygote:
                    self.ready.set()
            elif "started" in message:
                with self._lock:
                    handle = self._pending.pop(0) if self._pending else None
                    if handle is not None:
                        self._running[int(message["started"])] = handle
                if handle is not None:
                    handle._set_started(int(message["started"]))
            elif "exited" in message:
                with self._lock:
                    done = self._running.pop(int(message["exited"]), None)
                if done is not None:
                    done._set_exited(int(message["status"]))
        rc = process.wait()
        with self._lock:
            owed = list(self._running.values()) + (self._pending if process is self._zygote else [])
            self._running.clear()
            if process is self._zygote:
                self._pending = []
                self._zygote = None
        if owed or rc not in (0, None):
            log.error("warm worker exited status=%s runs_lost=%d; the next run starts a new one", rc, len(owed))
        for handle in owed:
            handle._set_exited(-int(signal.SIGKILL))

    def _fail(self, handle: WarmHandle, status: int) -> None:
        with self._lock:
            if handle in self._pending:
                self._pending.remove(handle)
        handle._set_exited(status)

    def discard_zygote(self) -> None:
        """Kill the zygote (a run that never started, or one it does not answer about)."""
        with self._lock:
            zygote = self._zygote
        if zygote is not None and zygote.poll() is None:
            log.error("warm worker not answering, killed pid=%d", zygote.pid)
            zygote.kill()

    def close(self) -> None:
        """End the zygote: its stdin closed, it exits once its running child finished."""
        with self._lock:
            zygote, self._zygote = self._zygote, None
        if zygote is None:
            return
        if zygote.stdin is not None:
            with contextlib.suppress(OSError):
                zygote.stdin.close()
        try:
            zygote.wait(KILL_WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            zygote.kill()
            zygote.wait()


# --- the zygote -------------------------------------------------------------------------------


def _warm_imports(analyzer_spec: str | None) -> Any:
    """Everything a worker imports, imported once; returns the analyzer its children use."""
    import importlib

    for module in WARM_MODULES:
        importlib.import_module(module)
    if analyzer_spec:
        module, _, name = analyzer_spec.partition(":")
        return getattr(importlib.import_module(module), name)
    return None


def _child(request: dict[str, Any], analyzer: Any, zygote_pid: int) -> int:
    """In the forked child: become a worker for one run (never returns into the zygote's loop)."""
    from agent.config import config_from_json
    from agent.logs import configure_logging
    from agent.worker import run_worker

    # The zygote's protocol pipes are not the worker's: stdin from /dev/null, stdout to stderr.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _set_parent_death_signal()
    if os.getppid() != zygote_pid:
        return 1  # the zygote died between the fork and the line above
    config = config_from_json(json.dumps(request["config"]))
    configure_logging(config.log_level)
    limit_memory(config.worker_memory_max_mb)
    linger = min(max(float(request.get("linger", 0.0)), 0.0), 60.0)
    return run_worker(config, heartbeat=bool(request.get("heartbeat")), linger=linger, analyzer=analyzer)


def limit_memory(megabytes: int) -> None:
    """`[agent] worker_memory_max_mb`: the worker's address space limit (0: none).

    Past it an allocation fails: Python raises MemoryError (the capture becomes a failed capture
    with that reason), C code that cannot cope aborts the worker (the job is retried, then failed)."""
    if megabytes <= 0:
        return
    import resource

    limit = megabytes * 1024 * 1024
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (OSError, ValueError) as exc:
        log.warning("cannot limit the worker's memory max_mb=%d error=%s", megabytes, exc)


def _set_parent_death_signal() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _send(out: IO[bytes], message: dict[str, Any]) -> None:
    out.write(json.dumps(message).encode() + b"\n")
    out.flush()


def serve(analyzer_spec: str | None) -> int:
    """The zygote's loop: fork a child per run request, report starts and exits; EOF ends it."""
    analyzer = _warm_imports(analyzer_spec)
    out = sys.stdout.buffer
    stdin = sys.stdin.buffer.raw if hasattr(sys.stdin.buffer, "raw") else sys.stdin.buffer
    in_fd = stdin.fileno()
    os.set_blocking(in_fd, True)
    zygote_pid = os.getpid()
    _send(out, {"ready": zygote_pid})
    children: dict[int, int] = {}  # pidfd -> pid
    buffer = b""
    eof = False
    while not eof or children:
        readable, _, _ = select.select(([] if eof else [in_fd]) + list(children), [], [])
        for fd in readable:
            if fd in children:
                pid = children.pop(fd)
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                _send(out, {"exited": pid, "status": os.waitstatus_to_exitcode(status)})
                continue
            chunk = os.read(in_fd, 65536)
            if not chunk:
                eof = True
                continue
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                message = json.loads(line)
                if "run" in message:
                    out.flush()
                    pid = os.fork()
                    if pid == 0:
                        status = 1
                        try:
                            status = _child(message["run"], analyzer, zygote_pid)
                        except BaseException:
                            logging.getLogger("agent.worker").exception("worker failed")
                        finally:
                            logging.shutdown()
                            os._exit(status)
                    children[os.pidfd_open(pid)] = pid
                    _send(out, {"started": pid})
                elif "kill" in message:
                    target = int(message["kill"])
                    if target in children.values():  # not reaped yet: the pid is still our child
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(target, signal.SIGKILL)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m agent.warm [--analyzer MODULE:FUNCTION]`: the zygote (agent.service starts it)."""
    parser = argparse.ArgumentParser(prog="crashfleet-agent-warm-worker")
    parser.add_argument("--analyzer", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from agent.logs import configure_logging

    configure_logging("info")
    # SIGINT and SIGTERM sent to the whole group (Ctrl-C, kill of a process group) are for the
    # daemon, which drains: the zygote ends when the daemon closes its stdin. Its children restore
    # both, so a worker stops like a cold one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    started = time.monotonic()
    status = serve(args.analyzer)
    log.debug("warm worker done seconds=%.0f", time.monotonic() - started)
    return status


if __name__ == "__main__":
    sys.exit(main())
