"""Prometheus rules: `promtool check` and `promtool test rules`, plus what promtool cannot see —
every alert has a firing and a quiet test case, removing an alert breaks a test, the labels and
annotations follow the monitoring-mixin conventions, the runbook anchors exist and every metric
exists in the code that exports it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import IN_CI, REPO
from tests.deploy.metric_names import known_series, metrics_in_expr

PROM = REPO / "deploy" / "prometheus"
RULES = PROM / "rules" / "crashfleet.rules.yml"
RULE_TESTS = sorted((PROM / "tests").glob("*.yml"))
RUNBOOK = REPO / "docs" / "runbook.md"
SEVERITIES = frozenset({"critical", "warning", "info"})
RUNBOOK_BASE = "https://github.com/crashfleet/crashfleet/blob/main/docs/runbook.md#"
# Recording rules follow the `level:metric:operations` naming of the Prometheus docs.
RECORD_NAME = re.compile(r"^[a-z_]*:[a-z0-9_]+:[a-z0-9_]+$")


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        if IN_CI:
            pytest.fail("promtool is missing on the CI machine (Debian package `prometheus`; `make sysdeps`)")
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    return tool


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, cwd=cwd)


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def _alert_cases() -> dict[str, tuple[int, int]]:
    """alertname -> (test cases expecting it to fire, test cases expecting silence)."""
    cases: dict[str, tuple[int, int]] = {}
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for check in test.get("alert_rule_test", []):
                firing, quiet = cases.get(check["alertname"], (0, 0))
                if check.get("exp_alerts"):
                    firing += 1
                else:
                    quiet += 1
                cases[check["alertname"]] = (firing, quiet)
    return cases


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_promtool_check_rules() -> None:
    result = _run(_promtool(), "check", "rules", str(RULES), cwd=PROM)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config_with_rules() -> None:
    result = _run(_promtool(), "check", "config", "prometheus.yml", cwd=PROM)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "crashfleet.rules.yml" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool unit tests under deploy/prometheus/tests"
    result = _run(_promtool(), "test", "rules", *(p.name for p in RULE_TESTS), cwd=PROM / "tests")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    cases = _alert_cases()
    for alert in _alerts():
        firing, quiet = cases.get(alert["alert"], (0, 0))
        assert firing >= 1, f"{alert['alert']}: no promtool case expects it to fire"
        assert quiet >= 1, f"{alert['alert']}: no promtool case expects it to stay quiet"
    assert set(cases) <= {a["alert"] for a in _alerts()}, "a promtool case names an alert that does not exist"


@pytest.mark.parametrize("alertname", [a["alert"] for a in _alerts()])
def test_removing_an_alert_breaks_its_tests(alertname: str, tmp_path: Path) -> None:
    """Mutation check: the firing cases really evaluate this alert (a vacuous test would still pass)."""
    tool = _promtool()
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        group["rules"] = [r for r in group["rules"] if r.get("alert") != alertname]
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / RULES.name).write_text(yaml.safe_dump(doc))
    (tmp_path / "tests").mkdir()
    for path in RULE_TESTS:
        shutil.copy(path, tmp_path / "tests" / path.name)
    result = _run(tool, "test", "rules", *(p.name for p in RULE_TESTS), cwd=tmp_path / "tests")
    assert result.returncode != 0, f"promtool tests still pass without {alertname}"
    assert f"alertname: {alertname}" in result.stdout + result.stderr


def test_alerts_follow_mixin_conventions() -> None:
    names = [a["alert"] for a in _alerts()]
    assert len(names) == len(set(names)), "duplicate alert names"
    for alert in _alerts():
        name = alert["alert"]
        assert re.fullmatch(r"Crashfleet[A-Z][A-Za-z]+", name), name
        assert alert["labels"]["severity"] in SEVERITIES, name
        assert {"summary", "description", "runbook_url"} <= set(alert["annotations"]), name
        assert alert["annotations"]["runbook_url"] == RUNBOOK_BASE + name.lower(), name


def test_required_alerts_exist() -> None:
    """The alerts issue 6 asks for, by what they watch."""
    watched = {a["alert"]: a["expr"] for a in _alerts()}
    assert "crashfleet_crashes" in watched["CrashfleetPanicRateHigh"]
    assert "crashfleet_clusters_created_total" in watched["CrashfleetNewCrashCluster"]
    assert "crashfleet_cluster_new_host_total" in watched["CrashfleetClusterSpreading"]
    assert "per_1000_host_days" in watched["CrashfleetKernelReleaseCrashing"]
    assert "hosts_reporting" in watched["CrashfleetKernelReleaseCrashing"]
    assert "per_1000_host_days" in watched["CrashfleetPanicRateHigh"]
    assert ":crashfleet_new_cluster_rate:threshold" in watched["CrashfleetNewClusterRateHigh"]
    assert "crashfleet_agent_spool_oldest_age_seconds" in watched["CrashfleetAgentCannotShip"]
    assert 'up{job="crashfleet-collector"}' in watched["CrashfleetCollectorDown"]
    assert "absent(" in watched["CrashfleetCollectorAbsent"]


def test_recording_rule_names() -> None:
    records = [r["record"] for r in _rules() if "record" in r]
    assert records and len(records) == len(set(records))
    for name in records:
        assert RECORD_NAME.match(name), f"{name}: not level:metric:operations"


def test_runbook_has_a_section_per_alert() -> None:
    if not RUNBOOK.is_file():
        pytest.fail("docs/runbook.md is missing")
    headings = [
        line.lstrip("#").strip() for line in RUNBOOK.read_text().splitlines() if line.startswith("## ")
    ]
    anchors = {github_anchor(h) for h in headings}
    for alert in _alerts():
        assert alert["alert"].lower() in anchors, f"docs/runbook.md has no section for {alert['alert']}"


def test_rules_reference_only_exported_metrics() -> None:
    known = set(known_series())
    used: set[str] = set()
    for rule in _rules():
        used |= metrics_in_expr(rule["expr"])
    assert used, "no crashfleet_ metric found in the rules (the name pattern is broken)"
    assert used <= known, f"metrics the code does not export: {sorted(used - known)}"


def test_metric_name_pattern() -> None:
    expr = (
        "sum(rate(crashfleet_crashes_total[5m])) / kernel_release:crashfleet_hosts:max + :crashfleet_x:rate"
    )
    assert metrics_in_expr(expr) == {"crashfleet_crashes_total"}
