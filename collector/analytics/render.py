"""The analytics results as JSON objects: what the HTTP API's routes return (collector.http).

Plain functions over the library's records; the field names are the protobuf's
(AnalyticsService) and the CLI's `--json`, so scripts can move between the three. Infinite interval ends become null.
"""

from __future__ import annotations

import math
from typing import Any

from collector.analytics.badhosts import BadHost
from collector.analytics.rates import RateRow
from collector.analytics.regression import RegressionWindow
from collector.analytics.suspects import Suspect, SuspectReport
from collector.analytics.triage import Triage

__all__ = [
    "bad_host_json",
    "rate_json",
    "regression_json",
    "suspect_json",
    "suspect_report_json",
    "suspects_json",
    "triage_json",
]


def _num(x: float) -> float | None:
    return None if math.isinf(x) or math.isnan(x) else x


def _attrs(attrs: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"dim": d, "value": v} for d, v in attrs]


def rate_json(r: RateRow) -> dict[str, Any]:
    return {
        "dim": r.dim, "value": r.value, "crashes": r.crashes, "hosts": r.hosts, "host_days": r.host_days,
        "rate_per_1000_host_days": r.rate_per_1000_host_days, "ci_low": r.ci_low, "ci_high": _num(r.ci_high),
    }  # fmt: skip


def suspect_json(s: Suspect) -> dict[str, Any]:
    return {
        "attributes": _attrs(s.attributes), "cluster_hosts": s.cluster_hosts,
        "cluster_hosts_with": s.cluster_hosts_with, "fleet_hosts": s.fleet_hosts,
        "fleet_hosts_with": s.fleet_hosts_with, "host_days": s.host_days, "host_days_with": s.host_days_with,
        "rate_ratio": _num(s.rate_ratio), "ci_low": _num(s.ci_low), "ci_high": _num(s.ci_high),
        "p_value": s.p_value, "q_value": s.q_value, "explained_by": _attrs(s.explained_by),
        "always_together": s.always_together, "words": s.words,
    }  # fmt: skip


def triage_json(t: Triage) -> dict[str, Any]:
    return {
        "cluster_id": t.cluster_id, "state": t.state, "fixed_in": t.fixed_in, "note": t.note, "link": t.link,
        "updated_at": t.updated_at.isoformat() if t.updated_at else None, "regressed_release": t.regressed_release,
    }  # fmt: skip


def suspect_report_json(report: SuspectReport) -> dict[str, Any]:
    """What is different about a cluster's hosts: the summary sentence and the suspect rows."""
    return {
        "summary": report.summary, "cluster_hosts": report.cluster_hosts, "candidates": report.candidates,
        "suspects": [suspect_json(s) for s in report.suspects], "hosts": list(report.hosts),
    }  # fmt: skip


def regression_json(window: RegressionWindow) -> dict[str, Any]:
    """The releases a cluster was seen on, each with the fleet's exposure, and its regression window."""
    return {
        "releases": [
            {
                "release": r.release, "crashes": r.crashes, "host_days": r.host_days,
                "rate_per_1000_host_days": r.rate_per_1000_host_days, "ci_low": r.ci_low,
                "ci_high": _num(r.ci_high), "expected": r.expected, "p_value": r.p_value,
            }
            for r in window.releases
        ],
        "first_release": window.first_release, "last_clean_release": window.last_clean_release,
        "inconclusive": list(window.inconclusive), "regression": window.words,
        "regression_stratum": _attrs(window.stratum),
    }  # fmt: skip


def suspects_json(report: SuspectReport, window: RegressionWindow, triage: Triage) -> dict[str, Any]:
    """One cluster's page: its suspects, the releases it was seen on with the window, its triage."""
    return {**suspect_report_json(report), **regression_json(window), "triage": triage_json(triage)}


def bad_host_json(b: BadHost) -> dict[str, Any]:
    return {
        "host": b.host, "score": b.score, "flagged": b.flagged, "crashes": b.crashes, "clusters": b.clusters,
        "unshared_clusters": b.unshared_clusters, "hardware_errors": b.hardware_errors,
        "user_faults": b.user_faults, "host_days": b.host_days, "expected_crashes": b.expected_crashes,
        "excess_p": b.excess_p, "reason": b.reason, "rules": list(b.rules),
    }  # fmt: skip
