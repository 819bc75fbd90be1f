"""End to end on a live collector (loopback gRPC + HTTP, SQLite): crashes reported before their
kernel's index is uploaded are symbolized once `crashfleet symbols upload` delivers it, off the
RPC, and the cluster and crash pages then show the RIP's and frames' source chains."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import grpc
import pytest

from analysis.model import CallFrame, CrashKind, CrashRecord, Rip, SystemFacts
from analysis.symbolize.elfinfo import read_build_id
from collector.signature import record_from_stored
from collector.store import open_store
from crashfleet.cli import main
from tests.symbolize.conftest import TOKEN, Live
from wire import convert
from wire.model import Page, QueryFilter
from wire.v1 import crash_pb2, ingest_service_pb2, ingest_service_pb2_grpc


def _send(live: Live, key: str, build_id: str) -> ingest_service_pb2.ReportCrashResponse:
    record = CrashRecord(
        kind=CrashKind.BUG, reason="BUG: in walk", normalized_reason="BUG: in walk", title="BUG: in walk <&>",
        rip=Rip("walk", 0x9), call_trace=(CallFrame("main", 0x40), CallFrame("helper", 0x8, module="m<x>")),
    )  # fmt: skip
    host = crash_pb2.HostFacts(hostname="web-1", kernel_release="6.1.0-56-amd64", machine="x86_64")
    system = SystemFacts(format="kdump-zlib", build_id=build_id)
    request = convert.report_request(record, key=key, host=host, source_path=f"/var/crash/{key}", system=system)
    with grpc.insecure_channel(live.target) as channel:
        reply: ingest_service_pb2.ReportCrashResponse = ingest_service_pb2_grpc.IngestServiceStub(
            channel
        ).ReportCrash(request, timeout=30)
    return reply


def _page(live: Live, path: str) -> str:
    request = urllib.request.Request(live.http_url + path, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body: bytes = response.read()
    return body.decode()


def test_upload_symbolizes_crashes_stored_before_it(live: Live, kernel: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    build_id = read_build_id(str(kernel))
    assert build_id is not None
    early = [_send(live, f"retro-early-{n:04d}", build_id) for n in range(3)]
    stranger = _send(live, "retro-other-0001", "cd" * 20)
    store = open_store(live.db)
    try:
        clusters_before = store.list_clusters(QueryFilter(), Page())[0]
        details_before = {r.crash_id: store.get_crash(r.crash_id) for r in early}
        assert all(d is not None and d.symbolized_json == "" for d in details_before.values())
        assert 'id="source-chains"' not in _page(live, f"/clusters/{early[0].cluster_id}")

        assert main(["symbols", "--cache", str(tmp_path / "cache"), "upload", "--collector", live.target,
                     "--token-file", str(live.token_file), str(kernel)]) == 0  # fmt: skip
        assert f"build-id {build_id} uploaded" in capsys.readouterr().out
        resymbolizer = live.collector.resymbolizer
        assert resymbolizer is not None
        live.call(resymbolizer.wait_idle())
        assert [(r.build_id, r.symbolized, r.failed) for r in resymbolizer.reports] == [(build_id, 3, 0)]

        late = _send(live, "retro-late-00001", build_id)  # the index is there now: symbolized at ingest
        assert late.cluster_id == early[0].cluster_id
        for reply in [*early, late]:
            detail = store.get_crash(reply.crash_id)
            assert detail is not None and detail.summary.cluster_id == early[0].cluster_id
            rip = record_from_stored(detail.symbolized_json).rip
            assert rip is not None and rip.source[-1].function == "walk"
            old = details_before.get(reply.crash_id)
            if old is not None:
                assert (detail.summary, detail.signature_json) == (old.summary, old.signature_json)
        other = store.get_crash(stranger.crash_id)
        assert other is not None and other.symbolized_json == ""
        clusters_after = store.list_clusters(QueryFilter(), Page())[0]
        assert [(c.id, c.fingerprint, c.title) for c in clusters_after] == [
            (c.id, c.fingerprint, c.title) for c in clusters_before
        ]

        shown = store.get_crash(early[0].crash_id)
        assert shown is not None
        rip = record_from_stored(shown.symbolized_json).rip
        assert rip is not None and len(rip.source) >= 2  # walk.c inlines helpers: a real chain
        cluster_html = _page(live, f"/clusters/{early[0].cluster_id}")
        crash_html = _page(live, f"/crashes/{early[0].crash_id}")
        for html in (cluster_html, crash_html):
            section = html[html.index('id="source-chains"') :]
            assert "walk.c:" in section and "main.c:" in section
            assert "<code>main+0x40</code>" in section
            assert "helper+0x8 [m&lt;x&gt;]" in section and "m<x>" not in section  # escaped
            assert 'class="note">no source line' in section  # the module frame
            start = section.index('<td class="mono">RIP</td>')
            rip_row = section[start : section.index("</tr>", start)]
            where = [rip_row.index(f'<code class="fn">{loc.function}</code>') for loc in rip.source]
            assert where == sorted(where)  # innermost first, as stored
    finally:
        store.close()
