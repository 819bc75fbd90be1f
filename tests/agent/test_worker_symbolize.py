"""The worker symbolizes with this host's debuginfo before shipping (issue 7 on the host).

Real data: the shared 6.1 crash in the crashme module and its crashme.ko with DWARF. The RIP
`crashme_napi_pending+0x5` is `list_empty()` at include/linux/list.h:299 inlined at crashme.c:46;
the report must carry that chain, with exactly the fingerprint it has without debuginfo.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from agent.config import AgentConfig, replace
from agent.layouts import Root
from agent.service import _capture_job, _kmsg_job
from agent.worker import open_spool, run_worker
from analysis.model import CrashRecord
from analysis.signature import analyze
from tests.agent import builders
from tests.agent.test_service import FakeCollector
from tests.agent.test_worker import config_for
from tests.conftest import shared_path
from wire import convert

RELEASE = "6.1.0-56-amd64"


def ship_null_crash(config: AgentConfig) -> CrashRecord:
    """The shared module NULL-deref crash as a kdump-tools capture, through a worker; what arrived."""
    log = shared_path("vmcores", "null", "serial.log").read_bytes()
    directory = builders.debian(config.crash_dir, None, log)
    spool = open_spool(config)
    key, data = _capture_job(Root.CRASH, directory, None)
    spool.add_job(key, "capture", data)
    spool.close()
    collector = FakeCollector()
    assert run_worker(config, heartbeat=False, shipper_factory=lambda _c: collector, analyzer=analyze) == 0
    requests = list(collector.received.values())
    assert requests, "nothing shipped"
    module_crashes = [
        r for r in requests if r.signature.HasField("rip") and r.signature.rip.module == "crashme"
    ]
    assert len(module_crashes) == 1
    return convert.record_from_proto(module_crashes[0].signature)


def chain(record: CrashRecord) -> list[tuple[str, str, int]]:
    assert record.rip is not None
    return [(s.function, Path(s.file).name, s.line) for s in record.rip.source]


def test_explicit_debuginfo_adds_the_inline_chain_and_keeps_the_fingerprint(tmp_path: Path) -> None:
    ko = shared_path("vmcores", "module", "crashme.ko")
    plain = ship_null_crash(replace(config_for(tmp_path / "plain"), symbolize_enabled=False))
    assert plain.rip is not None and plain.rip.source == ()
    config = replace(config_for(tmp_path / "sym"), debuginfo=(ko,))
    record = ship_null_crash(config)
    assert chain(record) == [("list_empty", "list.h", 299), ("crashme_napi_pending", "crashme.c", 46)]
    assert any(frame.source for frame in record.call_trace if frame.module == "crashme")
    assert record.fingerprint == plain.fingerprint and record.title == plain.title
    assert list((config.state_dir / "symbols").rglob("*.symidx")), "the index cache lives in the state dir"
    counts = open_spool(config).take_counters()
    assert counts.get("symbolized") == 1


def test_module_debuginfo_is_found_under_a_debug_root_by_release(tmp_path: Path) -> None:
    """The distribution layout: <root>/lib/modules/<release>/.../crashme.ko, roots being configuration."""
    root = tmp_path / "debug"
    target = root / "lib" / "modules" / RELEASE / "updates" / "crashme.ko"
    target.parent.mkdir(parents=True)
    shutil.copyfile(shared_path("vmcores", "module", "crashme.ko"), target)
    config = replace(config_for(tmp_path / "w"), debug_roots=(root,))
    record = ship_null_crash(config)
    assert chain(record)[0] == ("list_empty", "list.h", 299)


def test_no_debuginfo_or_disabled_ships_the_kernels_own_words(tmp_path: Path) -> None:
    ko = shared_path("vmcores", "module", "crashme.ko")
    empty_root = tmp_path / "empty-debug"
    empty_root.mkdir()
    record = ship_null_crash(replace(config_for(tmp_path / "a"), debug_roots=(empty_root,)))
    assert record.rip is not None and record.rip.source == ()
    off = replace(config_for(tmp_path / "b"), debuginfo=(ko,), symbolize_enabled=False)
    record = ship_null_crash(off)
    assert record.rip is not None and record.rip.source == ()
    assert not (off.state_dir / "symbols").exists()


def test_debuginfo_of_another_build_is_not_used(tmp_path: Path) -> None:
    """A corrupt or foreign file where the module's debuginfo should be: shipped unsymbolized, not lost."""
    root = tmp_path / "debug"
    target = root / "lib" / "modules" / RELEASE / "extra" / "crashme.ko"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"\x7fELF" + b"\0" * 60)  # an ELF header and nothing else
    record = ship_null_crash(replace(config_for(tmp_path / "w"), debug_roots=(root,)))
    assert record.rip is not None and record.rip.source == ()
    assert record.title


def test_live_log_reports_are_symbolized_too(tmp_path: Path) -> None:
    """A live-log block is the running kernel's: its modules' debuginfo applies the same way."""
    ko = shared_path("vmcores", "module", "crashme.ko")
    config = replace(config_for(tmp_path), debuginfo=(ko,))
    block = shared_path("vmcores", "null", "serial.log").read_text(errors="replace")
    spool = open_spool(config)
    key, data = _kmsg_job(block)
    spool.add_job(key, "kmsg", data)
    spool.close()
    collector = FakeCollector()
    assert run_worker(config, heartbeat=False, shipper_factory=lambda _c: collector, analyzer=analyze) == 0
    (request,) = [r for r in collector.received.values() if r.signature.rip.module == "crashme"]
    assert chain(convert.record_from_proto(request.signature))[0] == ("list_empty", "list.h", 299)
