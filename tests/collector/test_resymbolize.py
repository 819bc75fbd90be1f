"""Retroactive symbolization in the store, on SQLite and PostgreSQL: crashes stored before their
kernel build's symbol index arrived gain source lines (symbolized_json) when it does, and nothing
else about them changes: not the signed record, not the fingerprint, not the cluster."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import sqlite3
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from analysis.model import CallFrame, CrashKind, CrashRecord, Rip, SystemFacts
from analysis.symbolize.index import SymbolIndex
from collector.ingest import Ingestor
from collector.metrics import Metrics
from collector.signature import record_from_stored
from collector.store import IngestResult, Store, open_store
from collector.store.sql import load_migrations
from collector.symbols import CollectorSymbols, Resymbolizer
from tests.collector.conftest import make_crash
from wire import convert
from wire.model import Page, QueryFilter
from wire.v1 import crash_pb2

PROG = Path(__file__).resolve().parents[1] / "data" / "symbolize" / "prog"
OTHER_BUILD = "ab" * 20
SLIDE = 0x3000_0000
WALK = Rip("walk", 0x9)


@dataclass(frozen=True)
class Kernel:
    symbols: CollectorSymbols
    build_id: str
    walk: int  # link-time address of walk()


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Kernel:
    """A stand-in vmlinux, fully indexed into a symbols directory and then deleted: the
    collector holds only the index."""
    if shutil.which("gcc") is None or shutil.which("nm") is None:
        pytest.skip("gcc/nm are not installed")
    root = tmp_path_factory.mktemp("resymbolize")
    elf = root / "vmlinux"
    subprocess.run(["gcc", "-g", "-O2", "-Wl,--build-id=sha1", "-o", str(elf), str(PROG / "main.c"),
                    str(PROG / "walk.c")], check=True, timeout=120)  # fmt: skip
    nm = subprocess.run(["nm", str(elf)], check=True, capture_output=True, text=True, timeout=30).stdout
    walk = next(int(line.split()[0], 16) for line in nm.splitlines() if line.split()[-1] == "walk")
    with SymbolIndex.open_or_build(str(elf), cache_dir=root / "symbols") as index:
        index.index_all()
        build_id = index.build_id
    assert build_id is not None
    elf.unlink()
    return Kernel(CollectorSymbols(root / "symbols"), build_id, walk)


def _record(rip: Rip) -> CrashRecord:
    return CrashRecord(
        kind=CrashKind.BUG, reason="BUG: something in walk", normalized_reason="BUG: something in walk",
        title="BUG: something in walk", rip=rip,
        call_trace=(CallFrame("main", 0x40), CallFrame("fail_loudly", 0x10, module="somemod")),
    )  # fmt: skip


def _report(store: Store, key: str, system: SystemFacts | None, rip: Rip = WALK) -> IngestResult:
    """Through the real ingest path, with no symbol store: as if the index had not arrived yet."""
    host = crash_pb2.HostFacts(hostname="web-1", kernel_release="6.1.0-56-amd64", machine="x86_64")
    request = convert.report_request(_record(rip), key=key, host=host, source_path=f"/var/crash/{key}", system=system)
    return Ingestor(store, Metrics(CollectorRegistry())).report(request, "web-1")


def _clusters(store: Store) -> list[tuple[str, str, int, tuple[str, ...]]]:
    rows, _ = store.list_clusters(QueryFilter(), Page(size=100))
    out = []
    for c in rows:
        detail = store.get_cluster(c.id)
        assert detail is not None
        out.append((c.id, c.fingerprint, c.count, detail.fingerprints))
    return out


def test_crashes_stored_before_the_index_are_symbolized_when_it_arrives(store: Store, kernel: Kernel) -> None:
    build = SystemFacts(format="kdump-zlib", build_id=kernel.build_id.upper())  # case as a dump may print it
    ours = [_report(store, f"key-ours-{n:04d}", build) for n in range(5)]
    other = _report(store, "key-other-0001", SystemFacts(format="kdump-zlib", build_id=OTHER_BUILD))
    plain = _report(store, "key-plain-0001", None)
    assert store.builds_to_symbolize() == sorted([kernel.build_id, OTHER_BUILD])
    before = {r.crash_id: store.get_crash(r.crash_id) for r in [*ours, other, plain]}
    clusters = _clusters(store)
    assert all(d is not None and d.symbolized_json == "" for d in before.values())

    report = kernel.symbols.resymbolize(store, kernel.build_id, batch=2)  # three batches
    assert (report.symbolized, report.failed, report.indexed) == (5, 0, True)

    assert _clusters(store) == clusters  # enrichment never moves a crash or renames a cluster
    assert store.builds_to_symbolize() == [OTHER_BUILD]
    for result in ours:
        detail, old = store.get_crash(result.crash_id), before[result.crash_id]
        assert detail is not None and old is not None
        assert (detail.summary, detail.signature_json, detail.host_facts) == (old.summary, old.signature_json, old.host_facts)
        assert detail.summary.cluster_id == result.cluster_id
        symbolized = record_from_stored(detail.symbolized_json)
        assert symbolized.fingerprint == record_from_stored(detail.signature_json).fingerprint
        assert symbolized.rip is not None and symbolized.rip.source[-1].function == "walk"
        assert symbolized.call_trace[0].source[-1].function == "main"
        assert symbolized.call_trace[1].source == ()  # a module frame: no module build is known
    for result in (other, plain):
        detail = store.get_crash(result.crash_id)
        assert detail is not None and detail.symbolized_json == ""


def test_a_pass_gives_each_trace_what_ingest_would_have(store: Store, kernel: Kernel) -> None:
    """Repeated traces are looked up once per pass; distinct ones must still get their own lines."""
    system = SystemFacts(format="kdump-zlib", build_id=kernel.build_id)
    rips = [Rip("walk", offset) for offset in (0x9, 0x2, 0x9, 0x11, 0x2)]
    stored = [_report(store, f"key-memo-{n:05d}", system, rip=rip) for n, rip in enumerate(rips)]
    kernel.symbols.resymbolize(store, kernel.build_id)
    for result, rip in zip(stored, rips, strict=True):
        direct = kernel.symbols.enrich(_record(rip), system)
        detail = store.get_crash(result.crash_id)
        assert direct is not None and detail is not None
        symbolized = record_from_stored(detail.symbolized_json)
        assert (symbolized.rip, symbolized.call_trace) == (direct.rip, direct.call_trace)
    sources = {record_from_stored(d.symbolized_json).rip for r in stored if (d := store.get_crash(r.crash_id))}
    assert len(sources) == 3  # three distinct RIPs, three distinct answers


def test_pending_only_stop_and_missing_index(store: Store, kernel: Kernel) -> None:
    build = SystemFacts(format="kdump-zlib", build_id=kernel.build_id)
    first = _report(store, "key-first-0001", build)
    assert kernel.symbols.resymbolize(store, kernel.build_id).symbolized == 1
    second = _report(store, "key-second-001", build)
    stop = threading.Event()
    stop.set()
    assert kernel.symbols.resymbolize(store, kernel.build_id, stop=stop).symbolized == 0
    pending = kernel.symbols.resymbolize(store, kernel.build_id, pending_only=True)
    assert pending.symbolized == 1  # only the crash stored after the first pass
    assert [c.crash_id for c in store.crashes_of_build(kernel.build_id, pending_only=True)] == []
    assert {c.crash_id for c in store.crashes_of_build(kernel.build_id)} == {first.crash_id, second.crash_id}
    assert store.crashes_of_build("") == []
    missing = kernel.symbols.resymbolize(store, OTHER_BUILD)
    assert (missing.symbolized, missing.indexed) == (0, False)


@pytest.mark.parametrize("build_id", ["a" * 4000, "../../etc/passwd", "xyz12345", "", " "], ids=repr)
def test_build_ids_that_no_index_can_have_are_not_stored(store: Store, build_id: str) -> None:
    """Hostile or malformed build-ids are stored as '' (the report itself is kept): an indexed
    column must not take 4000 characters (PostgreSQL's btree refuses rows over ~2.7 kB)."""
    result = _report(store, "key-hostile-01", SystemFacts(format="kdump-zlib", build_id=build_id))
    assert not result.duplicate
    assert store.builds_to_symbolize() == []
    assert store.crashes_of_build(build_id) == []


def test_raw_addresses_use_the_kaslr_offset_kept_at_ingest(store: Store, kernel: Kernel) -> None:
    system = SystemFacts(format="kdump-zlib", build_id=kernel.build_id, kernel_offset=SLIDE)
    result = _report(store, "key-raw-00001", system, rip=Rip("walk", address=kernel.walk + SLIDE))
    (row,) = store.crashes_of_build(kernel.build_id)
    assert row.kernel_offset == SLIDE
    kernel.symbols.resymbolize(store, kernel.build_id)
    detail = store.get_crash(result.crash_id)
    assert detail is not None
    rip = record_from_stored(detail.symbolized_json).rip
    assert rip is not None and rip.source and rip.source[-1].function == "walk"


def test_unreadable_stored_signatures_are_skipped_and_counted(store: Store, kernel: Kernel) -> None:
    good = _report(store, "key-good-00001", SystemFacts(format="kdump-zlib", build_id=kernel.build_id))
    bad = store.ingest(dataclasses.replace(make_crash("key-bad-000001"), build_id=kernel.build_id,
                                           signature_json="{not json"))  # fmt: skip
    report = kernel.symbols.resymbolize(store, kernel.build_id)
    assert (report.symbolized, report.failed) == (1, 1)
    good_detail, bad_detail = store.get_crash(good.crash_id), store.get_crash(bad.crash_id)
    assert good_detail is not None and good_detail.symbolized_json
    assert bad_detail is not None and bad_detail.symbolized_json == ""


def test_resymbolizer_picks_up_pending_builds_off_the_loop(store: Store, kernel: Kernel) -> None:
    """What a collector does at start: builds with unsymbolized crashes and an index get a pass."""
    build = SystemFacts(format="kdump-zlib", build_id=kernel.build_id)
    stored = [_report(store, f"key-start-{n:04d}", build) for n in range(3)]
    _report(store, "key-other-0002", SystemFacts(format="kdump-zlib", build_id=OTHER_BUILD))

    async def run() -> Resymbolizer:
        resymbolizer = Resymbolizer(kernel.symbols, store)
        await resymbolizer.schedule_pending()
        await resymbolizer.wait_idle()
        await resymbolizer.close()
        return resymbolizer

    resymbolizer = asyncio.run(run())
    assert [(r.build_id, r.symbolized) for r in resymbolizer.reports] == [(kernel.build_id, 3)]
    for result in stored:
        detail = store.get_crash(result.crash_id)
        assert detail is not None and detail.symbolized_json


def test_migration_fills_build_ids_of_existing_crashes(tmp_path: Path) -> None:
    """A database at schema 1 (no build_id column) keeps its crashes' build-ids from host_facts."""
    path = tmp_path / "old.db"
    first = load_migrations()[0]
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE schema_version (version BIGINT PRIMARY KEY, name TEXT NOT NULL,"
                   " applied_at BIGINT NOT NULL)")  # fmt: skip
        for statement in first.statements:
            db.execute(statement)
        db.execute("INSERT INTO schema_version VALUES (1, ?, 0)", (first.name,))
        for crash_id, facts in (("c1", '{"build_id": "%s", "machine": "x86_64"}' % ("12" * 20)),
                                ("c2", '{"machine": "x86_64"}'), ("c3", "not json, \"build_id\"")):  # fmt: skip
            db.execute(
                "INSERT INTO crashes VALUES (?, ?, 'cl', 'h', 't', 'bug', 'r', 'fp', 'v', '[]', 's', NULL, 0, 0,"
                " '6.1', '', '', '[]', ?, '{}', '', '')",
                (crash_id, "key-" + crash_id, facts),
            )
    store = open_store(f"sqlite:///{path}")
    try:
        assert [c.crash_id for c in store.crashes_of_build("12" * 20)] == ["c1"]
        assert store.builds_to_symbolize() == ["12" * 20]
    finally:
        store.close()
