"""The HTTP port under hostile clients: slow headers, slow and oversized bodies, connection floods
from one address, and clients that hang up mid-response. Real collectors and servers on loopback;
the deadlines are shortened through the same settings production reads (`[http_limits]`)."""

from __future__ import annotations

import asyncio
import http.client
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from collector import http as chttp
from collector.config import CollectorConfig
from collector.metrics import Metrics
from collector.server import start_collector
from tests.collector.memstore import MemStore, sample_store

TRICKLERS = 32
TRICKLE_EVERY_S = 10.0  # one header byte per this many seconds: far slower than any deadline
HEADER_TIMEOUT_S = 1.5
PROMPT_S = 1.0  # what "answers promptly" means for a probe here (it takes milliseconds)
SLOW_CLIENT = "127.0.0.2"  # the whole 127/8 is loopback on Linux: a second client address


def _get(port: int, path: str, source: str = "127.0.0.1") -> tuple[int, float]:
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.monotonic() - start
    finally:
        conn.close()


def _second_address_or_skip() -> None:
    with socket.socket() as sock:
        try:
            sock.bind((SLOW_CLIENT, 0))
        except OSError as exc:
            pytest.skip(f"cannot bind {SLOW_CLIENT} for a second client address: {exc}")


def _problems(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log records that would page someone: tracebacks, warnings, errors (any logger)."""
    return [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_trickling_clients_do_not_stop_healthz_and_metrics(tmp_path: Path) -> None:
    """32 connections trickling one header byte every 10 s hold no slot that the probes need:
    /healthz and /metrics answer 200 promptly throughout, and each trickler is cut off at the
    header deadline, long before its next byte."""
    _second_address_or_skip()

    async def scenario() -> None:
        config = CollectorConfig(
            db=f"sqlite:///{tmp_path / 'collector.db'}",
            listen="127.0.0.1:0",
            http="127.0.0.1:0",
            http_header_timeout=HEADER_TIMEOUT_S,
        )
        running = await start_collector(config, metrics=Metrics(CollectorRegistry()))
        try:
            assert running.http is not None
            port = running.http.port
            started = time.monotonic()
            tricklers = [
                await asyncio.open_connection("127.0.0.1", port, local_addr=(SLOW_CLIENT, 0))
                for _ in range(TRICKLERS)
            ]
            for _, writer in tricklers:
                writer.write(b"G")  # the first byte of "GET / HTTP/1.1"; the next is due in 10 s
                await writer.drain()
            while time.monotonic() - started < HEADER_TIMEOUT_S:
                for path in ("/healthz", "/metrics"):
                    status, took = await asyncio.to_thread(_get, port, path)
                    assert status == 200 and took < PROMPT_S, (path, status, took)
                await asyncio.sleep(0.1)
            # Every trickler is hung up on (EOF) before its next byte would have been sent.
            async with asyncio.timeout(TRICKLE_EVERY_S - (time.monotonic() - started)):
                replies = await asyncio.gather(*(reader.read() for reader, _ in tricklers))
            cut_after = time.monotonic() - started
            assert replies == [b""] * TRICKLERS
            assert HEADER_TIMEOUT_S - 0.1 <= cut_after < TRICKLE_EVERY_S
            for _, writer in tricklers:
                writer.close()
            status, took = await asyncio.to_thread(_get, port, "/healthz")
            assert status == 200 and took < PROMPT_S
        finally:
            await running.stop(grace=0)

    asyncio.run(scenario())


def test_one_client_address_cannot_take_every_connection(tmp_path: Path) -> None:
    """Past max_connections_per_client one address gets a quick 503 while others are served."""
    _second_address_or_skip()
    limits = chttp.HttpLimits(max_connections_per_client=8, header_timeout=30)
    with chttp.serve_in_thread(sample_store(), CollectorRegistry(), ("127.0.0.1", 0), None, limits=limits) as h:
        held = [socket.create_connection(("127.0.0.1", h.port), source_address=(SLOW_CLIENT, 0)) for _ in range(8)]
        try:
            for sock in held:
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # an unfinished head holds the slot
            status, took = _get(h.port, "/healthz", source=SLOW_CLIENT)
            assert status == HTTPStatus.SERVICE_UNAVAILABLE and took < PROMPT_S
            status, took = _get(h.port, "/healthz")  # another address still gets in
            assert status == 200 and took < PROMPT_S
        finally:
            for sock in held:
                sock.close()
        for _ in range(50):  # the slots come back as the held connections close
            if _get(h.port, "/healthz", source=SLOW_CLIENT)[0] == 200:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the per-client slots were never released")


# A route added the documented way (a handler and a Route row) that takes a form body.


def _echo_form(app: chttp.App, req: chttp.Request) -> chttp.Response:
    return chttp.json_response(HTTPStatus.OK, {"form": req.form(), "method": req.method})


ECHO = chttp.Route("/echo", _echo_form, protected=True, methods=("POST",))


@pytest.fixture
def echo_server() -> Iterator[chttp.ThreadedHttpServer]:
    limits = chttp.HttpLimits(body_timeout=1.0, max_body_bytes=1024)
    with chttp.serve_in_thread(
        sample_store(), CollectorRegistry(), ("127.0.0.1", 0), "tok", limits=limits, routes=(*chttp.ROUTES, ECHO)
    ) as handle:
        yield handle


def _post(port: int, body: bytes, token: str = "tok") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(
            "POST", "/echo", body=body,
            headers={"Authorization": f"bearer {token}", "Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_an_added_form_route_reads_its_body(echo_server: chttp.ThreadedHttpServer) -> None:
    status, body = _post(echo_server.port, b"window=7d&kind=oops")
    assert status == 200
    assert body == b'{"form":{"window":"7d","kind":"oops"},"method":"POST"}\n'
    assert _post(echo_server.port, b"a=1&a=2")[0] == 400  # a repeated field is refused by name
    assert _post(echo_server.port, b"a=1", token="wrong")[0] == 401
    assert _get(echo_server.port, "/echo")[0] == 405


def test_oversized_body_is_413(echo_server: chttp.ThreadedHttpServer) -> None:
    status, body = _post(echo_server.port, b"x=" + b"a" * 2000)
    assert status == 413 and b"over 1024 bytes" in body


def test_trickled_body_hits_the_body_deadline(echo_server: chttp.ThreadedHttpServer) -> None:
    with socket.create_connection(("127.0.0.1", echo_server.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nx="
        )
        reply = b""
        while chunk := sock.recv(4096):  # the server answers and hangs up; we never send the rest
            reply += chunk
        took = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408")
    assert 0.9 <= took < 5


class SlowStore(MemStore):
    """Answers list_hosts after a delay, so a client can leave while its request is handled."""

    def list_hosts(self, flt, page):  # type: ignore[no-untyped-def]
        time.sleep(0.5)
        return super().list_hosts(flt, page)


def test_clients_leaving_mid_response_log_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """A client that resets the connection while its response is being computed or written
    costs a debug line at most: no traceback, no error, and the server keeps serving."""
    store = sample_store()
    big = SlowStore(clusters=store.clusters, crashes=store.crashes, hosts=store.hosts * 2000)
    caplog.set_level(logging.DEBUG)
    with chttp.serve_in_thread(big, CollectorRegistry(), ("127.0.0.1", 0), None) as handle:
        for reads in (0, 1):  # 0: gone before the answer; 1: gone after the first bytes of it
            sock = socket.create_connection(("127.0.0.1", handle.port), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /api/v1/hosts?page_size=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
            if reads:
                assert sock.recv(100).startswith(b"HTTP/1.1 200")
            # SO_LINGER 0: close with a reset, as a crashed or impatient client does
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        time.sleep(1.0)  # the slow handler finishes and writes into the reset connection
        assert _get(handle.port, "/healthz")[0] == 200
    assert _problems(caplog) == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


def test_a_wedged_store_turns_healthz_red_in_bounded_time() -> None:
    """A store call that never returns makes /healthz a 503 after its deadline, not a hang."""
    release = threading.Event()

    class Wedged(MemStore):
        def list_clusters(self, flt, page):  # type: ignore[no-untyped-def]
            release.wait(30)
            return super().list_clusters(flt, page)

    with chttp.serve_in_thread(Wedged(), CollectorRegistry(), ("127.0.0.1", 0), None) as handle:
        try:
            status, took = _get(handle.port, "/healthz")
            assert status == 503 and took < chttp.HEALTH_STORE_TIMEOUT_S + 2
            assert _get(handle.port, "/metrics")[0] == 200  # the rest of the port is unaffected
        finally:
            release.set()


def test_limits_are_read_from_the_config(tmp_path: Path) -> None:
    from collector.config import load_config
    from collector.server import http_limits

    path = tmp_path / "collector.toml"
    path.write_text("[http_limits]\nheader_timeout = 2.5\nmax_connections_per_client = 4\n")
    limits = http_limits(load_config(str(path)))
    assert limits == chttp.HttpLimits(header_timeout=2.5, max_connections_per_client=4)
    path.write_text("[http_limits]\nbody_timeout = 0\n")
    with pytest.raises(Exception, match="body_timeout must be positive"):
        load_config(str(path))
