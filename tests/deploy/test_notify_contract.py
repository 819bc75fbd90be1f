"""The contract the units' `Type=notify`, `NotifyAccess=main` and `WatchdogSec=` rely on, checked
against the real daemons: started the way systemd starts them (a $NOTIFY_SOCKET datagram socket,
$WATCHDOG_USEC and $WATCHDOG_PID), each one's main process must send READY=1 once serving,
WATCHDOG=1 repeatedly within the watchdog interval, and STOPPING=1 on SIGTERM before exiting 0.
Without this, systemd would kill a healthy daemon at its start timeout or watchdog deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

WATCHDOG_USEC = 2_000_000  # systemd's WatchdogSec=2s: pings expected about every second
READY_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _daemon_command(name: str, tmp_path: Path) -> list[str]:
    if name == "collector":
        return [
            sys.executable, "-m", "crashfleet", "collector", "--db", f"sqlite:///{tmp_path / 'c.db'}",
            "--listen", f"127.0.0.1:{_free_port()}", "--http", f"127.0.0.1:{_free_port()}",
        ]  # fmt: skip
    config = tmp_path / "agent.toml"
    config.write_text('[watch]\npstore_fs_dir = ""\n[kmsg]\nenabled = false\n[metrics]\nlisten = ""\n')
    for d in ("crash", "pstore", "state"):
        (tmp_path / d).mkdir()
    return [
        sys.executable, "-m", "crashfleet", "agent", "--config", str(config),
        "--crash-dir", str(tmp_path / "crash"), "--pstore-dir", str(tmp_path / "pstore"),
        "--state-dir", str(tmp_path / "state"), "--hostname", "notify-test",
    ]  # fmt: skip


def _messages(sock: socket.socket, until: float) -> list[dict[str, str]]:
    received = []
    while time.monotonic() < until:
        sock.settimeout(max(0.01, until - time.monotonic()))
        try:
            data, _ = sock.recvfrom(4096)
        except TimeoutError:
            break
        received.append(dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line))
    return received


@pytest.mark.parametrize("name", ["agent", "collector"])
def test_daemon_speaks_sd_notify(name: str, tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        # systemd sets WATCHDOG_PID to the main PID; the child learns its own PID only after the
        # fork, so the test omits it (sd_watchdog_enabled treats a missing WATCHDOG_PID as "mine").
        env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
        env.pop("WATCHDOG_PID", None)
        log = (tmp_path / "daemon.log").open("wb")
        proc = subprocess.Popen(
            _daemon_command(name, tmp_path), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path
        )
        try:
            ready_by = time.monotonic() + READY_TIMEOUT
            seen: list[dict[str, str]] = []
            while not any(m.get("READY") == "1" for m in seen):
                assert time.monotonic() < ready_by, f"{name}: no READY=1 within {READY_TIMEOUT:.0f}s: {seen}"
                assert proc.poll() is None, (
                    f"{name} exited {proc.returncode}: {(tmp_path / 'daemon.log').read_text()}"
                )
                seen += _messages(sock, time.monotonic() + 0.5)
            # Three watchdog intervals: a ping at least every interval (systemd kills after one).
            window = 3 * WATCHDOG_USEC / 1e6
            pings = [m for m in _messages(sock, time.monotonic() + window) if m.get("WATCHDOG") == "1"]
            assert len(pings) >= 3, f"{name}: {len(pings)} WATCHDOG=1 in {window:.0f}s"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
            tail = _messages(sock, time.monotonic() + 0.2)
            assert any(m.get("STOPPING") == "1" for m in tail), f"{name}: no STOPPING=1 on SIGTERM: {tail}"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
