"""The web page in a real browser: headless Chromium against the HTTP server over a real SQLite
store filled through the real ingest path from kernel logs analyzed by `analysis.signature`.

Chromium logs in the way a person would (`?token=` -> cookie -> redirect), dumps the DOM it
built, and takes screenshots; set CRASHFLEET_SCREENSHOTS=DIR to keep them for a look.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from analysis.signature import analyze
from collector.http import ThreadedHttpServer, serve_in_thread
from collector.ingest import Ingestor
from collector.metrics import Metrics
from collector.store.sqlite import SqliteStore
from tests.conftest import IN_CI, REPO
from wire import convert
from wire.v1 import crash_pb2, ingest_service_pb2

DATA = REPO / "tests" / "data" / "collector" / "web"
TOKEN = "chromium-test-token"
HOSTILE_HOST = "db-<img/src=x>"

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = [
    pytest.mark.chromium,
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None and not IN_CI, reason="headless Chromium not installed (Debian: chromium)"
    ),
]
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root in containers; the sandbox refuses root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)

# (log file, reporting host, days ago, hours ago): one bug on three hosts (once resubmitted),
# one warning on one host, and the same bug from a host whose name is markup.
REPORTS = (
    ("e1000e-null-deref.log", "web-1", 6, 0),
    ("e1000e-null-deref.log", "web-2", 3, 2),
    ("e1000e-null-deref.log", "web-3", 0, 1),
    ("e1000e-null-deref.log", HOSTILE_HOST, 0, 0),
    ("ext4-warning.log", "build-7", 1, 0),
)


@dataclass
class Fleet:
    handle: ThreadedHttpServer
    bug_cluster: str
    warning_cluster: str
    bug_crash: str
    bug_daily: tuple[int, ...]  # the sparkline the store must show for the bug, oldest day first


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    store = SqliteStore(str(tmp_path_factory.mktemp("store") / "collector.db"))
    metrics = Metrics()
    now = datetime.now(UTC)
    clock = [now]
    ingestor = Ingestor(store, metrics, clock=lambda: clock[0])
    clusters: dict[str, str] = {}
    daily = [0] * 14
    crash_ids: dict[tuple[str, str], str] = {}
    for name, host, days, hours in REPORTS:
        text = (DATA / name).read_text()
        digest = hashlib.sha256(f"{host}:{text}".encode()).hexdigest()
        records = analyze(text)
        assert records, f"{name}: the analyzer found no crash"
        when = now - timedelta(days=days, hours=hours)
        clock[0] = when
        facts = crash_pb2.HostFacts(
            hostname=host,
            kernel_release=records[0].kernel_release or "",
            machine="x86_64",
            hardware=records[0].hardware or "",
            modules=list(records[0].modules),
            cpus=8,
            memory_bytes=32 << 30,
            agent_version="0.1.0",
        )
        stamp = when.strftime("%Y%m%d%H%M")
        crash_time = when - timedelta(seconds=5)
        if name == "e1000e-null-deref.log":  # a crash counts on the UTC day it happened
            daily[13 - (now.date() - crash_time.date()).days] += 1
        for index, record in enumerate(records):
            request = convert.report_request(
                record,
                key=convert.idempotency_key(digest, index),
                host=facts,
                source_path=f"/var/crash/{stamp}/dmesg.{stamp}",
                crash_time=crash_time,
            )
            result = ingestor.report(request, host)
            clusters[name] = result.cluster_id
            crash_ids[(name, host)] = result.crash_id
            assert ingestor.report(request, host).duplicate  # a resubmission counts once
        ingestor.heartbeat(ingest_service_pb2.HeartbeatRequest(host=facts), host)
    handle = serve_in_thread(store, metrics.registry, ("127.0.0.1", 0), TOKEN)
    try:
        yield Fleet(
            handle,
            clusters["e1000e-null-deref.log"],
            clusters["ext4-warning.log"],
            crash_ids[("e1000e-null-deref.log", "web-3")],
            tuple(daily),
        )
    finally:
        handle.close()
        store.close()


def _chromium(tmp_path: Path, url: str, *extra: str) -> str:
    assert CHROMIUM is not None
    proc = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *extra, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def dump_dom(tmp_path: Path, fleet: Fleet, path: str) -> str:
    """The DOM Chromium built for `path`, logging in with ?token= (cookie + redirect)."""
    sep = "&" if "?" in path else "?"
    return _chromium(tmp_path, f"{fleet.handle.url}{path}{sep}token={TOKEN}", "--dump-dom")


def screenshot(tmp_path: Path, fleet: Fleet, path: str, name: str, height: int) -> Path:
    out = tmp_path / name
    sep = "&" if "?" in path else "?"
    _chromium(
        tmp_path,
        f"{fleet.handle.url}{path}{sep}token={TOKEN}",
        f"--screenshot={out}",
        f"--window-size=1400,{height}",
    )
    keep = os.environ.get("CRASHFLEET_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(keep) / name)
    return out


VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)


class Dom(HTMLParser):
    """Text of every element with an id, the tags and classes seen — enough to assert on."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.text: dict[str, str] = {}
        self.tags: list[str] = []
        self.classes: list[str] = []
        self.attrs: list[tuple[str, str]] = []
        self._open: list[str | None] = []
        self.feed(markup)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = {k: v or "" for k, v in attrs}
        self.attrs.extend(values.items())
        self.classes.extend(values.get("class", "").split())
        if tag in VOID:
            return
        ident = values.get("id")
        if ident:
            self.text.setdefault(ident, "")
        self._open.append(ident)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        values = {k: v or "" for k, v in attrs}
        self.attrs.extend(values.items())
        self.classes.extend(values.get("class", "").split())

    def handle_endtag(self, tag: str) -> None:
        if tag not in VOID and self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for ident in self._open:
            if ident:
                self.text[ident] += data


def test_cluster_list(fleet: Fleet, tmp_path: Path) -> None:
    dom_text = dump_dom(tmp_path, fleet, "/")
    dom = Dom(dom_text)
    assert "Crash clusters" in dom_text, "the login redirect did not land on the page"
    assert dom.classes.count("cluster") == 2
    # Most recent activity first: the bug (last seen now) before the warning (a day ago).
    assert re.findall(r'data-cluster-id="([^"]+)"', dom_text) == [fleet.bug_cluster, fleet.warning_cluster]
    rows = dom_text.split('class="cluster"')[1:]
    assert "NULL pointer dereference in e1000_clean_rx_irq" in rows[0]
    assert "WARNING in ext4_da_update_reserve_space" in rows[1]
    # count 4 crashes (resubmissions not counted), 4 distinct hosts
    assert '<td class="num count">4</td>' in rows[0] and '<td class="num hosts">4</td>' in rows[0]
    assert "6.1.0-18-amd64" in rows[0] and "6.1.0-17-amd64" in rows[1]
    # Sparklines: one inline SVG per row, a bar for each day with crashes (6 and 3 days ago, today).
    assert dom.tags.count("svg") >= 2
    assert f'data-counts="{",".join(map(str, fleet.bug_daily))}"' in rows[0]
    assert rows[0].count('class="d"') == sum(1 for c in fleet.bug_daily if c) >= 3


def test_cluster_page(fleet: Fleet, tmp_path: Path) -> None:
    dom_text = dump_dom(tmp_path, fleet, f"/clusters/{fleet.bug_cluster}")
    dom = Dom(dom_text)
    assert (
        dom.text["cluster-title"]
        == "BUG: unable to handle kernel NULL pointer dereference in e1000_clean_rx_irq"
    )
    assert dom.text["fault-rip"].startswith("e1000_clean_rx_irq+0x1a2/0x6c0 [e1000e]")
    assert dom.text["fault-instruction"] == "mov rax, qword ptr [rdi + 0x60]"
    assert dom.text["fault-register"] == "rdi = 0x0000000000000000"
    assert dom.text["fault-verdict"] == "NULL pointer + 0x60 through rdi"
    assert "RIP: 0010:e1000_clean_rx_irq+0x1a2/0x6c0 [e1000e]" in dom.text["excerpt"]
    assert "Comm: <script>" in dom.text["excerpt"]  # hostile text shown as text ...
    assert "script" not in dom.tags  # ... never as an element
    assert not [k for k, _ in dom.attrs if k.startswith("on")]
    hosts = dom.text["by-host"]
    for host in ("web-1", "web-2", "web-3", HOSTILE_HOST):
        assert host in hosts
    assert "img" not in dom.tags
    assert "6.1.0-18-amd64" in dom.text["by-kernel"]
    assert "Supermicro X11SCL-F/X11SCL-F" in dom.text["by-hardware"]
    assert "e1000e" in dom.text["by-module"]
    assert dom.classes.count("crash") == 4
    assert dom.text["stat-count"] == "4" and dom.text["stat-hosts"] == "4"


def test_crash_page(fleet: Fleet, tmp_path: Path) -> None:
    dom = Dom(dump_dom(tmp_path, fleet, f"/crashes/{fleet.bug_crash}"))
    assert dom.text["crash-title"].endswith("in e1000_clean_rx_irq")
    assert "web-3" in dom.text["crash-facts"]
    assert "/var/crash/" in dom.text["crash-facts"]
    assert dom.text["fault-verdict"] == "NULL pointer + 0x60 through rdi"
    assert "e1000e" in dom.text["modules"]
    assert '"instruction": "mov rax, qword ptr [rdi + 0x60]"' in dom.text["signature"]


def test_without_token_the_browser_gets_the_login_page(fleet: Fleet, tmp_path: Path) -> None:
    dom = Dom(_chromium(tmp_path, f"{fleet.handle.url}/", "--dump-dom"))
    assert dom.text["error"] == "This collector requires a bearer token."
    assert "cluster" not in dom.classes


def test_screenshots(fleet: Fleet, tmp_path: Path) -> None:
    for path, name, height in (
        ("/", "clusters.png", 700),
        (f"/clusters/{fleet.bug_cluster}", "cluster.png", 1500),
    ):
        png = screenshot(tmp_path, fleet, path, name, height).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(png) > 20_000  # a rendered page, not a blank canvas
