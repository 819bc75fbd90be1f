"""The collector's HTTP port: Prometheus `/metrics`, `/healthz`, the JSON query API and the web page.

Plain stdlib `ThreadingHTTPServer`: the port serves a handful of read-only GET routes over a
synchronous, thread-safe `StoreReader`, so a web framework would add a dependency and nothing
else. The server runs in its own thread beside the gRPC event loop (see `start_http_server`).

Auth: with a token configured, the JSON API and the web page need `Authorization: Bearer <token>`
or the `crashfleet_token` cookie; a browser gets the cookie by opening any page once with
`?token=<token>`, which answers with a redirect to the same URL minus the token (so it does not
stay in the address bar, history or access logs). `/metrics` and `/healthz` stay open: Prometheus
and load-balancer probes have no secret to send, and neither route reveals crash contents or
host names (metrics have bounded labels only, see collector.metrics). docs/http-api.md is the
reference for routes, parameters and JSON shapes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlencode, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from collector import web
from collector.api_json import cluster_detail_json, cluster_json, crash_json, host_json
from collector.store.base import AmbiguousId, InvalidPageToken, StoreReader
from wire.model import (
    CrashDetail,
    Page,
    QueryFilter,
)

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "TOKEN_COOKIE",
    "HttpHandle",
    "QueryError",
    "parse_query",
    "start_http_server",
]

log = logging.getLogger(__name__)
_Row = TypeVar("_Row")

DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000
MAX_ID_LENGTH: Final = 256
MAX_PARAM_LENGTH: Final = 1024
TOKEN_COOKIE: Final = "crashfleet_token"
REQUEST_TIMEOUT_S: Final = 30.0  # a client that stalls mid-request loses its thread after this
MAX_CONNECTIONS: Final = 32  # open connections = worker threads; more get a quick 503
SHUTDOWN_POLL_S: Final = 0.1  # how soon close() is noticed; ten idle wakeups a second cost nothing

# Query parameter -> QueryFilter field. `cluster` is the short public name of cluster_id.
FILTER_PARAMS: Final[Mapping[str, str]] = {
    "since": "since",
    "until": "until",
    "kernel_release": "kernel_release",
    "host": "host",
    "module": "module",
    "kind": "kind",
    "hardware": "hardware",
    "cluster": "cluster_id",
}
PAGE_PARAMS: Final = frozenset({"page_size", "page_token"})
TIME_PARAMS: Final = frozenset({"since", "until"})

SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class QueryError(ValueError):
    """A query string the API refuses; the message is shown to the client (400)."""


def _parse_time(name: str, value: str) -> datetime:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(f"{name}: not an ISO 8601 time: {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_query(
    query: str,
    *,
    filters: bool = True,
    paging: bool = True,
    default_size: int = DEFAULT_PAGE_SIZE,
) -> tuple[QueryFilter, Page]:
    """Query string -> (filter, page). Unknown, repeated or (for this route) unsupported parameters
    are errors, so a typo (`?kernel=`) fails loudly instead of silently returning everything."""
    try:
        raw = parse_qs(query, keep_blank_values=True, max_num_fields=64)
    except ValueError as exc:
        raise QueryError(f"malformed query string: {exc}") from None
    known = {*(FILTER_PARAMS if filters else ()), *(PAGE_PARAMS if paging else ())}
    fields: dict[str, Any] = {}
    size = default_size
    token = ""
    for name, values in raw.items():
        if name not in known:
            hint = f" (known: {', '.join(sorted(known))})" if known else " (this route takes none)"
            raise QueryError(f"unknown parameter {name!r}{hint}")
        if len(values) != 1:
            raise QueryError(f"{name}: given {len(values)} times")
        value = values[0]
        if len(value) > MAX_PARAM_LENGTH:
            raise QueryError(f"{name}: longer than {MAX_PARAM_LENGTH} characters")
        if name == "page_size":
            try:
                size = int(value)
            except ValueError:
                raise QueryError(f"page_size: not an integer: {value!r}") from None
            if not 1 <= size <= MAX_PAGE_SIZE:
                raise QueryError(f"page_size: must be between 1 and {MAX_PAGE_SIZE}")
        elif name == "page_token":
            token = value
        elif value != "":  # an empty form field means "any"
            fields[FILTER_PARAMS[name]] = _parse_time(name, value) if name in TIME_PARAMS else value
    flt = QueryFilter(**fields)
    if flt.since is not None and flt.until is not None and flt.since > flt.until:
        raise QueryError("since is after until")
    return flt, Page(size=size, token=token)


# JSON rendering (the list and cluster objects are collector.api_json's) ------------------------


def _embedded_json(text: str) -> Any:
    """The store keeps signatures as JSON text; the API nests them as objects (null if unreadable)."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def crash_detail_json(d: CrashDetail) -> dict[str, Any]:
    out = crash_json(d.summary)
    out.update(
        signature=web.signature_document(d.signature_json),
        excerpt=d.excerpt,
        modules=list(d.modules),
        host_facts=dict(d.host_facts),
        symbolized=_embedded_json(d.symbolized_json),
    )
    return out


# Responses and routing -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Response:
    status: HTTPStatus
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


def _json(status: HTTPStatus, obj: Any) -> Response:
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    return Response(status, body, "application/json; charset=utf-8")


def _json_error(status: HTTPStatus, message: str) -> Response:
    return _json(status, {"error": message, "status": status.value})


def _html(status: HTTPStatus, page: str) -> Response:
    return Response(
        status, page.encode(), "text/html; charset=utf-8", (("Content-Security-Policy", web.CSP),)
    )


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    query: str
    headers: Mapping[str, str]


Handler = Callable[["_App", Request, re.Match[str]], Response]


@dataclass(frozen=True, slots=True)
class Route:
    pattern: re.Pattern[str]
    handler: Handler
    protected: bool  # needs the token when one is configured
    html: bool  # errors render as HTML instead of JSON


_ID = rf"(?P<id>[^/]{{1,{MAX_ID_LENGTH}}})"


def _api_list(
    req: Request,
    query: Callable[[QueryFilter, Page], tuple[list[_Row], str]],
    key: str,
    to_json: Callable[[_Row], dict[str, Any]],
) -> Response:
    """A JSON list endpoint: `{key: [...], "next_page_token": ...}` for the filter and page in the query."""
    flt, page = parse_query(req.query)
    rows, nxt = query(flt, page)
    return _json(HTTPStatus.OK, {key: [to_json(r) for r in rows], "next_page_token": nxt})


def _api_get(
    req: Request,
    get: Callable[[str], _Row | None],
    what: str,
    ident: str,
    to_json: Callable[[_Row], dict[str, Any]],
) -> Response:
    """A JSON detail endpoint: the object, or 404 naming the id asked for."""
    parse_query(req.query, filters=False, paging=False)
    detail = get(ident)
    if detail is None:
        return _json_error(HTTPStatus.NOT_FOUND, f"no {what} {ident!r}")
    return _json(HTTPStatus.OK, to_json(detail))


class _App:
    """The routes, bound to one store/registry/token. Handlers return a Response or raise
    QueryError/InvalidPageToken (a 400); anything else escaping is a 500 (logged)."""

    def __init__(self, store: StoreReader, registry: CollectorRegistry, token: str | None) -> None:
        self.store = store
        self.registry = registry
        self.token = token.encode() if token else None

    # Open routes -------------------------------------------------------------------------------

    def metrics(self, req: Request, m: re.Match[str]) -> Response:
        encoder, content_type = choose_encoder(req.headers.get("accept", ""))
        return Response(HTTPStatus.OK, encoder(self.registry), content_type)

    def healthz(self, req: Request, m: re.Match[str]) -> Response:
        """Liveness plus a one-row store read, so a wedged database turns the probe red."""
        try:
            self.store.list_clusters(QueryFilter(), Page(size=1))
        except Exception as exc:
            log.warning("healthz store check failed error=%s", type(exc).__name__)
            return _json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unavailable", "store": "error"})
        return _json(HTTPStatus.OK, {"status": "ok", "store": "ok"})

    # JSON API ----------------------------------------------------------------------------------

    def api_clusters(self, req: Request, m: re.Match[str]) -> Response:
        return _api_list(req, self.store.list_clusters, "clusters", cluster_json)

    def api_cluster(self, req: Request, m: re.Match[str]) -> Response:
        return _api_get(req, self.store.get_cluster, "cluster", m["id"], cluster_detail_json)

    def api_crashes(self, req: Request, m: re.Match[str]) -> Response:
        return _api_list(req, self.store.list_crashes, "crashes", crash_json)

    def api_crash(self, req: Request, m: re.Match[str]) -> Response:
        return _api_get(req, self.store.get_crash, "crash", m["id"], crash_detail_json)

    def api_hosts(self, req: Request, m: re.Match[str]) -> Response:
        return _api_list(req, self.store.list_hosts, "hosts", host_json)

    # Web page ----------------------------------------------------------------------------------

    def page_clusters(self, req: Request, m: re.Match[str]) -> Response:
        flt, page = parse_query(req.query, default_size=web.LIST_PAGE_SIZE)
        rows, nxt = self.store.list_clusters(flt, page)
        return _html(HTTPStatus.OK, web.cluster_list_page(rows, flt, page, nxt))

    def page_cluster(self, req: Request, m: re.Match[str]) -> Response:
        _, page = parse_query(req.query, filters=False, default_size=web.CRASH_PAGE_SIZE)
        detail = self.store.get_cluster(m["id"])
        if detail is None:
            return _html(HTTPStatus.NOT_FOUND, web.error_page(HTTPStatus.NOT_FOUND, f"No cluster {m['id']}."))
        crashes, nxt = self.store.list_crashes(QueryFilter(cluster_id=detail.summary.id), page)
        rep_id = detail.summary.representative_crash_id
        rep = self.store.get_crash(rep_id) if rep_id else None
        return _html(HTTPStatus.OK, web.cluster_page(detail, rep, crashes, page, nxt))

    def page_crash(self, req: Request, m: re.Match[str]) -> Response:
        parse_query(req.query, filters=False, paging=False)
        detail = self.store.get_crash(m["id"])
        if detail is None:
            return _html(HTTPStatus.NOT_FOUND, web.error_page(HTTPStatus.NOT_FOUND, f"No crash {m['id']}."))
        return _html(HTTPStatus.OK, web.crash_page(detail))

    def page_hosts(self, req: Request, m: re.Match[str]) -> Response:
        flt, page = parse_query(req.query, default_size=web.LIST_PAGE_SIZE)
        rows, nxt = self.store.list_hosts(flt, page)
        return _html(HTTPStatus.OK, web.hosts_page(rows, flt, page, nxt))

    # Auth and dispatch -------------------------------------------------------------------------

    def check_token(self, presented: str) -> bool:
        assert self.token is not None
        # compare_digest's time does not depend on where the first differing byte is.
        return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), self.token)

    def presented_token(self, req: Request) -> str | None:
        """The credential a request carries (header first, then cookie), None when it has none."""
        auth = req.headers.get("authorization")
        if auth is not None:
            scheme, _, value = auth.strip().partition(" ")
            return value.strip() if scheme.lower() == "bearer" else ""
        cookie = req.headers.get("cookie")
        if cookie:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(cookie)
            except CookieError:
                return ""
            if TOKEN_COOKIE in jar:
                return _cookie_decode(jar[TOKEN_COOKIE].value)
        return None

    def login_redirect(self, req: Request, token: str) -> Response:
        """A browser opened a page with `?token=`: set the cookie, drop the token from the URL."""
        rest = _without_token(req.query)
        cookie = f"{TOKEN_COOKIE}={_cookie_encode(token)}; Path=/; HttpOnly; SameSite=Strict"
        return Response(
            HTTPStatus.SEE_OTHER,
            b"",
            "text/plain; charset=utf-8",
            (("Location", quote(req.path) + (f"?{rest}" if rest else "")), ("Set-Cookie", cookie)),
        )

    def unauthorized(self, route: Route, presented: bool) -> Response:
        challenge = 'Bearer realm="crashfleet"' + (', error="invalid_token"' if presented else "")
        if route.html:
            resp = _html(HTTPStatus.UNAUTHORIZED, web.login_page(presented))
        else:
            resp = _json_error(HTTPStatus.UNAUTHORIZED, "invalid token" if presented else "token required")
        return Response(
            resp.status, resp.body, resp.content_type, (*resp.headers, ("WWW-Authenticate", challenge))
        )

    def dispatch(self, req: Request) -> Response:
        for route in ROUTES:
            m = route.pattern.fullmatch(req.path)
            if m is None:
                continue
            if route.html:
                login = _query_token(req.query)
                if login is not None:
                    if self.token is not None:
                        if self.check_token(login):
                            return self.login_redirect(req, login)
                        return self.unauthorized(route, presented=True)
                    req = Request(req.path, _without_token(req.query), req.headers)
            if route.protected and self.token is not None:
                presented = self.presented_token(req)
                if presented is None or not self.check_token(presented):
                    return self.unauthorized(route, presented=presented is not None)
            try:
                return route.handler(self, req, m)
            except (QueryError, InvalidPageToken, AmbiguousId) as exc:
                if route.html:
                    return _html(HTTPStatus.BAD_REQUEST, web.error_page(HTTPStatus.BAD_REQUEST, str(exc)))
                return _json_error(HTTPStatus.BAD_REQUEST, str(exc))
        return _json_error(HTTPStatus.NOT_FOUND, "no such route")


def _cookie_encode(token: str) -> str:
    """base64url: any token (spaces, `;`, non-ASCII) fits in a cookie value and a header."""
    return base64.urlsafe_b64encode(token.encode("utf-8", "surrogateescape")).decode().rstrip("=")


def _cookie_decode(value: str) -> str:
    """The token a cookie carries; "" (never matches) when the cookie is not one we set."""
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (ValueError, binascii.Error):
        return ""
    return raw.decode("utf-8", "surrogateescape")


def _query_token(query: str) -> str | None:
    """The `token` parameter of a page URL (its last value), None when absent or unparseable."""
    if "token=" not in query:
        return None
    try:
        values = parse_qs(query, keep_blank_values=True, max_num_fields=64).get("token")
    except ValueError:
        return None  # too many fields: parse_query refuses the request with the reason
    return values[-1] if values else None


def _without_token(query: str) -> str:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=64)
    except ValueError:
        return query
    return urlencode([(k, v) for k, v in pairs if k != "token"])


ROUTES: Final[tuple[Route, ...]] = (
    Route(re.compile(r"/metrics"), _App.metrics, protected=False, html=False),
    Route(re.compile(r"/healthz"), _App.healthz, protected=False, html=False),
    Route(re.compile(r"/api/v1/clusters"), _App.api_clusters, protected=True, html=False),
    Route(re.compile(rf"/api/v1/clusters/{_ID}"), _App.api_cluster, protected=True, html=False),
    Route(re.compile(r"/api/v1/crashes"), _App.api_crashes, protected=True, html=False),
    Route(re.compile(rf"/api/v1/crashes/{_ID}"), _App.api_crash, protected=True, html=False),
    Route(re.compile(r"/api/v1/hosts"), _App.api_hosts, protected=True, html=False),
    Route(re.compile(r"/"), _App.page_clusters, protected=True, html=True),
    Route(re.compile(rf"/clusters/{_ID}"), _App.page_cluster, protected=True, html=True),
    Route(re.compile(rf"/crashes/{_ID}"), _App.page_crash, protected=True, html=True),
    Route(re.compile(r"/hosts"), _App.page_hosts, protected=True, html=True),
)


# Server plumbing -------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server_version = "crashfleet"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = REQUEST_TIMEOUT_S
    app: _App  # set on the per-server subclass

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _method_not_allowed(self) -> None:
        resp = _json_error(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} not allowed; the API is read-only")
        self._send(Response(resp.status, resp.body, resp.content_type, (("Allow", "GET, HEAD"),)), head=False)

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed

    def _serve(self, head: bool) -> None:
        start = time.perf_counter()
        parts = urlsplit(self.path)
        path = unquote(parts.path, errors="replace") or "/"
        req = Request(path=path, query=parts.query, headers={k.lower(): v for k, v in self.headers.items()})
        try:
            resp = self.app.dispatch(req)
        except Exception:
            log.exception("http handler failed method=%s path=%s", self.command, path)
            resp = _json_error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
        self._send(resp, head=head)
        # The query string is left out on purpose: it may carry `?token=`.
        log.debug(
            "http request method=%s path=%s status=%d duration_ms=%.1f",
            self.command,
            path,
            resp.status.value,
            (time.perf_counter() - start) * 1000,
        )

    def _send(self, resp: Response, head: bool) -> None:
        self.send_response(resp.status.value)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        for name, value in resp.headers:
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(resp.body)

    def log_message(self, format: str, *args: Any) -> None:
        """BaseHTTPRequestHandler logs every request to stderr; route its own errors to logging."""
        log.debug("http server message=%r", format % args)


_BUSY_BODY: Final = b"too many open connections\n"
_BUSY_RESPONSE: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class _Server(HTTPServer):
    """An HTTP server whose connections are served by a fixed pool of worker threads.

    Not ThreadingHTTPServer (a new thread per connection): stores keep one database connection
    per thread (SQLite readers are thread-local), so fresh threads would leave one connection
    behind per HTTP connection. A pool of `max_connections` long-lived workers bounds both the
    threads and the store connections; a connection past the cap gets an immediate 503 instead
    of waiting in a queue. `server_close` also shuts down connections still open (keep-alive) so
    no worker outlives the server.
    """

    allow_reuse_address = True
    max_connections = MAX_CONNECTIONS

    def server_activate(self) -> None:
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self._pool = ThreadPoolExecutor(
            max_workers=self.max_connections, thread_name_prefix="crashfleet-http"
        )
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().server_activate()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            log.warning("http connection refused reason=busy limit=%d", self.max_connections)
            with contextlib.suppress(OSError):  # the client may already be gone
                request.sendall(_BUSY_RESPONSE)
            self.shutdown_request(request)
            return
        with self._open_lock:
            self._open.add(request)
        try:
            self._pool.submit(self._serve_connection, request, client_address)
        except RuntimeError:  # the pool is shut down: the server is closing
            self._release(request)
            self.shutdown_request(request)

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self._release(request)
            self.shutdown_request(request)

    def _release(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        self._slots.release()

    def server_close(self) -> None:
        super().server_close()
        with self._open_lock:
            still_open = list(self._open)
        for conn in still_open:  # wakes workers blocked reading a keep-alive connection
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning(
            "http connection error client=%s", client_address[0] if client_address else "?", exc_info=True
        )


class HttpHandle:
    """A running HTTP server: `.port` is the bound port (useful with port 0), `.close()` stops it."""

    def __init__(self, server: _Server, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        host, port = server.server_address[:2]
        self.host: str = str(host)
        self.port: int = int(port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        """Stop accepting, finish the serve loop and release the socket; idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> HttpHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_http_server(
    store: StoreReader,
    registry: CollectorRegistry,
    listen: tuple[str, int],
    token: str | None,
    *,
    max_connections: int = MAX_CONNECTIONS,
) -> HttpHandle:
    """Bind `listen` (port 0 picks a free port) and serve in a daemon thread until `.close()`."""
    app = _App(store, registry, token or None)
    handler = type("CrashfleetHandler", (_Handler,), {"app": app})
    family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET  # an IPv6 literal needs AF_INET6
    server_cls = type(
        "CrashfleetServer", (_Server,), {"address_family": family, "max_connections": max_connections}
    )
    server = server_cls(listen, handler)
    thread = threading.Thread(
        target=server.serve_forever, args=(SHUTDOWN_POLL_S,), name="crashfleet-http", daemon=True
    )
    thread.start()
    handle = HttpHandle(server, thread)
    log.info(
        "http listening address=%s port=%d auth=%s", handle.host, handle.port, "token" if token else "off"
    )
    return handle
