"""Seeded simulated fleets where the truth is known: the planted-signal tests and the benchmark.

A fleet of hosts, each with a hardware model, a kernel release, a role label and a set of
modules, exposed for part of a window; clusters crash hosts as Poisson processes over their
exposure. Optional planted signals: a module that multiplies one cluster's rate (and is more
common on one hardware model, so that the model looks suspicious too), a bad host with EDAC errors
crashing alone in several clusters, a cluster that appears with one release, one that appears with
that release only on the hosts with the module (a regression within them), and a confounded one:
only hosts with the module crash, and they all run the newest release (no regression to claim).
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

from collector.analytics.exposure import Attr, host_attributes
from collector.analytics.suspects import CrashingHost, ProfileExposure

__all__ = ["RELEASES", "SimFleet", "SimHost", "simulate_fleet"]

RELEASES = ("6.1.0-9-amd64", "6.1.0-53-amd64", "6.1.0-55-amd64", "6.1.0-56-amd64")
HARDWARE = ("Dell R640", "Dell R750", "HPE DL360 Gen10", "Supermicro X11", "QEMU Standard PC")
COMMON_MODULES = tuple(f"mod{i:02d}" for i in range(30))
PLANTED_MODULE = "veth"
PLANTED_HARDWARE = "Dell R750"  # veth is more common there: the confounder
BAD_HOST = "host-bad"


@dataclass(frozen=True, slots=True)
class SimHost:
    name: str
    attrs: frozenset[Attr]
    release: str
    host_days: float
    hardware_errors: dict[str, int] = field(default_factory=dict)


@dataclass
class SimFleet:
    hosts: list[SimHost]
    crashes: list[tuple[str, str]]  # (host, cluster)
    planted_cluster: str = ""
    regression_cluster: str = ""
    regression_release: str = ""
    stratum_regression_cluster: str = ""  # veth hosts crash on the newest release only
    confounded_cluster: str = ""  # veth hosts crash on any release; they run only the newest

    def profiles(self) -> list[ProfileExposure]:
        by: dict[frozenset[Attr], list[float]] = defaultdict(lambda: [0.0, 0.0])
        for h in self.hosts:
            by[h.attrs][0] += h.host_days
            by[h.attrs][1] += 1
        return [ProfileExposure(a, e, int(n)) for a, (e, n) in by.items()]

    def crashing_hosts(self, cluster: str) -> list[CrashingHost]:
        names = sorted({h for h, c in self.crashes if c == cluster})
        attrs = {h.name: h.attrs for h in self.hosts}
        return [CrashingHost(n, attrs[n]) for n in names]

    def clusters(self) -> list[str]:
        return sorted({c for _, c in self.crashes})

    def release_cells(self, cluster: str, stratum: tuple[Attr, ...] = ()) -> list[tuple[str, int, float]]:
        """(release, crashes, host-days) of the hosts with every value of `stratum` (all hosts)."""
        exposure: dict[str, float] = {r: 0.0 for r in {h.release for h in self.hosts}}
        inside = {h.name: h.release for h in self.hosts if set(stratum) <= h.attrs}
        for h in self.hosts:
            if h.name in inside:
                exposure[h.release] += h.host_days
        counts: dict[str, int] = defaultdict(int)
        for host, c in self.crashes:
            if c == cluster and host in inside:
                counts[inside[host]] += 1
        return [(r, counts[r], e) for r, e in exposure.items()]


def _poisson(rng: random.Random, mu: float) -> int:
    """Knuth's method for the small means the simulator uses, else a normal approximation."""
    if mu <= 0:
        return 0
    if mu > 30:
        return max(0, round(rng.gauss(mu, mu**0.5)))
    limit, k, p = pow(2.718281828459045, -mu), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def simulate_fleet(
    seed: int,
    *,
    hosts: int = 500,
    days: int = 30,
    clusters: int = 20,
    hosts_per_cluster: float = 8.0,
    planted_factor: float = 0.0,
    bad_host: bool = False,
    regression: bool = False,
    stratum_regression: bool = False,
    confounded: bool = False,
) -> SimFleet:
    """A fleet; `planted_factor` > 0 plants PLANTED_MODULE multiplying cluster "c-planted"'s rate."""
    rng = random.Random(seed)
    fleet_hosts: list[SimHost] = []
    prevalence = [rng.uniform(0.1, 0.95) for _ in COMMON_MODULES]
    for i in range(hosts):
        hardware = rng.choice(HARDWARE)
        veth = rng.random() < (0.35 if hardware == PLANTED_HARDWARE else 0.04)
        modules = [m for m, p in zip(COMMON_MODULES, prevalence, strict=True) if rng.random() < p]
        if veth:
            modules.append(PLANTED_MODULE)
        release = rng.choices(RELEASES, weights=(1, 2, 3, 4))[0]
        if confounded and veth:
            release = RELEASES[-1]  # the hosts with the module came installed with the newest release
        attrs = host_attributes(
            kernel_release=release, machine="x86_64", hardware=hardware, agent_version="0.1",
            modules=modules, labels={"role": rng.choice(("ci", "web", "db"))},
        )  # fmt: skip
        fleet_hosts.append(SimHost(f"host{i:05d}", frozenset(attrs), release, rng.uniform(days / 2, days)))
    total = sum(h.host_days for h in fleet_hosts)
    crashes: list[tuple[str, str]] = []
    fleet = SimFleet(fleet_hosts, crashes)
    for c in range(clusters):
        name = f"c{c:03d}"
        rate = rng.uniform(0.5, 1.5) * hosts_per_cluster / total
        crashes += [(h.name, name) for h in fleet_hosts for _ in range(_poisson(rng, rate * h.host_days))]
    if planted_factor > 0:
        fleet.planted_cluster = "c-planted"
        rate = 5.0 / total
        for h in fleet_hosts:
            factor = planted_factor if ("module", PLANTED_MODULE) in h.attrs else 1.0
            crashes += [(h.name, "c-planted")] * _poisson(rng, rate * factor * h.host_days)
    if regression:
        fleet.regression_cluster, fleet.regression_release = "c-regression", RELEASES[-1]
        rate = 6 * hosts_per_cluster / total
        for h in fleet_hosts:
            if h.release == RELEASES[-1]:
                crashes += [(h.name, "c-regression")] * _poisson(rng, rate * h.host_days)
    veth_hosts = [h for h in fleet_hosts if ("module", PLANTED_MODULE) in h.attrs]
    if stratum_regression:
        fleet.stratum_regression_cluster = "c-stratum-regression"
        rate = 370 / total
        for h in veth_hosts:
            if h.release == RELEASES[-1]:
                crashes += [(h.name, "c-stratum-regression")] * _poisson(rng, rate * h.host_days)
    if confounded:
        fleet.confounded_cluster = "c-confounded"
        rate = 150 / total
        for h in veth_hosts:
            crashes += [(h.name, "c-confounded")] * _poisson(rng, rate * h.host_days)
    if bad_host:
        host = fleet_hosts[0] = SimHost(
            BAD_HOST, fleet_hosts[0].attrs, fleet_hosts[0].release, fleet_hosts[0].host_days, {"edac_ce": 240}
        )
        crashes += [(host.name, f"c-bad{j}") for j in range(4)]
    crashes.sort()
    return fleet
