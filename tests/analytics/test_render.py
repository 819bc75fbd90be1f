"""The JSON producers carry the fields the issue names, as valid JSON (no Infinity)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from collector.analytics.badhosts import HostEvidence, score_hosts
from collector.analytics.rates import rate_rows
from collector.analytics.regression import regression_window
from collector.analytics.render import bad_host_json, rate_json, suspects_json
from collector.analytics.simulate import simulate_fleet
from collector.analytics.suspects import find_suspects, regression_stratum
from collector.analytics.triage import Triage, apply

SUSPECT_KEYS = {"attributes", "cluster_hosts", "cluster_hosts_with", "fleet_hosts", "fleet_hosts_with",
                "rate_ratio", "ci_low", "ci_high", "p_value", "explained_by"}  # fmt: skip


def test_rates_suspects_and_bad_hosts_render_as_strict_json() -> None:
    (row,) = rate_rows([("module", "veth", 0, 3, 0.0)])  # no exposure: an unbounded interval
    text = json.dumps(rate_json(row), allow_nan=False)
    assert json.loads(text)["ci_high"] is None

    fleet = simulate_fleet(2, hosts=1000, planted_factor=30)
    report = find_suspects(fleet.crashing_hosts(fleet.planted_cluster), fleet.profiles())
    stratum = regression_stratum(report)
    window = regression_window(fleet.release_cells(fleet.planted_cluster, stratum), stratum=stratum)
    triage = apply(Triage("c1"), "ack", datetime(2026, 12, 1, tzinfo=UTC), note="x")
    page = json.loads(json.dumps(suspects_json(report, window, triage), allow_nan=False))
    assert page["suspects"] and all(set(s) >= SUSPECT_KEYS for s in page["suspects"])
    assert page["suspects"][0]["attributes"] == [{"dim": "module", "value": "veth"}]
    assert page["triage"]["state"] == "acknowledged" and page["releases"]
    assert page["regression_stratum"] == [{"dim": "module", "value": "veth"}], "the hosts the window counts"

    (bad,) = score_hosts([HostEvidence("h", 3, 1.0, 3, 3, {"mce": 1})], 3, 100.0)
    row_json = json.loads(json.dumps(bad_host_json(bad), allow_nan=False))
    assert {"host", "score", "clusters", "unshared_clusters", "hardware_errors", "reason"} <= set(row_json)
