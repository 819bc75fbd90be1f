"""The gRPC surface on a real server (127.0.0.1, port 0): ingest, queries, status codes, health.

Each test runs its own collector on a fresh SQLite file (the store suite covers PostgreSQL) and
talks to it through grpc.aio clients, as agents and the CLI do.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from collector.config import CollectorConfig
from collector.metrics import Metrics
from collector.server import RunningCollector, start_collector
from collector.signature import record_from_stored
from tests.collector.records import null_deref
from tests.wire.test_tls import Pki, pki  # noqa: F401 - the module-scoped certificate fixture
from wire import convert
from wire.grpc_options import MAX_MESSAGE_BYTES
from wire.model import Page, QueryFilter
from wire.v1 import (
    crash_pb2,
    ingest_service_pb2,
    ingest_service_pb2_grpc,
    query_service_pb2,
    query_service_pb2_grpc,
)


@asynccontextmanager
async def serving(tmp_path: Path, **overrides: Any) -> AsyncIterator[RunningCollector]:
    settings: dict[str, Any] = {"db": f"sqlite:///{tmp_path}/c.db", "listen": "127.0.0.1:0", "http": ""}
    config = CollectorConfig(**(settings | overrides))
    running = await start_collector(config, metrics=Metrics(CollectorRegistry()))
    try:
        yield running
    finally:
        await running.stop(grace=0)


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def host(name: str = "web-1") -> crash_pb2.HostFacts:
    return crash_pb2.HostFacts(hostname=name, kernel_release="6.1.0-26-amd64", machine="x86_64",
                               hardware="QEMU", modules=["e1000e"], cpus=2, memory_bytes=1 << 30,
                               agent_version="0.1.0")  # fmt: skip


def report(key: str = "key-00000001", name: str = "web-1", **record_changes: Any) -> ingest_service_pb2.ReportCrashRequest:
    record = dataclasses.replace(null_deref(), **record_changes)
    return convert.report_request(record, key=key, host=host(name), source_path="/var/crash/1/dmesg.txt")


def counter(running: RunningCollector, result: str) -> float:
    value = running.metrics.registry.get_sample_value(
        "crashfleet_reports_received_total", {"result": result, "kind": "null-deref"}
    )
    return value or 0.0


def test_report_then_query_everything(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as c, aio.insecure_channel(c.grpc_target) as ch:
            ingest = ingest_service_pb2_grpc.IngestServiceStub(ch)
            query = query_service_pb2_grpc.QueryServiceStub(ch)
            first = await ingest.ReportCrash(report())
            again = await ingest.ReportCrash(report())
            other = await ingest.ReportCrash(report("key-00000002", name="web-2"))
            assert not first.duplicate and again.duplicate and not other.duplicate
            assert (again.crash_id, again.cluster_id) == (first.crash_id, first.cluster_id)
            assert other.cluster_id == first.cluster_id and other.crash_id != first.crash_id
            assert (counter(c, "new"), counter(c, "duplicate")) == (2.0, 1.0)

            clusters = await query.ListClusters(query_service_pb2.ListClustersRequest())
            [cluster] = clusters.clusters
            assert (cluster.id, cluster.count, cluster.hosts) == (first.cluster_id, 2, 2)
            assert cluster.title == "BUG: kernel NULL pointer dereference in crashme_write"
            detail = await query.GetCluster(query_service_pb2.GetClusterRequest(cluster_id=cluster.id))
            assert {b.value for b in detail.cluster.by_host} == {"web-1", "web-2"}
            crashes = await query.ListCrashes(query_service_pb2.ListCrashesRequest(
                filter=query_service_pb2.Filter(host="web-2")))  # fmt: skip
            assert [k.id for k in crashes.crashes] == [other.crash_id]
            crash = await query.GetCrash(query_service_pb2.GetCrashRequest(crash_id=first.crash_id))
            assert crash.crash.summary.source == "/var/crash/1/dmesg.txt"
            stored = record_from_stored(crash.crash.signature_json)
            assert stored.registers["cr2"] == 0x60 and stored.code is not None
            assert crash.crash.excerpt.startswith("BUG: kernel NULL pointer dereference")

            facts = host("web-3")
            facts.user_faults.add(binary="java", count=3)
            await ingest.Heartbeat(ingest_service_pb2.HeartbeatRequest(host=facts))
            assert c.store.user_faults("web-3") == {"java": 3}  # for the bad-host score
            hosts = await query.ListHosts(query_service_pb2.ListHostsRequest(page_size=2))
            assert [h.hostname for h in hosts.hosts] == ["web-1", "web-2"] and hosts.next_page_token
            rest = await query.ListHosts(query_service_pb2.ListHostsRequest(page_token=hosts.next_page_token))
            assert [h.hostname for h in rest.hosts] == ["web-3"] and rest.hosts[0].last_heartbeat.seconds > 0

    run(scenario)


INVALID = [
    ("missing key", lambda r: r.ClearField("idempotency_key")),
    ("short key", lambda r: setattr(r, "idempotency_key", "abc")),
    ("key with spaces", lambda r: setattr(r, "idempotency_key", "key with spaces")),
    ("no signature", lambda r: r.ClearField("signature")),
    ("unknown kind", lambda r: setattr(r.signature, "kind", "kaboom")),
    ("empty title", lambda r: setattr(r.signature, "title", "")),
    ("NUL in title", lambda r: setattr(r.signature, "title", "BUG\x00x")),
    ("escape in module", lambda r: r.signature.modules.append("\x1b[31mred")),
    ("no hostname", lambda r: setattr(r.host, "hostname", "")),
    ("hostname with space", lambda r: setattr(r.host, "hostname", "a b")),
    ("no source", lambda r: r.ClearField("source_path")),
    ("bad stack context", lambda r: setattr(r.signature.call_trace[0], "context", "???")),
]


@pytest.mark.parametrize(("case", "mutate"), INVALID, ids=[c for c, _ in INVALID])
def test_malformed_reports_are_invalid_argument_and_not_stored(
    tmp_path: Path, case: str, mutate: Callable[[ingest_service_pb2.ReportCrashRequest], None]
) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as c, aio.insecure_channel(c.grpc_target) as ch:
            request = report()
            mutate(request)
            with pytest.raises(aio.AioRpcError) as err:
                await ingest_service_pb2_grpc.IngestServiceStub(ch).ReportCrash(request)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
            crashes = await query_service_pb2_grpc.QueryServiceStub(ch).ListCrashes(
                query_service_pb2.ListCrashesRequest()
            )
            assert list(crashes.crashes) == []
            # The server is still up and takes a good report.
            assert not (await ingest_service_pb2_grpc.IngestServiceStub(ch).ReportCrash(report())).duplicate

    run(scenario)


def test_oversized_excerpt_and_message_are_resource_exhausted(tmp_path: Path) -> None:
    async def scenario() -> None:
        big = [("grpc.max_send_message_length", 2 * MAX_MESSAGE_BYTES)]
        async with serving(tmp_path) as c, aio.insecure_channel(c.grpc_target, options=big) as ch:
            ingest = ingest_service_pb2_grpc.IngestServiceStub(ch)
            request = report()
            request.log_excerpt = "x" * (convert.MAX_EXCERPT_BYTES + 1)
            with pytest.raises(aio.AioRpcError) as err:
                await ingest.ReportCrash(request)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            request = report()
            request.signature.modules.extend(["m" * 1000] * (MAX_MESSAGE_BYTES // 1000 + 10))
            with pytest.raises(aio.AioRpcError) as err:
                await ingest.ReportCrash(request)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert counter(c, "new") == 0
            assert not (await ingest.ReportCrash(report())).duplicate

    run(scenario)


def test_flooding_host_is_throttled_others_are_not(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, reports_per_second=0.001, report_burst=3) as c, \
                aio.insecure_channel(c.grpc_target) as ch:  # fmt: skip
            ingest = ingest_service_pb2_grpc.IngestServiceStub(ch)
            for i in range(3):
                await ingest.ReportCrash(report(f"flood-{i:04d}", name="noisy"))
            with pytest.raises(aio.AioRpcError) as err:
                await ingest.ReportCrash(report("flood-0099", name="noisy"))
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert not (await ingest.ReportCrash(report("quiet-0001", name="quiet"))).duplicate

    run(scenario)


def test_query_errors_have_precise_codes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as c, aio.insecure_channel(c.grpc_target) as ch:
            query = query_service_pb2_grpc.QueryServiceStub(ch)
            cases: list[tuple[Awaitable[Any], grpc.StatusCode]] = [
                (query.GetCluster(query_service_pb2.GetClusterRequest(cluster_id="nope")), grpc.StatusCode.NOT_FOUND),
                (query.GetCrash(query_service_pb2.GetCrashRequest()), grpc.StatusCode.INVALID_ARGUMENT),
                (query.ListCrashes(query_service_pb2.ListCrashesRequest(page_token="garbage")),
                 grpc.StatusCode.INVALID_ARGUMENT),
                (query.ListClusters(query_service_pb2.ListClustersRequest(page_size=-1)),
                 grpc.StatusCode.INVALID_ARGUMENT),
            ]  # fmt: skip
            for call, code in cases:
                with pytest.raises(aio.AioRpcError) as err:
                    await call
                assert err.value.code() == code

    run(scenario)


def test_query_token_is_required_when_configured(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path, token="s3cret-token") as c, aio.insecure_channel(c.grpc_target) as ch:
            query = query_service_pb2_grpc.QueryServiceStub(ch)
            for metadata in ((), (("authorization", "Bearer wrong"),)):
                with pytest.raises(aio.AioRpcError) as err:
                    await query.ListClusters(query_service_pb2.ListClustersRequest(), metadata=metadata)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            ok = await query.ListClusters(
                query_service_pb2.ListClustersRequest(), metadata=(("authorization", "Bearer s3cret-token"),)
            )
            assert list(ok.clusters) == []

    run(scenario)


def test_health_and_reflection(tmp_path: Path) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async def scenario() -> None:
        async with serving(tmp_path) as c, aio.insecure_channel(c.grpc_target) as ch:
            health = health_pb2_grpc.HealthStub(ch)
            for service in ("", "crashfleet.v1.IngestService", "crashfleet.v1.QueryService"):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            stub = reflection_pb2_grpc.ServerReflectionStub(ch)

            async def requests() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
                yield reflection_pb2.ServerReflectionRequest(list_services="")

            async for response in stub.ServerReflectionInfo(requests()):
                names = {s.name for s in response.list_services_response.service}
                assert {"crashfleet.v1.IngestService", "crashfleet.v1.QueryService", "grpc.health.v1.Health"} <= names

    run(scenario)


def test_sync_client_with_token_through_crashfleet_client(tmp_path: Path) -> None:
    """wire.channel.open_channel (what the CLI and agent use) sends the bearer token."""
    from wire.channel import ClientConfig, open_channel

    async def scenario() -> None:
        async with serving(tmp_path, token="tok-123456") as c:
            def call(token: str | None) -> grpc.StatusCode:
                with open_channel(ClientConfig(target=c.grpc_target, token=token)) as channel:
                    try:
                        query_service_pb2_grpc.QueryServiceStub(channel).ListHosts(
                            query_service_pb2.ListHostsRequest(), timeout=10)
                    except grpc.RpcError as exc:
                        return exc.code()
                return grpc.StatusCode.OK

            assert await asyncio.to_thread(call, "tok-123456") == grpc.StatusCode.OK
            assert await asyncio.to_thread(call, None) == grpc.StatusCode.UNAUTHENTICATED

    run(scenario)


def test_mtls_records_the_certificate_identity_not_the_claim(tmp_path: Path, pki: Pki) -> None:  # noqa: F811
    """With a client CA configured, the crash is filed under the client certificate's CN."""
    from wire.channel import ClientConfig, open_channel

    async def scenario() -> None:
        async with serving(tmp_path, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key),
                           client_ca=str(pki.ca)) as c:  # fmt: skip
            port = c.grpc_port

            def submit() -> ingest_service_pb2.ReportCrashResponse:
                config = ClientConfig(target=f"localhost:{port}", ca_file=str(pki.ca),
                                      cert_file=str(pki.client_cert), key_file=str(pki.client_key))  # fmt: skip
                with open_channel(config) as channel:
                    reply: ingest_service_pb2.ReportCrashResponse = ingest_service_pb2_grpc.IngestServiceStub(
                        channel).ReportCrash(report(name="claimed-elsewhere"), timeout=10)  # fmt: skip
                    return reply

            reply = await asyncio.to_thread(submit)
            detail = c.store.get_crash(reply.crash_id)
            assert detail is not None and detail.summary.host == "web-1.example"

            def plaintext() -> grpc.StatusCode:
                with open_channel(ClientConfig(target=f"localhost:{port}")) as channel:
                    try:
                        ingest_service_pb2_grpc.IngestServiceStub(channel).ReportCrash(report("key-00000009"), timeout=5)
                    except grpc.RpcError as exc:
                        return exc.code()
                return grpc.StatusCode.OK

            assert await asyncio.to_thread(plaintext) == grpc.StatusCode.UNAVAILABLE

    run(scenario)


def test_http_port_serves_metrics_of_this_collector(tmp_path: Path) -> None:
    import urllib.request

    async def scenario() -> None:
        async with serving(tmp_path, http="127.0.0.1:0") as c, aio.insecure_channel(c.grpc_target) as ch:
            await ingest_service_pb2_grpc.IngestServiceStub(ch).ReportCrash(report())
            assert c.http is not None
            url = f"{c.http.url}/metrics"

            def fetch() -> str:
                with urllib.request.urlopen(url, timeout=10) as resp:
                    return str(resp.read().decode())

            text = await asyncio.to_thread(fetch)
            assert 'crashfleet_reports_received_total{kind="null-deref",result="new"} 1.0' in text
            assert 'crashfleet_rpc_duration_seconds_count{code="OK",method="ReportCrash"} 1.0' in text
            assert 'crashfleet_store_duration_seconds_count{operation="ingest"} 1.0' in text

    run(scenario)


def test_hostile_bytes_get_precise_codes_and_the_server_stays_up(tmp_path: Path) -> None:
    """Random bytes, truncations and bit flips of a valid request: every answer is OK,
    INVALID_ARGUMENT or RESOURCE_EXHAUSTED (never UNKNOWN/INTERNAL), and nothing half-stored."""
    import random

    rng = random.Random(4)
    valid = report().SerializeToString()
    payloads = [b"", b"\xff" * 16, bytes(range(256))]
    payloads += [rng.randbytes(rng.randrange(1, 512)) for _ in range(40)]
    payloads += [valid[: rng.randrange(len(valid))] for _ in range(40)]
    for _ in range(80):
        flipped = bytearray(valid)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        payloads.append(bytes(flipped))
    allowed = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}

    async def scenario() -> None:
        async with serving(tmp_path, report_burst=1000, peer_report_burst=1000) as c, aio.insecure_channel(c.grpc_target) as ch:
            codes: dict[grpc.StatusCode, int] = {}
            for method in ("/crashfleet.v1.IngestService/ReportCrash", "/crashfleet.v1.IngestService/Heartbeat",
                           "/crashfleet.v1.QueryService/ListCrashes"):  # fmt: skip
                call = ch.unary_unary(method, None, None)
                for payload in payloads:
                    try:
                        await call(payload, timeout=10)
                        code = grpc.StatusCode.OK
                    except aio.AioRpcError as exc:
                        code = exc.code()
                        assert code in allowed, (method, payload, exc.details())
                    codes[code] = codes.get(code, 0) + 1
            assert codes.get(grpc.StatusCode.INVALID_ARGUMENT, 0) > 50
            stored, _ = c.store.list_crashes(QueryFilter(), Page(size=1000))
            accepted = c.metrics.registry.get_sample_value(
                "crashfleet_reports_received_total", {"result": "new", "kind": "null-deref"}) or 0  # fmt: skip
            assert len(stored) == accepted
            assert not (await ingest_service_pb2_grpc.IngestServiceStub(ch).ReportCrash(report("fresh-key-0001"))).duplicate

    run(scenario)
