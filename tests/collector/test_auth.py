"""The query token on both ports: one parser (collector.auth), the scheme in any case (RFC 7235
§2.1), the same answers over HTTP and gRPC for the same `Authorization` value."""

from __future__ import annotations

import asyncio
import http.client
from pathlib import Path

import grpc
import pytest
from grpc import aio
from prometheus_client import CollectorRegistry

from collector.auth import bearer_credentials, metadata_credentials, token_matches
from collector.config import CollectorConfig
from collector.metrics import Metrics
from collector.server import start_collector
from wire.v1 import query_service_pb2, query_service_pb2_grpc

TOKEN = "s3cret-Token_value"

# (Authorization value, accepted with TOKEN configured)
HEADERS: list[tuple[str, bool]] = [
    (f"Bearer {TOKEN}", True),
    (f"bearer {TOKEN}", True),
    (f"BEARER {TOKEN}", True),
    (f"bEaReR   {TOKEN}", True),  # one or more spaces separate scheme and credentials
    (f"  Bearer {TOKEN}  ", True),
    (f"Bearer {TOKEN}x", False),
    (f"Bearer {TOKEN[:-1]}", False),
    (f"Bearer {TOKEN.lower()}", False),  # the scheme is case-insensitive, the token is not
    (f"Basic {TOKEN}", False),
    (f"Token {TOKEN}", False),
    (f"Bearer{TOKEN}", False),
    ("Bearer", False),
    ("", False),
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("Bearer abc", "abc"), ("bearer abc", "abc"), ("BEARER \tabc ", "abc"), ("Basic abc", None), ("", None),
     ("Bearer", ""), ("Bearerabc", None)],
)  # fmt: skip
def test_parser(value: str, expected: str | None) -> None:
    assert bearer_credentials(value) == expected


def test_metadata_takes_the_first_bearer_entry() -> None:
    assert metadata_credentials((("x-other", "1"), ("authorization", "Basic a"), ("authorization", "bearer b"))) == "b"
    assert metadata_credentials(None) is None
    assert metadata_credentials((("authorization", b"bearer b"),)) is None  # binary values are not tokens
    assert token_matches("\udcff", "x") is False  # undecodable text compares, never raises


@pytest.mark.parametrize(("header", "accepted"), HEADERS, ids=[h or "empty" for h, _ in HEADERS])
def test_both_ports_agree(tmp_path: Path, header: str, accepted: bool) -> None:
    async def scenario() -> tuple[int, grpc.StatusCode]:
        config = CollectorConfig(
            db=f"sqlite:///{tmp_path / 'c.db'}", listen="127.0.0.1:0", http="127.0.0.1:0", token=TOKEN
        )
        running = await start_collector(config, metrics=Metrics(CollectorRegistry()))
        try:
            assert running.http is not None
            status = await asyncio.to_thread(_http_status, running.http.port, header)
            async with aio.insecure_channel(running.grpc_target) as channel:
                query = query_service_pb2_grpc.QueryServiceStub(channel)
                metadata = (("authorization", header),) if header else ()
                try:
                    await query.ListClusters(query_service_pb2.ListClustersRequest(), metadata=metadata)
                    code = grpc.StatusCode.OK
                except aio.AioRpcError as err:
                    code = err.code()
            return status, code
        finally:
            await running.stop(grace=0)

    status, code = asyncio.run(scenario())
    assert (status, code) == ((200, grpc.StatusCode.OK) if accepted else (401, grpc.StatusCode.UNAUTHENTICATED))


def _http_status(port: int, header: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("GET", "/api/v1/clusters")
        if header:
            conn.putheader("Authorization", header)
        conn.endheaders()
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()
