"""Hardware-error events in captured kernel logs: counted by the worker once per capture (kept in
the spool with the capture's "handled" mark), sent with the heartbeat beside the live log's counts.

The cases are files under tests/data/agent/capture-hwerrors (one per case, README.md there)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent import spool as spool_module
from agent.hwcount import FILE_NAME, capture_log_hardware_errors, merge_counts
from agent.layouts import Root
from agent.service import _capture_job
from agent.worker import open_spool, run_worker
from analysis.signature import analyze
from tests.agent import builders
from tests.agent.test_service import FakeCollector
from tests.agent.test_worker import config_for
from tests.conftest import SHARED

DATA = Path(__file__).resolve().parents[1] / "data" / "agent" / "capture-hwerrors"
CASES = sorted(p.stem for p in DATA.glob("*.log"))


def _case(name: str) -> tuple[dict[str, int], bytes]:
    raw = (DATA / f"{name}.log").read_bytes()
    header, _, log = raw.partition(b"\n\n")
    assert header.startswith(b"EXPECT: "), name
    return json.loads(header.removeprefix(b"EXPECT: ")), log


def _queue(config: object, directory: Path) -> None:
    spool = open_spool(config)  # type: ignore[arg-type]
    key, data = _capture_job(Root.CRASH, directory, None)
    spool.add_job(key, "capture", data)
    spool.close()


def _heartbeat_counts(config: object) -> dict[str, int]:
    collector = FakeCollector()
    assert run_worker(config, heartbeat=True, shipper_factory=lambda _c: collector, analyzer=analyze) == 0  # type: ignore[arg-type]
    (inventory,) = collector.heartbeats
    return dict(inventory.hardware_errors)


def test_the_cases_cover_every_kind_and_the_hostile_ones() -> None:
    from analysis.hwerrors import KINDS

    seen: set[str] = set()
    for name in CASES:
        seen.update(_case(name)[0])
    assert seen == set(KINDS)
    assert {"hostile", "truncated", "clean"} <= set(CASES)


@pytest.mark.parametrize("name", CASES)
def test_a_captured_log_is_counted_and_sent_with_the_heartbeat(name: str, tmp_path: Path) -> None:
    expected, log = _case(name)
    config = config_for(tmp_path)
    _queue(config, builders.debian(config.crash_dir, None, log))
    assert _heartbeat_counts(config) == expected
    assert dict(capture_log_hardware_errors(log)) == expected


def test_a_capture_read_again_is_not_counted_again(tmp_path: Path) -> None:
    """A restarted agent whose start-up scan queues the same capture again (or a capture whose
    identity changed and is read again) replaces that capture's counts; a new capture adds."""
    edac, edac_log = _case("edac-ce-ue")
    aer, aer_log = _case("pcie-aer")
    config = config_for(tmp_path)
    first = builders.debian(config.crash_dir, None, edac_log)
    _queue(config, first)
    assert _heartbeat_counts(config) == edac
    _queue(config, first)  # the same capture, queued again after a restart
    assert _heartbeat_counts(config) == edac
    _queue(config, builders.debian(config.crash_dir, None, aer_log, stamp="202611261200"))
    assert _heartbeat_counts(config) == dict(merge_counts(edac.items(), aer.items()))
    assert _heartbeat_counts(config) == dict(merge_counts(edac.items(), aer.items())), (
        "a heartbeat alone adds nothing"
    )


def test_live_log_and_captured_log_counts_are_summed(tmp_path: Path) -> None:
    expected, log = _case("memory-failure")
    config = config_for(tmp_path)
    (config.state_dir / FILE_NAME).write_text(json.dumps({"memory_failure": 1, "edac_ce": 3}))
    _queue(config, builders.debian(config.crash_dir, None, log))
    assert _heartbeat_counts(config) == {"memory_failure": expected["memory_failure"] + 1, "edac_ce": 3}


def test_the_per_capture_table_is_bounded_and_loses_no_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "MAX_COUNTED_CAPTURES", 2)
    config = config_for(tmp_path)
    spool = open_spool(config)
    for i in range(5):
        spool.enqueue_captures([], hardware_errors={f"crash:c{i}": (("edac_ce", i + 1), ("mce", 1))})
    assert spool.capture_hardware_errors() == (("edac_ce", 15), ("mce", 5))
    rows = spool._db.execute("SELECT capture FROM capture_hardware_errors ORDER BY capture").fetchall()
    assert [r[0] for r in rows] == ["", "crash:c3", "crash:c4"]
    # A retired capture read again can no longer be replaced: it counts again (documented).
    spool.enqueue_captures([], hardware_errors={"crash:c4": (("edac_ce", 5),)})
    assert spool.capture_hardware_errors() == (("edac_ce", 15), ("mce", 4))
    spool._db.execute("INSERT INTO capture_hardware_errors VALUES ('crash:bad', 'not json', 0)")
    spool._db.execute(
        "INSERT INTO capture_hardware_errors VALUES ('crash:neg', '{\"mce\": -4, \"x\": true}', 0)"
    )
    assert spool.capture_hardware_errors() == (("edac_ce", 15), ("mce", 4)), "a damaged row counts as nothing"
    spool.close()


def test_the_dumps_own_log_buffer_is_what_is_counted(tmp_path: Path) -> None:
    """With a dump beside the text, the dump's log buffer is read (and counted), not the text."""
    dump = SHARED / "vmcores" / "bug" / "vmcore.kdump-zlib"
    if not dump.is_file():
        pytest.skip(f"{dump} is absent (../shared holds the real dumps)")
    _expected, edac_log = _case("edac-ce-ue")
    config = config_for(tmp_path)
    _queue(config, builders.debian(config.crash_dir, dump, edac_log))
    collector = FakeCollector()
    assert run_worker(config, heartbeat=True, shipper_factory=lambda _c: collector, analyzer=analyze) == 0
    (request,) = collector.received.values()
    assert request.source_path.endswith(f"dump.{builders.STAMP}"), "the dump was read"
    assert "crashme_bug" in request.signature.title
    # The QEMU guest's log has no hardware error; the EDAC lines of the text beside it were not read.
    assert dict(collector.heartbeats[0].hardware_errors) == {}
    # What the counter is given is the log buffer read from the dump itself.
    from agent.extract import extract_capture
    from agent.layouts import assess, discover
    from analysis.sources import open_capture

    (capture,) = discover(Root.CRASH, config.crash_dir)
    extraction = extract_capture(assess(capture), analyze, scratch=tmp_path / "scratch")
    assert not extraction.failed and extraction.log == open_capture(str(dump)).log != edac_log
