"""Fleet analytics on the HTTP port (JSON routes and web sections) through a real collector on
SQLite and PostgreSQL: heartbeats of a 48-host fleet over ten days written to the store, then
crashes reported over the real gRPC API, then every analytics route and page read over HTTP.

The fleet tells the story of docs/analytics.md: 30 old hosts on 6.1.0-55-amd64 that never crash
(one of them, named with markup, logs uncorrected memory errors), 12 web hosts on 6.1.0-56-amd64,
and 6 CI hosts on the same kernel with veth loaded; the cluster crashes on the 6 CI hosts only. So
veth is the suspect, the kernel release is explained by it, the regression window, counted among
the hosts with veth, claims nothing (they never ran 6.1.0-55: the old hosts' silence on it says
nothing about the bug), and the host with memory errors is the hardware suspect. The label every
6.1.0-56 host carries is markup, to prove it stays text everywhere it is shown.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import grpc
import pytest
from prometheus_client import CollectorRegistry
from scipy.stats import chi2

from analysis.signature import analyze
from collector.config import CollectorConfig
from collector.metrics import Metrics
from collector.server import RunningCollector, start_collector
from collector.store import Store
from collector.store.postgres import PostgresStore
from collector.store.sqlite import SqliteStore
from tests.conftest import REPO
from wire import convert
from wire.model import HostRecord
from wire.v1 import crash_pb2, ingest_service_pb2_grpc

TOKEN = "analytics-http-token"
OLD, NEW = "6.1.0-55-amd64", "6.1.0-56-amd64"
HARDWARE = "QEMU Standard PC (i440FX + PIIX, 1996)"
HOSTILE_LABEL = "<script>alert(1)</script>"
HOSTILE_HOST = "db-<img src=x onerror=alert(1)>"
LOG = (REPO / "tests" / "data" / "collector" / "null-deref.log").read_text()
RATE_KEYS = {"dim", "value", "crashes", "hosts", "host_days", "rate_per_1000_host_days", "ci_low", "ci_high"}
SUSPECT_KEYS = {
    "attributes", "cluster_hosts", "cluster_hosts_with", "fleet_hosts", "fleet_hosts_with", "rate_ratio",
    "ci_low", "ci_high", "p_value", "explained_by", "words",
}  # fmt: skip
BAD_HOST_KEYS = {"host", "score", "clusters", "unshared_clusters", "hardware_errors", "reason", "flagged"}


def _groups() -> list[tuple[HostRecord, bool]]:
    """(host, crashes) for the 48 hosts."""
    def record(name: str, release: str, modules: tuple[str, ...], role: str, errors: int = 0) -> HostRecord:
        return HostRecord(
            hostname=name, kernel_release=release, machine="x86_64", hardware=HARDWARE, agent_version="0.4",
            cpus=8, memory_bytes=1 << 34, modules=modules, labels=(("role", role),),
            hardware_errors=(("edac_ue", errors),) if errors else (),
        )  # fmt: skip

    old = [record(f"old-{i}", OLD, ("e1000e", "ext4"), "db") for i in range(29)]
    old.append(record(HOSTILE_HOST, OLD, ("e1000e", "ext4"), "db", errors=3))
    web = [record(f"web-{i}", NEW, ("e1000e", "ext4"), HOSTILE_LABEL) for i in range(12)]
    ci = [record(f"ci-{i}", NEW, ("e1000e", "ext4", "veth"), HOSTILE_LABEL) for i in range(6)]
    return [(h, False) for h in old + web] + [(h, True) for h in ci]


def crash_log() -> str:
    """The NULL dereference of tests/data, as the CI hosts' kernel printed it."""
    text = LOG.replace("6.1.0-26-amd64", NEW)
    return re.sub(r"Modules linked in: .*", "Modules linked in: e1000e ext4 veth", text)


@dataclass
class Fleet:
    url: str  # http://host:port of the HTTP port
    grpc_target: str
    cluster: str  # the NULL-dereference cluster the CI hosts crash in
    now: datetime

    def report(self, host: str, key: str) -> str:
        """One crash of the cluster from `host`, over gRPC; the cluster id it was filed under."""
        [record] = analyze(crash_log())
        facts = crash_pb2.HostFacts(
            hostname=host, kernel_release=NEW, machine="x86_64", hardware=HARDWARE,
            modules=["e1000e", "ext4", "veth"], agent_version="0.4",
        )  # fmt: skip
        request = convert.report_request(
            record, key=key, host=facts, source_path=f"/var/crash/{key}/dmesg.txt",
            crash_time=self.now - timedelta(hours=2),
        )  # fmt: skip
        with grpc.insecure_channel(self.grpc_target) as channel:
            reply = ingest_service_pb2_grpc.IngestServiceStub(channel).ReportCrash(request, timeout=30)
        return str(reply.cluster_id)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def fleet(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fleet]:
    if request.param == "sqlite":
        store: Store = SqliteStore(str(tmp_path / "collector.db"))
    else:
        url, schema = request.getfixturevalue("pg_schema")
        store = PostgresStore(url, schema=schema)
    # Daily heartbeats count in full (the cap is two days): ten days of a 48-host fleet in 528
    # heartbeats. Every host is credited exactly 10 host-days.
    store.exposure_cap_s = 2 * 86_400  # type: ignore[attr-defined]
    now = datetime.now(UTC).replace(microsecond=0)
    end = now - timedelta(hours=1)
    for record, _ in _groups():
        for day in range(10, -1, -1):
            store.heartbeat(record, end - timedelta(days=day))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    config = CollectorConfig(db="sqlite:///unused.db", listen="127.0.0.1:0", http="127.0.0.1:0", token=TOKEN)
    running: RunningCollector = asyncio.run_coroutine_threadsafe(
        start_collector(config, metrics=Metrics(CollectorRegistry()), store=store), loop
    ).result(timeout=60)
    try:
        assert running.http is not None
        fleet = Fleet(running.http.url, running.grpc_target, "", now)
        clusters = {fleet.report(h.hostname, f"crash-{h.hostname}") for h, crashes in _groups() if crashes}
        assert len(clusters) == 1
        fleet.cluster = clusters.pop()
        yield fleet
    finally:
        asyncio.run_coroutine_threadsafe(running.stop(grace=0), loop).result(timeout=60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


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


def call(
    fleet: Fleet, path: str, method: str = "GET", body: bytes | None = None, token: str | None = TOKEN,
    content_type: str = "application/json", cookie: bool = False,
) -> Reply:  # fmt: skip
    host, port = fleet.url.removeprefix("http://").rsplit(":", 1)
    headers = {"Content-Type": content_type} if body is not None else {}
    if token is not None and cookie:
        # The cookie a browser holds after ?token= (collector.http: the token base64url-encoded).
        headers["Cookie"] = "crashfleet_token=" + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def get_json(fleet: Fleet, path: str, status: int = 200) -> Any:
    reply = call(fleet, path)
    assert reply.status == status, (path, reply.status, reply.body[:500])
    return reply.json()


def garwood(k: int, host_days: float) -> tuple[float, float]:
    """The exact 95 % Poisson interval per 1,000 host-days, computed here independently."""
    low = chi2.ppf(0.025, 2 * k) / 2 if k else 0.0
    return low / host_days * 1000, chi2.ppf(0.975, 2 * k + 2) / 2 / host_days * 1000


class Page(HTMLParser):
    """The text under every element with an id, every tag, and every attribute."""

    VOID = frozenset({"br", "hr", "img", "input", "link", "meta", "source", "wbr", "col", "area", "base"})

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self._open: list[str | None] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = {k: v or "" for k, v in attrs}
        self.attrs.extend(values.items())
        if tag in self.VOID:
            return
        ident = values.get("id")
        if ident:
            self.text.setdefault(ident, "")
        self._open.append(ident)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend((k, v or "") for k, v in attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.VOID and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for ident in self._open:
            if ident:
                self.text[ident] += data


def page(fleet: Fleet, path: str, status: int = 200) -> Page:
    reply = call(fleet, path)
    assert reply.status == status, (path, reply.status, reply.body[:500])
    assert reply.headers["content-type"].startswith("text/html")
    parsed = Page(reply.text)
    assert "script" not in parsed.tags and "img" not in parsed.tags  # hostile text stayed text
    assert not [k for k, _ in parsed.attrs if k.startswith("on")]
    return parsed


# JSON -----------------------------------------------------------------------------------------------


def test_rates_json(fleet: Fleet) -> None:
    [row] = get_json(fleet, "/api/v1/rates")["rates"]
    assert set(row) >= RATE_KEYS
    assert (row["dim"], row["value"], row["crashes"], row["hosts"]) == ("", "", 6, 48)
    assert row["host_days"] == pytest.approx(480.0)
    assert row["rate_per_1000_host_days"] == pytest.approx(12.5)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(garwood(6, 480.0))

    body = get_json(fleet, "/api/v1/rates?by=kernel_release")
    assert body["by"] == "kernel_release" and body["since"] < body["until"]
    new, old = body["rates"]  # highest rate first
    assert (new["value"], new["crashes"], new["hosts"]) == (NEW, 6, 18)
    assert new["host_days"] == pytest.approx(180.0)
    assert new["rate_per_1000_host_days"] == pytest.approx(1000 * 6 / 180)
    assert (new["ci_low"], new["ci_high"]) == pytest.approx(garwood(6, 180.0))
    assert (old["value"], old["crashes"], old["hosts"], old["rate_per_1000_host_days"]) == (OLD, 0, 30, 0.0)
    assert old["ci_high"] == pytest.approx(garwood(0, 300.0)[1])

    labels = {r["value"]: r for r in get_json(fleet, "/api/v1/rates?by=label:role")["rates"]}
    assert labels[HOSTILE_LABEL]["crashes"] == 6 and labels["db"]["crashes"] == 0

    query = urlencode({"by": "module", "cluster": fleet.cluster, "since": (fleet.now - timedelta(days=20)).isoformat()})
    modules = {r["value"]: r for r in get_json(fleet, f"/api/v1/rates?{query}")["rates"]}
    assert modules["veth"]["crashes"] == 6 and modules["veth"]["host_days"] == pytest.approx(60.0)
    assert modules["ext4"]["crashes"] == 6 and modules["ext4"]["host_days"] == pytest.approx(480.0)

    # A window before any heartbeat: no exposure, so no rate can be bounded above.
    query = urlencode({"since": "2020-01-01", "until": "2020-01-31T00:00:00Z"})
    [empty] = get_json(fleet, f"/api/v1/rates?{query}")["rates"]
    assert (empty["crashes"], empty["host_days"], empty["ci_high"]) == (0, 0.0, None)


def test_suspects_releases_and_suspect_hosts_json(fleet: Fleet) -> None:
    body = get_json(fleet, f"/api/v1/clusters/{fleet.cluster}/suspects")
    assert body["cluster_id"] == fleet.cluster and body["cluster_hosts"] == 6
    assert body["hosts"] == [f"ci-{i}" for i in range(6)]
    first = body["suspects"][0]
    assert set(first) >= SUSPECT_KEYS
    assert first["attributes"] == [{"dim": "module", "value": "veth"}] and first["explained_by"] == []
    assert (first["cluster_hosts_with"], first["cluster_hosts"], first["fleet_hosts_with"], first["fleet_hosts"]) == (
        6, 6, 6, 48,
    )  # fmt: skip
    assert first["rate_ratio"] is None and first["ci_high"] is None  # every crashing host has veth: unbounded
    assert first["ci_low"] > 1.5 and first["p_value"] == pytest.approx((60 / 480) ** 6)
    assert first["words"].startswith("veth loaded: 6 of 6 crashing hosts vs 6 of 48 in the fleet; crash rate ∞")
    assert body["summary"].startswith("6 crashing hosts, ") and first["words"] in body["summary"]
    explained = {tuple((a["dim"], a["value"]) for a in s["attributes"]): s for s in body["suspects"]}
    kernel = explained[(("kernel_release", NEW),)]
    assert kernel["explained_by"] == [{"dim": "module", "value": "veth"}]
    assert kernel["words"].endswith("— explained by veth loaded")

    body = get_json(fleet, f"/api/v1/clusters/{fleet.cluster}/releases")
    # Counted among the hosts with veth, the top suspect: they never ran OLD, so no regression.
    assert body["regression_stratum"] == [{"dim": "module", "value": "veth"}]
    assert (body["first_release"], body["last_clean_release"], body["inconclusive"]) == (NEW, "", [OLD])
    old, new = body["releases"]  # oldest first, in dpkg's order
    assert (old["release"], old["crashes"], old["host_days"]) == (OLD, 0, 0.0)
    assert (new["release"], new["crashes"], new["host_days"]) == (NEW, 6, pytest.approx(60.0))
    assert old["expected"] == 0.0 and old["p_value"] == 1.0
    assert body["regression"] == (
        f"first seen on {NEW} (6 crashes over 60 host-days of hosts with veth loaded);"
        f" too little exposure on {OLD} among hosts with veth loaded to say"
    )
    assert body["triage"]["state"] == "new"

    [bad] = get_json(fleet, "/api/v1/suspect-hosts")["hosts"]
    assert set(bad) >= BAD_HOST_KEYS
    assert (bad["host"], bad["hardware_errors"], bad["flagged"]) == (HOSTILE_HOST, 3, True)
    assert bad["reason"] == "3 uncorrected hardware errors or machine checks"
    every = get_json(fleet, "/api/v1/suspect-hosts?all=true&limit=50")["hosts"]
    assert every[0]["host"] == HOSTILE_HOST and all(not h["flagged"] for h in every[1:])


def test_triage_over_http_then_a_crash_on_the_fixed_release_regresses_it(fleet: Fleet) -> None:
    path = f"/api/v1/clusters/{fleet.cluster}/triage"

    def post(fields: dict[str, Any], token: str | None = TOKEN) -> Reply:
        return call(fleet, path, "POST", json.dumps(fields).encode(), token=token)

    assert post({"action": "ack", "note": "bisecting"}, token=None).status == 401
    assert post({"action": "ack"}, token="wrong").status == 401
    assert get_json(fleet, path)["state"] == "new"  # neither changed it

    reply = post({"action": "ack", "note": "bisecting", "link": "https://bugs.example/1"})
    assert reply.status == 200, reply.body
    assert (reply.json()["state"], reply.json()["note"]) == ("acknowledged", "bisecting")
    reply = post({"action": "fixed", "fixed_in": NEW})
    assert reply.status == 200, reply.body
    triage = get_json(fleet, path)
    assert (triage["state"], triage["fixed_in"], triage["note"]) == ("fixed", NEW, "bisecting")

    # A crash on the fixed release reopens it: the collector learnt of the fix from the HTTP route.
    assert fleet.report("ci-0", "after-the-fix") == fleet.cluster
    triage = get_json(fleet, path)
    assert (triage["state"], triage["regressed_release"]) == ("regressed", NEW)
    assert get_json(fleet, f"/api/v1/clusters/{fleet.cluster}/releases")["triage"]["state"] == "regressed"

    listing = call(fleet, "/").text
    row = next(r for r in listing.split('class="cluster"')[1:] if fleet.cluster in r)
    assert '<span class="badge t-regressed"' in row and ">regressed</span>" in row
    cluster = page(fleet, f"/clusters/{fleet.cluster}")
    assert "regressed" in cluster.text["triage-state-value"] and NEW in cluster.text["triage-state-value"]

    # The page's form (cookie login) acknowledges it again; the note can be cleared.
    form = urlencode({"action": "ack", "fixed_in": "ignored with ack", "note": "", "link": ""}).encode()
    reply = call(fleet, f"/clusters/{fleet.cluster}/triage", "POST", form,
                 content_type="application/x-www-form-urlencoded", cookie=True)  # fmt: skip
    assert reply.status == 303 and reply.headers["location"] == f"/clusters/{fleet.cluster}#triage"
    triage = get_json(fleet, path)
    assert (triage["state"], triage["note"], triage["link"]) == ("acknowledged", "", "")
    # A malformed release from the form is an error page naming the field; nothing changes.
    form = urlencode({"action": "fixed", "fixed_in": "<b>6 1</b>", "note": "", "link": ""}).encode()
    reply = call(fleet, f"/clusters/{fleet.cluster}/triage", "POST", form,
                 content_type="application/x-www-form-urlencoded", cookie=True)  # fmt: skip
    assert reply.status == 400 and reply.headers["content-type"].startswith("text/html")
    assert "fixed_in: kernel release &#39;&lt;b&gt;6 1&lt;/b&gt;&#39;" in reply.text
    assert get_json(fleet, path)["state"] == "acknowledged"
    assert call(fleet, f"/clusters/{fleet.cluster}/triage").status == 405  # the form only posts


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/v1/rates?by=colour", 400, "by: unknown dimension 'colour': one of kernel_release"),
        ("/api/v1/rates?by=kernel_release&by=module", 400, "by: given 2 times"),
        ("/api/v1/rates?since=last-tuesday", 400, "since: not an ISO 8601 time: 'last-tuesday'"),
        ("/api/v1/rates?since=2026-12-01&until=2026-11-01", 400, "since/until: empty window"),
        ("/api/v1/rates?kernel=6.1", 400, "unknown parameter 'kernel' (known: by, cluster, since, until)"),
        ("/api/v1/rates?cluster=no-such-cluster", 404, "no cluster 'no-such-cluster'"),
        ("/api/v1/clusters/no-such-cluster/suspects", 404, "no cluster 'no-such-cluster'"),
        ("/api/v1/clusters/no-such-cluster/releases", 404, "no cluster 'no-such-cluster'"),
        ("/api/v1/clusters/no-such-cluster/triage", 404, "no cluster 'no-such-cluster'"),
        ("/api/v1/suspect-hosts?limit=0", 400, "limit: must be between 1 and 1000"),
        ("/api/v1/suspect-hosts?all=maybe", 400, "all: not a boolean"),
    ],
)
def test_bad_queries_are_clear_json_errors(fleet: Fleet, path: str, status: int, message: str) -> None:
    body = get_json(fleet, path, status)
    assert body["status"] == status and message in body["error"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"action": "fixed", "fixed_in": "6 1"}, "fixed_in: kernel release '6 1'"),
        ({"action": "fixed"}, "fixed_in: the release that fixes it is required"),
        ({"action": "ack", "fixed_in": NEW}, "fixed_in: only given with action fixed"),
        ({"action": "close"}, "action: must be one of ack, fixed, not 'close'"),
        ({"action": "ack", "link": "javascript:alert(1)"}, "link: must be an http(s) URL"),
        ({"action": "ack", "note": "a\x1b[2Jb"}, "note: longer than 2000 characters or holds control characters"),
        ({"action": "ack", "colour": "red"}, "unknown field 'colour'"),
        ({"action": "ack", "note": 5}, "note: must be a string"),
        (["ack"], "body: not a JSON object"),
    ],
)
def test_bad_triage_is_a_clear_400_and_changes_nothing(fleet: Fleet, fields: Any, message: str) -> None:
    path = f"/api/v1/clusters/{fleet.cluster}/triage"
    reply = call(fleet, path, "POST", json.dumps(fields).encode())
    assert reply.status == 400 and message in reply.json()["error"], reply.body
    assert get_json(fleet, path)["state"] == "new"


# Pages ------------------------------------------------------------------------------------------------


def test_rates_page_draws_the_rates_with_their_intervals(fleet: Fleet) -> None:
    doc = page(fleet, "/rates?by=kernel_release")
    assert "kernel_release" in doc.text["rates-window"]
    rows = doc.text["rates"]
    assert f"{NEW}618180.033.33" in re.sub(r"[\s,]", "", rows)
    low, high = garwood(6, 180.0)
    assert f"{low:.2f}–{high:.2f}" in rows
    chart = call(fleet, "/rates?by=kernel_release").text.split('<div class="chart" id="rates-chart">')[1]
    assert 'data-counts="33.33,0.00"' in chart
    # The whisker of 6.1.0-56 spans its interval on the chart's axis (0 .. a round number above 72.6).
    whiskers = re.findall(r'<line class="w" x1="([\d.]+)" y1="[\d.]+" x2="([\d.]+)"', chart)
    dots = re.findall(r'<circle class="pt" cx="([\d.]+)"', chart)
    assert len(whiskers) == 2 and len(dots) == 2
    peak = 100.0  # the round axis end (1, 2, 2.5 or 5 × 10^k) at or above the highest end, 72.55
    x1, x2 = (float(v) for v in whiskers[0])
    assert (x1 - 240) / 440 * peak == pytest.approx(low, abs=0.2)
    assert (x2 - 240) / 440 * peak == pytest.approx(high, abs=0.2)
    assert (float(dots[0]) - 240) / 440 * peak == pytest.approx(1000 * 6 / 180, abs=0.2)
    assert all(f">{tick}<" in chart for tick in (0, 25, 50, 75, 100))  # axis ticks

    doc = page(fleet, "/rates?by=label:role")
    assert HOSTILE_LABEL in doc.text["rates"] and HOSTILE_LABEL in doc.text["rates-chart"]
    doc = page(fleet, "/rates?" + urlencode({"by": "label:<script>x</script>"}))
    assert "label:<script>x</script>" in doc.text["rates-window"] and "no-rates" in doc.text
    fleet_rate = page(fleet, "/rates")
    assert "12.50" in fleet_rate.text["rates"] and "of the whole fleet" in fleet_rate.text["rates-window"]
    assert ("href", "/rates") in fleet_rate.attrs  # the nav links the view


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/rates?by=colour", 400, "by: unknown dimension 'colour'"),
        ("/rates?since=" + quote("<b>yesterday</b>"), 400, "since: not an ISO 8601 time: '<b>yesterday</b>'"),
        ("/rates?cluster=" + quote("<i>nope</i>"), 404, "no cluster '<i>nope</i>'"),
        ("/clusters/no-such-cluster", 404, "No cluster no-such-cluster."),
    ],
)
def test_bad_page_queries_are_clear_error_pages(fleet: Fleet, path: str, status: int, message: str) -> None:
    doc = page(fleet, path, status)
    assert message in doc.text["error"]
    assert "b" not in doc.tags and "i" not in doc.tags


def test_cluster_page_says_what_is_different_about_the_hosts(fleet: Fleet) -> None:
    doc = page(fleet, f"/clusters/{fleet.cluster}")
    assert doc.text["suspects-summary"].startswith("6 crashing hosts, ")
    first = doc.text["suspects"].strip()
    assert first.startswith("veth loaded: 6 of 6 crashing hosts vs 6 of 48 in the fleet; crash rate ∞")
    assert f"kernel {NEW}: 6 of 6 crashing hosts vs 18 of 48 in the fleet" in first  # explained by veth
    assert f"label role={HOSTILE_LABEL}" in first  # markup from an agent's label, shown as text
    assert "ci-0" in doc.text["suspects-hosts"] and "ci-5" in doc.text["suspects-hosts"]
    link = f"/rates?by=module&cluster={fleet.cluster}"
    assert ("href", link) in doc.attrs
    veth = page(fleet, link)
    assert re.search(r"veth\s*6\s*6\s*60\.0\s*100\.00", veth.text["rates"])  # 6 crashes in 60 host-days
    assert f"too little exposure on {OLD} among hosts with veth loaded to say" in doc.text["regression"]
    assert "regression between" not in doc.text["regression"]
    releases = re.sub(r"\s", "", doc.text["releases"])
    assert f"{OLD}toolittleexposure00.00.00" in releases
    assert f"{NEW}firstseen660.0100.00" in releases
    assert doc.text["triage-state-value"] == "new"
    assert "triage-form" in doc.text


def report_other_bug(fleet: Fleet, host: str, release: str) -> str:
    """A crash of another bug (tests/data's e1000e oops, its own modules and hardware) from `host`
    on `release`, over gRPC; its cluster id."""
    text = (REPO / "tests" / "data" / "collector" / "web" / "e1000e-null-deref.log").read_text()
    [record] = analyze(text.replace("6.1.0-18-amd64", release))
    facts = crash_pb2.HostFacts(hostname=host, kernel_release=release, hardware=HARDWARE)
    request = convert.report_request(record, key=f"other-bug-{host}", host=facts, source_path="/var/crash/x/dmesg.txt",
                                     crash_time=fleet.now - timedelta(hours=3))  # fmt: skip
    with grpc.insecure_channel(fleet.grpc_target) as channel:
        cluster = ingest_service_pb2_grpc.IngestServiceStub(channel).ReportCrash(request, timeout=30).cluster_id
    assert cluster != fleet.cluster
    return str(cluster)


def test_cluster_with_nothing_significant_says_so(fleet: Fleet) -> None:
    """Three hosts on two kernels and two roles: every value they share is shared by the fleet."""
    clusters = {report_other_bug(fleet, h, r) for h, r in (("old-1", OLD), ("old-2", OLD), ("web-4", NEW))}
    [cluster] = clusters
    doc = page(fleet, f"/clusters/{cluster}")
    assert doc.text["suspects-summary"].startswith(
        "nothing significant: no attribute is over-represented among the 3 crashing hosts beyond chance ("
    )
    assert "suspects" not in doc.text
    body = get_json(fleet, f"/api/v1/clusters/{cluster}/suspects")
    assert body["suspects"] == [] and body["cluster_hosts"] == 3 and body["candidates"] >= 3
    assert f"({body['candidates']} candidates, FDR 5%)" in body["summary"]


def test_cluster_on_one_host_says_so(fleet: Fleet) -> None:
    cluster = report_other_bug(fleet, "web-3", NEW)
    doc = page(fleet, f"/clusters/{cluster}")
    assert doc.text["suspects-summary"].startswith("seen on one host only (web-3)")
    assert "suspects" not in doc.text  # no findings list
    assert doc.text["regression"].startswith(f"first seen on {NEW} (1 crashes over 180 host-days)")
    body = get_json(fleet, f"/api/v1/clusters/{cluster}/suspects")
    assert body["suspects"] == [] and body["summary"].startswith("seen on one host only (web-3)")


def test_hosts_page_flags_the_hardware_suspect(fleet: Fleet) -> None:
    doc = page(fleet, "/hosts?page_size=100")
    assert HOSTILE_HOST in doc.text["hardware-suspects"]
    assert "3 uncorrected hardware errors or machine checks" in doc.text["hardware-suspects"]
    markup = call(fleet, "/hosts?page_size=100").text
    flagged = re.findall(r'<tr class="host flagged" data-host="([^"]+)"', markup)
    assert flagged == ["db-&lt;img src=x onerror=alert(1)&gt;"]
    assert markup.count(">hardware suspect</span>") == 1
