"""sd_notify over a real AF_UNIX datagram socket, path and abstract."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO
from wire.sdnotify import Notifier, watchdog_interval


def receive(sock: socket.socket) -> str:
    sock.settimeout(2)
    return sock.recv(4096).decode()


def test_path_socket_gets_ready_status_watchdog_stopping(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        assert notifier.enabled
        assert notifier.ready("watching")
        assert receive(sock) == "READY=1\nSTATUS=watching"
        notifier.watchdog()
        assert receive(sock) == "WATCHDOG=1"
        notifier.reloading()
        assert receive(sock) == "RELOADING=1"
        notifier.stopping()
        assert receive(sock) == "STOPPING=1"


def test_abstract_socket_name() -> None:
    name = f"crashfleet-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        Notifier({"NOTIFY_SOCKET": f"@{name}"}).status("x")
        assert receive(sock) == "STATUS=x"


def test_no_socket_is_a_silent_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready("x") is False


def test_gone_socket_does_not_raise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "absent")}).watchdog() is False
    assert "sd_notify failed" in caplog.text
    assert not Notifier({"NOTIFY_SOCKET": "relative"}).enabled


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}) is None


def test_collector_does_not_import_the_agent() -> None:
    """sd_notify lives in the light `crashfleet` package: the collector daemon needs no agent code."""
    probe = (
        "import sys, collector.server, wire.sdnotify\n"
        "print(sorted(m for m in sys.modules if m == 'agent' or m.startswith('agent.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=REPO, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
