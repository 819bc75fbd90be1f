"""The worker never loses a capture's real signature to one bad field.

Before, a number past 64 bits anywhere in a record made the wire conversion raise, and the
worker turned the whole good capture into a failed capture. Now the misfit is left out and
named (`corrupt_fields`) and the crash ships as what it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

from agent.layouts import Root
from agent.service import _capture_job
from agent.worker import open_spool, run_worker
from analysis.model import CrashRecord
from analysis.signature import analyze
from tests.agent import builders
from tests.agent.test_service import FakeCollector
from tests.agent.test_worker import config_for

HUGE = (Path(__file__).resolve().parents[1] / "data" / "logs" / "hostile-huge-numbers.log").read_bytes()


def _ship(tmp_path: Path, log: bytes, analyzer: Callable[[bytes | str], list[CrashRecord]]) -> FakeCollector:
    config = config_for(tmp_path)
    directory = builders.debian(config.crash_dir, None, log)
    spool = open_spool(config)
    key, data = _capture_job(Root.CRASH, directory, None)
    spool.add_job(key, "capture", data)
    spool.close()
    collector = FakeCollector()
    assert run_worker(config, heartbeat=False, shipper_factory=lambda _c: collector, analyzer=analyzer) == 0
    return collector


def test_huge_numbers_in_the_log_ship_the_crash_with_the_fields_named(tmp_path: Path) -> None:
    collector = _ship(tmp_path, HUGE, analyze)
    [request] = collector.received.values()
    signature = request.signature
    assert signature.kind == "null-deref"
    assert signature.title == "BUG: unable to handle kernel NULL pointer dereference in netx_poll"
    assert list(signature.corrupt_fields) == ["pid", "registers.rip", "rip.address", "call_trace[0].offset"]
    assert signature.fingerprint.value


def test_a_bad_number_from_any_stage_still_ships_the_real_signature(tmp_path: Path) -> None:
    """Not only the parser: whatever put a 70-bit register into the record, the crash ships."""

    def widening_analyzer(data: bytes | str) -> list[CrashRecord]:
        return [dataclasses.replace(r, registers={**r.registers, "rax": 1 << 70}) for r in analyze(data)]

    log = (Path(__file__).resolve().parents[1] / "data" / "logs" / "hostile-code-hex-run.log").read_bytes()
    collector = _ship(tmp_path, log, widening_analyzer)
    [request] = collector.received.values()
    assert request.signature.kind == "null-deref"
    assert list(request.signature.corrupt_fields) == ["registers.rax"]
    assert "rax" not in request.signature.registers
