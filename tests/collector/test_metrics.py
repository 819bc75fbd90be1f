"""The collector's metric families: exact names, exact label sets, bounded label values."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from collector import metrics as m

# Family name as the text exposition declares it (# TYPE line) -> (type, label names).
EXPECTED: dict[str, tuple[str, frozenset[str]]] = {
    "crashfleet_reports_received": ("counter", frozenset({"result", "kind"})),
    "crashfleet_crashes": ("counter", frozenset({"kernel_release"})),
    "crashfleet_crashes_backfill": ("counter", frozenset({"kernel_release"})),
    "crashfleet_heartbeats": ("counter", frozenset()),
    "crashfleet_clusters": ("gauge", frozenset()),
    "crashfleet_clusters_created": ("counter", frozenset()),
    "crashfleet_cluster_new_host": ("counter", frozenset()),
    "crashfleet_rpc_duration_seconds": ("histogram", frozenset({"method", "code"})),
    "crashfleet_store_duration_seconds": ("histogram", frozenset({"operation"})),
    "crashfleet_hosts": ("gauge", frozenset({"kernel_release"})),
    "crashfleet_build": ("info", frozenset({"version"})),
    "crashfleet_hosts_reporting": ("gauge", frozenset({"kernel_release"})),
    "crashfleet_clusters_regressed": ("gauge", frozenset()),
    "crashfleet_hardware_suspect_hosts": ("gauge", frozenset()),
    "crashfleet_new_cluster_rate_per_1000_host_days": ("gauge", frozenset()),
}
# Label names that would mean one series per host / cluster / crash: never allowed.
UNBOUNDED_LABELS = {"host", "hostname", "cluster", "cluster_id", "crash", "crash_id", "fingerprint", "id"}


def _exercise(metrics: m.Metrics) -> None:
    metrics.report("new", "null-deref", "6.1.0-18-amd64")
    metrics.report("new", "null-deref", "6.1.0-17-amd64", backfill=True)
    metrics.report("duplicate", "null-deref")
    metrics.report("invalid", "")
    metrics.heartbeat()
    metrics.cluster_created()
    metrics.cluster_gained_host()
    metrics.set_hosts({"6.1.0-18-amd64": 3})
    metrics.set_hosts_reporting({"6.1.0-18-amd64": 3})
    metrics.set_analytics(regressed=1, hardware_suspects=2)
    metrics.set_new_cluster_rate(12.5)
    metrics.observe_rpc("ReportCrash", "OK", 0.002)
    with metrics.time_store("insert_crash"):
        pass


def _families(
    registry: CollectorRegistry,
) -> dict[str, tuple[str, set[str], list[tuple[str, dict[str, str], float]]]]:
    out: dict[str, tuple[str, set[str], list[tuple[str, dict[str, str], float]]]] = {}
    # OpenMetrics keeps a counter's `_created` sample inside its family (the classic text parser
    # would report it as a separate gauge). prometheus_client leaves these two functions unannotated.
    text = generate_openmetrics(registry).decode()  # type: ignore[no-untyped-call]
    for fam in text_string_to_metric_families(text):  # type: ignore[no-untyped-call]
        labels: set[str] = set()
        samples = []
        for s in fam.samples:
            labels.update(k for k in s.labels if k != "le")  # `le` is the histogram bucket bound
            samples.append((s.name, dict(s.labels), s.value))
        out[fam.name] = (fam.type, labels, samples)
    return out


def test_families_names_types_and_labels() -> None:
    metrics = m.Metrics(CollectorRegistry(), version="9.9.9")
    _exercise(metrics)
    fams = _families(metrics.registry)
    assert set(fams) == set(EXPECTED)
    for name, (typ, labels) in EXPECTED.items():
        assert fams[name][0] == typ, name
        assert fams[name][1] == labels, name
        assert not fams[name][1] & UNBOUNDED_LABELS, name


def test_exposed_names_match_the_constants_deploy_uses() -> None:
    metrics = m.Metrics(CollectorRegistry())
    _exercise(metrics)
    text = generate_latest(metrics.registry).decode()
    for name in m.METRIC_NAMES:
        assert f"\n{name}" in text or f"\n{name}_bucket" in text, name
    assert len(set(m.METRIC_NAMES)) == len(EXPECTED)


def test_values_and_build_info() -> None:
    metrics = m.Metrics(CollectorRegistry(), version="9.9.9")
    _exercise(metrics)
    r = metrics.registry
    assert r.get_sample_value(m.REPORTS_RECEIVED, {"result": "new", "kind": "null-deref"}) == 2
    assert r.get_sample_value(m.REPORTS_RECEIVED, {"result": "invalid", "kind": "unknown"}) == 1
    # Only new occurrences count as crashes; old ones (backfill) apart.
    assert r.get_sample_value(m.CRASHES, {"kernel_release": "6.1.0-18-amd64"}) == 1
    assert r.get_sample_value(m.CRASHES, {"kernel_release": "6.1.0-17-amd64"}) is None
    assert r.get_sample_value(m.CRASHES_BACKFILL, {"kernel_release": "6.1.0-17-amd64"}) == 1
    assert r.get_sample_value(m.CLUSTERS) == 1
    assert r.get_sample_value(m.CLUSTERS_CREATED) == 1
    assert r.get_sample_value(m.HOSTS, {"kernel_release": "6.1.0-18-amd64"}) == 3
    assert r.get_sample_value(m.BUILD_INFO, {"version": "9.9.9"}) == 1
    assert r.get_sample_value(f"{m.RPC_DURATION}_count", {"method": "ReportCrash", "code": "OK"}) == 1
    assert r.get_sample_value(f"{m.STORE_DURATION}_count", {"operation": "insert_crash"}) == 1


def test_registries_are_independent() -> None:
    a, b = m.Metrics(), m.Metrics()
    a.heartbeat()
    assert a.registry.get_sample_value(m.HEARTBEATS) == 1
    assert b.registry.get_sample_value(m.HEARTBEATS) == 0


def test_invented_kind_is_folded_into_unknown() -> None:
    metrics = m.Metrics()
    metrics.report("invalid", "<script>alert(1)</script>")
    assert (
        metrics.registry.get_sample_value(m.REPORTS_RECEIVED, {"result": "invalid", "kind": "unknown"}) == 1
    )
    fams = _families(metrics.registry)
    kinds = {s[1]["kind"] for s in fams["crashfleet_reports_received"][2]}
    assert kinds == {"unknown"}


def test_unknown_result_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="result must be one of"):
        m.Metrics().report("accepted", "oops")


def test_kernel_release_flood_is_capped() -> None:
    """A hostile agent inventing releases cannot create more than MAX_KERNEL_RELEASES series."""
    metrics = m.Metrics()
    flood = m.MAX_KERNEL_RELEASES + 50
    for i in range(flood):
        metrics.report("new", "oops", f"6.1.0-{i}-amd64")
    fams = _families(metrics.registry)
    releases = {s[1]["kernel_release"] for s in fams["crashfleet_crashes"][2] if s[0].endswith("_total")}
    assert len(releases) == m.MAX_KERNEL_RELEASES + 1
    assert metrics.registry.get_sample_value(m.CRASHES, {"kernel_release": "other"}) == 50
    # Known releases keep their own series after the cap is reached.
    metrics.report("new", "oops", "6.1.0-0-amd64")
    assert metrics.registry.get_sample_value(m.CRASHES, {"kernel_release": "6.1.0-0-amd64"}) == 2


def test_set_hosts_replaces_previous_counts() -> None:
    metrics = m.Metrics()
    metrics.set_hosts({"6.1.0-17-amd64": 2, "6.1.0-18-amd64": 5})
    metrics.set_hosts({"6.1.0-18-amd64": 7})
    r = metrics.registry
    assert r.get_sample_value(m.HOSTS, {"kernel_release": "6.1.0-17-amd64"}) is None
    assert r.get_sample_value(m.HOSTS, {"kernel_release": "6.1.0-18-amd64"}) == 7


def test_store_timer_observes_failures_too() -> None:
    metrics = m.Metrics()
    with pytest.raises(RuntimeError), metrics.time_store("get_cluster"):
        raise RuntimeError("boom")
    assert metrics.registry.get_sample_value(f"{m.STORE_DURATION}_count", {"operation": "get_cluster"}) == 1


def test_no_created_series_in_either_format() -> None:
    """prometheus_client's `_created` companions (`crashfleet_clusters_created_created` ...) are
    off in the collector: every sample of every family, text and OpenMetrics, is checked."""
    metrics = m.Metrics(CollectorRegistry())
    _exercise(metrics)
    samples = [name for _, _, series in _families(metrics.registry).values() for name, _, _ in series]
    assert samples and not [name for name in samples if name.endswith("_created")]
    text = generate_latest(metrics.registry).decode()
    assert "crashfleet_clusters_created_total 1.0" in text
    assert not [line for line in text.splitlines() if line.split(" ")[0].split("{")[0].endswith("_created")]


def test_hosts_reporting_keeps_the_top_releases_by_size_and_sums_the_rest() -> None:
    metrics = m.Metrics(CollectorRegistry())
    by_release = {f"6.1.0-{i}-amd64": 100 - i for i in range(15)}
    metrics.set_hosts_reporting(by_release)
    r = metrics.registry
    assert r.get_sample_value(m.HOSTS_REPORTING, {"kernel_release": "6.1.0-0-amd64"}) == 100
    assert r.get_sample_value(m.HOSTS_REPORTING, {"kernel_release": "6.1.0-10-amd64"}) is None
    assert r.get_sample_value(m.HOSTS_REPORTING, {"kernel_release": "other"}) == sum(100 - i for i in range(10, 15))
    metrics.set_hosts_reporting({"6.1.0-99-amd64": 5})  # a fresh reading replaces the old series
    assert r.get_sample_value(m.HOSTS_REPORTING, {"kernel_release": "6.1.0-0-amd64"}) is None
