"""`crashfleet symbols upload` to a live collector: the index lands keyed by build-id, crashes of
that build reported afterwards are stored with source lines, and bad uploads are refused."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from analysis.model import CallFrame, CrashKind, CrashRecord, Rip, SystemFacts
from analysis.symbolize.elfinfo import read_build_id
from analysis.symbolize.index import SymbolIndex
from collector.signature import record_from_stored
from collector.store import open_store
from crashfleet.cli import main
from tests.symbolize.conftest import TOKEN, Live
from wire import convert
from wire.v1 import crash_pb2, ingest_service_pb2_grpc, symbols_service_pb2, symbols_service_pb2_grpc


def _report(build_id: str) -> tuple[CrashRecord, SystemFacts]:
    record = CrashRecord(
        kind=CrashKind.BUG, reason="BUG: in walk", normalized_reason="BUG: in walk", title="BUG: in walk",
        rip=Rip("walk", 0x9), call_trace=(CallFrame("main", 0x40),),
    )
    return record, SystemFacts(format="kdump-zlib", build_id=build_id)


def test_upload_then_ingest_stores_source(live: Live, kernel: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    cache = str(tmp_path / "client-cache")
    assert main(["symbols", "--cache", cache, "upload", "--collector", live.target, str(kernel)]) == 1
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    assert main(["symbols", "--cache", cache, "upload", "--collector", live.target,
                 "--token-file", str(live.token_file), str(kernel)]) == 0
    build_id = read_build_id(str(kernel))
    assert build_id is not None and f"build-id {build_id} uploaded" in capsys.readouterr().out
    assert (live.symbols / build_id[:2] / f"{build_id[2:]}.symidx").is_file()
    assert not [p for p in live.symbols.iterdir() if p.name.startswith(".upload-")]

    record, system = _report(build_id)
    host = crash_pb2.HostFacts(hostname="web-1", kernel_release="6.1.0-56-amd64", machine="x86_64")
    request = convert.report_request(record, key="upload-test-0001", host=host, source_path="/var/crash/1", system=system)
    with grpc.insecure_channel(live.target) as channel:
        reply = ingest_service_pb2_grpc.IngestServiceStub(channel).ReportCrash(request, timeout=30)
    detail = open_store(live.db).get_crash(reply.crash_id)
    assert detail is not None
    assert record_from_stored(detail.signature_json).rip == record.rip  # signed as sent
    stored = record_from_stored(detail.symbolized_json)
    assert stored.rip is not None and stored.rip.source and stored.rip.source[-1].function == "walk"
    assert stored.call_trace[0].source[-1].function == "main"


def _upload(target: str, chunks: list[symbols_service_pb2.UploadSymbolsRequest]) -> grpc.RpcError:
    with grpc.insecure_channel(target) as channel:
        stub = symbols_service_pb2_grpc.SymbolServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.UploadSymbols(iter(chunks), metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=30)
    return info.value


@pytest.mark.parametrize(
    ("chunks", "code", "message"),
    [
        ([], grpc.StatusCode.INVALID_ARGUMENT, "empty upload"),
        ([symbols_service_pb2.UploadSymbolsRequest(data=b"x")], grpc.StatusCode.INVALID_ARGUMENT, "name the build_id"),
        ([symbols_service_pb2.UploadSymbolsRequest(build_id="../../etc", data=b"x")],
         grpc.StatusCode.INVALID_ARGUMENT, "not lowercase hex"),
        ([symbols_service_pb2.UploadSymbolsRequest(build_id="ab" * 20, data=b"SQLite format 3\0" + b"\xff" * 200)],
         grpc.StatusCode.INVALID_ARGUMENT, "symbol index"),
        ([symbols_service_pb2.UploadSymbolsRequest(build_id="ab" * 20, data=b"x" * ((1 << 20) + 1))],
         grpc.StatusCode.RESOURCE_EXHAUSTED, "chunk larger"),
        ([symbols_service_pb2.UploadSymbolsRequest(build_id="ab" * 20, data=b"x"),
          symbols_service_pb2.UploadSymbolsRequest(build_id="cd" * 20, data=b"x")],
         grpc.StatusCode.INVALID_ARGUMENT, "changed"),
    ],
    ids=["empty", "no-build-id", "path-build-id", "garbage", "huge-chunk", "two-ids"],
)
def test_bad_uploads_are_refused(live: Live, chunks: list[symbols_service_pb2.UploadSymbolsRequest],
                                 code: grpc.StatusCode, message: str) -> None:
    error = _upload(live.target, chunks)
    assert error.code() == code and message in (error.details() or "")
    assert not live.symbols.exists() or not any(live.symbols.rglob("*.symidx"))


def test_incomplete_or_mislabelled_index_is_refused(live: Live, kernel: Path, tmp_path: Path) -> None:
    with SymbolIndex.open_or_build(str(kernel), cache_dir=tmp_path, eager=False) as index:
        lazy, build_id = index.db_path.read_bytes(), index.build_id
    assert build_id is not None
    chunk = symbols_service_pb2.UploadSymbolsRequest
    error = _upload(live.target, [chunk(build_id=build_id, data=lazy)])
    assert "not complete" in (error.details() or "")
    with SymbolIndex.open_or_build(str(kernel), cache_dir=tmp_path) as index:
        index.index_all()
        full = index.db_path.read_bytes()
    error = _upload(live.target, [chunk(build_id="ab" * 20, data=full)])
    assert f"index is for build-id {build_id}" in (error.details() or "")
