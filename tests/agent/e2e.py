"""Real processes for the agent's end-to-end tests: a collector on loopback and agents beside it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from wire.v1 import query_service_pb2, query_service_pb2_grpc

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    env["PYTHONPATH"] = str(REPO)
    return env


class Collector:
    """`crashfleet collector` on loopback with a SQLite store in a temp dir."""

    def __init__(self, workdir: Path, port: int, *, unlimited: bool = False) -> None:
        self.workdir = workdir
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "collector.log"
        self.config = workdir / "collector.toml"
        # The per-host rate limit (a burst of 60, then 2/s) is the collector's policy; a test of
        # the agent's own guarantees with more reports than the burst lifts it.
        limits = (
            "reports_per_second = 100000.0\nreport_burst = 100000\n"
            "peer_reports_per_second = 100000.0\npeer_report_burst = 100000\n"
            if unlimited
            else ""
        )
        self.config.write_text(f"[limits]\n{limits}")

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "crashfleet",
                    "collector",
                    "--db",
                    f"sqlite:///{self.workdir}/collector.db",
                    "--config",
                    str(self.config),
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--http",
                    "127.0.0.1:0",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_env(),
                cwd=self.workdir,
            )
        wait_for(self._listening, f"the collector to listen (log: {self.log})", timeout=30)

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"collector exited rc={self.process.returncode}: {self.log.read_text()[-2000:]}"
            )
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def crashes(self) -> list[query_service_pb2.CrashSummary]:
        """Every stored crash (each idempotency key once), via the query API."""
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub = query_service_pb2_grpc.QueryServiceStub(channel)  # type: ignore[no-untyped-call]
            out: list[query_service_pb2.CrashSummary] = []
            token = ""
            while True:
                response = stub.ListCrashes(
                    query_service_pb2.ListCrashesRequest(page_size=1000, page_token=token), timeout=10
                )
                out.extend(response.crashes)
                token = response.next_page_token
                if not token:
                    return out


class Agent:
    """`crashfleet agent` as its own process, so it can be SIGTERMed, restarted and SIGKILLed."""

    def __init__(self, workdir: Path, collector_port: int, *, settle: float = 0.2) -> None:
        self.workdir = workdir
        self.crash_dir = workdir / "crash"
        self.pstore_dir = workdir / "pstore"
        self.pstore_fs_dir = workdir / "pstore-fs"
        self.state_dir = workdir / "state"
        for d in (self.crash_dir, self.pstore_dir, self.pstore_fs_dir, self.state_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "agent.toml"
        self.config.write_text(
            f"[watch]\nsettle_seconds = {settle}\nincomplete_timeout_seconds = 30\n"
            "[kmsg]\nenabled = false\n"
            '[metrics]\nlisten = ""\n'
            "[spool]\nbackoff_initial_seconds = 0.2\nbackoff_max_seconds = 1.0\n"
            "[collector]\ndeadline_seconds = 5\n"
            "[symbolize]\nenabled = false\n"
        )
        self.port = collector_port
        self.process: subprocess.Popen[bytes] | None = None
        self.log = workdir / "agent.log"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "crashfleet",
                    "agent",
                    "--config",
                    str(self.config),
                    "--crash-dir",
                    str(self.crash_dir),
                    "--pstore-dir",
                    str(self.pstore_dir),
                    "--pstore-fs-dir",
                    str(self.pstore_fs_dir),
                    "--state-dir",
                    str(self.state_dir),
                    "--collector",
                    f"127.0.0.1:{self.port}",
                    "--hostname",
                    "e2e-host",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_env(),
                start_new_session=True,  # its own process group: the daemon and its worker, like a unit's cgroup
            )
        wait_for(lambda: b"agent started" in self.log.read_bytes() or not self.alive(), "the agent to start")
        assert self.alive(), f"agent exited: {self.log.read_text()[-2000:]}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int:
        """SIGTERM and wait: the drain must finish and exit 0."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        rc = self.process.wait(30)
        self.process = None
        return rc

    def kill9(self) -> None:
        """SIGKILL the daemon and its worker at once, as systemd does to a unit's cgroup."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self.process = None

    def spool_depth(self) -> int:
        import sqlite3

        db = sqlite3.connect(f"file:{self.state_dir}/spool.sqlite3?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        finally:
            db.close()
