"""The gRPC servicers (grpc.aio): IngestService and QueryService over one store.

The store is synchronous, so store calls run in a worker thread (`asyncio.to_thread`) and the
event loop only parses, authenticates and answers; ReportCrash and Heartbeat on a store with a
group-commit queue (SQLite) validate on the loop and await the commit (`Ingestor.report_async`,
`Ingestor.heartbeat_async`). Status codes are precise and the same for
every method:

- INVALID_ARGUMENT: bytes that are not the request message at all, a missing or malformed field,
  a garbage page token, a negative page size;
- RESOURCE_EXHAUSTED: an oversized field (whole messages over the cap are refused by gRPC itself
  before any handler runs) and a host or peer over its token-bucket rate (collector.limits), the
  latter with `retry-after-ms` trailing metadata saying when to come back (wire.retry);
- UNAUTHENTICATED: the query token is missing or wrong, or mTLS is on and the client certificate
  has no usable identity;
- NOT_FOUND: an unknown cluster or crash id;
- UNAVAILABLE: the store cannot be reached (retry later; nothing was stored);
- INTERNAL: a bug, logged with its traceback; the server stays up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from grpc import aio

from collector.auth import metadata_credentials, token_matches
from collector.ingest import IngestError, Ingestor, RateLimited, ReportTooLarge
from collector.limits import RecentKeys, ReportLimiter, peer_key
from collector.metrics import Metrics
from collector.store import AmbiguousId, InvalidPageToken, StoreError
from collector.store.base import StoreReader
from wire import convert
from wire.model import Page, QueryFilter
from wire.retry import retry_after_metadata
from wire.tls import PeerIdentityError, reporting_host
from wire.v1 import (
    ingest_service_pb2,
    ingest_service_pb2_grpc,
    query_service_pb2,
    query_service_pb2_grpc,
)

__all__ = ["HEARTBEAT_INTERVAL_S", "IngestServicer", "QueryServicer", "add_servicers", "check_bearer"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
M = TypeVar("M")
HEARTBEAT_INTERVAL_S = 60
MAX_ID_CHARS = 128
MAX_PAGE_SIZE = 1000


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def _observe(
    metrics: Metrics, method: str, context: aio.ServicerContext[Any, Any], body: Callable[[], Awaitable[T]]
) -> T:
    """Run a handler body, map its failures to status codes, and time it by method and code."""
    start = time.perf_counter()
    code = grpc.StatusCode.OK
    trailing: tuple[tuple[str, str], ...] = ()
    try:
        return await body()
    except RateLimited as exc:
        # The limiter's hint travels as trailing metadata; the agent and `submit` wait that long.
        code, message = grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
        trailing = retry_after_metadata(exc.retry_after)
    except _Abort as abort:
        code = abort.code
        message = abort.message
    except (InvalidPageToken, AmbiguousId, convert.WireError) as exc:
        code, message = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    except ReportTooLarge as exc:
        code, message = grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    except IngestError as exc:
        code, message = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    except PeerIdentityError as exc:
        code, message = grpc.StatusCode.UNAUTHENTICATED, str(exc)
    except StoreError as exc:
        log.error("store unavailable method=%s error=%s", method, exc)
        code, message = grpc.StatusCode.UNAVAILABLE, "store unavailable, retry later"
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
        raise
    except Exception:
        log.exception("rpc failed method=%s", method)
        code, message = grpc.StatusCode.INTERNAL, "internal error"
    finally:
        metrics.observe_rpc(method, code.name, time.perf_counter() - start)
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
        log.info("rpc refused method=%s code=%s reason=%s", method, code.name, message)
    await context.abort(code, message, trailing_metadata=trailing)
    raise AssertionError("context.abort returned")  # pragma: no cover


def check_bearer(metadata: tuple[tuple[str, str | bytes], ...] | None, token: str | None) -> bool:
    """True when no token is configured or `authorization: Bearer <token>` matches it (the scheme
    in any case, RFC 7235; the same parser as the HTTP port, collector.auth)."""
    if token is None:
        return True
    presented = metadata_credentials(metadata)
    return presented is not None and token_matches(presented, token)


class IngestServicer(ingest_service_pb2_grpc.IngestServiceServicer):
    """ReportCrash and Heartbeat. Under mTLS the host is the client certificate's identity.

    Rate limits (collector.limits) are checked before the work and charged only for a new crash:
    a duplicate costs no token, and one this process stored recently is answered even while its
    host is throttled.
    """

    def __init__(
        self,
        ingestor: Ingestor,
        limiter: ReportLimiter | None = None,
        require_identity: bool = False,
    ) -> None:
        self.ingestor = ingestor
        self.limiter = limiter
        self.require_identity = require_identity
        self.recent: RecentKeys[tuple[str, str]] = RecentKeys()  # key -> (crash id, cluster id)

    def _admit(self, host: str, peer: str) -> None:
        if self.limiter is None or not host:
            return
        refused = self.limiter.check(host, peer)
        if refused is not None:
            who = host if refused.scope == "host" else peer
            raise RateLimited(
                refused.scope,
                f"{who} exceeds its report rate; retry in {refused.retry_after:.1f}s",
                refused.retry_after,
            )

    async def ReportCrash(
        self, request: ingest_service_pb2.ReportCrashRequest, context: aio.ServicerContext[Any, Any]
    ) -> ingest_service_pb2.ReportCrashResponse:
        async def body() -> ingest_service_pb2.ReportCrashResponse:
            # A throttled report is not counted as received: the host retries it later, and the
            # refusal shows as RESOURCE_EXHAUSTED in crashfleet_rpc_duration_seconds.
            host = reporting_host(context, request.host.hostname, require_identity=self.require_identity)
            peer = peer_key(context.peer())
            try:
                self._admit(host, peer)
            except RateLimited:
                known = self.recent.get(request.idempotency_key)
                if known is None:
                    raise
                self.ingestor.metrics.report("duplicate", request.signature.kind)
                return ingest_service_pb2.ReportCrashResponse(crash_id=known[0], cluster_id=known[1], duplicate=True)
            result = await self.ingestor.report_async(request, host)
            if not result.duplicate and self.limiter is not None:
                self.limiter.charge(host, peer)
            self.recent.put(request.idempotency_key, (result.crash_id, result.cluster_id))
            return ingest_service_pb2.ReportCrashResponse(
                crash_id=result.crash_id, cluster_id=result.cluster_id, duplicate=result.duplicate
            )

        return await _observe(self.ingestor.metrics, "ReportCrash", context, body)

    async def Heartbeat(
        self, request: ingest_service_pb2.HeartbeatRequest, context: aio.ServicerContext[Any, Any]
    ) -> ingest_service_pb2.HeartbeatResponse:
        async def body() -> ingest_service_pb2.HeartbeatResponse:
            host = reporting_host(context, request.host.hostname, require_identity=self.require_identity)
            peer = peer_key(context.peer())
            self._admit(host, peer)  # a heartbeat costs a token too: a flood of them is a flood
            await self.ingestor.heartbeat_async(request, host)
            if self.limiter is not None and host:
                self.limiter.charge(host, peer)
            return ingest_service_pb2.HeartbeatResponse(interval_seconds=HEARTBEAT_INTERVAL_S)

        return await _observe(self.ingestor.metrics, "Heartbeat", context, body)


def _page(page_size: int, page_token: str) -> Page:
    if page_size < 0:
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "page_size must not be negative")
    if len(page_token) > 1024:
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, "page_token is not one this collector issued")
    return Page(size=min(page_size, MAX_PAGE_SIZE), token=page_token)


def _id(value: str, name: str) -> str:
    if not value or len(value) > MAX_ID_CHARS or not value.isprintable():
        raise _Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{name} is missing or malformed")
    return value


class QueryServicer(query_service_pb2_grpc.QueryServiceServicer):
    """Read-only queries; with a token configured every call needs `authorization: Bearer`."""

    def __init__(self, store: StoreReader, metrics: Metrics, token: str | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.token = token

    async def _run(
        self, method: str, context: aio.ServicerContext[Any, Any], body: Callable[[], Awaitable[T]]
    ) -> T:
        async def guarded() -> T:
            if not check_bearer(context.invocation_metadata(), self.token):  # type: ignore[arg-type]
                raise _Abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
            return await body()

        return await _observe(self.metrics, method, context, guarded)

    async def ListClusters(
        self, request: query_service_pb2.ListClustersRequest, context: aio.ServicerContext[Any, Any]
    ) -> query_service_pb2.ListClustersResponse:
        async def body() -> query_service_pb2.ListClustersResponse:
            rows, token, total = await _listed(
                request, self.store.list_clusters, self.store.count_clusters, convert.cluster_to_proto
            )
            return query_service_pb2.ListClustersResponse(clusters=rows, next_page_token=token, total_count=total)

        return await self._run("ListClusters", context, body)

    async def GetCluster(
        self, request: query_service_pb2.GetClusterRequest, context: aio.ServicerContext[Any, Any]
    ) -> query_service_pb2.GetClusterResponse:
        async def body() -> query_service_pb2.GetClusterResponse:
            detail = await _found(request.cluster_id, "cluster", self.store.get_cluster)
            return query_service_pb2.GetClusterResponse(cluster=convert.cluster_detail_to_proto(detail))

        return await self._run("GetCluster", context, body)

    async def ListCrashes(
        self, request: query_service_pb2.ListCrashesRequest, context: aio.ServicerContext[Any, Any]
    ) -> query_service_pb2.ListCrashesResponse:
        async def body() -> query_service_pb2.ListCrashesResponse:
            rows, token, total = await _listed(
                request, self.store.list_crashes, self.store.count_crashes, convert.crash_to_proto
            )
            return query_service_pb2.ListCrashesResponse(crashes=rows, next_page_token=token, total_count=total)

        return await self._run("ListCrashes", context, body)

    async def GetCrash(
        self, request: query_service_pb2.GetCrashRequest, context: aio.ServicerContext[Any, Any]
    ) -> query_service_pb2.GetCrashResponse:
        async def body() -> query_service_pb2.GetCrashResponse:
            detail = await _found(request.crash_id, "crash", self.store.get_crash)
            return query_service_pb2.GetCrashResponse(crash=convert.crash_detail_to_proto(detail))

        return await self._run("GetCrash", context, body)

    async def ListHosts(
        self, request: query_service_pb2.ListHostsRequest, context: aio.ServicerContext[Any, Any]
    ) -> query_service_pb2.ListHostsResponse:
        async def body() -> query_service_pb2.ListHostsResponse:
            rows, token, total = await _listed(
                request, self.store.list_hosts, self.store.count_hosts, convert.host_to_proto
            )
            return query_service_pb2.ListHostsResponse(hosts=rows, next_page_token=token, total_count=total)

        return await self._run("ListHosts", context, body)


class _ListRequest(Protocol):
    """What every List* request carries: a filter and a page position."""

    @property
    def filter(self) -> query_service_pb2.Filter: ...
    @property
    def page_size(self) -> int: ...
    @property
    def page_token(self) -> str: ...


async def _listed(
    request: _ListRequest,
    query: Callable[[QueryFilter, Page], tuple[list[R], str]],
    count: Callable[[QueryFilter], int],
    to_proto: Callable[[R], M],
) -> tuple[list[M], str, int]:
    """One page of a List* call: validate filter and page, query off the loop, convert the rows;
    on the first page also the store's count of every matching row (0 on later pages)."""
    flt = convert.filter_from_proto(request.filter)
    rows, token = await asyncio.to_thread(query, flt, _page(request.page_size, request.page_token))
    total = await asyncio.to_thread(count, flt) if not request.page_token else 0
    return [to_proto(r) for r in rows], token, total


async def _found(value: str, what: str, get: Callable[[str], R | None]) -> R:
    """The Get* lookup: a malformed id is INVALID_ARGUMENT, an unknown one NOT_FOUND."""
    ident = _id(value, f"{what}_id")
    detail = await asyncio.to_thread(get, ident)
    if detail is None:
        raise _Abort(grpc.StatusCode.NOT_FOUND, f"no {what} {ident}")
    return detail


def _strict_handler(
    service: Any, module: Any, servicer: object, metrics: Metrics
) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
    """Handlers for every method of `service` that parse the request bytes themselves.

    The generated registration lets grpc deserialize, and grpc answers UNKNOWN to bytes that are
    not the message; a client sending garbage should hear INVALID_ARGUMENT like any other bad input.
    """
    handlers = {}
    for method in service.methods:
        request_type: type[Message] = getattr(module, method.input_type.name)
        implementation = getattr(servicer, method.name)

        async def call(
            raw: bytes,
            context: aio.ServicerContext[Any, Any],
            request_type: type[Message] = request_type,
            implementation: Callable[[Any, Any], Awaitable[Message]] = implementation,
            name: str = method.name,
        ) -> Message:
            try:
                request = request_type.FromString(raw)
            except DecodeError as exc:
                metrics.observe_rpc(name, grpc.StatusCode.INVALID_ARGUMENT.name, 0.0)
                if name == "ReportCrash":
                    metrics.report("invalid", "")
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"not a {request_type.DESCRIPTOR.full_name}: {exc}"
                )
                raise AssertionError("context.abort returned") from None  # pragma: no cover
            return await implementation(request, context)

        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            call, request_deserializer=None, response_serializer=_serialize
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def add_servicers(server: aio.Server, ingest: IngestServicer, query: QueryServicer) -> None:
    """Register both services on `server` with strict request parsing (see _strict_handler)."""
    server.add_generic_rpc_handlers(
        (
            _strict_handler(
                ingest_service_pb2.DESCRIPTOR.services_by_name["IngestService"], ingest_service_pb2, ingest,
                ingest.ingestor.metrics,
            ),
            _strict_handler(
                query_service_pb2.DESCRIPTOR.services_by_name["QueryService"], query_service_pb2, query, query.metrics
            ),
        )
    )
