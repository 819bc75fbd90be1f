"""Symbolizing crashes with the symbol indexes kept on the collector, per build-id.

The directory holds complete indexes (`crashfleet symbols index --full`), one
`<id[:2]>/<id[2:]>.symidx` per kernel build, put there by `crashfleet symbols upload` (the
SymbolService below) or by hand; the ELF itself is not needed once an index is complete. A
crash from a dump carries its kernel's BUILD-ID; when the directory has that build, the RIP and
kernel call-trace frames gain source lines, stored beside the signed record as `symbolized_json`.
Module frames are left as they are: an oops does not say which build of a module ran.

Two moments: at ingest (`CollectorSymbols.enrich`) when the index is already there, and
retroactively (`Resymbolizer`) for the crashes stored before it: after each upload, and at
start for builds whose crashes are still unsymbolized (an index copied in by hand). The
retroactive pass runs in keyset batches on a worker thread, never on the RPC's event loop.

Symbolization only enriches: the fingerprint is computed from the record as sent, the store
writes nothing but `symbolized_json`, and a failure leaves the crash as it was (logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import tempfile
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

from analysis.errors import DebuginfoError
from analysis.model import CrashRecord, SystemFacts
from analysis.symbolize.enrich import VMLINUX, SymbolizerSet, symbolize_records
from analysis.symbolize.index import SymbolIndex
from analysis.symbolize.lookup import Symbolizer
from collector.api import check_bearer
from collector.ingest import BUILD_ID
from collector.signature import StoredSignatureError, record_from_stored, stored_json
from collector.store import Store
from wire.v1 import symbols_service_pb2, symbols_service_pb2_grpc

__all__ = [
    "MAX_CHUNK_BYTES",
    "MAX_UPLOAD_BYTES",
    "RESYMBOLIZE_BATCH",
    "CollectorSymbols",
    "ResymbolizeReport",
    "Resymbolizer",
    "SymbolServicer",
    "add_symbol_service",
    "upload_chunks",
]

MAX_UPLOAD_BYTES = 2 << 30  # a full debug-vmlinux index is ~150 MB; far beyond that is not one
MAX_CHUNK_BYTES = 1 << 20
RESYMBOLIZE_BATCH = 200  # crashes per read and per write transaction of a retroactive pass

log = logging.getLogger(__name__)


class _OpenIndexes(threading.local):
    """Per ingest thread (SQLite connections stay in the thread that opened them): the indexes
    recently used, with the identity of the file each was opened from."""

    def __init__(self) -> None:
        self.by_build: OrderedDict[str, tuple[tuple[int, int, int], Symbolizer]] = OrderedDict()


class CollectorSymbols:
    """Symbol indexes under `root`. Ingest keeps a few open per thread (opening one costs more
    than symbolizing a crash), reopened when the file is replaced by an upload; retroactive
    passes open their own."""

    MAX_OPEN_PER_THREAD = 4

    def __init__(self, root: Path) -> None:
        self.root = root
        self._local = _OpenIndexes()

    def enrich(self, record: CrashRecord, system: SystemFacts | None) -> CrashRecord | None:
        """`record` with source lines when `root` has its kernel build's index; None when it has
        not (the crash then waits for an upload of its build)."""
        build_id = (system.build_id or "").strip().lower() if system is not None else ""
        symbolizer = self._ingest_symbolizer(build_id) if BUILD_ID.fullmatch(build_id) else None
        if symbolizer is None:
            return None
        symbolizers = SymbolizerSet(build_id=build_id, fixed={VMLINUX: symbolizer})
        (out,) = symbolize_records([record], symbolizers, kaslr_offset=system.kernel_offset if system else None)
        return out

    def _ingest_symbolizer(self, build_id: str) -> Symbolizer | None:
        """This thread's open index of `build_id`, (re)opened when the file changed; None without one."""
        cache = self._local.by_build
        try:
            st = self.path_for(build_id).stat()
            identity = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            identity = None
        cached = cache.pop(build_id, None)
        if cached is not None:
            if cached[0] == identity:
                cache[build_id] = cached
                return cached[1]
            cached[1].close()
        if identity is None:
            return None
        try:
            index = SymbolIndex.find(build_id, self.root)
        except DebuginfoError as exc:
            log.warning("symbol index unusable build_id=%s path=%s reason=%s", build_id, exc.path, exc.reason)
            return None
        if index is None:
            return None
        symbolizer = Symbolizer(index, name="vmlinux")
        cache[build_id] = (identity, symbolizer)
        while len(cache) > self.MAX_OPEN_PER_THREAD:
            _, (_, oldest) = cache.popitem(last=False)
            oldest.close()
        return symbolizer

    @contextlib.contextmanager
    def _open(self, build_id: str) -> Iterator[SymbolizerSet | None]:
        """The build's index as a SymbolizerSet for vmlinux, None when there is no usable one."""
        try:
            index = SymbolIndex.find(build_id, self.root)
        except DebuginfoError as exc:
            log.warning("symbol index unusable build_id=%s path=%s reason=%s", build_id, exc.path, exc.reason)
            index = None
        if index is None:
            yield None
            return
        with Symbolizer(index, name="vmlinux") as symbolizer:
            yield SymbolizerSet(build_id=build_id, fixed={VMLINUX: symbolizer})

    def resymbolize(
        self,
        store: Store,
        build_id: str,
        pending_only: bool = False,
        batch: int = RESYMBOLIZE_BATCH,
        stop: threading.Event | None = None,
    ) -> ResymbolizeReport:
        """Symbolize the stored crashes of `build_id` (all, or those not symbolized yet) and store
        the results, `batch` crashes per read and per write transaction. Blocking: call it from a
        worker thread. Crashes whose stored signature cannot be read are counted and skipped;
        `stop` ends the pass between batches (collector shutdown)."""
        done = 0
        failed: set[str] = set()
        with self._open(build_id) as symbolizers:
            if symbolizers is None:
                return ResymbolizeReport(build_id, 0, 0, indexed=False)
            memo = _TraceMemo(symbolizers)
            # A full pass is followed by a pending-only one: a crash validated just before the
            # index was installed may commit after the full pass went by its id.
            for pending in (True,) if pending_only else (False, True):
                after = ""
                while stop is None or not stop.is_set():
                    rows = store.crashes_of_build(build_id, after, batch, pending_only=pending)
                    if not rows:
                        break
                    updates: list[tuple[str, str]] = []
                    for row in rows:
                        try:
                            record = record_from_stored(row.signature_json, f"crash {row.crash_id}")
                        except StoredSignatureError as exc:
                            if row.crash_id not in failed:
                                log.warning("stored crash not symbolized crash=%s reason=%s", row.crash_id, exc)
                            failed.add(row.crash_id)
                            continue
                        updates.append((row.crash_id, stored_json(memo.symbolize(record, row.kernel_offset))))
                    done += store.set_symbolized(updates)
                    after = rows[-1].crash_id
        log.info("stored crashes symbolized build_id=%s crashes=%d failed=%d", build_id, done, len(failed))
        return ResymbolizeReport(build_id, done, len(failed), indexed=True)

    def path_for(self, build_id: str) -> Path:
        return self.root / build_id[:2] / f"{build_id[2:]}.symidx"

    def install(self, received: Path, build_id: str) -> bool:
        """Verify a received index file and move it into place; True when it replaced one.

        DebuginfoError when the file is not a complete index of exactly `build_id`."""
        found = SymbolIndex.verify_shipped(received)
        if found != build_id:
            raise DebuginfoError(str(received), f"index is for build-id {found}, not {build_id}")
        target = self.path_for(build_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        replaced = target.exists()
        os.replace(received, target)
        log.info("symbol index installed build_id=%s bytes=%d replaced=%s", build_id, target.stat().st_size, replaced)
        return replaced


class _TraceMemo:
    """Source lines per distinct (RIP, call trace, KASLR slide) within one pass: the crashes of one
    kernel build are mostly repeats of a few bugs at the same offsets, and a lookup costs more
    than everything else the pass does per crash. Bounded: cleared when full."""

    MAX_ENTRIES = 4096

    def __init__(self, symbolizers: SymbolizerSet) -> None:
        self.symbolizers = symbolizers
        self._known: dict[tuple[Any, ...], CrashRecord] = {}

    def symbolize(self, record: CrashRecord, kaslr_offset: int | None) -> CrashRecord:
        key = (record.rip, record.call_trace, record.kernel_release, kaslr_offset)
        done = self._known.get(key)
        if done is None:
            (done,) = symbolize_records([record], self.symbolizers, kaslr_offset=kaslr_offset)
            if len(self._known) >= self.MAX_ENTRIES:
                self._known.clear()
            self._known[key] = done
        return dataclasses.replace(record, rip=done.rip, call_trace=done.call_trace)


@dataclass(frozen=True, slots=True)
class ResymbolizeReport:
    """One retroactive pass: crashes symbolized, crashes whose stored signature was unreadable,
    and whether the build's index was there at all."""

    build_id: str
    symbolized: int
    failed: int
    indexed: bool


class Resymbolizer:
    """Runs retroactive passes one at a time on a worker thread, so an upload's answer and the
    collector's event loop never wait for them. Builds scheduled while a pass runs are queued
    (a build queued twice runs once, with the stronger of the two requests)."""

    def __init__(self, symbols: CollectorSymbols, store: Store) -> None:
        self.symbols = symbols
        self.store = store
        self._queue: dict[str, bool] = {}  # build-id -> pending_only
        self._task: asyncio.Task[None] | None = None
        self._stop = threading.Event()
        self.reports: deque[ResymbolizeReport] = deque(maxlen=100)  # the last finished passes, oldest first

    def schedule(self, build_id: str, pending_only: bool = False) -> None:
        """Queue a pass over `build_id`; call on the event loop."""
        self._queue[build_id] = self._queue.get(build_id, True) and pending_only
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def schedule_pending(self) -> None:
        """Queue the builds whose stored crashes are unsymbolized and whose index is here."""
        builds = await asyncio.to_thread(self.store.builds_to_symbolize)
        for build_id in builds:
            if self.symbols.path_for(build_id).is_file():
                self.schedule(build_id, pending_only=True)

    async def _drain(self) -> None:
        while self._queue and not self._stop.is_set():
            build_id = next(iter(self._queue))
            pending_only = self._queue.pop(build_id)
            try:
                report = await asyncio.to_thread(
                    self.symbols.resymbolize, self.store, build_id, pending_only, stop=self._stop
                )
            except Exception:  # a store or index failure must not end the queue for other builds
                log.exception("retroactive symbolization failed build_id=%s", build_id)
            else:
                self.reports.append(report)

    async def wait_idle(self) -> None:
        """Until every queued pass has finished (tests, shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Stop after the running batch and wait for it: the store closes next."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class _UploadRefused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SymbolServicer(symbols_service_pb2_grpc.SymbolServiceServicer):
    """UploadSymbols: one complete index per call, guarded by the query token when there is one."""

    def __init__(
        self, symbols: CollectorSymbols, token: str | None, on_installed: Callable[[str], None] | None = None
    ) -> None:
        self.symbols = symbols
        self.token = token
        self.on_installed = on_installed  # called on the event loop with each installed build-id

    async def UploadSymbols(
        self,
        request_iterator: AsyncIterator[symbols_service_pb2.UploadSymbolsRequest],
        context: aio.ServicerContext[Any, Any],
    ) -> symbols_service_pb2.UploadSymbolsResponse:
        if not check_bearer(context.invocation_metadata(), self.token):  # type: ignore[arg-type]
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        self.symbols.root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.symbols.root, prefix=".upload-", suffix=".symidx")
        received = Path(name)
        build_id, size, replaced = "", 0, False
        refused: _UploadRefused | None = None
        try:
            with os.fdopen(fd, "wb") as out:
                build_id, size = await _receive(request_iterator, out)
            replaced = await asyncio.to_thread(self.symbols.install, received, build_id)
        except _UploadRefused as exc:
            refused = exc
        except DebuginfoError as exc:
            refused = _UploadRefused(grpc.StatusCode.INVALID_ARGUMENT, exc.reason)
        finally:
            received.unlink(missing_ok=True)  # before answering: the client may look right away
        if refused is not None:
            log.warning("symbol upload refused build_id=%s reason=%s", build_id or "-", refused.message)
            await context.abort(refused.code, refused.message)
        if self.on_installed is not None:
            self.on_installed(build_id)
        return symbols_service_pb2.UploadSymbolsResponse(build_id=build_id, size_bytes=size, replaced=replaced)


async def _receive(
    chunks: AsyncIterator[symbols_service_pb2.UploadSymbolsRequest], out: Any
) -> tuple[str, int]:
    """Write the streamed bytes to `out`; the build-id and size, or _UploadRefused."""
    build_id = ""
    size = 0
    async for chunk in chunks:
        if chunk.build_id:
            if build_id and chunk.build_id != build_id:
                raise _UploadRefused(grpc.StatusCode.INVALID_ARGUMENT, "build_id changed within one upload")
            build_id = chunk.build_id
        if not build_id:
            raise _UploadRefused(grpc.StatusCode.INVALID_ARGUMENT, "the first chunk must name the build_id")
        if not BUILD_ID.fullmatch(build_id):
            raise _UploadRefused(grpc.StatusCode.INVALID_ARGUMENT, "build_id is not lowercase hex")
        if len(chunk.data) > MAX_CHUNK_BYTES:
            raise _UploadRefused(grpc.StatusCode.RESOURCE_EXHAUSTED, f"chunk larger than {MAX_CHUNK_BYTES} bytes")
        size += len(chunk.data)
        if size > MAX_UPLOAD_BYTES:
            raise _UploadRefused(grpc.StatusCode.RESOURCE_EXHAUSTED, f"index larger than {MAX_UPLOAD_BYTES} bytes")
        await asyncio.to_thread(out.write, chunk.data)
    if not build_id or size == 0:
        raise _UploadRefused(grpc.StatusCode.INVALID_ARGUMENT, "empty upload")
    return build_id, size


def upload_chunks(path: Path, build_id: str) -> Iterator[symbols_service_pb2.UploadSymbolsRequest]:
    """The client side: an index file as UploadSymbols chunks (the build-id in the first)."""
    with path.open("rb") as f:
        first = True
        while True:
            data = f.read(MAX_CHUNK_BYTES)
            if not data and not first:
                return
            yield symbols_service_pb2.UploadSymbolsRequest(build_id=build_id if first else "", data=data)
            first = False
            if not data:
                return


def add_symbol_service(
    server: aio.Server,
    symbols: CollectorSymbols,
    token: str | None,
    on_installed: Callable[[str], None] | None = None,
) -> None:
    servicer = SymbolServicer(symbols, token, on_installed)
    symbols_service_pb2_grpc.add_SymbolServiceServicer_to_server(servicer, server)

