"""Symbolizing at ingest: a collector with a symbol index of the crashed kernel's build stores
the crash's source lines beside it (symbolized_json), the signed record and fingerprint unchanged;
without one, the crash is stored as sent and nothing is symbolized."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.model import CallFrame, CrashKind, CrashRecord, Rip, SystemFacts
from analysis.symbolize.index import SymbolIndex
from collector.ingest import Ingestor
from collector.metrics import Metrics
from collector.signature import record_from_stored
from collector.store import open_store
from collector.symbols import CollectorSymbols
from wire import convert
from wire.v1 import crash_pb2, ingest_service_pb2

PROG = Path(__file__).resolve().parents[1] / "data" / "symbolize" / "prog"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A stand-in "vmlinux" and its build-id, indexed into a symbols directory, then deleted:
    the collector holds only the index."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    root = tmp_path_factory.mktemp("collector-symbols")
    elf = root / "vmlinux"
    subprocess.run(["gcc", "-g", "-O2", "-Wl,--build-id=sha1", "-o", str(elf), str(PROG / "main.c"),
                    str(PROG / "walk.c")], check=True, timeout=120)
    symbols = root / "symbols"
    with SymbolIndex.open_or_build(str(elf), cache_dir=symbols) as index:
        index.index_all()
        build_id = index.build_id
    assert build_id is not None
    elf.unlink()
    return symbols, build_id


def _request(build_id: str | None) -> tuple[CrashRecord, ingest_service_pb2.ReportCrashRequest]:
    record = CrashRecord(
        kind=CrashKind.BUG,
        reason="BUG: something in walk",
        normalized_reason="BUG: something in walk",
        title="BUG: something in walk",
        rip=Rip("walk", 0x9),
        call_trace=(CallFrame("main", 0x40), CallFrame("fail_loudly", 0x10, module="somemod")),
    )
    system = SystemFacts(format="kdump-zlib", build_id=build_id) if build_id else None
    host = crash_pb2.HostFacts(hostname="web-1", kernel_release="6.1.0-56-amd64", machine="x86_64")
    return record, convert.report_request(record, key="k" * 16, host=host, source_path="/var/crash/x", system=system)


def _ingestor(symbols: Path | None) -> Ingestor:
    enrich = CollectorSymbols(symbols).enrich if symbols is not None else None
    return Ingestor(open_store("sqlite:///:memory:"), Metrics(), symbolize=enrich)


def test_crash_of_an_indexed_build_is_stored_with_source(kernel: tuple[Path, str]) -> None:
    symbols, build_id = kernel
    record, request = _request(build_id)
    plain = _ingestor(None).validate(request, "web-1")
    enriched = _ingestor(symbols).validate(request, "web-1")
    assert enriched.build_id == build_id and plain.build_id == build_id
    assert enriched.signature_json == plain.signature_json and plain.symbolized_json == ""
    stored = record_from_stored(enriched.symbolized_json)
    assert stored.rip is not None and stored.rip.source
    assert stored.rip.source[-1].function == "walk"
    assert stored.rip.source[0].file.endswith(("walk.c", "helpers.h"))
    assert stored.call_trace[0].source and stored.call_trace[0].source[-1].function == "main"
    assert stored.call_trace[1].source == ()  # module frames: no module build is known
    assert enriched.fingerprint == plain.fingerprint and enriched.frames == plain.frames
    assert record_from_stored(plain.signature_json).rip == record.rip


def test_other_builds_and_plain_logs_are_stored_as_sent(kernel: tuple[Path, str]) -> None:
    symbols, _build_id = kernel
    for build_id in ("ab" * 20, None):
        record, request = _request(build_id)
        crash = _ingestor(symbols).validate(request, "web-1")
        assert record_from_stored(crash.signature_json).rip == record.rip
        assert crash.symbolized_json == "" and crash.build_id == (build_id or "")


def test_ingest_follows_the_index_file_when_it_is_removed_or_replaced(
    kernel: tuple[Path, str], tmp_path: Path
) -> None:
    """Each ingest thread keeps its index open, but never past the file: a removed index stops
    symbolization, a replaced one (an upload's os.replace) is reopened."""
    source, build_id = kernel
    root = tmp_path / "symbols"
    shutil.copytree(source, root)
    symbols = CollectorSymbols(root)
    record, _ = _request(build_id)
    system = SystemFacts(format="kdump-zlib", build_id=build_id)
    first = symbols.enrich(record, system)
    assert first is not None and first.rip is not None and first.rip.source
    path = symbols.path_for(build_id)
    saved = tmp_path / "saved.symidx"
    shutil.copyfile(path, saved)
    path.unlink()
    assert symbols.enrich(record, system) is None
    shutil.copyfile(saved, tmp_path / "incoming.symidx")
    (tmp_path / "incoming.symidx").replace(path)
    assert symbols.enrich(record, system) == first
    path.write_bytes(b"not an index")  # replaced in place by something unusable
    assert symbols.enrich(record, system) is None
