"""The statistics against values computed independently (tables and closed forms)."""

from __future__ import annotations

import math

import pytest

from collector.analytics.stats import (
    benjamini_hochberg,
    over_representation,
    over_representation_many,
    poisson_interval,
    poisson_upper_tail,
    rate_interval,
)


def test_garwood_interval_matches_published_table() -> None:
    # Garwood (1936) / Ulm (1990) exact 95 % limits.
    assert poisson_interval(0).low == 0.0
    assert poisson_interval(0).high == pytest.approx(3.689, abs=1e-3)
    ci = poisson_interval(10)
    assert (ci.low, ci.high) == (pytest.approx(4.795, abs=1e-3), pytest.approx(18.390, abs=1e-3))
    with pytest.raises(ValueError, match="negative"):
        poisson_interval(-1)


def test_rate_per_thousand_host_days() -> None:
    rate, ci = rate_interval(10, 2000.0)
    assert rate == 5.0
    assert ci.low == pytest.approx(4.795 / 2, abs=1e-3)
    rate, ci = rate_interval(3, 0.0)
    assert rate == 0.0 and math.isinf(ci.high)


def test_poisson_upper_tail_closed_form() -> None:
    assert poisson_upper_tail(0, 2.0) == 1.0
    assert poisson_upper_tail(1, 2.0) == pytest.approx(1 - math.exp(-2.0))
    assert poisson_upper_tail(3, 0.0) == 0.0


def test_over_representation_exact_binomial_and_ratio() -> None:
    # 12 of 12 crashing hosts have A, which holds 8 % of the fleet's host-days: p = 0.08 ** 12.
    r = over_representation(12, 12, 0.08)
    assert r.p_value == pytest.approx(0.08**12)
    assert math.isinf(r.rate_ratio) and math.isinf(r.ci.high)
    # Clopper-Pearson lower bound of 12/12 is 0.025 ** (1/12).
    p_low = 0.025 ** (1 / 12)
    assert r.ci.low == pytest.approx(p_low / (1 - p_low) * 0.92 / 0.08, rel=1e-6)
    # Exactly the fleet's share: rate ratio 1.
    assert over_representation(5, 10, 0.5).rate_ratio == pytest.approx(1.0)


def test_vectorized_form_agrees_with_scipy_binomtest() -> None:
    cases = [(3, 10, 0.1), (12, 12, 0.08), (0, 5, 0.5), (7, 40, 0.3), (2, 2, 0.9)]
    for one, many in zip(
        [over_representation(*c) for c in cases], over_representation_many(cases), strict=True
    ):
        assert many.p_value == pytest.approx(one.p_value, rel=1e-9)
        assert many.ci.low == pytest.approx(one.ci.low, rel=1e-6)
        assert many.ci.high == pytest.approx(one.ci.high, rel=1e-6) or math.isinf(one.ci.high)
    assert over_representation_many([]) == []
    with pytest.raises(ValueError, match="n1"):
        over_representation_many([(4, 3, 0.5)])


def test_benjamini_hochberg_by_hand() -> None:
    # sorted p: 0.01, 0.02, 0.03, 0.5 with m = 4: q = min over k>=i of p_k * m / k.
    assert benjamini_hochberg([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.04, 0.5, 0.04, 0.04])
    assert benjamini_hochberg([]) == []


def test_vectorized_rates_and_tails_agree_with_the_single_forms() -> None:
    from collector.analytics.stats import poisson_upper_tails, rate_intervals

    cells = [(0, 10.0), (3, 8.0), (10, 2000.0), (4, 0.0)]
    for (k, e), (rate, ci) in zip(cells, rate_intervals(*zip(*cells, strict=True)), strict=True):
        one_rate, one_ci = rate_interval(k, e)
        assert rate == pytest.approx(one_rate) and ci.low == pytest.approx(one_ci.low)
        assert ci.high == pytest.approx(one_ci.high) or math.isinf(one_ci.high)
    pairs = [(0, 2.0), (1, 2.0), (5, 0.5), (3, 0.0)]
    assert poisson_upper_tails(*zip(*pairs, strict=True)) == pytest.approx([poisson_upper_tail(k, m) for k, m in pairs])


def test_benjamini_hochberg_padded_is_the_correction_over_all_tested() -> None:
    from collector.analytics.stats import benjamini_hochberg_padded

    ps = [0.001, 0.04, 0.2]
    assert benjamini_hochberg_padded(ps, 10) == benjamini_hochberg([*ps, *[1.0] * 7])[:3]
    assert benjamini_hochberg_padded(ps, 10) != benjamini_hochberg(ps)  # the padding matters
    assert benjamini_hochberg_padded(ps, 0) == benjamini_hochberg(ps)
    assert benjamini_hochberg_padded([], 5) == []
