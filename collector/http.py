"""The collector's HTTP port: Prometheus `/metrics`, `/healthz`, the JSON query API and the web page.

aiohttp's low-level server on the collector's own asyncio event loop, the one grpc.aio serves on
(collector.server), so a thousand idle or slow connections cost a thousand small objects, not a
thousand threads. The limits are whole-request deadlines and counts (`HttpLimits`, set from the
`[http_limits]` config table): a request head must be complete `header_timeout` seconds after
the connection opened or its previous response went out (a client trickling header bytes is cut
off then), a body must arrive within `body_timeout` and `max_body_bytes`, a handler must answer
within `request_timeout` (503 after), and each client address holds at most
`max_connections_per_client` of the `max_connections` open connections (past either a quick 503).
`/healthz` and `/metrics` therefore answer while slow clients hold connections.

Handlers are plain functions over the synchronous `StoreReader` (and, for the fleet-analytics
routes and page sections, its `AnalyticsStore` side: rates, suspects, regression windows, triage,
hardware suspects; docs/analytics.md), run in the loop's default executor (the store's worker
threads), never on the loop itself. The one route that changes anything is a cluster's triage
(`POST`, JSON or the cluster page's form), behind the token like every query. The routes are data (`ROUTES`:
path, handler, whether it needs the token, whether it answers in HTML or JSON, methods);
docs/http-api.md "Adding a route" shows how to add one.

Auth: with a token configured, the JSON API and the web page need `Authorization: Bearer <token>`
(the scheme in any case, collector.auth) or the `crashfleet_token` cookie; a browser gets the
cookie by opening any page once with `?token=<token>`, which answers with a redirect to the same
URL minus the token (so it does not stay in the address bar, history or access logs). `/metrics`
and `/healthz` stay open: Prometheus and load-balancer probes have no secret to send, and neither
route reveals crash contents or host names (metrics have bounded labels only, see
collector.metrics). docs/http-api.md is the reference for routes, parameters and JSON shapes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs, parse_qsl, quote, urlencode

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from collector import web as pages
from collector.analytics.exposure import check_dimension
from collector.analytics.triage import ACTIONS, Triage, TriageError
from collector.api_json import cluster_detail_json, cluster_json, crash_json, host_json
from collector.auth import bearer_credentials, token_matches
from collector.store.analytics import AnalyticsStore, UnknownCluster, Window
from collector.store.base import AmbiguousId, InvalidPageToken, StoreReader
from wire.model import CrashDetail, Page, QueryFilter

__all__ = [
    "ANALYTICS_PARAMS",
    "DEFAULT_PAGE_SIZE",
    "FILTER_PARAMS",
    "MAX_PAGE_SIZE",
    "ROUTES",
    "TOKEN_COOKIE",
    "App",
    "HttpLimits",
    "HttpServer",
    "QueryError",
    "Request",
    "Response",
    "Route",
    "ThreadedHttpServer",
    "cluster_json",
    "crash_detail_json",
    "html_response",
    "json_response",
    "parse_params",
    "parse_query",
    "serve_in_thread",
    "start_http_server",
]

log = logging.getLogger(__name__)
_Row = TypeVar("_Row")

DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000
MAX_ID_LENGTH: Final = 256
MAX_PARAM_LENGTH: Final = 1024
TOKEN_COOKIE: Final = "crashfleet_token"
HEALTH_STORE_TIMEOUT_S: Final = 5.0  # /healthz says 503 when the store takes longer than this
SHUTDOWN_TIMEOUT_S: Final = 5.0  # close(): in-flight responses get this long
REFUSAL_LOG_EVERY_S: Final = 10.0  # refused connections are logged at most this often (a flood)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Deadlines and bounds of the HTTP port (config `[http_limits]`); why each is there:"""

    header_timeout: float = 10.0  # slowloris: the request head must be complete by then
    body_timeout: float = 10.0  # a trickled body: the whole body must be read by then
    request_timeout: float = 30.0  # a wedged store: the handler must have answered by then (503)
    max_connections: int = 1024  # open connections in all (each costs a buffer and a file descriptor)
    max_connections_per_client: int = 64  # per client address, so one host cannot take them all
    max_body_bytes: int = 64 * 1024  # forms are small; bigger bodies get 413
    max_line_bytes: int = 8190  # a request line or header line longer than this gets 400

    def __post_init__(self) -> None:
        for name in ("header_timeout", "body_timeout", "request_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"http_limits.{name} must be a positive number of seconds")
        for name in ("max_connections", "max_connections_per_client", "max_body_bytes", "max_line_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"http_limits.{name} must be at least 1")


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
# The analytics routes' parameters (docs/http-api.md, "Fleet analytics"): the dimension of a rates
# breakdown, one cluster's crashes, and the window (default: the 30 days before now).
ANALYTICS_PARAMS: Final[Mapping[str, str]] = {
    "by": "a dimension: kernel_release, machine, hardware, module, agent_version or label:KEY",
    "cluster": "a cluster id: that cluster's crashes only",
    "since": "window start (ISO 8601; default 30 days before until)",
    "until": "window end (ISO 8601; default now)",
}
TRIAGE_FIELDS: Final = ("action", "fixed_in", "note", "link")

SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "Server": "crashfleet",
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


def parse_params(query: str, known: Collection[str]) -> dict[str, str]:
    """Query string -> {name: value}, each of `known` at most once. Unknown or repeated
    parameters and values over MAX_PARAM_LENGTH are a QueryError naming the parameter."""
    try:
        raw = parse_qs(query, keep_blank_values=True, max_num_fields=64)
    except ValueError as exc:
        raise QueryError(f"malformed query string: {exc}") from None
    out: dict[str, str] = {}
    for name, values in raw.items():
        if name not in known:
            hint = f" (known: {', '.join(sorted(known))})" if known else " (this route takes none)"
            raise QueryError(f"unknown parameter {name!r}{hint}")
        if len(values) != 1:
            raise QueryError(f"{name}: given {len(values)} times")
        if len(values[0]) > MAX_PARAM_LENGTH:
            raise QueryError(f"{name}: longer than {MAX_PARAM_LENGTH} characters")
        out[name] = values[0]
    return out


def parse_query(
    query: str,
    *,
    filters: bool = True,
    paging: bool = True,
    default_size: int = DEFAULT_PAGE_SIZE,
) -> tuple[QueryFilter, Page]:
    """Query string -> (filter, page). Unknown, repeated or (for this route) unsupported parameters
    are errors, so a typo (`?kernel=`) fails loudly instead of silently returning everything."""
    known = {*(FILTER_PARAMS if filters else ()), *(PAGE_PARAMS if paging else ())}
    fields: dict[str, Any] = {}
    size = default_size
    token = ""
    for name, value in parse_params(query, known).items():
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


@dataclass(frozen=True, slots=True)
class AnalyticsQuery:
    """The analytics routes' parameters, checked: `dim` None is the whole fleet."""

    dim: str | None
    cluster: str | None
    window: Window


def parse_analytics(query: str, known: Collection[str] = tuple(ANALYTICS_PARAMS)) -> AnalyticsQuery:
    """`by`, `cluster`, `since`, `until` (those of them in `known`) -> AnalyticsQuery; a bad
    dimension, an unparseable time or an empty window is a QueryError saying which."""
    raw = {k: v for k, v in parse_params(query, known).items() if v != ""}  # "" (a blank form field): any
    dim = raw.get("by")
    if dim is not None:
        try:
            check_dimension(dim)
        except ValueError as exc:
            raise QueryError(f"by: {exc}") from None
    times = {name: _parse_time(name, raw[name]) if name in raw else None for name in ("since", "until")}
    try:
        window = Window(times["since"], times["until"])
    except (ValueError, OverflowError) as exc:
        raise QueryError(f"since/until: {exc}") from None
    return AnalyticsQuery(dim, raw.get("cluster"), window)


def parse_triage(fields: Mapping[str, Any]) -> tuple[str, str, str | None, str | None]:
    """A triage change from a JSON object or a form: (action, fixed_in, note, link). `action` is
    `ack` or `fixed`; `fixed_in` (with fixed) a release its distribution can order; `note` and
    `link` optional (absent keeps the current one). QueryError naming the field otherwise."""
    from collector.analytics.releases import ReleaseError, compare_releases  # python-debian: on use

    for name in fields:
        if name not in TRIAGE_FIELDS:
            raise QueryError(f"unknown field {name!r} (known: {', '.join(TRIAGE_FIELDS)})")
    for name, value in fields.items():
        if value is not None and not isinstance(value, str):
            raise QueryError(f"{name}: must be a string")
    action = fields.get("action") or ""
    if action not in ACTIONS:
        raise QueryError(f"action: must be one of {', '.join(ACTIONS)}, not {action!r}")
    fixed_in = (fields.get("fixed_in") or "").strip()
    if action == "fixed":
        if not fixed_in:
            raise QueryError("fixed_in: the release that fixes it is required with action fixed")
        try:
            compare_releases(fixed_in, fixed_in)
        except ReleaseError as exc:
            raise QueryError(f"fixed_in: {exc}") from None
    elif fixed_in:
        raise QueryError("fixed_in: only given with action fixed")
    return action, fixed_in, fields.get("note"), fields.get("link")


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
        signature=pages.signature_document(d.signature_json),
        excerpt=d.excerpt,
        modules=list(d.modules),
        host_facts=dict(d.host_facts),
        symbolized=_embedded_json(d.symbolized_json),
    )
    return out


# Requests, responses and routes ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """What a handler sees: the request as data (handlers run in a worker thread, off the loop)."""

    method: str
    path: str  # percent-decoded
    query: str  # raw query string
    headers: Mapping[str, str]  # lower-case names
    params: Mapping[str, str] = field(default_factory=dict)  # the route's `{name}` segments
    body: bytes = b""  # read whole, under body_timeout and max_body_bytes, before the handler runs

    def form(self) -> dict[str, str]:
        """An `application/x-www-form-urlencoded` body as {name: value}; QueryError (400) for a
        repeated or malformed field."""
        try:
            pairs = parse_qsl(
                self.body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(self.body),
                max_num_fields=64,
            )  # fmt: skip
        except (UnicodeDecodeError, ValueError) as exc:
            raise QueryError(f"malformed form body: {exc}") from None
        out: dict[str, str] = {}
        for name, value in pairs:
            if name in out:
                raise QueryError(f"{name}: given more than once")
            out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class Response:
    status: HTTPStatus
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


def json_response(status: HTTPStatus, obj: Any) -> Response:
    body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
    return Response(status, body, "application/json; charset=utf-8")


def _json_error(status: HTTPStatus, message: str) -> Response:
    return json_response(status, {"error": message, "status": status.value})


def html_response(status: HTTPStatus, page: str) -> Response:
    """A rendered page (collector.web) with the CSP that pins its stylesheet and forbids scripts."""
    return Response(
        status, page.encode(), "text/html; charset=utf-8", (("Content-Security-Policy", pages.CSP),)
    )


def _error(html: bool, status: HTTPStatus, message: str) -> Response:
    if html:
        return html_response(status, pages.error_page(status, message))
    return _json_error(status, message)


Handler = Callable[["App", Request], Response]

_PARAM = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class Route:
    """One route. `path` is literal but for `{name}` segments (1..MAX_ID_LENGTH characters, no
    `/`), handed to the handler as `req.params[name]`. `protected`: needs the token when one is
    configured. `html`: a page (errors render as pages, `?token=` logs a browser in) rather than
    JSON. `methods`: HEAD comes with GET; any other method on the path is 405. `on_loop`: the
    handler only reads memory (no store, no files), so it runs on the event loop itself instead of
    a worker thread; leave it False for anything that may block."""

    path: str
    handler: Handler
    protected: bool = True
    html: bool = False
    methods: tuple[str, ...] = ("GET",)
    on_loop: bool = False
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = "".join(
            rf"(?P<{piece}>[^/]{{1,{MAX_ID_LENGTH}}})" if i % 2 else re.escape(piece)
            for i, piece in enumerate(_PARAM.split(self.path))
        )
        object.__setattr__(self, "pattern", re.compile(regex))

    @property
    def allowed(self) -> tuple[str, ...]:
        return (*self.methods, "HEAD") if "GET" in self.methods and "HEAD" not in self.methods else self.methods


def _api_list(
    req: Request,
    query: Callable[[QueryFilter, Page], tuple[list[_Row], str]],
    count: Callable[[QueryFilter], int],
    key: str,
    to_json: Callable[[_Row], dict[str, Any]],
) -> Response:
    """A JSON list endpoint: `{key: [...], "next_page_token": ..., "total_count": ...}` for the filter
    and page in the query. The total is the store's count of every matching row, given on the first
    page only (as the gRPC API does): later pages carry 0 rather than pay for the count again."""
    flt, page = parse_query(req.query)
    rows, nxt = query(flt, page)
    total = count(flt) if not page.token else 0
    return json_response(
        HTTPStatus.OK, {key: [to_json(r) for r in rows], "next_page_token": nxt, "total_count": total}
    )


def _api_get(
    req: Request,
    get: Callable[[str], _Row | None],
    what: str,
    to_json: Callable[[_Row], dict[str, Any]],
) -> Response:
    """A JSON detail endpoint: the object, or 404 naming the id asked for."""
    parse_query(req.query, filters=False, paging=False)
    ident = req.params["id"]
    detail = get(ident)
    if detail is None:
        return _json_error(HTTPStatus.NOT_FOUND, f"no {what} {ident!r}")
    return json_response(HTTPStatus.OK, to_json(detail))


class AnalyticsUnavailable(Exception):
    """The store has no fleet analytics (only the SQL stores do): the analytics routes are 501."""


MAX_SUSPECT_HOSTS: Final = 1000
HOSTS_PAGE_SUSPECTS: Final = 1000  # hosts scored for the hosts page's hardware-suspect flags


def _window_json(w: Window) -> dict[str, str | None]:
    return {"since": pages.iso_time(w.since), "until": pages.iso_time(w.until)}


class App:
    """The handlers, bound to one store/registry/token. A handler returns a Response or raises
    QueryError/InvalidPageToken (a 400); anything else escaping is a 500 (logged).

    `on_triage(cluster_id, state, fixed_in)` is told of every triage change made here (the
    collector passes its Ingestor's, so a cluster fixed over HTTP is watched for regressions at
    once)."""

    def __init__(
        self,
        store: StoreReader,
        registry: CollectorRegistry,
        token: str | None,
        on_triage: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.token = token or None
        self.analytics = store if isinstance(store, AnalyticsStore) else None
        self.on_triage = on_triage

    def _analytics(self) -> AnalyticsStore:
        if self.analytics is None:
            raise AnalyticsUnavailable
        return self.analytics

    def _set_triage(self, cluster_id: str, fields: Mapping[str, Any]) -> Triage:
        action, fixed_in, note, link = parse_triage(fields)
        try:
            triage = self._analytics().set_triage(cluster_id, action, fixed_in, note, link)
        except TriageError as exc:  # note or link refused by collector.analytics.triage
            raise QueryError(str(exc)) from None
        if self.on_triage is not None:
            self.on_triage(triage.cluster_id, triage.state, triage.fixed_in)
        return triage

    # Open routes -------------------------------------------------------------------------------

    def metrics(self, req: Request) -> Response:
        encoder, content_type = choose_encoder(req.headers.get("accept", ""))
        return Response(HTTPStatus.OK, encoder(self.registry), content_type)

    def healthz(self, req: Request) -> Response:
        """Liveness plus a one-row store read, so a wedged database turns the probe red."""
        try:
            self.store.list_clusters(QueryFilter(), Page(size=1))
        except Exception as exc:
            log.warning("healthz store check failed error=%s", type(exc).__name__)
            return json_response(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unavailable", "store": "error"})
        return json_response(HTTPStatus.OK, {"status": "ok", "store": "ok"})

    # JSON API ----------------------------------------------------------------------------------

    def api_clusters(self, req: Request) -> Response:
        return _api_list(req, self.store.list_clusters, self.store.count_clusters, "clusters", cluster_json)

    def api_cluster(self, req: Request) -> Response:
        return _api_get(req, self.store.get_cluster, "cluster", cluster_detail_json)

    def api_crashes(self, req: Request) -> Response:
        return _api_list(req, self.store.list_crashes, self.store.count_crashes, "crashes", crash_json)

    def api_crash(self, req: Request) -> Response:
        return _api_get(req, self.store.get_crash, "crash", crash_detail_json)

    def api_hosts(self, req: Request) -> Response:
        return _api_list(req, self.store.list_hosts, self.store.count_hosts, "hosts", host_json)

    # Fleet analytics (JSON) ----------------------------------------------------------------------

    def api_rates(self, req: Request) -> Response:
        from collector.analytics.render import rate_json

        q = parse_analytics(req.query)
        rows = self._analytics().rates(q.dim, q.window, q.cluster)
        body = {"by": q.dim or "", "cluster": q.cluster or "", **_window_json(q.window)}
        return json_response(HTTPStatus.OK, {**body, "rates": [rate_json(r) for r in rows]})

    def api_suspects(self, req: Request) -> Response:
        from collector.analytics.render import suspect_report_json

        q = parse_analytics(req.query, ("since", "until"))
        cluster_id = req.params["id"]
        report = self._analytics().suspects(cluster_id, q.window)
        return json_response(
            HTTPStatus.OK, {"cluster_id": cluster_id, **_window_json(q.window), **suspect_report_json(report)}
        )

    def api_releases(self, req: Request) -> Response:
        from collector.analytics.render import regression_json, triage_json

        q = parse_analytics(req.query, ("since", "until"))
        cluster_id = req.params["id"]
        from collector.analytics.suspects import regression_stratum

        analytics = self._analytics()
        # Within the top suspect's hosts (docs/analytics.md): a confounded release is no regression.
        stratum = regression_stratum(analytics.suspects(cluster_id, q.window))
        window = analytics.regression(cluster_id, q.window, stratum)
        body = {"cluster_id": cluster_id, **_window_json(q.window), **regression_json(window)}
        return json_response(HTTPStatus.OK, {**body, "triage": triage_json(analytics.get_triage(cluster_id))})

    def api_triage(self, req: Request) -> Response:
        """GET: the cluster's triage. POST a JSON object {"action": "ack"|"fixed", "fixed_in",
        "note", "link"}: change it, answer with the new triage."""
        from collector.analytics.render import triage_json

        parse_params(req.query, ())
        cluster_id = req.params["id"]
        if req.method != "POST":
            return json_response(HTTPStatus.OK, triage_json(self._analytics().get_triage(cluster_id)))
        try:
            fields = json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise QueryError("body: not JSON (send a JSON object with action, fixed_in, note, link)") from None
        if not isinstance(fields, dict):
            raise QueryError("body: not a JSON object")
        return json_response(HTTPStatus.OK, triage_json(self._set_triage(cluster_id, fields)))

    def api_suspect_hosts(self, req: Request) -> Response:
        """The hardware suspects (`?all=true`: every host with evidence, scored), highest first."""
        from collector.analytics.render import bad_host_json

        raw = parse_params(req.query, ("all", "limit"))
        every = _flag("all", raw.get("all", ""))
        limit = _int_param("limit", raw.get("limit", ""), 100, 1, MAX_SUSPECT_HOSTS)
        rows = self._analytics().bad_hosts(limit)
        return json_response(
            HTTPStatus.OK, {"hosts": [bad_host_json(b) for b in rows if every or b.flagged]}
        )

    # Web page ----------------------------------------------------------------------------------

    def page_clusters(self, req: Request) -> Response:
        flt, page = parse_query(req.query, default_size=pages.LIST_PAGE_SIZE)
        rows, nxt = self.store.list_clusters(flt, page)
        triage = self.analytics.triage_states([c.id for c in rows]) if self.analytics is not None else {}
        return html_response(HTTPStatus.OK, pages.cluster_list_page(rows, flt, page, nxt, triage))

    def page_cluster(self, req: Request) -> Response:
        _, page = parse_query(req.query, filters=False, default_size=pages.CRASH_PAGE_SIZE)
        detail = self.store.get_cluster(req.params["id"])
        if detail is None:
            return _error(True, HTTPStatus.NOT_FOUND, f"No cluster {req.params['id']}.")
        crashes, nxt = self.store.list_crashes(QueryFilter(cluster_id=detail.summary.id), page)
        rep_id = detail.summary.representative_crash_id
        rep = self.store.get_crash(rep_id) if rep_id else None
        analysis = None
        if self.analytics is not None:  # the default window: the 30 days before now
            from collector.analytics.suspects import regression_stratum

            cluster_id, window = detail.summary.id, Window(None, None)
            report = self.analytics.suspects(cluster_id, window)
            analysis = pages.ClusterAnalytics(
                report,
                self.analytics.regression(cluster_id, window, regression_stratum(report)),
                self.analytics.get_triage(cluster_id),
                window.since,
                window.until,
            )
        return html_response(HTTPStatus.OK, pages.cluster_page(detail, rep, crashes, page, nxt, analysis))

    def page_triage(self, req: Request) -> Response:
        """The cluster page's triage form: change the triage, then back to the cluster (303)."""
        parse_params(req.query, ())
        fields = req.form()
        if fields.get("action") == "ack":
            fields.pop("fixed_in", None)  # the form's release field only counts with "fixed"
        triage = self._set_triage(req.params["id"], fields)
        location = f"/clusters/{quote(triage.cluster_id, safe='')}#triage"
        return Response(HTTPStatus.SEE_OTHER, b"", "text/plain; charset=utf-8", (("Location", location),))

    def page_rates(self, req: Request) -> Response:
        q = parse_analytics(req.query)
        rows = self._analytics().rates(q.dim, q.window, q.cluster)
        entered = parse_params(req.query, ANALYTICS_PARAMS)
        return html_response(
            HTTPStatus.OK, pages.rates_page(rows, q.dim, q.cluster, q.window.since, q.window.until, entered)
        )

    def page_crash(self, req: Request) -> Response:
        parse_query(req.query, filters=False, paging=False)
        detail = self.store.get_crash(req.params["id"])
        if detail is None:
            return _error(True, HTTPStatus.NOT_FOUND, f"No crash {req.params['id']}.")
        return html_response(HTTPStatus.OK, pages.crash_page(detail))

    def page_hosts(self, req: Request) -> Response:
        flt, page = parse_query(req.query, default_size=pages.LIST_PAGE_SIZE)
        rows, nxt = self.store.list_hosts(flt, page)
        suspects = None
        if self.analytics is not None:
            suspects = [b for b in self.analytics.bad_hosts(HOSTS_PAGE_SUSPECTS) if b.flagged]
        return html_response(HTTPStatus.OK, pages.hosts_page(rows, flt, page, nxt, suspects))

    # Auth and dispatch -------------------------------------------------------------------------

    def check_token(self, presented: str) -> bool:
        assert self.token is not None
        return token_matches(presented, self.token)

    def presented_token(self, req: Request) -> str | None:
        """The credential a request carries (header first, then cookie), None when it has none;
        "" (never matches) for a header of another scheme or a cookie we did not set."""
        auth = req.headers.get("authorization")
        if auth is not None:
            credentials = bearer_credentials(auth)
            return credentials if credentials is not None else ""
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
            resp = html_response(HTTPStatus.UNAUTHORIZED, pages.login_page(presented))
        else:
            resp = _json_error(HTTPStatus.UNAUTHORIZED, "invalid token" if presented else "token required")
        return Response(
            resp.status, resp.body, resp.content_type, (*resp.headers, ("WWW-Authenticate", challenge))
        )

    def dispatch(self, route: Route, req: Request) -> Response:
        """Auth, then the route's handler; QueryError and InvalidPageToken become a 400."""
        if route.html:
            login = _query_token(req.query)
            if login is not None:
                if self.token is not None:
                    if self.check_token(login):
                        return self.login_redirect(req, login)
                    return self.unauthorized(route, presented=True)
                req = Request(req.method, req.path, _without_token(req.query), req.headers, req.params, req.body)
        if route.protected and self.token is not None:
            presented = self.presented_token(req)
            if presented is None or not self.check_token(presented):
                return self.unauthorized(route, presented=presented is not None)
        try:
            return route.handler(self, req)
        except (QueryError, InvalidPageToken, AmbiguousId) as exc:
            return _error(route.html, HTTPStatus.BAD_REQUEST, str(exc))
        except UnknownCluster as exc:
            return _error(route.html, HTTPStatus.NOT_FOUND, f"no cluster {exc.args[0]!r}")
        except AnalyticsUnavailable:
            return _error(route.html, HTTPStatus.NOT_IMPLEMENTED, "this store keeps no fleet analytics")


def _flag(name: str, value: str) -> bool:
    if value.lower() in ("", "0", "false", "no"):
        return False
    if value.lower() in ("1", "true", "yes"):
        return True
    raise QueryError(f"{name}: not a boolean (true or false): {value!r}")


def _int_param(name: str, value: str, default: int, low: int, high: int) -> int:
    if value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise QueryError(f"{name}: not an integer: {value!r}") from None
    if not low <= number <= high:
        raise QueryError(f"{name}: must be between {low} and {high}")
    return number


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


# Every route of the port, matched in order. A new page or JSON route is one row here plus its
# handler (a method of App, or any function taking (App, Request)); docs/http-api.md says more.
ROUTES: Final[tuple[Route, ...]] = (
    Route("/metrics", App.metrics, protected=False, on_loop=True),  # the registry is in memory
    Route("/healthz", App.healthz, protected=False),
    Route("/api/v1/clusters", App.api_clusters),
    Route("/api/v1/clusters/{id}", App.api_cluster),
    Route("/api/v1/crashes", App.api_crashes),
    Route("/api/v1/crashes/{id}", App.api_crash),
    Route("/api/v1/hosts", App.api_hosts),
    Route("/api/v1/rates", App.api_rates),
    Route("/api/v1/clusters/{id}/suspects", App.api_suspects),
    Route("/api/v1/clusters/{id}/releases", App.api_releases),
    Route("/api/v1/clusters/{id}/triage", App.api_triage, methods=("GET", "POST")),
    Route("/api/v1/suspect-hosts", App.api_suspect_hosts),
    Route("/", App.page_clusters, html=True),
    Route("/clusters/{id}", App.page_cluster, html=True),
    Route("/clusters/{id}/triage", App.page_triage, html=True, methods=("POST",)),
    Route("/crashes/{id}", App.page_crash, html=True),
    Route("/hosts", App.page_hosts, html=True),
    Route("/rates", App.page_rates, html=True),
)


# The server on the event loop ----------------------------------------------------------------------

_BUSY_BODY: Final = b"too many open connections\n"
_BUSY_RESPONSE: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class _BodyTooLarge(Exception):
    pass


class _ConnectionGuard:
    """Counts open connections in all and per client address; event-loop thread only."""

    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.total = 0
        self.per_client: dict[str, int] = {}
        self._refused = 0
        self._logged_at = float("-inf")

    def admit(self, client: str) -> bool:
        held = self.per_client.get(client, 0)
        if self.total >= self.limits.max_connections:
            self._refuse("busy", client, self.limits.max_connections)
            return False
        if held >= self.limits.max_connections_per_client:
            self._refuse("client_limit", client, self.limits.max_connections_per_client)
            return False
        self.total += 1
        self.per_client[client] = held + 1
        return True

    def release(self, client: str) -> None:
        self.total -= 1
        held = self.per_client.pop(client) - 1
        if held:
            self.per_client[client] = held

    def _refuse(self, reason: str, client: str, limit: int) -> None:
        self._refused += 1
        now = time.monotonic()
        if now - self._logged_at >= REFUSAL_LOG_EVERY_S:
            log.warning(
                "http connection refused reason=%s client=%s limit=%d refused=%d",
                reason, client, limit, self._refused,
            )  # fmt: skip
            self._logged_at = now
            self._refused = 0


class _GuardedHandler(web.RequestHandler):
    """aiohttp's connection protocol, admitted by the guard first: a connection over a limit
    gets the canned 503 and is closed before aiohttp ever sees it."""

    def __init__(self, guard: _ConnectionGuard, manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._client: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if peer else ""
        if not self._guard.admit(client):
            with contextlib.suppress(OSError):
                transport.write(_BUSY_RESPONSE)  # type: ignore[attr-defined]
            transport.close()
            return
        self._client = client
        super().connection_made(transport)

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """A request the HTTP parser refused (garbage, a line too long) is the client's error,
        answered with 400 by aiohttp: one line at info, no traceback. Anything else is ours."""
        exc = kw.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            log.info("http request unparseable client=%s error=%s", self._client, exc.message.splitlines()[0])
            return
        log.error("http connection failed client=%s", self._client, exc_info=exc or True)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._client is None:  # refused: aiohttp never saw it
            return
        self._guard.release(self._client)
        self._client = None
        super().connection_lost(exc)


class HttpServer:
    """The running port: `.port` is the bound port (useful with port 0), `await .close()` stops it."""

    def __init__(self, app: App, limits: HttpLimits, routes: Sequence[Route]) -> None:
        self.app = app
        self.limits = limits
        self.routes = tuple(routes)
        self.host = ""
        self.port = 0
        self._guard = _ConnectionGuard(limits)
        self._server: web.Server | None = None
        self._listener: asyncio.AbstractServer | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def _listen(self, listen: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        self._server = server = web.Server(self._handle, loop=loop)
        limits = self.limits
        options: dict[str, Any] = {
            "loop": loop,
            # aiohttp closes a connection whose next request head has not arrived this long after
            # it opened or after its previous response: that is the header deadline.
            "keepalive_timeout": limits.header_timeout,
            "max_line_size": limits.max_line_bytes,
            "max_field_size": limits.max_line_bytes,
            "lingering_time": limits.body_timeout,
            "access_log": None,  # one debug line per request from _handle instead
        }
        family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET  # an IPv6 literal needs AF_INET6
        sock = socket.create_server(listen, family=family, backlog=256)
        self._listener = await loop.create_server(
            lambda: _GuardedHandler(self._guard, server, **options), sock=sock
        )
        self.host, self.port = str(listen[0]), int(sock.getsockname()[1])

    def _route(self, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            m = route.pattern.fullmatch(path)
            if m is not None:
                return route, m.groupdict()
        return None

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        """The whole body within body_timeout and max_body_bytes (TimeoutError / _BodyTooLarge)."""
        if not request.body_exists:
            return b""
        limit = self.limits.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        async with asyncio.timeout(self.limits.body_timeout):
            while chunk := await request.content.readany():
                size += len(chunk)
                if size > limit:
                    raise _BodyTooLarge
                chunks.append(chunk)
        return b"".join(chunks)

    async def _respond(self, request: web.BaseRequest) -> Response:
        path = request.path or "/"
        found = self._route(path)
        if found is None:
            return _json_error(HTTPStatus.NOT_FOUND, "no such route")
        route, params = found
        if request.method not in route.allowed:
            resp = _error(
                route.html, HTTPStatus.METHOD_NOT_ALLOWED, f"{request.method} not allowed on {route.path}"
            )
            allow = ("Allow", ", ".join(route.allowed))
            return Response(resp.status, resp.body, resp.content_type, (*resp.headers, allow))
        try:
            body = await self._read_body(request)
        except TimeoutError:
            log.info("http body timed out path=%s timeout_s=%s", path, self.limits.body_timeout)
            return _error(route.html, HTTPStatus.REQUEST_TIMEOUT, "the request body did not arrive in time")
        except _BodyTooLarge:
            return _error(
                route.html,
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"request body over {self.limits.max_body_bytes} bytes",
            )
        req = Request(
            method=request.method,
            path=path,
            query=request.query_string,
            headers={k.lower(): v for k, v in request.headers.items()},
            params=params,
            body=body,
        )
        if route.on_loop:
            try:
                return self.app.dispatch(route, req)
            except Exception:
                log.exception("http handler failed method=%s path=%s", request.method, path)
                return _error(False, HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")
        loop = asyncio.get_running_loop()
        timeout = HEALTH_STORE_TIMEOUT_S if route.handler is App.healthz else self.limits.request_timeout
        try:
            async with asyncio.timeout(timeout):
                return await loop.run_in_executor(None, self.app.dispatch, route, req)
        except TimeoutError:
            log.warning("http request timed out path=%s timeout_s=%s", path, timeout)
            if route.handler is App.healthz:
                return json_response(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "unavailable", "store": "timeout"})
            return _error(route.html, HTTPStatus.SERVICE_UNAVAILABLE, "the collector did not answer in time")
        except Exception:
            log.exception("http handler failed method=%s path=%s", request.method, path)
            return _error(False, HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        start = time.perf_counter()
        resp = await self._respond(request)
        headers = {**SECURITY_HEADERS, "Content-Type": resp.content_type}
        out = web.Response(status=resp.status.value, body=resp.body, headers=headers)
        for name, value in resp.headers:
            out.headers.add(name, value)
        if resp.status in (HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.REQUEST_ENTITY_TOO_LARGE):
            out.force_close()  # the rest of the body is still on the wire
        # The query string is left out on purpose: it may carry `?token=`.
        log.debug(
            "http request method=%s path=%s status=%d duration_ms=%.1f",
            request.method, request.path, resp.status.value, (time.perf_counter() - start) * 1000,
        )  # fmt: skip
        return out

    async def close(self) -> None:
        """Stop accepting, let in-flight responses finish (bounded), close every connection;
        idempotent."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.close()
        assert self._server is not None
        self._server.pre_shutdown()
        await self._server.shutdown(SHUTDOWN_TIMEOUT_S)
        await listener.wait_closed()


async def start_http_server(
    store: StoreReader,
    registry: CollectorRegistry,
    listen: tuple[str, int],
    token: str | None,
    *,
    limits: HttpLimits | None = None,
    routes: Sequence[Route] = ROUTES,
    on_triage: Callable[[str, str, str], None] | None = None,
) -> HttpServer:
    """Bind `listen` (port 0 picks a free port) and serve on the running event loop."""
    server = HttpServer(App(store, registry, token, on_triage), limits or HttpLimits(), routes)
    await server._listen(listen)
    log.info(
        "http listening address=%s port=%d auth=%s", server.host, server.port, "token" if token else "off"
    )
    return server


class ThreadedHttpServer:
    """The port on an event loop of its own in a daemon thread, for callers without a loop (the
    benchmark, browser tests); the collector itself serves on its own loop (start_http_server)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread, server: HttpServer) -> None:
        self._loop = loop
        self._thread = thread
        self.server = server
        self.host = server.host
        self.port = server.port
        self.url = server.url

    def close(self) -> None:
        """Stop the server and its loop; idempotent."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.server.close(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def __enter__(self) -> ThreadedHttpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_in_thread(
    store: StoreReader,
    registry: CollectorRegistry,
    listen: tuple[str, int],
    token: str | None,
    *,
    limits: HttpLimits | None = None,
    routes: Sequence[Route] = ROUTES,
    workers: int = 16,
) -> ThreadedHttpServer:
    """`start_http_server` on a new loop in a daemon thread with `workers` handler threads."""
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crashfleet-http")
    loop.set_default_executor(executor)
    started = asyncio.run_coroutine_threadsafe(
        start_http_server(store, registry, listen, token, limits=limits, routes=routes), loop
    )

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    thread = threading.Thread(target=run, name="crashfleet-http-loop", daemon=True)
    thread.start()
    try:
        server = started.result(timeout=30)
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        raise
    return ThreadedHttpServer(loop, thread, server)
