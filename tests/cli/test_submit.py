"""`crashfleet submit` as a backfill: it finishes through the rate limit, a rerun is all duplicates,
the summary and exit status match, and each crash is filed under the right host (or none)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from analysis.model import SystemFacts
from collector.config import CollectorConfig
from collector.metrics import Metrics
from collector.server import RunningCollector, start_collector
from crashfleet.cli import main
from crashfleet.commands.submit import OWN_CRASH_DIRS, file_under
from tests.conftest import shared_path

DATA = Path(__file__).resolve().parents[1] / "data" / "collector"
BACKFILL = 200


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[RunningCollector]:
    """A collector whose limit a 200-crash backfill must meet: 40 a second after a burst of 20."""
    loop = asyncio.new_event_loop()
    config = CollectorConfig(db=f"sqlite:///{tmp_path}/c.db", listen="127.0.0.1:0", http="",
                             reports_per_second=40.0, report_burst=20)  # fmt: skip
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    running = asyncio.run_coroutine_threadsafe(
        start_collector(config, metrics=Metrics(CollectorRegistry())), loop
    ).result(timeout=30)
    yield running
    asyncio.run_coroutine_threadsafe(running.stop(grace=0), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def throttled(running: RunningCollector) -> float:
    value = running.metrics.registry.get_sample_value(
        "crashfleet_rpc_duration_seconds_count", {"method": "ReportCrash", "code": "RESOURCE_EXHAUSTED"}
    )
    return value or 0.0


def backfill_files(directory: Path, count: int) -> list[str]:
    """`count` distinct console logs of one host's crashes (each its own capture and key)."""
    directory.mkdir()
    text = (DATA / "null-deref.log").read_text()
    paths = []
    for i in range(count):
        path = directory / f"console-{i:03d}.log"
        path.write_text(text.replace("[   57.9", f"[ {1000 + i:>4}.9"))
        paths.append(str(path))
    return paths


def test_a_backfill_of_200_crashes_finishes_and_a_rerun_is_all_duplicates(
    collector: RunningCollector, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = backfill_files(tmp_path / "old", BACKFILL)
    argv = ["submit", "--collector", collector.grpc_target, "--hostname", "db-7", *paths]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"submitted {BACKFILL} crashes from {BACKFILL} files: {BACKFILL} stored, 0 duplicate, 0 failed"
    assert sum(" stored crash " in line for line in out) == BACKFILL
    assert all("host db-7 (--hostname)" in line for line in out[:-1])
    limited = throttled(collector)
    assert limited > 0, "the backfill never met the rate limit: the test proves nothing"

    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"submitted {BACKFILL} crashes from {BACKFILL} files: 0 stored, {BACKFILL} duplicate, 0 failed"
    assert throttled(collector) == limited, "duplicates were charged to the rate limit"
    registry = collector.metrics.registry
    assert registry.get_sample_value("crashfleet_reports_received_total",
                                     {"result": "new", "kind": "null-deref"}) == BACKFILL  # fmt: skip


def test_json_lines_name_the_host_and_the_summary_goes_to_stderr(
    collector: RunningCollector, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [path] = backfill_files(tmp_path / "one", 1)
    assert main(["submit", "--collector", collector.grpc_target, "--hostname", "db-7", "--json", path]) == 0
    captured = capsys.readouterr()
    [row] = [json.loads(line) for line in captured.out.splitlines()]
    assert (row["host"], row["host_reason"], row["duplicate"]) == ("db-7", "--hostname", False)
    assert "1 stored, 0 duplicate, 0 failed" in captured.err


def test_a_log_that_names_no_host_is_not_filed_under_this_machine(
    collector: RunningCollector, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [path] = backfill_files(tmp_path / "copied", 1)
    assert main(["submit", "--collector", collector.grpc_target, path]) == 1
    captured = capsys.readouterr()
    assert f"{path}: 1 crash(es) not sent: no host: a kernel log names no host" in captured.err
    assert "pass --hostname" in captured.err
    assert captured.out.splitlines()[-1].endswith("0 stored, 0 duplicate, 1 failed")

    # The same file in this machine's own crash directory is this machine's crash.
    own = tmp_path / "var-crash"
    own.mkdir()
    mine = own / "dmesg.202611251200"
    mine.write_bytes(Path(path).read_bytes())
    assert main(["submit", "--collector", collector.grpc_target, "--crash-dir", str(own), str(mine)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert f"host {socket.gethostname()} (in this host's crash directory {own})" in line


def test_a_dump_whose_nodename_is_none_needs_hostname(
    collector: RunningCollector, capsys: pytest.CaptureFixture[str]
) -> None:
    dump = shared_path("vmcores", "warn", "vmcore.kdump-zlib")  # QEMU + busybox: nodename "(none)"
    assert main(["submit", "--collector", collector.grpc_target, str(dump)]) == 1
    assert "no host: the dump's nodename is '(none)'" in capsys.readouterr().err
    assert main(["submit", "--collector", collector.grpc_target, "--hostname", "qemu-1", str(dump)]) == 0
    assert "host qemu-1 (--hostname)" in capsys.readouterr().out


def facts(nodename: str | None) -> SystemFacts:
    return SystemFacts(format="kdump-zlib", nodename=nodename)


# (case, --hostname, dump facts, path, expected host, expected reason), first rule wins.
FILINGS = [
    ("explicit wins over the dump", "web-1", facts("db-2"), "/tmp/x/vmcore", "web-1", "--hostname"),
    ("the dump's nodename", None, facts("db-2"), "/tmp/x/vmcore", "db-2", "the dump's nodename"),
    ("nodename (none) is no host", None, facts("(none)"), "/tmp/x/vmcore", None, "nodename is '(none)'"),
    ("localhost is no host", None, facts("localhost"), "/tmp/x/vmcore", None, "nodename is 'localhost'"),
    ("a dump without nodename", None, facts(None), "/tmp/x/vmcore", None, "records no nodename"),
    ("a log names no host", None, None, "/tmp/x/console.log", None, "a kernel log names no host"),
    ("own crash dir, (none)", None, facts("(none)"), "/var/crash/2026/vmcore", "me", "crash directory /var/crash"),
    ("own pstore dir, a log", None, None, "/var/lib/systemd/pstore/1/dmesg.txt", "me", "/var/lib/systemd/pstore"),
]


@pytest.mark.parametrize(("case", "given", "system", "path", "host", "reason"), FILINGS, ids=[f[0] for f in FILINGS])
def test_host_rules(case: str, given: str | None, system: SystemFacts | None, path: str, host: str | None,
                    reason: str) -> None:  # fmt: skip
    filing = file_under(given, system, path, OWN_CRASH_DIRS, "me")
    assert filing.host == host and reason in filing.reason, filing


def test_an_unreachable_collector_stops_the_run_with_a_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    paths = backfill_files(tmp_path / "old", 3)
    argv = ["submit", "--collector", "127.0.0.1:1", "--timeout", "1", "--give-up-after", "1", "--hostname", "h", *paths]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "collector 127.0.0.1:1 unreachable, stopping: UNAVAILABLE" in captured.err
    assert "2 file(s) not sent" in captured.out


class Tty:
    """A stderr that says it is a terminal and keeps what was written."""

    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        return None


def test_progress_only_on_a_terminal(
    collector: RunningCollector, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = backfill_files(tmp_path / "old", 3)
    argv = ["submit", "--collector", collector.grpc_target, "--hostname", "h", *paths]
    assert main(argv) == 0
    assert capsys.readouterr().err == "", "progress written to a stderr that is not a terminal"
    tty = Tty()
    monkeypatch.setattr("sys.stderr", tty)
    assert main(argv) == 0
    assert "\rsubmit: file 3/3: 0 stored, 3 duplicate, 0 failed" in tty.text
    assert tty.text.endswith("\r"), "the progress line is cleared before the summary"
    assert os.linesep not in tty.text


def test_a_backfilled_crash_is_seen_when_it_happened_received_beside_it(
    collector: RunningCollector, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [path] = backfill_files(tmp_path / "old", 1)
    happened = datetime(2026, 3, 28, 23, 50, tzinfo=UTC)
    os.utime(path, (happened.timestamp(), happened.timestamp()))  # a log's crash time: its mtime
    assert main(["submit", "--collector", collector.grpc_target, "--hostname", "db-7", path]) == 0
    capsys.readouterr()
    registry = collector.metrics.registry
    release = {"kernel_release": "6.1.0-26-amd64"}
    assert registry.get_sample_value("crashfleet_crashes_backfill_total", release) == 1.0
    assert not registry.get_sample_value("crashfleet_crashes_total", release)

    assert main(["clusters", "--collector", collector.grpc_target, "--json"]) == 0
    [cluster] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert cluster["first_seen"] == cluster["last_seen"] == "2026-03-28T23:50:00Z"
    received = datetime.fromisoformat(cluster["first_received"])
    assert cluster["last_received"] == cluster["first_received"]
    assert abs((datetime.now(UTC) - received).total_seconds()) < 60

    shown = f"2026-03-28 23:50 (received {received.strftime('%Y-%m-%d %H:%M')})"
    assert main(["clusters", "--collector", collector.grpc_target]) == 0
    assert shown in capsys.readouterr().out
    assert main(["cluster", cluster["id"], "--collector", collector.grpc_target]) == 0
    assert f"first {shown}, last {shown}" in capsys.readouterr().out
