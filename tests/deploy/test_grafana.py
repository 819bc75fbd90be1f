"""The Grafana dashboard and provisioning, checked structurally: fixed uid, every query through a
data source variable, every metric exported by the code, every PromQL expression valid (promtool
parses it), the panels the operators expect, a grid without overlaps, and the JSON API columns of
the "Top clusters" table present in what the collector's HTTP API really returns."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import IN_CI, REPO
from tests.deploy.metric_names import known_series, metrics_in_expr

GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "crashfleet.json"
DASHBOARD_UID = "crashfleet-overview"
PROMETHEUS_TYPE = "prometheus"
INFINITY_TYPE = "yesoreyeram-infinity-datasource"
VARIABLE = re.compile(r"^\$\{(\w+)\}$")
# Series Prometheus makes itself (scrape health), the only non-crashfleet names a panel may use.
PROMETHEUS_OWN = re.compile(r'\bup\{job="crashfleet-collector"\}')

# Panels the issue asks for, by title, with what each must query.
REQUIRED_PANELS: dict[str, str] = {
    "Panic rate by kernel release": "crashfleet_crashes_total",
    "New clusters: crashes per 1,000 host-days in their first day": "crashfleet_new_cluster_rate_per_1000_host_days",
    "New clusters and spreading": "crashfleet_clusters_created_total",
    "Top clusters by reports": "/api/v1/clusters",
    "Spool depth": "crashfleet_agent_spool_depth",
    "Ship failures and drops": "crashfleet_agent_ship_failures_total",
    "RPC latency p50 / p99": "crashfleet_rpc_duration_seconds_bucket",
}

# Grafana's built-in macros and this dashboard's variables, replaced by something PromQL accepts so
# promtool can parse the expressions.
MACROS: tuple[tuple[str, str], ...] = (
    ("$__rate_interval", "5m"),
    ("$__interval", "1m"),
    ("$__range", "1h"),
    ("$kernel_release", ".*"),
)


def _dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _query_panels() -> list[dict[str, Any]]:
    return [p for p in _panels(_dashboard()["panels"]) if p["type"] != "row"]


def _variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in _dashboard()["templating"]["list"]}


def _datasource_variable(ref: dict[str, Any]) -> dict[str, Any]:
    match = VARIABLE.match(ref.get("uid", ""))
    assert match, f"data source {ref} is not a variable"
    variable = _variables().get(match[1])
    assert variable is not None and variable["type"] == "datasource", (
        f"{ref['uid']} is not a datasource variable"
    )
    assert variable["query"] == ref["type"], (
        f"{ref['uid']} selects {variable['query']}, used as {ref['type']}"
    )
    return variable


def _prometheus_exprs() -> list[tuple[str, str]]:
    return [
        (panel["title"], target["expr"])
        for panel in _query_panels()
        for target in panel["targets"]
        if target["datasource"]["type"] == PROMETHEUS_TYPE
    ]


def test_identity() -> None:
    dash = _dashboard()
    assert dash["uid"] == DASHBOARD_UID
    assert "crashfleet" in dash["tags"]
    assert dash["title"] and dash["description"]
    assert "id" not in dash or dash["id"] is None, "a provisioned dashboard carries no database id"


def test_datasource_variable_selects_prometheus() -> None:
    variable = _variables()["datasource"]
    assert variable["type"] == "datasource" and variable["query"] == PROMETHEUS_TYPE


def test_every_panel_and_target_uses_a_datasource_variable() -> None:
    panels = _query_panels()
    assert panels
    for panel in panels:
        _datasource_variable(panel["datasource"])
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], f"{panel['title']}: mixed data sources"
    for annotation in _dashboard()["annotations"]["list"]:
        if annotation.get("builtIn"):
            continue
        _datasource_variable(annotation["datasource"])


def test_required_panels() -> None:
    by_title = {p["title"]: json.dumps(p["targets"]) for p in _query_panels()}
    for title, needle in REQUIRED_PANELS.items():
        assert title in by_title, f"missing panel {title!r}"
        assert needle in by_title[title], f"{title!r} does not query {needle}"


def test_panels_reference_only_exported_metrics() -> None:
    known = set(known_series())
    used: set[str] = set()
    for title, expr in _prometheus_exprs():
        names = metrics_in_expr(expr)
        assert names or PROMETHEUS_OWN.search(expr), f"{title}: {expr!r} uses no crashfleet metric"
        assert names <= known, f"{title}: not exported by the code: {sorted(names - known)}"
        used |= names
    # Every family the collector and agent export that an operator watches shows up somewhere.
    for family in (
        "crashfleet_crashes_total",
        "crashfleet_hosts",
        "crashfleet_agent_spool_oldest_age_seconds",
    ):
        assert family in used


def test_counters_are_rated_and_histograms_bucketed() -> None:
    """A raw counter on a graph is a line going up forever; a histogram needs its _bucket series."""
    types = known_series()
    for title, expr in _prometheus_exprs():
        for name in metrics_in_expr(expr):
            if types[name] == "counter" and name.endswith("_total"):
                assert re.search(rf"(rate|increase)\({re.escape(name)}\b", expr), f"{title}: {name} not rated"


def test_expressions_parse_with_promtool(tmp_path: Path) -> None:
    tool = shutil.which("promtool")
    if tool is None:
        if IN_CI:
            pytest.fail("promtool is missing on the CI machine")
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    rules = []
    for index, (_title, expr) in enumerate(_prometheus_exprs()):
        for macro, value in MACROS:
            expr = expr.replace(macro, value)
        assert "$" not in expr, f"unknown macro or variable left in {expr!r}"
        rules.append({"record": f"dashboard:expr{index}:check", "expr": expr})
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run([tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_variables_used_are_defined() -> None:
    text = DASHBOARD.read_text()
    defined = set(_variables())
    used = set(re.findall(r"\$\{(\w+)(?::[\w]+)?\}", text)) | set(re.findall(r"\$(\w+)", text))
    builtin = {name for name in used if name.startswith("__")}
    assert used - builtin <= defined, f"undefined variables: {sorted(used - builtin - defined)}"


def test_grid_has_no_overlaps() -> None:
    occupied: dict[tuple[int, int], str] = {}
    ids = [p["id"] for p in _panels(_dashboard()["panels"])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in _panels(_dashboard()["panels"]):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, f"{panel['title']}: outside the 24-column grid"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in occupied, f"{panel['title']} overlaps {occupied[(x, y)]}"
                occupied[(x, y)] = panel["title"]


def test_top_clusters_columns_exist_in_the_http_api() -> None:
    http = pytest.importorskip("collector.http", reason="collector/http.py is not in this checkout")
    from wire.model import ClusterSummary

    now = datetime(2026, 1, 1, tzinfo=UTC)
    row = http.cluster_json(ClusterSummary("c1", "t", "oops", "f", 1, 1, now, now))
    (panel,) = [p for p in _query_panels() if p["title"] == "Top clusters by reports"]
    (target,) = panel["targets"]
    assert target["url"] == "/api/v1/clusters"
    params = {p["key"] for p in target["url_options"]["params"]}
    assert params <= set(http.FILTER_PARAMS) | {"page_size", "page_token"}, params
    assert target["root_selector"] == "clusters"
    for column in target["columns"]:
        assert column["selector"] in row, f"the API has no field {column['selector']!r}"


def test_provisioning() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "crashfleet.yml").read_text())
    assert datasources["apiVersion"] == 1
    types = {ds["type"] for ds in datasources["datasources"]}
    assert {PROMETHEUS_TYPE, INFINITY_TYPE} <= types
    for ds in datasources["datasources"]:
        assert ds["uid"] and ds["url"].startswith("http")
    dashboards = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "crashfleet.yml").read_text())
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    assert provider["allowUiUpdates"] is False


# Series of the rule test "releases the host gauge does not name are rated together under other"
# (deploy/prometheus/tests/kernel_release.yml): 10,000 hosts on -55 and 40 summed as `other`.
PANIC_RATE_SERIES = (
    ('crashfleet_hosts_reporting{instance="c1:8080",kernel_release="6.1.0-55-amd64"}', "10000x90"),
    ('crashfleet_hosts_reporting{instance="c2:8080",kernel_release="6.1.0-55-amd64"}', "10000x90"),
    ('crashfleet_hosts_reporting{instance="c1:8080",kernel_release="other"}', "40x90"),
    ('crashfleet_crashes_total{instance="c1:8080",kernel_release="6.1.0-55-amd64"}', "0+1x90"),
    ('crashfleet_crashes_total{instance="c1:8080",kernel_release="6.1.0-53-amd64"}', "0+0.0166666666666667x90"),
    ('crashfleet_crashes_total{instance="c2:8080",kernel_release="6.1.0-54-amd64"}', "0+0.0166666666666667x90"),
    ('crashfleet_crashes_total{instance="c1:8080",kernel_release="other"}', "0+0.0166666666666667x90"),
)


def test_panic_rate_panel_is_per_1000_host_days_of_the_reporting_hosts(tmp_path: Path) -> None:
    """The panel computes what the alert rules compute: evaluated by promtool on the same series,
    its lines equal the recording rules' (per release with the unnamed ones as `other`, and the fleet)."""
    tool = shutil.which("promtool")
    if tool is None:
        if IN_CI:
            pytest.fail("promtool is missing on the CI machine")
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    (panel,) = [p for p in _query_panels() if p["title"] == "Panic rate by kernel release"]
    exprs = {t["legendFormat"]: t["expr"].replace("$kernel_release", ".*") for t in panel["targets"]}
    assert set(exprs) == {"{{kernel_release}}", "fleet"}
    for expr in exprs.values():
        assert "crashfleet_hosts_reporting" in expr and "86400 * 1000" in expr
    rules = REPO / "deploy" / "prometheus" / "rules" / "crashfleet.rules.yml"
    series = [{"series": name, "values": values} for name, values in PANIC_RATE_SERIES]
    cases = [
        (f"round({exprs['{{kernel_release}}']}, 0.001)", [("6.1.0-55-amd64", 144), ("other", 1800)]),
        ("round(kernel_release:crashfleet_crashes_per_1000_host_days:rate1h, 0.001)",
         [("6.1.0-55-amd64", 144), ("other", 1800)]),
        # 63 crashes an hour, 1,512 a day, over 10,040 hosts.
        (f"round({exprs['fleet']}, 0.001)", [(None, 150.598)]),
        ("round(:crashfleet_crashes_per_1000_host_days:rate1h, 0.001)", [(None, 150.598)]),
    ]  # fmt: skip
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": "80m",
                        "exp_samples": [
                            {"labels": f'{{kernel_release="{release}"}}' if release else "{}", "value": value}
                            for release, value in samples
                        ],
                    }
                    for expr, samples in cases
                ],
            }
        ],
    }
    path = tmp_path / "panel_test.yml"
    path.write_text(yaml.safe_dump(test))
    result = subprocess.run([tool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
