"""Regression windows: between which releases did a cluster appear (docs/analytics.md).

The releases a cluster was seen on and the fleet's exposure on each, oldest first in the
distribution's order (collector.analytics.releases). R1 is the oldest release with a crash of the
cluster and its rate λ1 = k1 / E1. For each older release R0 without a crash, μ = λ1 · E0 crashes
were expected had R0 carried the bug, and P(0 | μ) = e^−μ says how surprising its silence is.
The window runs from the newest R0 whose silence is significant (p < `alpha`) to R1; older
releases between them with too little exposure to say are named as such.

Under confounding the fleet-wide cells mislead: when only hosts with some attribute S crash and
those hosts never ran R0, the rest of the fleet's silence on R0 says nothing about the bug. The
caller then passes the cells of the stratum (crashes of hosts with S, exposure of hosts with S)
and S itself, and the window is said for those hosts ("too little exposure on R0 among hosts with
S to say" where they barely ran R0).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from collector.analytics.exposure import Attr
from collector.analytics.releases import sort_releases
from collector.analytics.stats import rate_interval
from collector.analytics.suspects import describe_attrs

__all__ = ["RegressionWindow", "ReleaseRate", "regression_window"]

DEFAULT_ALPHA = 0.001


@dataclass(frozen=True, slots=True)
class ReleaseRate:
    release: str
    crashes: int
    host_days: float
    rate_per_1000_host_days: float
    ci_low: float
    ci_high: float
    expected: float = 0.0  # at the first release's rate (releases before it)
    p_value: float = 1.0  # P(no crash | expected)


@dataclass(frozen=True, slots=True)
class RegressionWindow:
    releases: tuple[ReleaseRate, ...]  # oldest first
    first_release: str  # "" when the cluster was never seen in the window
    last_clean_release: str  # "" when no older release's silence is significant
    inconclusive: tuple[str, ...]  # releases between the two with too little exposure to say
    words: str
    stratum: tuple[Attr, ...] = ()  # the hosts the cells count (the top suspect); () the whole fleet


def _p_text(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"


def regression_window(
    cells: Iterable[tuple[str, int, float]], alpha: float = DEFAULT_ALPHA, stratum: tuple[Attr, ...] = ()
) -> RegressionWindow:
    """`cells`: (release, crashes of the cluster, fleet host-days on it), or with `stratum` the
    crashes of the hosts with those values and those hosts' host-days. ReleaseError on a
    malformed release."""
    table = {release: (k, e) for release, k, e in cells}
    order = sort_releases(table)
    first = next((r for r in order if table[r][0] > 0), "")
    among = f" among hosts with {describe_attrs(stratum)}" if stratum else ""
    if not first:
        return RegressionWindow(
            tuple(_row(r, *table[r]) for r in order), "", "", (), f"not seen{among} in the window", stratum
        )
    k1, e1 = table[first]
    lam = k1 / e1 if e1 > 0 else math.inf
    rows: list[ReleaseRate] = []
    clean, unsure = "", []
    for r in order:
        k, e = table[r]
        row = _row(r, k, e)
        if order.index(r) < order.index(first):
            mu = lam * e if math.isfinite(lam) else math.inf
            p = math.exp(-mu) if math.isfinite(mu) else 0.0
            row = ReleaseRate(row.release, k, e, row.rate_per_1000_host_days, row.ci_low, row.ci_high, mu, p)
        rows.append(row)
    for row in reversed(rows[: order.index(first)]):
        if row.p_value < alpha:
            clean = row.release
            break
        unsure.append(row.release)
    if not clean:
        if unsure and stratum:
            unsure_text = f"; too little exposure on {', '.join(reversed(unsure))}{among} to say"
        elif unsure:
            unsure_text = f"; older releases had too little exposure to say ({', '.join(reversed(unsure))})"
        else:
            unsure_text = ""
        of = f" of hosts with {describe_attrs(stratum)}" if stratum else ""
        words = f"first seen on {first} ({k1} crashes over {e1:,.0f} host-days{of}){unsure_text}"
        return RegressionWindow(tuple(rows), first, "", tuple(reversed(unsure)), words, stratum)
    c = next(r for r in rows if r.release == clean)
    words = (
        f"not seen on {clean} over {c.host_days:,.0f} host-days; {c.expected:,.0f} expected at the {first} rate,"
        f" {_p_text(c.p_value)}: regression between {clean} and {first}"
    )
    if stratum:
        words = f"{among.strip()}: {words}"
    if unsure:
        words += f" (too little exposure{among} to say: {', '.join(reversed(unsure))})"
    return RegressionWindow(tuple(rows), first, clean, tuple(reversed(unsure)), words, stratum)


def _row(release: str, k: int, e: float) -> ReleaseRate:
    rate, ci = rate_interval(k, e)
    return ReleaseRate(release, k, e, rate, ci.low, ci.high)
