"""A TCP proxy that injects the network faults agents meet on the way to a collector.

It stands where a load balancer stands: agents connect to it, and each connection is forwarded to
one live upstream (round robin; an upstream that refuses is skipped, as a health-checking balancer
would). The fault mode applies to every connection, open or new, the moment it is set:

- ``pass``: forward bytes both ways.
- ``blackhole``: accept, then neither forward nor answer (a firewall dropping packets).
- ``halfopen``: existing connections freeze without a FIN or RST — the peer host vanished; new
  connections are accepted and frozen too. Only deadlines and keepalive can detect this.
- ``trickle``: forward, but at most ``trickle_bytes_per_second`` in each direction.
- ``reset``: abort every open connection with an RST (SO_LINGER 0), and reset new ones after
  their first read.

Loopback only, for benchmarks and the chaos run (bench/chaos.py); it runs its own event loop on
a thread so a synchronous harness can switch modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

MODES: Final = ("pass", "blackhole", "halfopen", "trickle", "reset")
CHUNK: Final = 65536
CONNECT_TIMEOUT: Final = 2.0


@dataclass(slots=True, eq=False)  # identity-hashed: kept in a set while open
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with an RST rather than a FIN: SO_LINGER with a zero timeout, then close."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """Listen on 127.0.0.1:`port` (0: any free port) and forward to `upstreams` ("host:port")."""

    def __init__(self, upstreams: Sequence[str], port: int = 0, trickle_bytes_per_second: int = 64) -> None:
        if not upstreams:
            raise ValueError("a proxy needs at least one upstream")
        self._upstreams = [(h, int(p)) for h, _, p in (u.rpartition(":") for u in upstreams)]
        self._next = itertools.cycle(range(len(self._upstreams)))
        self._requested_port = port
        self.trickle_bytes_per_second = trickle_bytes_per_second
        self.mode = "pass"
        self.port = 0
        self.connections = 0
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._mode_changed: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown fault mode {mode!r}; one of {', '.join(MODES)}")
        asyncio.run_coroutine_threadsafe(self._set_mode(mode), self._loop).result(10)

    # --- event loop side ---------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._mode_changed = asyncio.Event()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._requested_port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            self._drop(link, reset=True)

    async def _set_mode(self, mode: str) -> None:
        self.mode = mode
        assert self._mode_changed is not None
        self._mode_changed.set()
        self._mode_changed = asyncio.Event()
        if mode == "reset":
            for link in list(self._links):
                self._drop(link, reset=True)

    def _drop(self, link: _Link, reset: bool) -> None:
        for task in link.tasks:
            task.cancel()
        for writer in (link.client, link.upstream):
            if writer is None:
                continue
            if reset:
                _abort(writer)
            else:
                writer.close()
        self._links.discard(link)

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self._upstreams)):
            host, port = self._upstreams[next(self._next)]
            try:
                return await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
            except (OSError, TimeoutError):
                continue
        return None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            if self.mode == "reset":
                with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                    await reader.read(1)
                self._drop(link, reset=True)
                return
            while self.mode in ("blackhole", "halfopen"):
                assert self._mode_changed is not None
                await self._mode_changed.wait()
            upstream = await self._connect_upstream()
            if upstream is None:  # every replica is down: what a balancer does, close
                self._drop(link, reset=True)
                return
            up_reader, up_writer = upstream
            link.upstream = up_writer
            link.tasks = [
                asyncio.ensure_future(self._pipe(reader, up_writer)),
                asyncio.ensure_future(self._pipe(up_reader, writer)),
            ]
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            if link in self._links:
                self._drop(link, reset=False)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                while self.mode in ("blackhole", "halfopen"):  # freeze: no FIN, no RST
                    assert self._mode_changed is not None
                    await self._mode_changed.wait()
                if self.mode == "trickle":
                    rate = max(1, self.trickle_bytes_per_second)
                    for start in range(0, len(data), rate):
                        writer.write(data[start : start + rate])
                        await writer.drain()
                        await asyncio.sleep(1.0)
                else:
                    writer.write(data)
                    await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            return
