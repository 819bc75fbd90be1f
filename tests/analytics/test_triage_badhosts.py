"""Triage transitions and the bad-host rules, one behaviour per test."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from collector.analytics.badhosts import FLAG_SCORE, HostEvidence, score_hosts
from collector.analytics.triage import Triage, TriageError, after_crash, apply

AT = datetime(2026, 12, 1, tzinfo=UTC)


def test_new_acknowledged_fixed_then_regressed_on_the_fixed_release_or_later() -> None:
    t = apply(Triage("c1"), "ack", AT, note="looking")
    assert (t.state, t.note) == ("acknowledged", "looking")
    t = apply(t, "fixed", AT, fixed_in="6.1.0-57-amd64", link="https://bugs.example/1")
    assert (t.state, t.fixed_in, t.note, t.link) == (
        "fixed",
        "6.1.0-57-amd64",
        "looking",
        "https://bugs.example/1",
    )
    assert after_crash(t, "6.1.0-56-amd64", AT) is None  # an older kernel still has the bug: expected
    regressed = after_crash(t, "6.1.0-57-amd64", AT)
    assert regressed is not None and (regressed.state, regressed.regressed_release) == (
        "regressed",
        "6.1.0-57-amd64",
    )
    assert after_crash(regressed, "6.1.0-60-amd64", AT) is None  # already regressed: nothing new
    assert apply(regressed, "ack", AT).state == "acknowledged"


@pytest.mark.parametrize(
    ("action", "kwargs", "message"),
    [
        ("fixed", {"fixed_in": "not a release"}, "--fixed-in: kernel release"),
        ("ack", {"fixed_in": "6.1.0-57-amd64"}, "only given with fixed"),
        ("ack", {"note": "x" * 3000}, "note: longer than"),
        ("ack", {"note": "bell\x07"}, "control characters"),
        ("ack", {"link": "javascript:alert(1)"}, "link: must be an http"),
        ("close", {}, "cannot close"),
    ],
)
def test_bad_triage_input_is_refused_with_the_reason(
    action: str, kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(TriageError, match=message):
        apply(Triage("c1"), action, AT, **kwargs)


def test_a_quiet_host_is_not_flagged_and_each_rule_says_its_reason() -> None:
    hosts = [
        HostEvidence("quiet", 1, 30.0, 1, 0),
        HostEvidence("one-rare-bug", 1, 30.0, 1, 1),  # one unshared cluster: a rare bug, not a machine
        HostEvidence("edac", 2, 30.0, 2, 0, {"edac_ue": 1}),
        HostEvidence("flaky", 40, 30.0, 3, 0),
        HostEvidence("loner", 3, 30.0, 3, 3),
        HostEvidence("faults", 0, 30.0, 0, 0, user_faults=50),
    ]
    ranked = {b.host: b for b in score_hosts(hosts, fleet_crashes=100, fleet_host_days=30_000.0)}
    assert not ranked["quiet"].flagged and ranked["quiet"].reason == "nothing unusual"
    assert not ranked["one-rare-bug"].flagged
    assert (
        ranked["edac"].flagged and "1 uncorrected hardware errors or machine checks" in ranked["edac"].reason
    )
    assert (
        ranked["flaky"].flagged and "40 crashes over 30.0 host-days, 0.1 expected" in ranked["flaky"].reason
    )
    assert ranked["loner"].score >= FLAG_SCORE and "3 clusters no other host has" in ranked["loner"].reason
    assert not ranked["faults"].flagged and ranked["faults"].reason == "50 user-space faults"
    assert ranked["faults"].user_faults == 50 and ranked["quiet"].user_faults is None
