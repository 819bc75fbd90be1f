"""The few statistics the fleet questions need, each a thin, named wrapper over scipy.stats.

Why wrappers: every caller gets the same conventions (95 % intervals, one-sided tests towards
"more than expected", infinity for an unbounded interval) and docs/analytics.md can point at one
function per method.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _stats

__all__ = [
    "CONFIDENCE",
    "Interval",
    "OverRepresentation",
    "benjamini_hochberg",
    "benjamini_hochberg_padded",
    "binomial_upper_tail",
    "over_representation",
    "over_representation_arrays",
    "over_representation_many",
    "poisson_interval",
    "poisson_upper_tail",
    "poisson_upper_tails",
    "rate_interval",
    "rate_intervals",
]

CONFIDENCE = 0.95


@dataclass(frozen=True, slots=True)
class Interval:
    low: float
    high: float  # math.inf when the data cannot bound it


def poisson_interval(k: int, confidence: float = CONFIDENCE) -> Interval:
    """Exact (Garwood) interval for a Poisson mean from one count: chi-square quantiles."""
    if k < 0:
        raise ValueError(f"count {k} is negative")
    alpha = 1.0 - confidence
    low = 0.0 if k == 0 else float(_stats.chi2.ppf(alpha / 2, 2 * k)) / 2
    high = float(_stats.chi2.ppf(1 - alpha / 2, 2 * k + 2)) / 2
    return Interval(low, high)


def rate_interval(k: int, exposure: float, per: float = 1000.0) -> tuple[float, Interval]:
    """Rate of k events over `exposure` (host-days) per `per` host-days, with its exact interval.
    No exposure gives rate 0 and the interval [0, inf): nothing can be said."""
    if exposure <= 0:
        return 0.0, Interval(0.0, math.inf)
    ci = poisson_interval(k)
    scale = per / exposure
    return k * scale, Interval(ci.low * scale, ci.high * scale)


def rate_intervals(
    ks: Sequence[int], exposures: Sequence[float], per: float = 1000.0
) -> list[tuple[float, Interval]]:
    """`rate_interval` for many cells in one vectorized pass (one chi-square call per bound)."""
    if not ks:
        return []
    k = np.asarray(ks, dtype=float)
    e = np.asarray(exposures, dtype=float)
    alpha = 1.0 - CONFIDENCE
    with np.errstate(all="ignore"):
        low = np.where(k > 0, _stats.chi2.ppf(alpha / 2, 2 * k) / 2, 0.0)
        high = _stats.chi2.ppf(1 - alpha / 2, 2 * k + 2) / 2
        scale = np.where(e > 0, per / np.where(e > 0, e, 1.0), 0.0)
    out = []
    for i in range(len(k)):
        if e[i] <= 0:
            out.append((0.0, Interval(0.0, math.inf)))
        else:
            out.append(
                (float(k[i] * scale[i]), Interval(float(low[i] * scale[i]), float(high[i] * scale[i])))
            )
    return out


def poisson_upper_tails(ks: Sequence[int], mus: Sequence[float]) -> list[float]:
    """`poisson_upper_tail` for many (k, mu) pairs at once."""
    if not ks:
        return []
    k = np.asarray(ks, dtype=float)
    mu = np.asarray(mus, dtype=float)
    with np.errstate(all="ignore"):
        p = _stats.poisson.sf(k - 1, np.where(mu > 0, mu, 1.0))
    return [1.0 if ki <= 0 else (0.0 if mi <= 0 else float(pi)) for ki, mi, pi in zip(k, mu, p, strict=True)]


def poisson_upper_tail(k: int, mu: float) -> float:
    """P(X >= k) for X ~ Poisson(mu): how surprising k or more events are."""
    if k <= 0:
        return 1.0
    if mu <= 0:
        return 0.0
    return float(_stats.poisson.sf(k - 1, mu))


@dataclass(frozen=True, slots=True)
class OverRepresentation:
    """n1 of n crashing hosts have A, where A holds p0 of the fleet's host-days."""

    p_value: float  # one-sided exact binomial test: more than p0 * n?
    rate_ratio: float  # crash rate of hosts with A over hosts without; inf when all have A
    ci: Interval  # exact (Clopper-Pearson based) 95 % interval of the rate ratio


def over_representation(n1: int, n: int, p0: float) -> OverRepresentation:
    """Exposure-aware test of one attribute among a cluster's crashing hosts (FLEET-STATS: under
    "A does not matter", n1 ~ Binomial(n, p0) with p0 = E_A / E)."""
    if not 0 <= n1 <= n or n == 0:
        raise ValueError(f"need 0 <= n1 <= n and n > 0, got n1={n1} n={n}")
    if p0 <= 0.0:
        # Nobody in the fleet had A over the window, yet a crashing host did: the exposure record
        # missed it (a host that crashed before its first heartbeat). Nothing can be tested.
        return OverRepresentation(1.0, math.nan, Interval(0.0, math.inf))
    if p0 >= 1.0:
        return OverRepresentation(1.0, 1.0, Interval(0.0, math.inf))
    result = _stats.binomtest(n1, n, p0, alternative="greater")
    # The two-sided interval (the one-sided test's own would be [low, 1]).
    ci = _stats.binomtest(n1, n, p0).proportion_ci(confidence_level=CONFIDENCE, method="exact")
    odds0 = (1.0 - p0) / p0  # (E - E_A) / E_A

    def ratio(p: float) -> float:
        return math.inf if p >= 1.0 else p / (1.0 - p) * odds0

    return OverRepresentation(float(result.pvalue), ratio(n1 / n), Interval(ratio(ci.low), ratio(ci.high)))


def over_representation_arrays(k: Any, n: Any, p0: Any) -> tuple[Any, Any, Any, Any]:
    """`over_representation` over numpy arrays at once: (p-values, rate ratios, interval lows,
    interval highs). The same one-sided exact binomial p-value (the binomial survival function)
    and the same two-sided Clopper-Pearson interval (beta quantiles), for the hundreds of
    candidates of one cluster. p0 must lie in (0, 1)."""
    k, n, p0 = (np.asarray(x, dtype=float) for x in (k, n, p0))
    alpha = 1.0 - CONFIDENCE
    with np.errstate(all="ignore"):
        pvalues = np.minimum(1.0, _stats.binom.sf(k - 1, n, p0))
        low = np.where(k > 0, _stats.beta.ppf(alpha / 2, k, n - k + 1), 0.0)
        high = np.where(k < n, _stats.beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
        odds0 = (1.0 - p0) / p0

        def ratio(p: Any) -> Any:
            return np.where(p >= 1.0, np.inf, p / (1.0 - p) * odds0)

        return pvalues, ratio(k / n), ratio(low), ratio(high)


def over_representation_many(cases: Sequence[tuple[int, int, float]]) -> list[OverRepresentation]:
    """`over_representation` for many (n1, n, p0), through `over_representation_arrays`."""
    if not cases:
        return []
    for n1, n, _ in cases:
        if not 0 <= n1 <= n or n == 0:
            raise ValueError(f"need 0 <= n1 <= n and n > 0, got n1={n1} n={n}")
    p, rr, low, high = over_representation_arrays(*zip(*cases, strict=True))
    result = []
    for i, (_, _, p0) in enumerate(cases):
        if p0 <= 0.0:
            result.append(OverRepresentation(1.0, math.nan, Interval(0.0, math.inf)))
        elif p0 >= 1.0:
            result.append(OverRepresentation(1.0, 1.0, Interval(0.0, math.inf)))
        else:
            result.append(
                OverRepresentation(float(p[i]), float(rr[i]), Interval(float(low[i]), float(high[i])))
            )
    return result


def binomial_upper_tail(k: int, n: int, p0: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p0): the one-sided p-value of `over_representation`
    without its interval, for the many stratified checks of one cluster."""
    if k <= 0:
        return 1.0
    return min(1.0, float(_stats.binom.sf(k - 1, n, p0)))


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """BH-adjusted p-values (q-values) in the input's order; reject those <= the FDR level."""
    if not p_values:
        return []
    return [float(q) for q in _stats.false_discovery_control(list(p_values), method="bh")]


def benjamini_hochberg_padded(p_values: Sequence[float], total: int) -> list[float]:
    """The q-values of `p_values` when `total` p-values were tested and the others are 1 (hosts
    that were not scored one by one): `benjamini_hochberg(p_values + [1.0] * ...)[: len(p_values)]`
    without building the padding as Python floats."""
    if not p_values:
        return []
    p = np.ones(max(total, len(p_values)))
    p[: len(p_values)] = p_values
    return _stats.false_discovery_control(p, method="bh")[: len(p_values)].tolist()  # type: ignore[no-any-return]
