"""The worker: jobs in, reports and counts out through the spool; poisonous captures; the real process."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.config import AgentConfig, config_to_json, load_config
from agent.layouts import Root
from agent.metrics import AgentMetrics
from agent.service import _capture_job, _kmsg_job
from agent.ship import Outcome, ShipResult
from agent.worker import MAX_JOB_ATTEMPTS, open_spool, run_worker
from analysis.model import CrashRecord
from analysis.signature import analyze
from tests.agent import builders
from tests.agent.test_service import FakeCollector
from wire.v1 import ingest_service_pb2

DATA = Path(__file__).resolve().parents[1] / "data" / "agent"
WARNING_LOG = (DATA / "logs" / "warning.log").read_bytes()
REPO = Path(__file__).resolve().parents[2]


def config_for(tmp_path: Path, collector: str = "127.0.0.1:1") -> AgentConfig:
    for name in ("crash", "pstore", "pstore-fs", "state"):
        (tmp_path / name).mkdir(parents=True, exist_ok=True)
    overrides = {
        "crash_dir": tmp_path / "crash",
        "pstore_dir": tmp_path / "pstore",
        "pstore_fs_dir": tmp_path / "pstore-fs",
        "state_dir": tmp_path / "state",
        "debug_roots": (),  # this machine's /usr/lib/debug is not part of the test
    }
    config = load_config(None, {**overrides, "collector": collector, "hostname": "w-1"})
    return config


def test_jobs_become_reports_and_counts(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    directory = builders.debian(config.crash_dir, None, WARNING_LOG)
    spool = open_spool(config)
    key, data = _capture_job(Root.CRASH, directory, None)
    spool.add_job(key, "capture", data)
    key, data = _kmsg_job((DATA / "logs" / "warning.log").read_text())
    spool.add_job(key, "kmsg", data)
    spool.close()
    collector = FakeCollector()
    assert run_worker(config, heartbeat=True, shipper_factory=lambda _c: collector, analyzer=analyze) == 0
    assert len(collector.received) == 2 and len(collector.heartbeats) == 1
    spool = open_spool(config)
    assert spool.job_count() == 0 and spool.stats().depth == 0
    assert spool.capture_identity(f"crash:{builders.STAMP}") is not None
    counts = spool.take_counters()
    assert counts == {
        "crashes_detected:debian": 1,
        "crashes_detected:kmsg": 1,
        "crashes_shipped": 2,
        "heartbeats": 1,
    }
    assert spool.take_counters() == {}
    metrics = AgentMetrics()
    metrics.apply_counts(counts)
    assert metrics.crashes_shipped._value.get() == 2


def test_a_capture_that_already_cost_workers_is_not_read_again(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    directory = builders.debian(config.crash_dir, None, WARNING_LOG)
    spool = open_spool(config)
    key, data = _capture_job(Root.CRASH, directory, None)
    spool.add_job(key, "capture", data)
    for _ in range(MAX_JOB_ATTEMPTS):
        spool.take_jobs(10)  # two workers took it and never finished (crashed, killed, hung)
    spool.close()

    def must_not_run(data: bytes) -> list[object]:
        raise AssertionError("the poisonous capture was read again")

    collector = FakeCollector()
    run_worker(config, heartbeat=False, shipper_factory=lambda _c: collector, analyzer=must_not_run)  # type: ignore[arg-type]
    (request,) = collector.received.values()
    assert request.signature.title == "failed capture (debian)"
    assert "stopped the extractor 2 times" in request.signature.corrupted_reason


def test_unreachable_collector_pauses_shipping_and_keeps_reports(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    builders.debian(config.crash_dir, None, WARNING_LOG)
    spool = open_spool(config)
    key, data = _capture_job(Root.CRASH, config.crash_dir / builders.STAMP, None)
    spool.add_job(key, "capture", data)
    spool.close()
    collector = FakeCollector()
    collector.down = True
    run_worker(config, heartbeat=True, shipper_factory=lambda _c: collector, analyzer=analyze)
    spool = open_spool(config)
    assert spool.stats().depth == 1
    assert float(spool.get_meta("paused_until") or 0) > 0 and spool.get_meta("collector_up") == "0"
    assert spool.take_counters()["ship_failures:UNAVAILABLE"] == 1


def test_unknown_counts_are_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    AgentMetrics().apply_counts({"bogus": 1, "crashes_detected": 1})
    assert caplog.text.count("unknown worker count ignored") == 2


def test_refused_report_is_counted_as_rejected_and_its_message_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_for(tmp_path)
    spool = open_spool(config)
    key, data = _kmsg_job(WARNING_LOG.decode())
    spool.add_job(key, "kmsg", data)
    spool.close()
    message = "signature.title: 5000 bytes, limit 4096 (host w-1, key 1234abcd)"

    class Refusing(FakeCollector):
        def report(self, payload: bytes) -> ShipResult:
            return ShipResult(Outcome.REFUSED, "INVALID_ARGUMENT", message)

    caplog.set_level(logging.ERROR, logger="agent.spool")
    run_worker(config, heartbeat=False, shipper_factory=lambda _c: Refusing(), analyzer=analyze)
    spool = open_spool(config)
    assert spool.stats().depth == 0
    counts = spool.take_counters()
    assert counts["spool_dropped:rejected"] == 1
    assert [k for k in counts if k.startswith("spool_dropped")] == ["spool_dropped:rejected"]
    assert f"reason=rejected code=INVALID_ARGUMENT detail={message!r}" in caplog.text
    metrics = AgentMetrics()
    metrics.apply_counts(counts)
    assert metrics.spool_dropped.labels("rejected")._value.get() == 1


def test_spool_dropped_counts_outside_the_closed_set_are_refused(caplog: pytest.LogCaptureFixture) -> None:
    """A free-text label (what older workers counted) never becomes a time series."""
    metrics = AgentMetrics()
    metrics.apply_counts(
        {"spool_dropped:refused by collector: INVALID_ARGUMENT x": 1, "spool_dropped:too_old": 2}
    )
    assert "worker count with unknown label ignored" in caplog.text
    series = {
        sample.labels["reason"]: sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == "crashfleet_agent_spool_dropped_total"
    }
    assert series == {"too_old": 2.0, "spool_full": 0.0, "rejected": 0.0}


def test_the_worker_process_reads_its_configuration_on_stdin(tmp_path: Path) -> None:
    config = config_for(tmp_path, collector="")
    directory = builders.debian(config.crash_dir, None, WARNING_LOG)
    spool = open_spool(config)
    key, data = _capture_job(Root.CRASH, directory, None)
    spool.add_job(key, "capture", data)
    spool.close()
    result = subprocess.run(
        [sys.executable, "-m", "agent.worker"],
        input=config_to_json(config).encode(),
        capture_output=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr.decode()
    db = sqlite3.connect(config.state_dir / "spool.sqlite3")
    ((payload,),) = db.execute("SELECT payload FROM outbox").fetchall()  # no collector: it stays
    db.close()
    request = ingest_service_pb2.ReportCrashRequest.FromString(payload)
    assert request.signature.title == "WARNING in example_xmit" and request.host.hostname == "w-1"
    bad = subprocess.run(
        [sys.executable, "-m", "agent.worker"], input=b"{", capture_output=True, timeout=60, cwd=REPO
    )
    assert bad.returncode != 0 and b"worker configuration: not JSON" in bad.stderr


def test_a_live_log_block_that_already_cost_workers_is_dropped_not_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A block that stopped two workers is not read a third time (taken alone, it would keep
    every job behind it waiting); the capture queued after it is read by the same worker."""
    config = config_for(tmp_path)
    spool = open_spool(config)
    key, data = _kmsg_job(WARNING_LOG.decode())
    spool.add_job(key, "kmsg", data)
    assert [j.key for j in spool.take_jobs(64)] == [key]  # two workers died reading it
    assert [j.key for j in spool.take_jobs(64)] == [key]
    directory = builders.debian(config.crash_dir, None, WARNING_LOG + b"[  100.000000] after\n")
    capture_key, capture_data = _capture_job(Root.CRASH, directory, None)
    spool.add_job(capture_key, "capture", capture_data)
    spool.close()

    def must_not_read_the_block(data: bytes | str) -> list[CrashRecord]:
        raw = data if isinstance(data, bytes) else data.encode()
        assert len(raw) != len(WARNING_LOG), "the dropped block was read"
        return analyze(data)

    caplog.set_level(logging.ERROR, logger="agent.worker")
    collector = FakeCollector()
    for _ in range(2):  # the block alone, then the capture
        assert run_worker(config, heartbeat=False, shipper_factory=lambda _c: collector,
                          analyzer=must_not_read_the_block) == 0  # fmt: skip
    spool = open_spool(config)
    assert spool.job_count() == 0
    assert spool.take_counters()["parse_failures"] == 1
    assert "live kernel log block dropped: reading it stopped the extractor 2 times" in caplog.text
    assert [r.signature.title for r in collector.received.values()] == ["WARNING in example_xmit"]
