"""Exposure arithmetic: what a heartbeat credits, and when nothing needs writing."""

from __future__ import annotations

import pytest

from collector.analytics.exposure import (
    DAY_US,
    Credit,
    ExposureState,
    account,
    check_dimension,
    host_attributes,
    profile_id,
    split_by_day,
)

S = 1_000_000
DAY0 = 20_000 * DAY_US  # a UTC midnight


def test_split_by_day_cuts_at_midnight() -> None:
    assert split_by_day(DAY0 - 30 * S, DAY0 + 90 * S) == [(19_999, 30), (20_000, 90)]
    assert split_by_day(DAY0, DAY0) == []
    assert split_by_day(DAY0, DAY0 + 3 * DAY_US) == [(20_000, 86_400), (20_001, 86_400), (20_002, 86_400)]


def test_host_attributes_are_sorted_unique_and_skip_empty_values() -> None:
    attrs = host_attributes(
        kernel_release="6.1.0-56-amd64", machine="x86_64", hardware="", modules=["veth", "bridge", "veth"],
        labels={"role": "ci", "rack": ""},
    )  # fmt: skip
    assert attrs == (
        ("kernel_release", "6.1.0-56-amd64"), ("label:role", "ci"), ("machine", "x86_64"),
        ("module", "bridge"), ("module", "veth"),
    )  # fmt: skip
    assert profile_id(attrs) == profile_id(reversed(attrs))
    assert profile_id(attrs) != profile_id(attrs[1:])


def test_check_dimension() -> None:
    assert check_dimension("module") == "module"
    assert check_dimension("label:rack") == "label:rack"
    for bad in ("label:", "modules", ""):
        with pytest.raises(ValueError, match="unknown dimension"):
            check_dimension(bad)


def test_steady_heartbeats_write_nothing_until_the_flush_interval() -> None:
    state, credits = account(None, None, "p1", DAY0)
    assert state == ExposureState("p1", DAY0) and credits == []
    assert state is not None
    for minute in range(1, 60):
        new, credits = account(state, DAY0 + (minute - 1) * 60 * S, "p1", DAY0 + minute * 60 * S)
        assert new is None and credits == []  # nothing to write: only hosts.last_heartbeat moves
    new, credits = account(state, DAY0 + 59 * 60 * S, "p1", DAY0 + 3600 * S)
    assert credits == [Credit(20_000, "p1", 3600, "")]
    assert new == ExposureState("p1", DAY0 + 3600 * S, 20_000, "p1")
    # The next hour of the same day is credited without counting the host again.
    assert new is not None
    _, credits = account(new, DAY0 + 7140 * S, "p1", DAY0 + 7200 * S)
    assert credits == [Credit(20_000, "p1", 3600, "p1")]


def test_silence_is_capped_and_a_changed_profile_credits_the_old_one() -> None:
    state = ExposureState("p1", DAY0)
    # Last heartbeat at +60 s, then silence for a day: only cap (180 s) after the last one counts.
    new, credits = account(state, DAY0 + 60 * S, "p1", DAY0 + 20 * 3600 * S, cap_s=180)
    assert credits == [Credit(20_000, "p1", 240, "")]
    assert new is not None and new.since_us == DAY0 + 20 * 3600 * S
    # A module loaded: the old profile gets its stretch, the new one starts now.
    new, credits = account(state, DAY0 + 60 * S, "p2", DAY0 + 120 * S)
    assert credits == [Credit(20_000, "p1", 120, "")]
    assert new is not None and (new.profile, new.since_us) == ("p2", DAY0 + 120 * S)


def test_midnight_splits_the_stretch_and_out_of_order_heartbeats_change_nothing() -> None:
    state = ExposureState("p1", DAY0 - 100 * S)
    new, credits = account(state, DAY0 - 40 * S, "p1", DAY0 + 20 * S)
    assert credits == [Credit(19_999, "p1", 100, ""), Credit(20_000, "p1", 20, "")]
    assert new is not None and (new.counted_day, new.counted_profile) == (20_000, "p1")
    assert account(state, DAY0, "p1", DAY0 - 50 * S) == (None, [])
