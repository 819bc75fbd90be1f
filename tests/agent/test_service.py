"""The daemon in-process with a fake collector: scan, settle, outage, dedupe, failures, reload, notify."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.config import AgentConfig, load_config, replace
from agent.heartbeat import HostInventory, heartbeat_interval
from agent.service import AgentService
from agent.ship import Outcome, ShipResult
from agent.worker import ThreadWorker
from analysis.model import CrashRecord
from analysis.signature import analyze
from tests.agent import builders
from wire.v1 import ingest_service_pb2

DATA = Path(__file__).resolve().parents[1] / "data" / "agent"
WARNING_LOG = (DATA / "logs" / "warning.log").read_bytes()
BOOT_ID = "0b5c3c5e-1a2b-4c3d-8e9f-001122334455"


class FakeCollector:
    """Records what arrives; `down` makes every call UNAVAILABLE. Dedupes by key like the real one."""

    def __init__(self) -> None:
        self.down = False
        self.received: dict[str, ingest_service_pb2.ReportCrashRequest] = {}
        self.calls = 0
        self.heartbeats: list[HostInventory] = []

    def report(self, payload: bytes) -> ShipResult:
        self.calls += 1
        if self.down:
            return ShipResult(Outcome.UNREACHABLE, "UNAVAILABLE", "connection refused")
        request = ingest_service_pb2.ReportCrashRequest.FromString(payload)
        duplicate = request.idempotency_key in self.received
        self.received.setdefault(request.idempotency_key, request)
        return ShipResult(Outcome.ACKED, "OK", "crash-1", duplicate=duplicate)

    def heartbeat(self, inventory: HostInventory) -> ShipResult:
        if self.down:
            return ShipResult(Outcome.UNREACHABLE, "UNAVAILABLE", "connection refused")
        self.heartbeats.append(inventory)
        return ShipResult(Outcome.ACKED, "OK")

    def close(self) -> None:
        return None

    def titles(self) -> list[str]:
        return sorted(r.signature.title for r in self.received.values())


def make_config(tmp_path: Path, **extra: str) -> AgentConfig:
    for name in ("crash", "pstore", "pstore-fs", "state", "dmi", "proc", "debug"):
        (tmp_path / name).mkdir(exist_ok=True)
    (tmp_path / "boot_id").write_text(BOOT_ID + "\n")
    (tmp_path / "dmi" / "sys_vendor").write_text("QEMU\n")
    (tmp_path / "dmi" / "product_name").write_text("Standard PC (i440FX + PIIX, 1996)\n")
    (tmp_path / "proc" / "modules").write_text(
        "crashme 16384 0 - Live 0x0000000000000000 (OE)\ne1000 1 0 - Live 0x0\n"
    )
    sections = {
        "watch": f'settle_seconds = 0.2\nincomplete_timeout_seconds = 1.5\ncrash_dir = "{tmp_path}/crash"\n'
        f'pstore_dir = "{tmp_path}/pstore"\npstore_fs_dir = "{tmp_path}/pstore-fs"',
        "agent": f'state_dir = "{tmp_path}/state"\nhostname = "host-1"',
        "collector": 'address = "127.0.0.1:1"',
        "spool": "backoff_initial_seconds = 0.05\nbackoff_max_seconds = 0.2",
        "kmsg": f'enabled = {extra.pop("kmsg", "false")}\npath = "{tmp_path}/kmsg"\nquiet_seconds = 0.2',
        "metrics": f'listen = ""\ntextfile_dir = "{tmp_path}/state"',
        "host": f'dmi_dir = "{tmp_path}/dmi"\nproc_dir = "{tmp_path}/proc"\nboot_id_path = "{tmp_path}/boot_id"',
        "heartbeat": "interval_seconds = 60",
        "symbolize": f'debug_roots = ["{tmp_path}/debug"]',
    }
    text = "".join(f"[{name}]\n{body}\n" for name, body in sections.items())
    (tmp_path / "agent.toml").write_text(text)
    return load_config(tmp_path / "agent.toml")


class Running:
    def __init__(self, service: AgentService) -> None:
        self.service = service
        self.thread = threading.Thread(target=lambda: service.run(install_signals=False), daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        assert self.service.started.wait(10), "agent did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.service.stop()
        self.thread.join(10)
        assert not self.thread.is_alive(), "agent did not stop"


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    yield FakeCollector()


def service_for(config: AgentConfig, collector: FakeCollector, **kwargs: object) -> AgentService:
    """The daemon with its worker in a thread of this process, talking to the fake collector."""
    analyzer = kwargs.pop("analyzer", analyze)
    return AgentService(
        config,
        config_path=config.state_dir.parent / "agent.toml",
        launcher=ThreadWorker(lambda _c: collector, analyzer),  # type: ignore[arg-type]
        environ=kwargs.pop("environ", {}),  # type: ignore[arg-type]
    )


def test_startup_scan_ships_old_captures_once_across_restarts(
    tmp_path: Path, collector: FakeCollector
) -> None:
    config = make_config(tmp_path)
    builders.debian(config.crash_dir, None, WARNING_LOG)
    (config.crash_dir / "kdump_lock").write_text("")
    service = service_for(config, collector)
    with Running(service):
        wait_for(lambda: len(collector.received) == 1, "the old capture to be shipped")
        wait_for(lambda: service.spool.stats().depth == 0, "the spool to empty")
    prom = (config.state_dir / "crashfleet_agent.prom").read_text()
    assert "crashfleet_agent_crashes_shipped_total 1.0" in prom
    assert 'crashfleet_agent_crashes_detected_total{source="debian"} 1.0' in prom
    calls = collector.calls
    with Running(service_for(config, collector)):
        time.sleep(0.5)
    assert collector.calls == calls, "a handled capture was shipped again after restart"
    (request,) = collector.received.values()
    assert request.signature.title == "WARNING in example_xmit"
    assert request.host.hostname == "host-1"
    assert request.host.hardware == "QEMU Standard PC (i440FX + PIIX, 1996)"
    assert list(request.host.modules) == ["crashme", "e1000"]
    assert request.source_path.endswith(f"dmesg.{builders.STAMP}")
    assert collector.heartbeats and collector.heartbeats[0].boot_id == BOOT_ID


def test_new_capture_is_seen_by_inotify_after_it_settles(tmp_path: Path, collector: FakeCollector) -> None:
    config = make_config(tmp_path)
    with Running(service_for(config, collector)):
        time.sleep(0.2)
        directory = config.crash_dir / "127.0.0.1-2026-11-25-12:00:01"
        directory.mkdir()
        (directory / "vmcore-dmesg-incomplete.txt").write_bytes(WARNING_LOG)
        time.sleep(0.6)
        assert collector.received == {}, "shipped while still incomplete"
        os.rename(directory / "vmcore-dmesg-incomplete.txt", directory / "vmcore-dmesg.txt")
        wait_for(lambda: len(collector.received) == 1, "the completed capture")


def test_outage_spools_then_ships_everything_once(tmp_path: Path, collector: FakeCollector) -> None:
    config = make_config(tmp_path)
    collector.down = True
    service = service_for(config, collector)
    with Running(service):
        for i in range(3):
            builders.debian(
                config.crash_dir, None, WARNING_LOG.replace(b"242", f"24{i}".encode()), f"20261125120{i}"
            )
        wait_for(lambda: service.spool.stats().depth == 3, "three spooled reports")
        wait_for(lambda: collector.calls >= 3, "retries during the outage")
        assert service.metrics.up._value.get() == 0
        collector.down = False
        wait_for(lambda: len(collector.received) == 3, "all three after recovery")
        wait_for(lambda: service.spool.stats().depth == 0, "the spool to empty")


def test_incomplete_capture_times_out_as_failed_capture(tmp_path: Path, collector: FakeCollector) -> None:
    config = make_config(tmp_path)
    directory = config.crash_dir / builders.STAMP
    directory.mkdir()
    (directory / "dump-incomplete").write_bytes(b"partial")
    (directory / f"dmesg.{builders.STAMP}").write_bytes(WARNING_LOG)
    with Running(service_for(config, collector)):
        wait_for(lambda: len(collector.received) == 1, "the failed-capture report", timeout=15)
    (request,) = collector.received.values()
    assert request.signature.title == "failed capture (debian)"
    assert "in progress: dump-incomplete" in request.signature.corrupted_reason
    assert "example_xmit" in request.log_excerpt


def test_analyzer_crash_costs_one_capture_not_the_daemon(tmp_path: Path, collector: FakeCollector) -> None:
    config = make_config(tmp_path)

    def flaky(data: bytes) -> list[CrashRecord]:
        if b"boom" in data:
            raise RuntimeError("analyzer bug")
        return analyze(data)

    builders.debian(config.crash_dir, None, WARNING_LOG + b"boom\n", "202611251201")
    builders.debian(config.crash_dir, None, WARNING_LOG, "202611251202")
    with Running(service_for(config, collector, analyzer=flaky)):
        wait_for(lambda: len(collector.received) == 2, "both captures")
    assert collector.titles() == ["WARNING in example_xmit", "failed capture (debian)"]
    failed = next(r for r in collector.received.values() if r.signature.corrupted)
    assert "internal error while reading: RuntimeError: analyzer bug" in failed.signature.corrupted_reason


def test_live_log_report_and_later_dump_of_same_boot_count_once(
    tmp_path: Path, collector: FakeCollector
) -> None:
    config = make_config(tmp_path, kmsg="true")
    (tmp_path / "kmsg").write_bytes((DATA / "kmsg" / "warning-and-hung-task.kmsg").read_bytes())
    service = service_for(config, collector)
    with Running(service):
        wait_for(lambda: len(collector.received) == 2, "the WARNING and the hung task from kmsg")
        kinds = sorted(r.signature.kind for r in collector.received.values())
        assert kinds == ["hung-task", "warning"]
        # The box then panics; the dump's log holds the same WARNING line, same boot timestamp.
        builders.debian(config.crash_dir, None, WARNING_LOG)
        wait_for(lambda: service.spool.capture_identity(f"crash:{builders.STAMP}") is not None, "the dump")
        wait_for(lambda: service.spool.stats().depth == 0, "the spool to empty")
    assert len(collector.received) == 2, "the dump's WARNING was counted a second time"


def test_bad_reload_keeps_running_config_and_good_reload_applies(
    tmp_path: Path, collector: FakeCollector
) -> None:
    config = make_config(tmp_path)
    service = service_for(config, collector)
    path = tmp_path / "agent.toml"
    with Running(service):
        time.sleep(0.2)
        good = path.read_text()
        path.write_text(good + "[bogus]\n")
        service.reload()
        time.sleep(0.3)
        assert service.config.settle_seconds == 0.2
        path.write_text(good.replace("settle_seconds = 0.2", "settle_seconds = 0.3"))
        service.reload()
        wait_for(lambda: service.watcher.settle_seconds == 0.3, "the reloaded settle time")


def test_sd_notify_ready_watchdog_and_stopping(tmp_path: Path, collector: FakeCollector) -> None:
    config = make_config(tmp_path)
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        environ = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"}
        with Running(service_for(config, collector, environ=environ)):
            assert sock.recv(4096).decode().startswith("READY=1\nSTATUS=watching")
            assert sock.recv(4096) == b"WATCHDOG=1"
            assert sock.recv(4096) == b"WATCHDOG=1"  # again after 0.1 s: the loop pings while idle
        messages = []
        while True:
            data = sock.recv(4096)
            messages.append(data)
            if data == b"STOPPING=1":
                break



def test_unreadable_crash_dir_is_in_status_and_metrics(
    tmp_path: Path, collector: FakeCollector, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Permission denied on /var/crash: the daemon still starts, and says so where operators look."""
    from tests.agent.test_watch import deny_listing

    config = make_config(tmp_path)
    builders.debian(config.crash_dir, None, WARNING_LOG)
    deny_listing(monkeypatch, config.crash_dir)
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        service = service_for(config, collector, environ={"NOTIFY_SOCKET": path})
        with Running(service):
            ready = sock.recv(4096).decode()
            assert ready.startswith("READY=1\nSTATUS=watching")
            assert ready.endswith(f"; cannot read {config.crash_dir}: Permission denied"), ready
            gauge = service.metrics.watch_unreadable
            assert gauge.labels("crash")._value.get() == 1 and gauge.labels("pstore")._value.get() == 0
            assert caplog.text.count("cannot read watched directory root=crash") == 1
            monkeypatch.undo()  # an operator fixes the permissions and reloads
            service.reload()
            wait_for(lambda: collector.titles() != [], "the capture shipped after the reload")
            wait_for(lambda: gauge.labels("crash")._value.get() == 0, "the gauge cleared")


class StuckWorker:
    """A worker handle that never finishes until killed (a reader hung on a hostile dump)."""

    def __init__(self) -> None:
        self.killed = threading.Event()

    def poll(self) -> int | None:
        return -9 if self.killed.is_set() else None

    def wait(self, timeout: float | None = None) -> int | None:
        self.killed.wait(timeout)
        return self.poll()

    def kill(self) -> None:
        self.killed.set()

    def started(self) -> bool:
        return True


def test_hung_worker_is_killed_and_the_next_one_waits(
    tmp_path: Path, collector: FakeCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agent.service as service_module

    monkeypatch.setattr(service_module, "DRAIN_SECONDS", 0.2)
    config = replace(make_config(tmp_path), worker_timeout_seconds=0.3)  # [agent] worker_timeout_seconds
    builders.debian(config.crash_dir, None, WARNING_LOG)
    stuck: list[StuckWorker] = []
    launched: list[float] = []

    def launch(_config: AgentConfig, _heartbeat: bool, _linger: float) -> StuckWorker:
        stuck.append(StuckWorker())
        launched.append(time.monotonic())
        return stuck[-1]

    service = AgentService(config, launcher=launch, environ={})
    with Running(service):
        wait_for(lambda: len(stuck) >= 2, "a retry after the hung worker was killed")
        assert stuck[0].killed.is_set()
        # Killed after the timeout, and the retry waited a backoff step (initial 0.05 s: >= 0.025 s).
        assert launched[1] - launched[0] >= 0.3 + 0.025
        assert service.spool.job_count() == 1  # the job is still there for a healthy worker
    assert stuck[-1].killed.is_set(), "the drain left a stuck worker running"


def test_daemon_never_imports_grpc_or_the_analyzer() -> None:
    """The idle daemon's size depends on it: grpc and capstone load only in the worker process."""
    import subprocess
    import sys

    code = (
        "import sys, crashfleet.commands.agent, agent.service, agent.config, agent.logs\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'capstone', 'google'))\n"
        "heavy += sorted(m for m in sys.modules if m in ('analysis.signature', 'agent.worker', 'agent.ship'))\n"
        "print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


class SuggestingCollector(FakeCollector):
    """A collector whose heartbeat reply asks for another interval."""

    def __init__(self, suggest: int) -> None:
        super().__init__()
        self.suggest = suggest

    def heartbeat(self, inventory: HostInventory) -> ShipResult:
        self.heartbeats.append(inventory)
        return ShipResult(Outcome.ACKED, "OK", interval_seconds=self.suggest)


def test_heartbeat_interval_bounds() -> None:
    assert heartbeat_interval(300.0, 0, 60.0, 3600.0) == 300.0  # no suggestion: the configured interval
    assert heartbeat_interval(300.0, 120, 60.0, 3600.0) == 120.0
    assert heartbeat_interval(300.0, 5, 60.0, 3600.0) == 60.0
    assert heartbeat_interval(300.0, 86400, 60.0, 3600.0) == 3600.0


def test_heartbeat_follows_the_collectors_suggestion_within_bounds(tmp_path: Path) -> None:
    # Configured every 60 s; the collector asks for 1 s, the lower bound makes that 0.3 s.
    config = replace(
        make_config(tmp_path), heartbeat_min_interval_seconds=0.3, heartbeat_max_interval_seconds=5.0
    )
    collector = SuggestingCollector(1)
    service = service_for(config, collector)
    with Running(service):
        wait_for(lambda: len(collector.heartbeats) >= 3, "heartbeats at the suggested interval", timeout=15)
        assert service.heartbeat_interval() == 1.0
    collector.suggest = 3600
    service = service_for(config, collector)
    before = len(collector.heartbeats)
    with Running(service):
        wait_for(lambda: len(collector.heartbeats) > before, "the first heartbeat after a restart")
        wait_for(lambda: service.heartbeat_interval() == 5.0, "the upper bound to apply")


def test_heartbeat_keeps_the_configured_interval_without_a_suggestion(tmp_path: Path) -> None:
    config = replace(make_config(tmp_path), heartbeat_min_interval_seconds=0.3)
    collector = FakeCollector()  # replies interval_seconds=0
    service = service_for(config, collector)
    with Running(service):
        wait_for(lambda: len(collector.heartbeats) == 1, "the first heartbeat")
        time.sleep(1.0)
        assert len(collector.heartbeats) == 1  # the next one is 60 s away
        assert service.heartbeat_interval() == 60.0


def test_user_space_faults_from_kmsg_ride_on_the_heartbeat(tmp_path: Path) -> None:
    """The daemon counts user-space faults per program as it reads /dev/kmsg; the worker ships
    the counts with the heartbeat; user space's own records (facility != 0) make no report."""
    config = replace(
        make_config(tmp_path, kmsg="true"), heartbeat_min_interval_seconds=0.3, heartbeat_max_interval_seconds=5.0
    )
    (tmp_path / "kmsg").write_bytes((DATA / "kmsg" / "user-facility-and-faults.kmsg").read_bytes())
    collector = SuggestingCollector(1)
    service = service_for(config, collector)
    with Running(service):
        wait_for(lambda: any(h.user_faults for h in collector.heartbeats), "a heartbeat with user faults", timeout=15)
        wait_for(lambda: len(collector.received) == 1, "the kernel's WARNING from kmsg")
    shipped = next(h.user_faults for h in collector.heartbeats if h.user_faults)
    assert dict(shipped) == {"java": 2, "node": 1, "python3": 1, "qemu-kvm": 1}
    assert [r.signature.kind for r in collector.received.values()] == ["warning"]
