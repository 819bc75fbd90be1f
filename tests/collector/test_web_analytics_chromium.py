"""The fleet-analytics sections of the web page in headless Chromium: the rates view with its
chart, "What is different about these hosts", the releases and regression window, triage and
the regressed badge, the hardware-suspect flag. The collector and its fleet are
tests/collector/test_http_analytics.py's (SQLite; data through the real gRPC API); Chromium logs
in with `?token=` as a person would and its DOM is read back. CRASHFLEET_SCREENSHOTS=DIR keeps
the screenshots.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.collector import test_http_analytics
from tests.collector.test_http_analytics import HOSTILE_HOST, HOSTILE_LABEL, NEW, OLD, TOKEN, Fleet, call
from tests.collector.test_web_chromium import CHROMIUM, CHROMIUM_FLAGS, Dom
from tests.conftest import IN_CI

fleet = test_http_analytics.fleet  # the collector and its fleet, as a fixture of this module too

pytestmark = [
    pytest.mark.chromium,
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None and not IN_CI, reason="headless Chromium not installed (Debian: chromium)"
    ),
    pytest.mark.parametrize("fleet", ["sqlite"], indirect=True),
]


def _chromium(tmp_path: Path, fleet: Fleet, path: str, *extra: str) -> str:
    assert CHROMIUM is not None
    sep = "&" if "?" in path else "?"
    proc = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *extra,
         f"{fleet.url}{path}{sep}token={TOKEN}"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def dump(tmp_path: Path, fleet: Fleet, path: str) -> tuple[str, Dom]:
    markup = _chromium(tmp_path, fleet, path, "--dump-dom")
    dom = Dom(markup)
    assert "script" not in dom.tags and "img" not in dom.tags  # agents' markup stayed text
    assert not [k for k, _ in dom.attrs if k.startswith("on")]
    return markup, dom


def screenshot(tmp_path: Path, fleet: Fleet, path: str, name: str, height: int) -> bytes:
    out = tmp_path / name
    _chromium(tmp_path, fleet, path, f"--screenshot={out}", f"--window-size=1300,{height}")
    keep = os.environ.get("CRASHFLEET_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(out, Path(keep) / name)
    png = out.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    return png


def test_rates_view_in_chromium(fleet: Fleet, tmp_path: Path) -> None:
    markup, dom = dump(tmp_path, fleet, "/rates?by=kernel_release")
    assert "Crash rates" in markup, "the login redirect did not land on the page"
    assert dom.text["rates-window"].startswith("Crashes per 1,000 host-days by kernel_release")
    chart = markup.split('id="rates-chart"')[1].split("</svg>")[0]
    assert chart.count("<circle") == 2 and chart.count('class="w"') == 2  # a dot and a whisker each
    assert re.findall(r'<text class="name"[^>]*>([^<]+)</text>', chart) == [NEW, OLD]
    assert re.findall(r'<text class="num"[^>]*>([^<]+)</text>', chart) == ["33.33", "0.00"]
    assert "6.1.0-56-amd64 33.33 (12.23 to 72.55)" in dom.text["rates-chart"]  # the accessible title
    assert ("href", "/rates") in dom.attrs  # the nav links the view

    _, dom = dump(tmp_path, fleet, "/rates?by=label:role")
    assert HOSTILE_LABEL in dom.text["rates"] and HOSTILE_LABEL in dom.text["rates-chart"]
    _, dom = dump(tmp_path, fleet, "/rates?by=colour")
    assert "by: unknown dimension 'colour'" in dom.text["error"]

    png = screenshot(tmp_path, fleet, "/rates?by=kernel_release", "rates.png", 700)
    assert len(png) > 20_000  # a drawn page, not a blank canvas


def test_cluster_sections_and_regressed_badge_in_chromium(fleet: Fleet, tmp_path: Path) -> None:
    markup, dom = dump(tmp_path, fleet, f"/clusters/{fleet.cluster}")
    assert dom.text["suspects-heading"].startswith("What is different about these hosts")
    assert dom.text["suspects"].strip().startswith(
        "veth loaded: 6 of 6 crashing hosts vs 6 of 48 in the fleet; crash rate ∞"
    )
    assert f"label role={HOSTILE_LABEL}" in dom.text["suspects"]
    # The crashing hosts (veth) never ran OLD: no regression claimed, OLD too little exposure.
    assert dom.text["regression"].endswith(f"too little exposure on {OLD} among hosts with veth loaded to say")
    assert [m for m in re.findall(r'<tr class="release( \w+)?"', markup)] == ["", " first"]
    assert dom.text["triage-state-value"] == "new"
    assert 'action="/clusters/' in markup and 'name="fixed_in"' in markup

    # Fixed on the crashing release, then a crash there: the list and the page say "regressed".
    path = f"/api/v1/clusters/{fleet.cluster}/triage"
    body = json.dumps({"action": "fixed", "fixed_in": NEW, "note": "<b>fixed</b> upstream"}).encode()
    assert call(fleet, path, "POST", body).status == 200
    assert fleet.report("ci-3", "regressing-crash") == fleet.cluster
    markup, dom = dump(tmp_path, fleet, "/")
    row = next(r for r in markup.split('class="cluster"')[1:] if fleet.cluster in r)
    assert re.search(r'<span class="badge t-regressed"[^>]*>regressed</span>', row)
    _, dom = dump(tmp_path, fleet, f"/clusters/{fleet.cluster}")
    assert dom.text["triage-state-value"] == f"regressed (fixed in {NEW}); crashed again on {NEW}"
    assert dom.text["triage-note"] == "<b>fixed</b> upstream" and "b" not in dom.tags

    png = screenshot(tmp_path, fleet, f"/clusters/{fleet.cluster}", "cluster-analytics.png", 2200)
    assert len(png) > 20_000


def test_hosts_page_flag_in_chromium(fleet: Fleet, tmp_path: Path) -> None:
    markup, dom = dump(tmp_path, fleet, "/hosts?page_size=100")
    assert HOSTILE_HOST in dom.text["hardware-suspects"]
    assert "3 uncorrected hardware errors or machine checks" in dom.text["hardware-suspects"]
    flagged = re.findall(r'<tr class="host flagged" data-host="([^"]+)"', markup)
    assert [html.unescape(h) for h in flagged] == [HOSTILE_HOST]
    assert markup.count(">hardware suspect</span>") == 1
