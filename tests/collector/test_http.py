"""The HTTP port over an in-memory store: routes, JSON shapes, query validation, pagination,
bearer-token auth, HTML escaping of hostile crash strings, and failure behaviour."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import http.client
import json
import logging
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from collector import http as chttp
from collector import web
from collector.metrics import Metrics
from tests.collector.memstore import HOSTILE, MemStore, sample_store, with_title
from wire.model import Breakdown, ClusterMerge, Page, QueryFilter

TOKEN = "s3cret-Token_value"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        assert self.headers["content-type"].startswith("application/json"), self.headers
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


class Client:
    def __init__(self, port: int) -> None:
        self.port = port

    def request(self, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str, token: str | None = None, **headers: str) -> Reply:
        hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        return self.request(path, headers=hdrs)


@pytest.fixture
def store() -> MemStore:
    return sample_store()


@pytest.fixture
def metrics() -> Metrics:
    m = Metrics(CollectorRegistry(), version="1.2.3")
    m.report("new", "oops", "6.1.0-18-amd64")
    return m


@pytest.fixture
def client(store: MemStore, metrics: Metrics) -> Iterator[Client]:
    with chttp.serve_in_thread(store, metrics.registry, ("127.0.0.1", 0), None) as handle:
        yield Client(handle.port)


@pytest.fixture
def authed(store: MemStore, metrics: Metrics) -> Iterator[Client]:
    with chttp.serve_in_thread(store, metrics.registry, ("127.0.0.1", 0), TOKEN) as handle:
        yield Client(handle.port)


class TagCollector(HTMLParser):
    """Every element and attribute of a page, to prove hostile text stayed text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.style += data


def parse_page(text: str) -> TagCollector:
    parser = TagCollector()
    parser.feed(text)
    parser.close()
    return parser


# Open routes ----------------------------------------------------------------------------------


def test_metrics_is_prometheus_text(client: Client) -> None:
    r = client.get("/metrics")
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'crashfleet_build_info{version="1.2.3"} 1.0' in r.text
    assert 'crashfleet_crashes_total{kernel_release="6.1.0-18-amd64"} 1.0' in r.text


def test_metrics_negotiates_openmetrics(client: Client) -> None:
    r = client.get("/metrics", Accept="application/openmetrics-text; version=1.0.0")
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")


def test_healthz_reads_the_store(client: Client, store: MemStore) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "store": "ok"}
    store.fail = True
    r = client.get("/healthz")
    assert r.status == 503
    assert r.json()["status"] == "unavailable"


# JSON API ---------------------------------------------------------------------------------------


def test_cluster_list_shape_and_order(client: Client) -> None:
    body = client.get("/api/v1/clusters").json()
    assert body["next_page_token"] == ""
    ids = [c["id"] for c in body["clusters"]]
    assert ids == ["c-e1000", "c-ext4", "c-evil"]  # most recent activity first
    first = body["clusters"][0]
    assert set(first) == {
        "id", "title", "kind", "fingerprint", "count", "hosts", "first_seen", "last_seen",
        "kernel_releases", "hardware", "common_modules", "representative_crash_id", "guilty_frame",
        "daily_counts", "first_received", "last_received",
    }  # fmt: skip
    assert first["last_seen"] == "2026-11-19T12:00:00Z"
    assert first["count"] == 9 and first["hosts"] == 3
    assert len(first["daily_counts"]) == 14


def test_pagination_walks_every_row_once(client: Client) -> None:
    seen: list[str] = []
    token = ""
    pages = 0
    totals = []
    while True:
        q = "page_size=2" + (f"&page_token={token}" if token else "")
        body = client.get(f"/api/v1/clusters?{q}").json()
        seen += [c["id"] for c in body["clusters"]]
        totals.append(body["total_count"])
        pages += 1
        token = body["next_page_token"]
        if not token:
            break
    assert pages == 2
    assert seen == ["c-e1000", "c-ext4", "c-evil"]
    assert totals == [3, 0], "the store's total on the first page only, as over gRPC"


def test_filters_reach_the_store(client: Client, store: MemStore) -> None:
    q = "since=2026-11-01T00:00:00Z&until=2026-11-30&kernel_release=6.1.0-18-amd64&host=web-1&module=e1000e&kind=oops&hardware=QEMU&cluster=c-1&page_size=7&page_token=o0"
    assert client.get(f"/api/v1/crashes?{q}").status == 200
    name, flt, page = store.calls[-1]
    assert name == "list_crashes"
    assert flt == QueryFilter(
        since=datetime(2026, 11, 1, tzinfo=UTC),
        until=datetime(2026, 11, 30, tzinfo=UTC),
        kernel_release="6.1.0-18-amd64",
        host="web-1",
        module="e1000e",
        kind="oops",
        hardware="QEMU",
        cluster_id="c-1",
    )
    assert page == Page(size=7, token="o0")


def test_crashes_by_cluster(client: Client) -> None:
    body = client.get("/api/v1/crashes?cluster=c-ext4").json()
    assert {c["cluster_id"] for c in body["crashes"]} == {"c-ext4"}
    assert len(body["crashes"]) == 2
    row = body["crashes"][0]
    for key in ("id", "cluster_id", "host", "title", "fingerprint", "source", "crash_time", "received_at"):
        assert key in row
    assert row["source"].startswith("/var/crash/")


def test_cluster_detail(client: Client) -> None:
    body = client.get("/api/v1/clusters/c-e1000").json()
    assert body["id"] == "c-e1000"
    assert body["by_host"][0] == {"value": "web-1", "count": 5}
    assert body["fingerprints"] == ["fp-e1000"]


def test_crash_detail_nests_the_signature(client: Client) -> None:
    body = client.get("/api/v1/crashes/c-e1000-crash-0").json()
    assert body["signature"]["crashes"][0]["code"]["bad_register"] == "r12"
    assert body["symbolized"] is None
    assert body["host_facts"]["cpus"] == "4"


def test_hosts(client: Client) -> None:
    body = client.get("/api/v1/hosts?page_size=2").json()
    assert [h["hostname"] for h in body["hosts"]] == sorted([HOSTILE, "web-1"])
    assert body["next_page_token"]
    assert body["hosts"][0]["memory_bytes"] == 8 << 30


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/v1/clusters?page_size=0", "page_size: must be between 1 and 1000"),
        ("/api/v1/clusters?page_size=1001", "page_size: must be between 1 and 1000"),
        ("/api/v1/clusters?page_size=ten", "page_size: not an integer"),
        ("/api/v1/clusters?kernel=6.1", "unknown parameter 'kernel'"),
        ("/api/v1/clusters?host=a&host=b", "host: given 2 times"),
        ("/api/v1/clusters?since=yesterday", "since: not an ISO 8601 time"),
        ("/api/v1/clusters?since=2026-11-02&until=2026-11-01", "since is after until"),
        ("/api/v1/clusters?page_token=forged", "bad page token"),
        ("/api/v1/clusters/c-e1000?page_size=3", "unknown parameter 'page_size' (this route takes none)"),
        (f"/api/v1/clusters?host={'x' * 1025}", "host: longer than 1024 characters"),
    ],
)
def test_bad_queries_are_400_with_the_reason(client: Client, path: str, message: str) -> None:
    r = client.get(path)
    assert r.status == 400
    assert message in r.json()["error"]


def test_unknown_ids_and_routes_are_404(client: Client) -> None:
    assert client.get("/api/v1/clusters/nope").status == 404
    assert client.get("/api/v1/crashes/nope").json()["error"] == "no crash 'nope'"
    assert client.get("/api/v1/nothing").status == 404
    assert client.get("/api/v1/clusters/" + "a" * 300).status == 404  # ids are capped, not looked up
    r = client.get("/clusters/nope")
    assert r.status == 404 and r.headers["content-type"].startswith("text/html")


def test_writes_are_405(client: Client) -> None:
    r = client.request("/api/v1/clusters", method="POST")
    assert r.status == 405
    assert r.headers["allow"] == "GET, HEAD"


def test_writes_to_a_page_are_405_pages(client: Client) -> None:
    r = client.request("/hosts", method="DELETE")
    assert r.status == 405 and r.headers["allow"] == "GET, HEAD"
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]


def test_head_has_headers_but_no_body(client: Client) -> None:
    r = client.request("/api/v1/clusters", method="HEAD")
    assert r.status == 200
    assert int(r.headers["content-length"]) > 0
    assert r.body == b""


def test_store_failure_is_500_and_server_stays_up(client: Client, store: MemStore) -> None:
    store.fail = True
    r = client.get("/api/v1/clusters")
    assert r.status == 500
    assert r.json() == {"error": "internal error", "status": 500}  # no internals leaked
    store.fail = False
    assert client.get("/api/v1/clusters").status == 200


def test_garbage_request_line_does_not_kill_the_server(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    import socket

    for garbage in (b"GET /\x00\xff HTTP/7.7\r\n\r\n", b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", client.port), timeout=5) as sock:
            sock.sendall(garbage)
            assert sock.recv(4096).startswith((b"HTTP/1.0 400", b"HTTP/1.1 400"))
    assert client.get("/healthz").status == 200
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING], caplog.text


# Auth ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/v1/clusters", "/api/v1/crashes/x", "/api/v1/hosts", "/", "/clusters/c-e1000"]
)
def test_token_required_on_api_and_pages(authed: Client, path: str) -> None:
    r = authed.get(path)
    assert r.status == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="crashfleet"'
    wrong = authed.get(path, token="nope")
    assert wrong.status == 401
    assert wrong.headers["www-authenticate"] == 'Bearer realm="crashfleet", error="invalid_token"'
    assert authed.get(path, token=TOKEN).status in (200, 404)


def test_401_bodies_match_the_route(authed: Client) -> None:
    assert authed.get("/api/v1/clusters").json()["error"] == "token required"
    page = authed.get("/")
    assert page.headers["content-type"].startswith("text/html")
    assert "?token=" in page.text


@pytest.mark.parametrize(
    "header",
    [f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer", f"Token {TOKEN}"],
)
def test_other_schemes_and_near_misses_are_refused(authed: Client, header: str) -> None:
    assert authed.get("/api/v1/clusters", Authorization=header).status == 401


def test_metrics_and_healthz_stay_open(authed: Client) -> None:
    assert authed.get("/metrics").status == 200
    assert authed.get("/healthz").status == 200


def test_browser_token_becomes_a_cookie(authed: Client) -> None:
    r = authed.get("/clusters/c-e1000?token=" + TOKEN)
    assert r.status == 303
    assert r.headers["location"] == "/clusters/c-e1000"  # the token leaves the address bar
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{chttp.TOKEN_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = cookie.split(";")[0]
    page = authed.get("/clusters/c-e1000", Cookie=jar)
    assert page.status == 200
    assert authed.get("/api/v1/clusters", Cookie=jar).status == 200
    assert authed.get("/", Cookie=f"{chttp.TOKEN_COOKIE}=d3Jvbmc").status == 401  # base64url("wrong")
    assert authed.get("/", Cookie=f"{chttp.TOKEN_COOKIE}=%%%").status == 401


def test_any_token_survives_the_cookie(store: MemStore, metrics: Metrics) -> None:
    """Tokens with `;`, spaces or non-ASCII still make a valid cookie (no header injection)."""
    token = "a b;c=d\u00e9\r\nX-Evil: 1"
    with chttp.serve_in_thread(store, metrics.registry, ("127.0.0.1", 0), token) as handle:
        client = Client(handle.port)
        r = client.get("/?" + urlencode({"token": token}))
        assert r.status == 303
        assert "x-evil" not in r.headers
        jar = r.headers["set-cookie"].split(";")[0]
        assert client.get("/", Cookie=jar).status == 200


def test_browser_token_keeps_other_parameters(authed: Client) -> None:
    r = authed.get(f"/?kind=oops&token={TOKEN}&host=web-1")
    assert r.status == 303
    assert r.headers["location"] == "/?kind=oops&host=web-1"


def test_wrong_browser_token_is_401_and_sets_nothing(authed: Client) -> None:
    r = authed.get("/?token=guess")
    assert r.status == 401
    assert "set-cookie" not in r.headers


def test_token_param_is_ignored_without_auth(client: Client) -> None:
    assert client.get("/?token=anything").status == 200


def test_comparison_is_constant_time(authed: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return bool(real(a, b))

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert authed.get("/api/v1/clusters", token="guess").status == 401
    assert calls == [(b"guess", TOKEN.encode())]


# Web page ---------------------------------------------------------------------------------------


def test_cluster_list_page(client: Client) -> None:
    r = client.get("/")
    assert r.status == 200
    doc = r.text
    order = [m.group(1) for m in re.finditer(r'data-cluster-id="([^"]+)"', doc)]
    assert order == ["c-e1000", "c-ext4", "c-evil"]
    assert doc.count('<svg class="spark"') == 3
    assert 'href="/clusters/c-e1000"' in doc
    assert "6.1.0-17-amd64" in doc  # kernels column
    assert "2026-11-19 12:00 UTC" in doc  # last seen


def test_cluster_page_shows_the_decoded_instruction(client: Client) -> None:
    doc = client.get("/clusters/c-e1000").text
    assert "<code>cmp qword ptr [r12 + 0x60], rax</code>" in doc
    assert "NULL pointer + 0x60 through r12" in doc
    assert "<code>r12</code> = <code>0x0000000000000000</code>" in doc
    assert "e1000_clean_rx_irq+0x1a2/0x6c0 [e1000e]" in doc
    assert 'id="excerpt"' in doc
    for ident in ("by-host", "by-kernel", "by-hardware", "by-module", "crashes"):
        assert f'id="{ident}"' in doc
    assert doc.count('class="crash"') == 3


def test_cluster_pages_show_when_a_backfilled_crash_was_received(client: Client, store: MemStore) -> None:
    """First/last seen are when the crashes happened; where that is long before they arrived (a
    backfill), the received time stands beside it, on the list and on the cluster's page."""
    detail = next(d for d in store.clusters if d.summary.id == "c-ext4")
    s = detail.summary
    moved = dataclasses.replace(
        s, first_received=s.first_seen + timedelta(days=30), last_received=s.last_seen + timedelta(days=30)
    )
    store.clusters[store.clusters.index(detail)] = dataclasses.replace(detail, summary=moved)
    for doc in (client.get("/clusters/c-ext4").text, client.get("/").text):
        assert doc.count('<span class="received">(received <time') == 2
    assert '<span class="received">' not in client.get("/clusters/c-e1000").text  # received when it happened


def test_cluster_page_paginates_its_crash_list(client: Client) -> None:
    doc = client.get("/clusters/c-e1000?page_size=2").text
    assert doc.count('class="crash"') == 2
    assert 'href="/clusters/c-e1000?page_size=2&amp;page_token=o2"' in doc


def test_cluster_without_decode_says_so(client: Client) -> None:
    doc = client.get("/clusters/c-ext4").text
    assert 'id="fault-missing"' in doc


def test_crash_and_hosts_pages(client: Client) -> None:
    doc = client.get("/crashes/c-e1000-crash-1").text
    assert 'href="/clusters/c-e1000"' in doc
    assert "NULL pointer + 0x60 through r12" in doc
    hosts = client.get("/hosts").text
    assert hosts.count('class="host"') == 3
    assert "8.0 GiB" in hosts


@pytest.mark.parametrize(
    "path", ["/", "/clusters/c-evil", "/crashes/c-evil-crash-0", "/hosts", "/clusters/c-e1000"]
)
def test_hostile_strings_stay_text(client: Client, path: str) -> None:
    r = client.get(path)
    assert r.status == 200
    assert HOSTILE not in r.text
    assert "&lt;script&gt;" in r.text or "%3Cscript%3E" in r.text
    page = parse_page(r.text)
    assert "script" not in page.tags
    assert "img" not in page.tags
    assert not [name for name, _ in page.attrs if name.startswith("on")]


def test_hostile_id_cannot_break_out_of_links(client: Client, store: MemStore) -> None:
    with_title(store, "c-e1000", '"><b>bold</b>')
    doc = client.get("/").text
    assert "<b>bold</b>" not in doc
    assert "&#34;&gt;&lt;b&gt;bold&lt;/b&gt;" in doc  # markupsafe writes `"` as &#34;


def test_pages_carry_a_csp_that_pins_the_stylesheet(client: Client) -> None:
    r = client.get("/")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    style = parse_page(r.text).style
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"


def test_html_errors_render_as_pages(client: Client) -> None:
    r = client.get("/?page_size=0")
    assert r.status == 400
    assert r.headers["content-type"].startswith("text/html")
    assert "page_size: must be between 1 and 1000" in r.text


def test_analytics_routes_need_a_store_that_keeps_analytics(client: Client, store: MemStore) -> None:
    """The in-memory store keeps no exposure: the analytics routes say so (501), the pages that
    show analytics where they can still render without them."""
    r = client.get("/api/v1/rates?by=module")
    assert r.status == 501 and r.json()["error"] == "this store keeps no fleet analytics"
    assert client.get("/api/v1/rates?by=colour").status == 400  # the query is checked first
    r = client.get("/rates")
    assert r.status == 501 and "this store keeps no fleet analytics" in r.text
    cluster = store.clusters[0].summary.id
    page = client.get(f"/clusters/{cluster}")
    assert page.status == 200 and "What is different about these hosts" not in page.text
    assert client.get("/hosts").status == 200 and "Hardware suspects" not in client.get("/hosts").text


# Pure pieces ------------------------------------------------------------------------------------


def test_rate_chart_draws_each_interval_on_a_round_axis() -> None:
    from collector.analytics.rates import RateRow

    rows = [
        RateRow("module", "veth", 6, 6, 60.0, 100.0, 36.7, 217.7),
        RateRow("module", "<script>alert(1)</script>" + "x" * 40, 0, 42, 420.0, 0.0, 0.0, 8.78),
        RateRow("module", "never-reported", 1, 0, 0.0, 0.0, 0.0, math.inf),
    ]
    chart = web.rate_chart(rows, "module")
    markup = str(web.svg(chart))
    assert chart.data == "100.00,0.00,0.00"
    assert [t.text for t in chart.texts if t.css_class == "tick"] == ["0", "62.5", "125", "187.5", "250"]
    whiskers = [line for line in chart.lines if line.css_class == "w"]
    assert [(w.x1, w.x2) for w in whiskers] == [
        (round(240 + 36.7 / 250 * 440, 1), round(240 + 217.7 / 250 * 440, 1)),
        (240.0, round(240 + 8.78 / 250 * 440, 1)),
    ]
    assert [d.cx for d in chart.dots] == [round(240 + 100 / 250 * 440, 1), 240.0]
    assert "no exposure: nothing to say" in markup  # no interval drawn for a value nobody ran
    assert "<script>" not in markup and "&lt;script&gt;alert(1)&lt;/script&gt;xxxxxxxx…" in markup
    many = [RateRow("module", f"m{i}", 1, 1, 10.0, 100.0, 2.5, 557.0) for i in range(40)]
    assert len(web.rate_chart(many, "module").dots) == web.RATE_CHART_ROWS


@pytest.mark.parametrize(
    ("counts", "bars", "baselines"),
    [((0,) * 14, 0, 14), ((1, 0, 5) + (0,) * 11, 2, 12), ((), 0, 14), (tuple(range(20)), 14, 0)],
)
def test_sparkline(counts: tuple[int, ...], bars: int, baselines: int) -> None:
    svg = web.sparkline(counts)
    assert svg.count('class="d"') == bars
    assert svg.count('class="z"') == baselines
    assert svg.startswith('<svg class="spark"')


def test_sparkline_scales_to_the_peak() -> None:
    svg = web.sparkline((1, 4), height=24)
    heights = [int(h) for h in re.findall(r'class="d"[^>]*height="(\d+)"', svg)]
    assert heights == [6, 23]


@pytest.mark.parametrize(
    ("signature", "expected"),
    [
        ("", None),
        ("{not json", None),
        ("[1, 2]", None),
        ('{"crashes": []}', None),
        ('{"crashes": [{"title": "x"}]}', None),
        (
            '{"rip": "foo+0x1/0x2", "code": {"instruction": "mov eax, [rbx]", "bad_register": "rbx",'
            ' "bad_register_value": "0xdead", "access": "wild pointer"}}',
            web.FaultView(
                rip="foo+0x1/0x2",
                instruction="mov eax, [rbx]",
                bad_register="rbx",
                bad_register_value="0x000000000000dead",
                verdict="wild pointer",
            ),
        ),
        (
            '{"crashes": [{"rip": {"address": 18446744071583218496}, "code": {"error": "Code: line cut"}}]}',
            web.FaultView(rip="0xffffffff8142bb40", decode_error="Code: line cut"),
        ),
        (
            '{"crashes": [{"code": {"instruction": 5, "bad_register": ["x"], "bad_register_value": true}}]}',
            None,
        ),
    ],
)
def test_fault_view_tolerates_any_json(signature: str, expected: web.FaultView | None) -> None:
    assert web.fault_view(web.signature_document(signature)) == expected


def test_fault_view_picks_the_crash_with_the_fingerprint() -> None:
    doc = {
        "crashes": [
            {"fingerprint": {"value": "a"}, "code": {"access": "first"}},
            {"fingerprint": {"value": "b"}, "code": {"access": "second"}},
        ]
    }
    view = web.fault_view(doc, "b")
    assert view is not None and view.verdict == "second"
    fallback = web.fault_view(doc, "zzz")
    assert fallback is not None and fallback.verdict == "first"


def test_parse_query_defaults() -> None:
    flt, page = chttp.parse_query("")
    assert flt == QueryFilter()
    assert page == Page(size=chttp.DEFAULT_PAGE_SIZE, token="")
    flt, _ = chttp.parse_query("host=&kind=oops")  # empty form fields mean "any"
    assert flt == QueryFilter(kind="oops")


def test_parse_query_times_are_utc() -> None:
    flt, _ = chttp.parse_query("since=2026-11-01T02:00:00%2B02:00")
    assert flt.since == datetime(2026, 11, 1, 0, 0, tzinfo=UTC)


def test_close_releases_the_port(store: MemStore, metrics: Metrics) -> None:
    import socket

    handle = chttp.serve_in_thread(store, metrics.registry, ("127.0.0.1", 0), None)
    port = handle.port
    handle.close()
    handle.close()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_connection_flood_gets_a_quick_503(store: MemStore, metrics: Metrics) -> None:
    """Past the connection cap a client is told to come back instead of being queued."""
    import socket

    with chttp.serve_in_thread(
        store, metrics.registry, ("127.0.0.1", 0), None, limits=chttp.HttpLimits(max_connections=1)
    ) as handle:
        with socket.create_connection(("127.0.0.1", handle.port), timeout=5) as idle:
            idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive: holds its slot
            assert idle.recv(4096).startswith(b"HTTP/1.1 200")
            r = Client(handle.port).get("/healthz")
            assert r.status == 503
            assert r.headers["retry-after"] == "1"
        # The slot comes back when the idle connection closes.
        for _ in range(50):
            if Client(handle.port).get("/healthz").status == 200:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the connection slot was never released")


@pytest.mark.parametrize("path", ["/api/v1/clusters", "/", "/hosts"])
def test_too_many_parameters_is_400(client: Client, path: str) -> None:
    query = "&".join(f"p{i}=1" for i in range(70)) + "&token=x"
    r = client.get(f"{path}?{query}")
    assert r.status == 400
    assert "malformed query string" in r.text


def test_worker_threads_are_reused(store: MemStore, metrics: Metrics) -> None:
    """Stores keep a connection per thread; a connection per request must not mean a thread each."""
    with chttp.serve_in_thread(
        store, metrics.registry, ("127.0.0.1", 0), None, workers=3
    ) as handle:
        client = Client(handle.port)
        for _ in range(30):
            assert client.get("/api/v1/clusters?page_size=1").status == 200
    assert 1 <= len(store.threads) <= 3


def test_close_ends_idle_keepalive_connections(store: MemStore, metrics: Metrics) -> None:
    import socket

    handle = chttp.serve_in_thread(store, metrics.registry, ("127.0.0.1", 0), None)
    with socket.create_connection(("127.0.0.1", handle.port), timeout=5) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while not reply.endswith(b"}\n"):
            reply += conn.recv(4096)
        assert reply.startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        handle.close()
        assert time.monotonic() - start < 5  # not the 30 s request timeout
        assert conn.recv(4096) == b""  # the server hung up


def _tag_shape(markup: str) -> tuple[list[str], list[str]]:
    page = parse_page(markup)
    return page.tags, sorted({name for name, _ in page.attrs})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(min_size=1, max_size=60))
def test_any_string_renders_as_text(text: str) -> None:
    """Whatever a hostile log puts in a title, host, module or kernel string, the page's element
    structure is the one a harmless string gives: nothing it contains becomes markup."""
    store = sample_store()
    baseline = store.clusters[0]
    harmless = "x"

    def render(value: str) -> str:
        summary = replace(
            baseline.summary,
            id=value,
            title=value,
            kind=value,
            guilty_frame=value,
            kernel_releases=(value,),
            common_modules=(value,),
        )
        detail = replace(
            baseline, summary=summary, by_host=(Breakdown(value, 1),), fingerprints=(value, value),
            merges=(ClusterMerge(value, value, value, 1.0, value), ClusterMerge(value, "similar", value, 0.5, value)),
        )  # fmt: skip
        crash = replace(store.crashes[0].summary, id=value, host=value, source=value, cluster_id=value)
        rep = replace(
            store.crashes[0], summary=crash, excerpt=value, modules=(value,), host_facts={value: value}
        )
        return (
            web.cluster_list_page([summary], QueryFilter(host=value), Page(token=value), value)
            + web.cluster_page(detail, rep, [crash], Page(), value)
            + web.crash_page(rep)
        )

    assert _tag_shape(render(text)) == _tag_shape(render(harmless))


def test_ipv6_listen(store: MemStore, metrics: Metrics) -> None:
    import socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    try:
        handle = chttp.serve_in_thread(store, metrics.registry, ("::1", 0), None)
    except OSError as exc:
        pytest.skip(f"cannot bind ::1: {exc}")
    with handle:
        assert handle.url == f"http://[::1]:{handle.port}"
        conn = http.client.HTTPConnection("::1", handle.port, timeout=5)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()


def test_cluster_page_says_why_each_fingerprint_joined(store: MemStore) -> None:
    detail = store.clusters[0]
    merges = (
        ClusterMerge("a" * 32, "created", "", 1.0, "fp-1+1b8682e0"),
        ClusterMerge("b" * 32, "secondary", "fingerprint under the previous rules " + "c" * 32, 1.0, "fp-1+1b8682e0"),
    )
    page = web.cluster_page(replace(detail, merges=merges), None, [], Page(), "")
    assert "2 fingerprint(s) in this cluster, and why each joined" in page
    assert "<strong>secondary</strong>: fingerprint under the previous rules " + "c" * 32 in page
