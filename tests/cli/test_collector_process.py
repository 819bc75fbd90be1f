"""`crashfleet collector` as a process: serves, then stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crashfleet", "collector", "--db", f"sqlite:///{tmp_path}/c.db",
         "--listen", f"127.0.0.1:{port}", "--http", ""],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None
    log = proc.stderr.read()
    assert "collector serving" in log and "collector stopped" in log
    assert "Traceback" not in log


def test_bad_settings_exit_with_a_reason(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "crashfleet", "collector", "--db", "mysql://x/y", "--listen", "127.0.0.1:0",
         "--http", ""],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1 and "unknown database URL scheme" in result.stderr
    assert "Traceback" not in result.stderr and time.monotonic() - started < 60
    result = subprocess.run(
        [sys.executable, "-m", "crashfleet", "collector", "--listen", "nowhere"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and "listen must be HOST:PORT" in result.stderr
