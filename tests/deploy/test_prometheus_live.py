"""A real Prometheus (Debian's /usr/bin/prometheus) scraping a real collector process, with the
production alert rules: a fleet heartbeats through the collector's gRPC API, then a crash storm
sent through it (`crashfleet submit`) must show up as CrashfleetPanicRateHigh (crashes per 1,000
host-days of the hosts reporting) through Prometheus' HTTP API, and not before the storm.

Everything listens on 127.0.0.1 on ports the OS picked as free; scrape and evaluation run every
second and the rules' `for:` durations are shortened to one second — the expressions themselves
are the production ones. Every wait is bounded; both processes are stopped at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import yaml

from tests.conftest import IN_CI, REPO
from wire.v1 import crash_pb2, ingest_service_pb2, ingest_service_pb2_grpc

pytestmark = pytest.mark.slow

RULES = REPO / "deploy" / "prometheus" / "rules" / "crashfleet.rules.yml"
STORM_SIZE = 60  # >= 5 new crashes in the 15 minute window, and far above 20 per 1,000 host-days
FLEET_HOSTS = 20  # hosts that heartbeat: the denominator of the rate
RELEASES = ("6.1.0-55-amd64", "6.1.0-56-amd64")
T = TypeVar("T")

# A Debian 6.1 NULL-pointer oops, as a serial console prints it; {pid}, {stamp} and {release} vary
# per crash so that every file is a distinct crash (de-duplication keys on content), while the
# signature stays the same (one cluster).
OOPS_TEMPLATE = """\
[{stamp:>12.6f}] BUG: kernel NULL pointer dereference, address: 0000000000000060
[{stamp:>12.6f}] #PF: supervisor read access in kernel mode
[{stamp:>12.6f}] #PF: error_code(0x0000) - not-present page
[{stamp:>12.6f}] PGD 0 P4D 0
[{stamp:>12.6f}] Oops: 0000 [#1] PREEMPT SMP NOPTI
[{stamp:>12.6f}] CPU: 3 PID: {pid} Comm: kworker/3:1 Not tainted {release} #1  Debian 6.1.192-2
[{stamp:>12.6f}] Hardware name: Dell Inc. PowerEdge R640/0H28RR, BIOS 2.19.1 06/14/2023
[{stamp:>12.6f}] Workqueue: events_unbound flush_to_ldisc
[{stamp:>12.6f}] RIP: 0010:e1000e_clean_rx_irq+0x5/0x20 [e1000e]
[{stamp:>12.6f}] Code: 00 00 00 00 00 90 0f 1f 44 00 00 <48> 8b 47 60 48 83 c7 60 48 39 f8 0f 95 c0 0f b6 c0 c3
[{stamp:>12.6f}] RSP: 0018:ffffb2d1c0123e38 EFLAGS: 00010246
[{stamp:>12.6f}] RAX: ffff9b8a42a1c000 RBX: ffff9b8a42a1c000 RCX: 0000000000000001
[{stamp:>12.6f}] RDX: 0000000000000000 RSI: 0000000000000040 RDI: 0000000000000000
[{stamp:>12.6f}] RBP: ffffb2d1c0123e70 R08: 0000000000000000 R09: 0000000000000000
[{stamp:>12.6f}] R10: 0000000000000000 R11: 0000000000000000 R12: 0000000000000040
[{stamp:>12.6f}] R13: ffff9b8a42a1c8c0 R14: 0000000000000000 R15: ffff9b8a42a1c000
[{stamp:>12.6f}] FS:  0000000000000000(0000) GS:ffff9b8bbfcc0000(0000) knlGS:0000000000000000
[{stamp:>12.6f}] CS:  0010 DS: 0000 ES: 0000 CR0: 0000000080050033
[{stamp:>12.6f}] CR2: 0000000000000060 CR3: 000000010a410006 CR4: 00000000007706e0
[{stamp:>12.6f}] Call Trace:
[{stamp:>12.6f}]  <IRQ>
[{stamp:>12.6f}]  e1000e_poll+0xbc/0x2f0 [e1000e]
[{stamp:>12.6f}]  __napi_poll+0x28/0x160
[{stamp:>12.6f}]  net_rx_action+0x29e/0x350
[{stamp:>12.6f}]  __do_softirq+0xc5/0x2c8
[{stamp:>12.6f}]  irq_exit_rcu+0xa2/0xd0
[{stamp:>12.6f}]  common_interrupt+0x82/0xa0
[{stamp:>12.6f}]  </IRQ>
[{stamp:>12.6f}] Modules linked in: e1000e nf_tables nfnetlink ext4 mbcache jbd2
[{stamp:>12.6f}] CR2: 0000000000000060
[{stamp:>12.6f}] ---[ end trace 0000000000000000 ]---
[{stamp:>12.6f}] Kernel panic - not syncing: Fatal exception in interrupt
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(
    what: str, probe: Callable[[], T | None], timeout: float, procs: tuple[subprocess.Popen[bytes], ...]
) -> T:
    """Poll `probe` until it returns something; fail naming `what` (and any process that died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                pytest.fail(
                    f"{proc.args[0] if isinstance(proc.args, list) else proc.args} exited "
                    f"with {proc.returncode} while waiting for {what}"
                )
        value = probe()
        if value is not None:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def _get_json(url: str) -> Any | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return json.load(response)
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
        return None


def _get_ok(url: str) -> bool | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return True if response.status == 200 else None
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, a bounded wait, then SIGKILL: a test never leaves a server behind."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _fast_rules(target: Path) -> None:
    """The production rules with every `for:` cut to 1s (the expressions unchanged)."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "1s"
    target.write_text(yaml.safe_dump(doc, sort_keys=False))


def _crash_files(directory: Path, count: int, first_pid: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"oops-{first_pid + i}.txt"
        release = RELEASES[i % len(RELEASES)]
        path.write_text(OOPS_TEMPLATE.format(stamp=100.0 + i * 0.37, pid=first_pid + i, release=release))
        paths.append(path)
    return paths


def _alerts(prom: str) -> dict[str, str]:
    """alertname -> state ('pending' or 'firing') of the alerts Prometheus holds now."""
    doc = _get_json(f"{prom}/api/v1/alerts")
    if not doc or doc.get("status") != "success":
        return {}
    return {a["labels"]["alertname"]: a["state"] for a in doc["data"]["alerts"]}


def _query(prom: str, expr: str) -> float | None:
    doc = _get_json(f"{prom}/api/v1/query?query={urllib.request.quote(expr)}")
    if not doc or doc.get("status") != "success" or not doc["data"]["result"]:
        return None
    return float(doc["data"]["result"][0]["value"][1])


@pytest.fixture
def prometheus_binary() -> str:
    binary = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if binary is None:
        if IN_CI:
            pytest.fail(
                "prometheus is missing on the CI machine (Debian package `prometheus`; `make sysdeps`)"
            )
        pytest.skip("prometheus is not installed (Debian package `prometheus`)")
    return binary


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A collector process on SQLite: yields (gRPC address, HTTP base URL)."""
    grpc_addr = f"127.0.0.1:{_free_port()}"
    http_port = _free_port()
    log = (tmp_path / "collector.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crashfleet",
            "collector",
            "--db",
            f"sqlite:///{tmp_path / 'collector.db'}",
            "--listen",
            grpc_addr,
            "--http",
            f"127.0.0.1:{http_port}",
            # The storm comes from one host: lift the per-host rate limit's burst above its size.
            "--config",
            str(_collector_config(tmp_path)),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    base = f"http://127.0.0.1:{http_port}"
    try:
        _wait("the collector's /healthz", lambda: _get_ok(f"{base}/healthz"), 60, (proc,))
        yield grpc_addr, base
    finally:
        _stop(proc)
        log.close()


def _collector_config(tmp_path: Path) -> Path:
    path = tmp_path / "collector.toml"
    path.write_text(
        f"[limits]\nreports_per_second = 100.0\nreport_burst = {STORM_SIZE * 2}\n"
        f"peer_reports_per_second = 100.0\npeer_report_burst = {STORM_SIZE * 2}\n"
    )
    return path


def _submit(grpc_addr: str, paths: list[Path], hostname: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "crashfleet",
            "submit",
            "--collector",
            grpc_addr,
            "--hostname",
            hostname,
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _heartbeat_fleet(grpc_addr: str) -> None:
    with grpc.insecure_channel(grpc_addr) as channel:
        stub = ingest_service_pb2_grpc.IngestServiceStub(channel)
        for i in range(FLEET_HOSTS):
            facts = crash_pb2.HostFacts(
                hostname=f"fleet{i:02d}", kernel_release=RELEASES[i % len(RELEASES)], machine="x86_64"
            )
            stub.Heartbeat(ingest_service_pb2.HeartbeatRequest(host=facts), timeout=10)


def test_crash_storm_fires_the_panic_rate_alert(
    tmp_path: Path, prometheus_binary: str, collector: tuple[str, str]
) -> None:
    grpc_addr, collector_http = collector
    rules = tmp_path / "rules.yml"
    _fast_rules(rules)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
                "rule_files": [str(rules)],
                "scrape_configs": [
                    {
                        "job_name": "crashfleet-collector",
                        "static_configs": [{"targets": [collector_http.removeprefix("http://")]}],
                    }
                ],
            }
        )
    )
    prom_port = _free_port()
    prom = f"http://127.0.0.1:{prom_port}"
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            prometheus_binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait("Prometheus to become ready", lambda: _get_ok(f"{prom}/-/ready"), 60, (proc,))
        _wait(
            "the collector target to be up",
            lambda: _query(prom, 'up{job="crashfleet-collector"} == 1'),
            30,
            (proc,),
        )

        # The fleet first: the rate is per host reporting (the collector re-reads its gauges every 15 s).
        _heartbeat_fleet(grpc_addr)
        _wait(
            "the hosts reporting in Prometheus",
            lambda: _query(prom, f"sum(crashfleet_hosts_reporting) == {FLEET_HOSTS}"),
            60,
            (proc,),
        )
        # One crash per release first: the labelled counters exist before the storm, so the storm is
        # an increase Prometheus can see rather than the first sample of a new series.
        _submit(grpc_addr, _crash_files(tmp_path / "warmup", len(RELEASES), 1000), "buildtest01")
        _wait(
            "the warm-up crashes in Prometheus",
            lambda: _query(prom, f"sum(crashfleet_crashes_total) >= {len(RELEASES)}"),
            30,
            (proc,),
        )
        time.sleep(3)  # a few evaluations at the quiet rate
        quiet = _alerts(prom)
        assert "CrashfleetPanicRateHigh" not in quiet, f"fired before the storm: {quiet}"
        assert "CrashfleetCollectorDown" not in quiet

        _submit(grpc_addr, _crash_files(tmp_path / "storm", STORM_SIZE, 2000), "buildtest02")

        def panic_alert() -> str | None:
            state = _alerts(prom).get("CrashfleetPanicRateHigh")  # pending first, firing after `for:`
            return state if state == "firing" else None

        _wait("CrashfleetPanicRateHigh to fire", panic_alert, 60, (proc,))
        # The alert can fire before the last scrape of the storm (it crosses the threshold at about
        # half the storm): wait for the scrape that has every crash, then check the numbers.
        total = len(RELEASES) + STORM_SIZE
        _wait(f"Prometheus to see all {total} crashes", lambda: _query(prom, f"sum(crashfleet_crashes_total) == {total}"),
              30, (proc,))  # fmt: skip
        rate = _query(prom, ":crashfleet_crashes_per_1000_host_days:rate15m")
        hourly = _query(prom, ":crashfleet_crashes:rate15m * 3600")
        assert rate is not None and hourly is not None and rate > 20
        # The same crashes per second, over the hosts reporting, in crashes per 1,000 host-days.
        assert rate == pytest.approx(hourly * 24 * 1000 / FLEET_HOSTS, rel=0.05)
        # The storm was one signature: exactly one cluster, so the new-cluster alert saw it too.
        assert _query(prom, "max(crashfleet_clusters)") == 1
        assert "CrashfleetNewCrashCluster" in _alerts(prom)
    finally:
        _stop(proc)
        log.close()
