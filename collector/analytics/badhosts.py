"""Bad hosts: is it the kernel or the machine? (docs/analytics.md, "Bad hosts")

A host's evidence is scored by a table of rules (RULES), each a named test with its points and
its sentence: crashes in several clusters that no other host shares, hardware errors its kernel
logged (machine checks, EDAC, PCIe AER, memory failure), more crashes than its own exposure
explains at the fleet's rate (Poisson upper tail, Benjamini-Hochberg over the hosts that
crashed), and user-space faults across programs when the agent counts them. A host whose score
reaches FLAG_SCORE is a hardware suspect.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from collector.analytics.stats import benjamini_hochberg_padded, poisson_upper_tails

__all__ = ["FLAG_SCORE", "RULES", "BadHost", "HostEvidence", "Rule", "score_hosts"]

FLAG_SCORE = 3.0
# Hardware-error kinds (analysis.hwerrors) whose every occurrence is serious.
SEVERE_KINDS = frozenset({"mce", "edac_ue", "memory_failure", "aer_fatal", "aer_uncorrected"})
EXCESS_Q = 0.01
MANY_FAULTS = 20


@dataclass(frozen=True, slots=True)
class HostEvidence:
    host: str
    crashes: int
    host_days: float  # the host's own exposure
    clusters: int
    unshared_clusters: int  # clusters no other host has
    hardware_errors: Mapping[str, int] = field(default_factory=dict)  # kind -> count
    user_faults: int | None = None  # user-space faults (when the agent reports them)
    excess_q: float = 1.0  # filled in by score_hosts
    expected: float = 0.0  # crashes expected at the fleet rate


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    points: Callable[[HostEvidence], float]  # 0 when the rule does not apply
    words: Callable[[HostEvidence], str]


def _severe(h: HostEvidence) -> int:
    if not h.hardware_errors:  # most hosts: no errors reported
        return 0
    return sum(n for k, n in h.hardware_errors.items() if k in SEVERE_KINDS)


def _corrected(h: HostEvidence) -> int:
    if not h.hardware_errors:
        return 0
    return sum(n for k, n in h.hardware_errors.items() if k not in SEVERE_KINDS)


# Ordered: the sentence of the rule that scored most leads the reason.
RULES: tuple[Rule, ...] = (
    Rule(
        "unshared-clusters",
        lambda h: 1.5 * h.unshared_clusters if h.unshared_clusters >= 2 else 0.0,
        lambda h: f"crashes in {h.unshared_clusters} clusters no other host has",
    ),
    Rule(
        "severe-hardware-errors",
        lambda h: 3.0 + math.log10(_severe(h)) if _severe(h) else 0.0,
        lambda h: f"{_severe(h)} uncorrected hardware errors or machine checks",
    ),
    Rule(
        "corrected-hardware-errors",
        lambda h: min(3.0, 1.0 + math.log10(_corrected(h))) if _corrected(h) else 0.0,
        lambda h: f"{_corrected(h)} corrected hardware errors",
    ),
    Rule(
        "excess-crashes",
        lambda h: min(5.0, -math.log10(max(h.excess_q, 1e-300)) / 2) if h.excess_q < EXCESS_Q else 0.0,
        lambda h: (
            f"{h.crashes} crashes over {h.host_days:,.1f} host-days, {h.expected:.2g} expected at the fleet rate"
        ),
    ),
    Rule(
        "user-space-faults",
        lambda h: 1.0 if h.user_faults is not None and h.user_faults >= MANY_FAULTS else 0.0,
        lambda h: f"{h.user_faults} user-space faults",
    ),
)


@dataclass(frozen=True, slots=True)
class BadHost:
    host: str
    score: float
    flagged: bool
    crashes: int
    clusters: int
    unshared_clusters: int
    hardware_errors: int
    user_faults: int | None
    host_days: float
    expected_crashes: float
    excess_p: float  # BH-adjusted
    reason: str
    rules: tuple[str, ...]


def score_hosts(
    evidence: Sequence[HostEvidence],
    fleet_crashes: int,
    fleet_host_days: float,
    tested: int = 0,
    limit: int | None = None,
) -> list[BadHost]:
    """Every host scored, highest first (the first `limit` when given); `flagged` marks the
    hardware suspects. `tested`: how many hosts crashed in all, when `evidence` holds only some of
    them (the others enter the correction with p = 1, which keeps it valid). Every host is scored
    (the ranking needs them all); the reasons are written only for the hosts returned."""
    rate = fleet_crashes / fleet_host_days if fleet_host_days > 0 else 0.0
    crashed = [i for i, h in enumerate(evidence) if h.crashes > 0]
    ps = poisson_upper_tails(
        [evidence[i].crashes for i in crashed], [rate * evidence[i].host_days for i in crashed]
    )
    qs = [1.0] * len(evidence)
    for i, q in zip(crashed, benjamini_hochberg_padded(ps, tested), strict=True):
        qs[i] = q
    ranked: list[tuple[float, HostEvidence, list[float]]] = []
    for h, q in zip(evidence, qs, strict=True):
        h = HostEvidence(
            h.host, h.crashes, h.host_days, h.clusters, h.unshared_clusters, h.hardware_errors, h.user_faults,
            q, rate * h.host_days,
        )  # fmt: skip
        points = [rule.points(h) for rule in RULES]
        ranked.append((round(sum([pts for pts in points if pts > 0]), 3), h, points))
    ranked.sort(key=lambda item: (-item[0], -item[1].crashes, item[1].host))
    result = []
    for score, h, points in ranked if limit is None else ranked[:limit]:
        hits = [(rule, pts) for rule, pts in zip(RULES, points, strict=True) if pts > 0]
        hits.sort(key=lambda item: -item[1])
        reason = "; ".join(rule.words(h) for rule, _ in hits) or "nothing unusual"
        result.append(
            BadHost(
                h.host, score, score >= FLAG_SCORE, h.crashes, h.clusters, h.unshared_clusters,
                sum(h.hardware_errors.values()), h.user_faults, h.host_days, h.expected, h.excess_q,
                reason, tuple(rule.name for rule, _ in hits),
            )
        )  # fmt: skip
    return result
