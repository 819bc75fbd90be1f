"""Planted signals on seeded simulated fleets (collector.analytics.simulate): the truth is known."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.analytics.badhosts import HostEvidence, score_hosts
from collector.analytics.regression import regression_window
from collector.analytics.simulate import BAD_HOST, PLANTED_MODULE, RELEASES, SimFleet, simulate_fleet
from collector.analytics.suspects import SuspectParams, find_suspects, regression_stratum


def test_planted_module_is_ranked_first_and_the_confounded_hardware_is_explained() -> None:
    for seed in range(5):
        fleet = simulate_fleet(seed, hosts=1000, planted_factor=30)
        report = find_suspects(fleet.crashing_hosts(fleet.planted_cluster), fleet.profiles())
        first = report.suspects[0]
        assert first.attributes == (("module", PLANTED_MODULE),), (seed, report.summary)
        assert first.explained_by == ()
        assert first.words.startswith(f"{PLANTED_MODULE} loaded: ")
        assert " crashing hosts vs " in first.words and "95 % CI" in first.words
        # Anything else reported is shown under the module, not as its own finding.
        assert all(s.explained_by for s in report.suspects[1:]), [s.words for s in report.suspects]


def test_regression_window_names_the_release_before_and_the_first_release() -> None:
    for seed in range(3):
        fleet = simulate_fleet(seed, hosts=1000, regression=True)
        window = regression_window(fleet.release_cells(fleet.regression_cluster))
        assert window.first_release == RELEASES[-1] == fleet.regression_release
        assert window.last_clean_release == RELEASES[-2]
        assert window.words.startswith(f"not seen on {RELEASES[-2]} over ")
        assert f"expected at the {RELEASES[-1]} rate, p < 0.001" in window.words


VETH = (("module", PLANTED_MODULE),)


@pytest.mark.parametrize(
    ("planted", "stratum", "last_clean", "words"),
    [
        # Every host on the newest release crashes: the release is the top suspect, the whole
        # fleet is the stratum, and the window is named.
        ("regression", (), RELEASES[-2], f"not seen on {RELEASES[-2]} over "),
        # Only veth hosts crash, only on the newest release; veth hosts ran the older ones too.
        ("stratum_regression", VETH, RELEASES[-2], f"among hosts with veth loaded: not seen on {RELEASES[-2]}"),
        # Only veth hosts crash, on any release, and they only ever ran the newest: confounded.
        ("confounded", VETH, "", f"too little exposure on {', '.join(RELEASES[:-1])} among hosts with veth loaded"),
    ],
)
def test_regression_window_is_counted_within_the_top_suspects_hosts(
    planted: str, stratum: tuple[tuple[str, str], ...], last_clean: str, words: str
) -> None:
    """The window compares releases among the hosts with the top suspect (docs/analytics.md):
    a regression is still named where those hosts ran the older release without a crash, and
    none is claimed where they never ran it."""
    for seed in range(3):
        fleet = simulate_fleet(seed, hosts=1000, **{planted: True})  # type: ignore[arg-type]
        cluster = fleet.regression_cluster or fleet.stratum_regression_cluster or fleet.confounded_cluster
        report = find_suspects(fleet.crashing_hosts(cluster), fleet.profiles())
        assert regression_stratum(report) == stratum, report.summary
        window = regression_window(fleet.release_cells(cluster, stratum), stratum=stratum)
        assert (window.first_release, window.last_clean_release, window.stratum) == (
            RELEASES[-1], last_clean, stratum
        ), window.words
        assert words in window.words
        assert ("regression between" in window.words) == bool(last_clean)


def _evidence(fleet: SimFleet) -> tuple[list[HostEvidence], int, float]:
    per_host: dict[str, list[str]] = {}
    for host, cluster in fleet.crashes:
        per_host.setdefault(host, []).append(cluster)
    hosts_of = Counter(c for c, _ in {(c, h) for h, c in fleet.crashes})
    evidence = [
        HostEvidence(
            h.name,
            len(per_host.get(h.name, [])),
            h.host_days,
            len(set(per_host.get(h.name, []))),
            sum(1 for c in set(per_host.get(h.name, [])) if hosts_of[c] == 1),
            h.hardware_errors,
        )
        for h in fleet.hosts
    ]
    return evidence, len(fleet.crashes), sum(h.host_days for h in fleet.hosts)


def test_bad_host_is_flagged_first_and_said_in_words() -> None:
    for seed in range(3):
        fleet = simulate_fleet(seed, hosts=1000, bad_host=True)
        ranked = score_hosts(*_evidence(fleet))
        assert ranked[0].host == BAD_HOST and ranked[0].flagged
        assert "clusters no other host has" in ranked[0].reason
        assert "240 corrected hardware errors" in ranked[0].reason
        assert [b.host for b in ranked if b.flagged] == [BAD_HOST]


def _clusters_with_suspects(fleets: range) -> tuple[int, int]:
    flagged = total = 0
    for seed in fleets:
        fleet = simulate_fleet(seed)
        profiles = fleet.profiles()
        for cluster in fleet.clusters():
            total += 1
            report = find_suspects(fleet.crashing_hosts(cluster), profiles)
            flagged += any(not s.explained_by for s in report.suspects)
    return flagged, total


def test_without_a_planted_signal_at_most_five_percent_of_clusters_report_a_suspect() -> None:
    flagged, total = _clusters_with_suspects(range(1000, 1012))
    assert total >= 200
    assert flagged / total <= 0.05, f"{flagged} of {total} clusters reported a suspect"


@settings(max_examples=8, deadline=None)
@given(st.integers(min_value=0, max_value=2**31))
def test_property_every_reported_suspect_meets_the_documented_thresholds(seed: int) -> None:
    fleet = simulate_fleet(seed, hosts=300, clusters=6)
    params = SuspectParams()
    for cluster in fleet.clusters():
        report = find_suspects(fleet.crashing_hosts(cluster), fleet.profiles(), params)
        for s in report.suspects:
            assert s.cluster_hosts_with >= params.min_support
            assert s.q_value <= params.fdr / 2 and s.ci_low > params.min_effect
            assert 0 < s.host_days_with <= s.host_days
        assert report.summary


def test_grouped_host_counts_equal_counting_host_by_host() -> None:
    """Suspects count crashing hosts through their distinct attribute sets with weights
    (suspects._Crashing); every count must equal the plain count over the hosts."""
    from itertools import combinations

    from collector.analytics.suspects import CrashingHost, _Crashing

    fleet = simulate_fleet(7, planted_factor=30)
    hosts = fleet.crashing_hosts(fleet.planted_cluster)
    # Hosts of one configuration class share their set: twins of every other host.
    hosts += [CrashingHost(h.host + "-twin", h.attrs) for h in hosts[::2]]
    crashing = _Crashing(hosts)
    assert len(crashing.sets) < len(hosts)  # hosts do share sets: the grouping is exercised
    assert crashing.support == Counter(a for h in hosts for a in h.attrs)
    values = sorted(a for a, n in crashing.support.items() if n >= 3)
    crashing.index({v: i for i, v in enumerate(values)})
    pairs = crashing.pair_counts()
    for i, j in combinations(range(len(values)), 2):
        both = sum(1 for h in hosts if values[i] in h.attrs and values[j] in h.attrs)
        assert pairs[i, j] == both == crashing.count((values[i], values[j]))
    for i, v in enumerate(values):
        assert pairs[i, i] == sum(1 for h in hosts if v in h.attrs) == crashing.count((v,))
