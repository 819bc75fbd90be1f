"""Suspects: what is different about the hosts a cluster hit (docs/analytics.md, "Suspects").

Each crashing host counts once, with what it ran at its latest crash of the window. For every
attribute value held by at least `min_support` of them, and for pairs of the strongest values,
the share of crashing hosts with it is compared with its share of the fleet's host-days over the
same window (an exact one-sided binomial test, stats.over_representation). The candidates'
p-values are corrected together by Benjamini-Hochberg; a finding needs q <= `fdr`, the support,
and a rate-ratio interval whose lower end exceeds `min_effect`. Findings are then taken
strongest first, and one that adds nothing once a stronger finding is known (tested within the
hosts that have the stronger one) is shown under it (`explained_by`), not as its own finding.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from collector.analytics.exposure import LABEL_PREFIX, Attr
from collector.analytics.stats import benjamini_hochberg, binomial_upper_tail, over_representation_arrays

SECONDS_PER_DAY = 86_400
MAX_SHOWN = 40

__all__ = [
    "CrashingHost",
    "ProfileExposure",
    "Suspect",
    "SuspectParams",
    "SuspectReport",
    "describe_attrs",
    "find_suspects",
    "format_ratio",
    "regression_stratum",
]


@dataclass(frozen=True, slots=True)
class ProfileExposure:
    """Host-days one set of attribute values ran over the window, and its hosts (busiest day).
    `daily_hosts`: its hosts on each day of the window, a host counted once per day over all
    profiles; without it, `hosts` ran every day (a host never changed profile)."""

    attrs: frozenset[Attr]
    host_days: float
    hosts: int
    daily_hosts: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class CrashingHost:
    host: str
    attrs: frozenset[Attr]


@dataclass(frozen=True, slots=True)
class SuspectParams:
    fdr: float = 0.05  # Benjamini-Hochberg level over one cluster's candidates
    min_support: int = 3  # crashing hosts that must have the value(s)
    min_effect: float = 1.5  # the rate ratio's 95 % interval must start above this
    stratum_alpha: float = 0.01  # "adds something within the stronger finding's hosts"
    together: float = 0.01  # exposures within this fraction: the values always occur together


@dataclass(frozen=True, slots=True)
class Suspect:
    attributes: tuple[Attr, ...]
    cluster_hosts: int
    cluster_hosts_with: int
    fleet_hosts: int
    fleet_hosts_with: int
    host_days: float
    host_days_with: float
    rate_ratio: float
    ci_low: float
    ci_high: float  # inf when every crashing host has the value(s)
    p_value: float
    q_value: float
    explained_by: tuple[Attr, ...] = ()
    always_together: bool = False  # explained_by names values that never occur apart
    words: str = ""


@dataclass(frozen=True, slots=True)
class SuspectReport:
    cluster_hosts: int
    candidates: int  # how many value sets were tested
    suspects: tuple[Suspect, ...]  # findings first (ranked), then the explained ones
    summary: str
    hosts: tuple[str, ...] = field(default=())  # the crashing hosts (when few)


def describe_attrs(attrs: Iterable[Attr]) -> str:
    """How a set of values reads in a sentence: "veth loaded and hardware QEMU Standard PC"."""
    parts = []
    for dim, value in attrs:
        if dim == "module":
            parts.append(f"{value} loaded")
        elif dim == "kernel_release":
            parts.append(f"kernel {value}")
        elif dim == "agent_version":
            parts.append(f"agent {value}")
        elif dim.startswith(LABEL_PREFIX):
            parts.append(f"label {dim[len(LABEL_PREFIX) :]}={value}")
        else:
            parts.append(f"{dim} {value}")
    return " and ".join(parts)


def format_ratio(x: float) -> str:
    if math.isinf(x):
        return "∞"
    if math.isnan(x):
        return "?"
    return f"{x:.0f}×" if x >= 10 else f"{x:.1f}×"


def regression_stratum(report: SuspectReport) -> tuple[Attr, ...]:
    """The hosts a regression window compares releases within (docs/analytics.md): those with the
    top finding's values, less any kernel release (within one release there is nothing to
    compare); () when the cluster has no finding or its top finding is a release."""
    if not report.suspects or report.suspects[0].explained_by:
        return ()
    return tuple(a for a in report.suspects[0].attributes if a[0] != "kernel_release")


def _words(s: Suspect, names: dict[tuple[Attr, ...], str]) -> str:
    text = (
        f"{describe_attrs(s.attributes)}: {s.cluster_hosts_with} of {s.cluster_hosts} crashing hosts"
        f" vs {s.fleet_hosts_with} of {s.fleet_hosts} in the fleet; crash rate {format_ratio(s.rate_ratio)}"
        f" (95 % CI {format_ratio(s.ci_low)}–{format_ratio(s.ci_high)}), p = {s.p_value:.2g}"
    )
    if s.explained_by:
        how = "always together with" if s.always_together else "explained by"
        text += f" — {how} {names.get(s.explained_by, describe_attrs(s.explained_by))}"
    return text


class _Fleet:
    """The window's exposure as a profiles × candidate-values matrix, so that every pair's
    exposure is one matrix product and any conjunction one masked sum. Integer seconds: numpy's
    integer products run without BLAS threads, which a busy collector host cannot spare."""

    def __init__(self, profiles: Sequence[ProfileExposure], values: Sequence[Attr]) -> None:
        self.column = {a: i for i, a in enumerate(values)}
        self.seconds = np.array([round(p.host_days * SECONDS_PER_DAY) for p in profiles], dtype=np.int64)
        # Hosts per profile and day: distinct hosts of any set of profiles are a day's sum, and
        # over the window the busiest day's (summing the profiles' own maxima would count a host
        # once per profile it ran).
        days = max((len(p.daily_hosts) for p in profiles), default=0) or 1
        self.daily = np.zeros((len(profiles), days), dtype=np.int64)
        for i, p in enumerate(profiles):
            self.daily[i, : len(p.daily_hosts) or days] = p.daily_hosts or p.hosts
        self.total = float(self.seconds.sum()) / SECONDS_PER_DAY
        self.hosts = int(self.daily.sum(axis=0).max()) if profiles else 0
        self.matrix = np.zeros((len(profiles), len(values)), dtype=np.int64)
        column = self.column
        for i, p in enumerate(profiles):
            cols = [column[a] for a in p.attrs if a in column]
            if cols:
                self.matrix[i, cols] = 1

    def exposure(self, attrs: Iterable[Attr]) -> tuple[float, int]:
        """(host-days, hosts) of the profiles holding every value of `attrs` (candidate values)."""
        cols = [self.column[a] for a in attrs]
        mask = self.matrix[:, cols].all(axis=1)
        return float(self.seconds[mask].sum()) / SECONDS_PER_DAY, int(self.daily[mask].sum(axis=0).max())

    def pair_exposure(self) -> Any:
        """Seconds of every pair of candidate values: a V × V matrix."""
        m = self.matrix
        return (m.T * self.seconds) @ m


class _Crashing:
    """The crashing hosts as their distinct attribute sets, each with how many hosts have it:
    hosts of one configuration class share a set, so a cluster's thousands of hosts are a few
    hundred rows. Every count below is a weighted sum over those rows, equal to counting host by
    host."""

    def __init__(self, hosts: Sequence[CrashingHost]) -> None:
        groups = Counter(h.attrs for h in hosts)
        self.sets = list(groups)
        self.weights = np.array([groups[a] for a in self.sets], dtype=np.int64)
        self.support: Counter[Attr] = Counter()
        for attrs, m in groups.items():
            for a in attrs:
                self.support[a] += m
        self.column: dict[Attr, int] = {}
        self.have = np.zeros((len(self.sets), 0), dtype=np.int64)

    def index(self, column: dict[Attr, int]) -> None:
        """The sets × candidate-values matrix (1 where the set holds the value)."""
        self.column = column
        self.have = np.zeros((len(self.sets), len(column)), dtype=np.int64)
        for row, attrs in enumerate(self.sets):
            cols = [column[a] for a in attrs if a in column]
            if cols:
                self.have[row, cols] = 1

    def pair_counts(self) -> Any:
        """Crashing hosts holding both of every two candidate values (V × V; the diagonal: one)."""
        return (self.have.T * self.weights) @ self.have

    def count(self, attrs: Iterable[Attr]) -> int:
        """Crashing hosts holding every value of `attrs` (candidate values)."""
        cols = [self.column[a] for a in attrs]
        return int(self.weights[self.have[:, cols].all(axis=1)].sum())


def _mutually_exclusive(a: Attr, b: Attr) -> bool:
    """Two values of one single-valued dimension (a host runs one kernel): never a pair."""
    return a[0] == b[0] and a[0] != "module"


def find_suspects(
    hosts: Sequence[CrashingHost],
    profiles: Sequence[ProfileExposure],
    params: SuspectParams = SuspectParams(),
) -> SuspectReport:
    n = len(hosts)
    names = tuple(sorted(h.host for h in hosts))
    if n == 0:
        return SuspectReport(0, 0, (), "no crash of this cluster in the window")
    if n == 1:
        return SuspectReport(
            1, 0, (),
            f"seen on one host only ({names[0]}): a question about that machine, not the fleet"
            " (see crashfleet hosts --suspect)", names,
        )  # fmt: skip
    if n < params.min_support:
        return SuspectReport(
            n,
            0,
            (),
            f"seen on {n} hosts: too few to compare with the fleet (at least {params.min_support})",
            names,
        )
    crashing = _Crashing(hosts)
    values = sorted(a for a, c in crashing.support.items() if c >= params.min_support)
    fleet = _Fleet(profiles, values)
    if fleet.total <= 0:
        return SuspectReport(n, 0, (), "no exposure recorded in the window: nothing to compare with")
    crashing.index(fleet.column)
    pair_counts = crashing.pair_counts()  # crashing hosts with both values (the diagonal: with one)
    pair_days = fleet.pair_exposure()
    upper = np.triu(np.ones((len(values), len(values)), dtype=bool), 1)
    dims = [v[0] for v in values]
    for i, j in zip(*np.nonzero(upper), strict=True):
        if dims[i] == dims[j] and dims[i] != "module":
            upper[i, j] = False  # two values of a single-valued dimension never meet
    families = (
        np.eye(len(values), dtype=bool) & (pair_counts >= params.min_support) & (pair_days > 0),
        upper & (pair_counts >= params.min_support) & (pair_days > 0),
    )
    # Two families, as Socorro corrects per rule length: Benjamini-Hochberg within each at half
    # the level, so that together they stay within `fdr`.
    level = params.fdr / 2
    candidates = 0
    pair_candidates = 1
    significant: list[Suspect] = []
    for family in families:
        rows, cols = np.nonzero(family)
        if len(rows) == 0:
            continue
        candidates += len(rows)
        if family is families[1]:
            pair_candidates = len(rows)
        k, e = pair_counts[rows, cols], pair_days[rows, cols] / SECONDS_PER_DAY
        p, rr, low, high = over_representation_arrays(k, np.full(len(k), n), np.minimum(e / fleet.total, 1.0))
        q = np.asarray(benjamini_hochberg(list(p)))
        for x in np.nonzero((q <= level) & (low > params.min_effect) & (e < fleet.total))[0]:
            i, j = int(rows[x]), int(cols[x])
            attrs = (values[i],) if i == j else (values[i], values[j])
            significant.append(
                Suspect(
                    attrs,
                    n,
                    int(k[x]),
                    fleet.hosts,
                    0,  # fleet_hosts_with: counted below for the combinations shown
                    fleet.total,
                    float(e[x]),
                    float(rr[x]),
                    float(low[x]),
                    float(high[x]),
                    float(p[x]),
                    float(q[x]),
                )
            )
    significant.sort(key=lambda s: (len(s.attributes), s.p_value, -s.ci_low, s.attributes))
    # Values that always travel together make hundreds of significant pairs; the strongest
    # MAX_SHOWN are sorted into findings and explained ones, the rest only counted.
    hidden = max(0, len(significant) - MAX_SHOWN)
    significant = [replace(s, fleet_hosts_with=fleet.exposure(s.attributes)[1]) for s in significant[:MAX_SHOWN]]
    primaries: list[Suspect] = []
    explained: list[Suspect] = []
    for s in significant:
        for p in primaries:
            # A pair's value tested within a stronger finding's hosts is one of many such tests.
            alpha = params.stratum_alpha / (pair_candidates if len(s.attributes) > 1 else 1)
            why = _explained(s, p, crashing, fleet, params, alpha)
            if why is not None:
                explained.append(replace(s, explained_by=p.attributes, always_together=why))
                break
        else:
            if len(s.attributes) == 1 or _interaction(
                s, crashing, fleet, params.stratum_alpha / pair_candidates
            ):
                primaries.append(s)
    texts = {p.attributes: describe_attrs(p.attributes) for p in primaries}
    found = tuple(replace(s, words=_words(s, texts)) for s in [*primaries, *explained])
    if not primaries:
        summary = (
            f"nothing significant: no attribute is over-represented among the {n} crashing hosts"
            f" beyond chance ({candidates} candidates, FDR {params.fdr:.0%})"
        )
    else:
        summary = f"{n} crashing hosts, {len(primaries)} finding(s); first: {found[0].words}"
        if hidden:
            summary += f" ({hidden} weaker significant combinations not shown)"
    return SuspectReport(n, candidates, found, summary, names if n <= 20 else ())


def _explained(
    s: Suspect,
    stronger: Suspect,
    crashing: _Crashing,
    fleet: _Fleet,
    params: SuspectParams,
    alpha: float,
) -> bool | None:
    """None when `s` adds something beyond `stronger`; else whether they always occur together."""
    mine, theirs = set(s.attributes), set(stronger.attributes)
    if mine <= theirs:
        return False  # a value of a stronger pair: shown under the pair
    joint = tuple(sorted(mine | theirs))
    e_joint, _ = fleet.exposure(joint)
    e_theirs = stronger.host_days_with
    if abs(e_joint - e_theirs) <= params.together * e_theirs and abs(e_joint - s.host_days_with) <= (
        params.together * s.host_days_with
    ):
        return True
    inside = crashing.count(theirs)
    if not inside or e_theirs <= 0:
        return None
    p0 = e_joint / e_theirs
    n1 = crashing.count(joint)
    if p0 >= 1.0 or (p0 > 0 and binomial_upper_tail(n1, inside, p0) > alpha):
        return False
    return None


def _interaction(pair: Suspect, crashing: _Crashing, fleet: _Fleet, alpha: float) -> bool:
    """A pair is its own finding only when each value still matters among the hosts with the
    other one (the module matters on that hardware model, and the model with that module)."""
    for given, other in (pair.attributes, pair.attributes[::-1]):
        inside = crashing.count((given,))
        e_given, _ = fleet.exposure((given,))
        if not inside or e_given <= 0:
            return False
        p0 = pair.host_days_with / e_given
        n1 = crashing.count((given, other))
        if p0 >= 1.0 or binomial_upper_tail(n1, inside, p0) > alpha:
            return False
    return True
