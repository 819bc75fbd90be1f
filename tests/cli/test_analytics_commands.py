"""`crashfleet rates`, `suspects`, `triage` and `hosts --suspect` through the real gRPC API."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from prometheus_client import CollectorRegistry

from collector.config import CollectorConfig
from collector.metrics import Metrics
from collector.server import RunningCollector, start_collector
from collector.store.sqlite import SqliteStore
from crashfleet.cli import main
from wire.model import HostRecord
from wire.v1 import crash_pb2, ingest_service_pb2, ingest_service_pb2_grpc

DATA = Path(__file__).resolve().parents[1] / "data" / "collector"
RATE_KEYS = {"dim", "value", "crashes", "hosts", "host_days", "rate_per_1000_host_days", "ci_low", "ci_high"}
SUSPECT_HOST_KEYS = {"host", "score", "clusters", "unshared_clusters", "hardware_errors", "reason"}


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[str]:
    """A collector over a store that already holds two days of hourly heartbeats of 8 hosts."""
    path = tmp_path / "c.db"
    store = SqliteStore(str(path))
    store.exposure_cap_s = 86_400  # hourly heartbeats count in full: few of them make a fleet
    end = datetime.now(UTC) - timedelta(hours=1)
    for i in range(8):
        record = HostRecord(
            hostname=f"web-{i}", kernel_release="6.1.0-26-amd64", machine="x86_64",
            hardware="QEMU Standard PC (i440FX + PIIX, 1996)", agent_version="0.4",
            modules=("crashme", "e1000e") if i < 4 else ("e1000e",), labels=(("role", "ci"),),
            hardware_errors=(("edac_ue", 2),) if i == 7 else (),
        )  # fmt: skip
        for h in range(48, -1, -1):
            store.heartbeat(record, end - timedelta(hours=h))
    store.close()
    loop = asyncio.new_event_loop()
    started: list[RunningCollector] = []

    async def start() -> None:
        started.append(await start_collector(
            CollectorConfig(db=f"sqlite:///{path}", listen="127.0.0.1:0", http=""),
            metrics=Metrics(CollectorRegistry())))  # fmt: skip

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    yield started[0].grpc_target
    asyncio.run_coroutine_threadsafe(started[0].stop(grace=0), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def _lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_rates_suspects_triage_and_suspect_hosts(
    collector: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = collector
    log = tmp_path / "dmesg.txt"
    shutil.copy(DATA / "null-deref.log", log)
    assert main(["submit", "--collector", target, "--hostname", "web-1", "--json", str(log)]) == 0
    [stored] = _lines(capsys)
    cluster = str(stored["cluster_id"])

    assert main(["rates", "--collector", target, "--json"]) == 0
    [fleet] = _lines(capsys)
    assert set(fleet) >= RATE_KEYS
    assert (fleet["dim"], fleet["crashes"], fleet["hosts"]) == ("", 1, 8)
    assert fleet["host_days"] == pytest.approx(16.0)
    assert fleet["rate_per_1000_host_days"] == pytest.approx(62.5)
    assert main(["rates", "--collector", target, "--by", "module", "--cluster", cluster, "--json"]) == 0
    by_module = {r["value"]: r for r in _lines(capsys)}
    assert by_module["crashme"]["crashes"] == 1 and by_module["crashme"]["host_days"] == pytest.approx(8.0)
    assert main(["rates", "--collector", target, "--by", "label:role"]) == 0
    assert "label:role" in capsys.readouterr().out
    assert main(["rates", "--collector", target, "--by", "colour"]) == 1
    assert "INVALID_ARGUMENT: unknown dimension 'colour'" in capsys.readouterr().err

    assert main(["suspects", cluster, "--collector", target]) == 0
    text = capsys.readouterr().out
    assert "seen on one host only (web-1)" in text and "triage: new" in text
    assert main(["suspects", cluster, "--collector", target, "--json"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "seen on one host only" in captured.err
    assert main(["suspects", "no-such-cluster", "--collector", target]) == 2
    assert "NOT_FOUND" in capsys.readouterr().err

    assert main(["triage", cluster, "--fixed-in", "6 1", "--collector", target]) == 1
    assert "INVALID_ARGUMENT: --fixed-in: kernel release '6 1'" in capsys.readouterr().err
    assert main(["triage", cluster, "--ack", "--note", "bisecting", "--collector", target, "--json"]) == 0
    [triage] = _lines(capsys)
    assert (triage["state"], triage["note"]) == ("acknowledged", "bisecting")
    assert main(["triage", cluster, "--fixed-in", "6.1.0-27-amd64", "--collector", target]) == 0
    assert "fixed in 6.1.0-27-amd64" in capsys.readouterr().out

    assert main(["hosts", "--suspect", "--collector", target, "--json"]) == 0
    [bad] = _lines(capsys)
    assert set(bad) >= SUSPECT_HOST_KEYS
    assert bad["host"] == "web-7" and bad["hardware_errors"] == 2
    assert "2 uncorrected hardware errors or machine checks" in str(bad["reason"])


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"Bad Key": "x"}, "host.labels['Bad Key']: key is not 1-32 of a-z 0-9 _"),
        ({"role": "x" * 200}, "200 characters, more than 128"),
        ({f"k{i}": "v" for i in range(40)}, "40 labels, more than 32"),
        ({"role": "ci\x1b[2J"}, "control characters"),
    ],
)
def test_hostile_labels_are_refused_naming_the_field(
    collector: str, labels: dict[str, str], message: str
) -> None:
    with grpc.insecure_channel(collector) as channel:
        stub = ingest_service_pb2_grpc.IngestServiceStub(channel)
        facts = crash_pb2.HostFacts(hostname="web-x", kernel_release="6.1.0-26-amd64", labels=labels)
        with pytest.raises(grpc.RpcError) as info:
            stub.Heartbeat(ingest_service_pb2.HeartbeatRequest(host=facts), timeout=10)
    assert info.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert message in (info.value.details() or "")
