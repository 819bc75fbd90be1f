"""Kernel release ordering as dpkg and rpm order them, over the lists in tests/data/analytics."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from collector.analytics.releases import ReleaseError, compare_releases, rpmvercmp, scheme_of, sort_releases

DATA = Path(__file__).resolve().parents[1] / "data" / "analytics"


def _lines(name: str) -> list[str]:
    return [line for line in (DATA / name).read_text().splitlines() if line]


@pytest.mark.parametrize("name", ["releases-dpkg.txt", "releases-rpm.txt"])
def test_shuffled_lists_sort_back_in_distribution_order(name: str) -> None:
    expected = _lines(name)
    for seed in range(5):
        shuffled = expected[:]
        random.Random(seed).shuffle(shuffled)
        assert sort_releases(shuffled) == expected


def test_dpkg_orders_numbers_numerically_where_strings_do_not() -> None:
    assert compare_releases("6.1.0-9-amd64", "6.1.0-56-amd64") == -1
    assert sorted(["6.1.0-9-amd64", "6.1.0-56-amd64"]) == [
        "6.1.0-56-amd64",
        "6.1.0-9-amd64",
    ]  # why it matters
    assert compare_releases("6.12~rc3-1-amd64", "6.12.0-1-amd64") == -1  # ~ sorts before anything


def test_rpm_rules() -> None:
    assert scheme_of("5.14.0-362.8.1.el9_3.x86_64") == "rpm"
    assert scheme_of("6.1.0-56-amd64") == "dpkg"
    assert rpmvercmp("1.0", "1.0") == 0
    assert rpmvercmp("1.0a", "1.0") == 1
    assert rpmvercmp("1.0~rc1", "1.0") == -1
    assert rpmvercmp("2", "10") == -1
    assert rpmvercmp("1.a", "1.1") == -1  # digits are newer than letters


@pytest.mark.parametrize("bad", [*_lines("malformed.txt"), ""])
def test_malformed_release_is_refused_with_the_release_named(bad: str) -> None:
    with pytest.raises(ReleaseError, match="kernel release"):
        compare_releases(bad, "6.1.0-56-amd64")
