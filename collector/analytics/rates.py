"""Crash rates per 1,000 host-days with exact Poisson intervals (docs/analytics.md, "Rates")."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from collector.analytics.stats import rate_intervals

__all__ = ["PER_HOST_DAYS", "RateRow", "rate_rows"]

PER_HOST_DAYS = 1000.0


@dataclass(frozen=True, slots=True)
class RateRow:
    dim: str  # "" for the fleet as a whole
    value: str
    crashes: int
    hosts: int  # distinct hosts reporting the value (the busiest day of the window)
    host_days: float
    rate_per_1000_host_days: float
    ci_low: float
    ci_high: float  # inf when there is no exposure


def rate_rows(cells: Iterable[tuple[str, str, int, int, float]]) -> list[RateRow]:
    """(dim, value, crashes, hosts, host_days) cells as rows, highest rate first (then value)."""
    cells = list(cells)
    rows = []
    rates = rate_intervals([c[2] for c in cells], [c[4] for c in cells], PER_HOST_DAYS)
    for (dim, value, crashes, hosts, host_days), (rate, ci) in zip(cells, rates, strict=True):
        rows.append(RateRow(dim, value, crashes, hosts, host_days, rate, ci.low, ci.high))
    rows.sort(key=lambda r: (-r.rate_per_1000_host_days, -r.crashes, r.dim, r.value))
    return rows
