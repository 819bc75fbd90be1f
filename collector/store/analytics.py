"""The store side of fleet analytics: exposure written from heartbeats, and the reads that feed
collector.analytics (rates, suspects, regression windows, bad hosts) and triage.

A mixin of SqlStore kept in its own module (migration 0004): the heartbeat path calls
`_exposures_tx` in its transaction; everything else reads. Same SQL for SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from collector.analytics import exposure as exp
from collector.analytics.newclusters import NewCluster
from collector.analytics.triage import Triage, after_crash, apply
from collector.store.base import from_us as _dt
from collector.store.base import to_us as _us

if TYPE_CHECKING:
    # The statistics (scipy, numpy) load at the first analytics query, not when the collector
    # starts: heartbeats and reports never need them.
    from collector.analytics.badhosts import BadHost
    from collector.analytics.rates import RateRow
    from collector.analytics.regression import RegressionWindow
    from collector.analytics.suspects import CrashingHost, SuspectParams, SuspectReport

__all__ = [
    "DEFAULT_WINDOW",
    "EXPOSURE_COLUMNS",
    "EXPOSURE_RETENTION_DAYS",
    "AnalyticsStore",
    "UnknownCluster",
    "Window",
]

log = logging.getLogger(__name__)

DEFAULT_WINDOW = timedelta(days=30)
EXPOSURE_RETENTION_DAYS = 400
PROFILE_CACHE = 100_000  # parsed profiles kept per process (immutable: id = hash of the values)
MAX_IN = 500
SECONDS_PER_DAY = 86_400.0
_DAY_UPSERT = (
    "ON CONFLICT (dim, day, value) DO UPDATE SET seconds = exposure_days.seconds + excluded.seconds,"
    " hosts = exposure_days.hosts + excluded.hosts"
)
_PROFILE_DAY_UPSERT = (
    "ON CONFLICT (day, profile) DO UPDATE SET seconds = exposure_profile_days.seconds + excluded.seconds,"
    " hosts = exposure_profile_days.hosts + excluded.hosts"
)
_CRASH_DIM_COLUMNS = {"kernel_release": "k.kernel_release", "hardware": "k.hardware"}
# What the heartbeat's SELECT reads of host_exposure (aliased e), in _exposures_tx's order.
EXPOSURE_COLUMNS = (
    "e.profile, e.since, e.counted_day, e.counted_profile, e.seconds, e.labels, e.hardware_errors"
)
_CLUSTER_DIMS = frozenset({"kernel_release", "hardware", "module"})  # what cluster_dims counts per crash
_HOST_DIM_COLUMNS = {"machine": "h.machine", "agent_version": "h.agent_version"}

T = TypeVar("T")


class UnknownCluster(KeyError):
    """No cluster has this id."""


class _Tx(Protocol):
    def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None: ...
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


class Window:
    """[since, until) in µs and in UTC days; the last 30 days by default."""

    def __init__(self, since: datetime | None, until: datetime | None, now: datetime | None = None) -> None:
        end = until or now or datetime.now(UTC)
        start = since or end - DEFAULT_WINDOW
        if start >= end:
            raise ValueError(f"empty window: since {start.isoformat()} is not before until {end.isoformat()}")
        self.since_us, self.until_us = _us(start), _us(end)
        self.first_day = self.since_us // exp.DAY_US
        self.end_day = (self.until_us - 1) // exp.DAY_US + 1  # exclusive

    @property
    def since(self) -> datetime:
        return _dt(self.since_us)

    @property
    def until(self) -> datetime:
        return _dt(self.until_us)


def _values(rows: Sequence[Sequence[Any]], width: int, head: str, tail: str, tx: _Tx) -> None:
    """Multi-row `head VALUES (...), (...) tail`, chunked under both databases' parameter limits."""
    group = "(" + ", ".join("?" * width) + ")"
    step = max(1, 8000 // width)
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        tx.run(f"{head} VALUES {', '.join([group] * len(chunk))} {tail}", [v for row in chunk for v in row])


def _add(totals: dict[Any, list[int]], key: Any, seconds: int, hosts: int) -> None:
    total = totals.setdefault(key, [0, 0])
    total[0] += seconds
    total[1] += hosts


def _chunks(items: Sequence[T], size: int = MAX_IN) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class AnalyticsStore:
    """Fleet analytics over the SQL store (mixed into SqlStore)."""

    # Seconds a silent host is still counted after its last heartbeat, and the longest a host's
    # exposure waits before it is credited (collector.analytics.exposure).
    exposure_cap_s: int = exp.DEFAULT_CAP_S
    exposure_flush_s: int = exp.DEFAULT_FLUSH_S

    if TYPE_CHECKING:

        def _read_tx(self) -> AbstractContextManager[Any]: ...
        def _retry_write(self, body: Callable[[Any], T]) -> T: ...

    _profiles_lock = threading.Lock()
    _profiles: ClassVar[dict[str, frozenset[exp.Attr]]] = {}

    # Writes from heartbeats ---------------------------------------------------------------

    def _exposures_tx(self, tx: _Tx, beats: Sequence[tuple[str, Any, int, int | None, Sequence[Any] | None]]) -> None:
        """Account heartbeats of distinct hosts (after their hosts rows were written): per host
        (hostname, facts, time, its previous heartbeat's time, `prior`: its EXPOSURE_COLUMNS as
        the heartbeat's own SELECT read them, None when it has no row yet). A host is written
        only when its stretch is credited or its labels or hardware-error counts changed; each
        table gets one multi-row write for the whole batch."""
        new_profiles: dict[str, str] = {}
        credits: list[exp.Credit] = []
        known: dict[str, frozenset[exp.Attr]] = {}
        rows: list[tuple[Any, ...]] = []
        for hostname, facts, at, last, row in beats:
            attrs, profile = self._facts_profile(facts)
            # Most heartbeats carry neither: skip the encoder on the hot path.
            labels_json = json.dumps(dict(facts.labels), sort_keys=True) if facts.labels else "{}"
            errors_json = (
                json.dumps(dict(facts.hardware_errors), sort_keys=True) if facts.hardware_errors else "{}"
            )
            state = exp.ExposureState(row[0], int(row[1]), int(row[2]), row[3]) if row is not None else None
            new, host_credits = exp.account(state, last, profile, at, self.exposure_cap_s, self.exposure_flush_s)
            if new is None and row is not None and (row[5], row[6]) == (labels_json, errors_json):
                continue
            if state is None or (new is not None and new.profile != state.profile):
                new_profiles[profile] = json.dumps(attrs)
                self._remember_profile(profile, frozenset(attrs))
            if host_credits:
                credits += host_credits
                known[profile] = frozenset(attrs)
            keep = new or state or exp.ExposureState(profile, at)
            seconds = (int(row[4]) if row is not None else 0) + sum(c.seconds for c in host_credits)
            rows.append(
                (hostname, keep.profile, keep.since_us, keep.counted_day, keep.counted_profile, seconds,
                 labels_json, errors_json)
            )  # fmt: skip
        created = max((at for _, _, at, _, _ in beats), default=0)
        tx.many(
            "INSERT INTO exposure_profiles (id, attrs, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            [(profile, attrs_json, created) for profile, attrs_json in sorted(new_profiles.items())],
        )
        if credits:
            self._credit(tx, credits, known)
        tx.many(
            "INSERT INTO host_exposure (hostname, profile, since, counted_day, counted_profile, seconds, labels,"
            " hardware_errors) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hostname) DO UPDATE SET"
            " profile = excluded.profile, since = excluded.since, counted_day = excluded.counted_day,"
            " counted_profile = excluded.counted_profile, seconds = excluded.seconds, labels = excluded.labels,"
            " hardware_errors = excluded.hardware_errors",
            rows,
        )

    # A crashing host's stored inventory -> its attribute values (a pure function, remembered).
    _inventories_lock = threading.Lock()
    _inventories: ClassVar[dict[tuple[str, ...], frozenset[exp.Attr]]] = {}

    _facts_lock = threading.Lock()
    _facts: ClassVar[dict[tuple[Any, ...], tuple[tuple[exp.Attr, ...], str]]] = {}

    @classmethod
    def _facts_profile(cls, facts: Any) -> tuple[tuple[exp.Attr, ...], str]:
        """A heartbeat's attribute values and profile id, remembered per distinct inventory: a
        steady host sends the same one every time, and hashing it costs more than looking it up."""
        key = (
            facts.kernel_release,
            facts.machine,
            facts.hardware,
            facts.agent_version,
            facts.modules,
            facts.labels,
        )
        found = cls._facts.get(key)
        if found is not None:
            return found
        attrs = exp.host_attributes(
            kernel_release=facts.kernel_release, machine=facts.machine, hardware=facts.hardware,
            agent_version=facts.agent_version, modules=facts.modules, labels=dict(facts.labels),
        )  # fmt: skip
        found = (attrs, exp.profile_id(attrs))
        with cls._facts_lock:
            if len(cls._facts) >= PROFILE_CACHE:
                cls._facts.clear()
            cls._facts[key] = found
        return found

    def _credit(self, tx: _Tx, credits: Sequence[exp.Credit], known: dict[str, frozenset[exp.Attr]]) -> None:
        """One multi-row upsert per table for the credits of a batch of heartbeats, summed per
        (day, profile) and per (day, dimension, value) first: one statement may not touch a row
        twice (PostgreSQL), and hosts of one fleet share a handful of profiles."""
        wanted = {c.profile for c in credits} | {c.already_counted for c in credits if c.already_counted}
        attrs = self._profile_attrs(tx, [p for p in wanted if p not in known]) | known
        per_profile: dict[tuple[int, str], list[int]] = {}
        per_value: dict[tuple[int, str, str], list[int]] = {}
        for c in credits:
            mine = attrs.get(c.profile, frozenset())
            before = attrs.get(c.already_counted, frozenset()) if c.already_counted else frozenset()
            # A host is counted once per day, under the first profile credited that day, so that a
            # day's hosts summed over any set of profiles counts each host once.
            _add(per_profile, (c.day, c.profile), c.seconds, 0 if c.already_counted else 1)
            for dim, value in mine:
                _add(per_value, (c.day, dim, value), c.seconds, 0 if (dim, value) in before else 1)
        _values(
            [(*key, seconds, hosts) for key, (seconds, hosts) in sorted(per_profile.items())],
            4,
            "INSERT INTO exposure_profile_days (day, profile, seconds, hosts)",
            _PROFILE_DAY_UPSERT,
            tx,
        )
        _values(
            [(*key, seconds, hosts) for key, (seconds, hosts) in sorted(per_value.items())],
            5,
            "INSERT INTO exposure_days (day, dim, value, seconds, hosts)",
            _DAY_UPSERT,
            tx,
        )

    @classmethod
    def _remember_profile(cls, profile: str, attrs: frozenset[exp.Attr]) -> None:
        with cls._profiles_lock:
            if len(cls._profiles) >= PROFILE_CACHE:
                cls._profiles.clear()
            cls._profiles[profile] = attrs

    def _profile_attrs(self, tx: _Tx, ids: Iterable[str]) -> dict[str, frozenset[exp.Attr]]:
        found: dict[str, frozenset[exp.Attr]] = {}
        missing = []
        for pid in ids:
            cached = self._profiles.get(pid)
            if cached is None:
                missing.append(pid)
            else:
                found[pid] = cached
        for chunk in _chunks(sorted(missing)):
            for pid, text in tx.all(
                f"SELECT id, attrs FROM exposure_profiles WHERE id IN ({_marks(len(chunk))})", chunk
            ):
                attrs = frozenset((str(d), str(v)) for d, v in json.loads(text))
                self._remember_profile(pid, attrs)
                found[pid] = attrs
        return found

    def purge_exposure(self, now: datetime | None = None, keep_days: int = EXPOSURE_RETENTION_DAYS) -> int:
        """Drop exposure older than `keep_days` (the documented retention); returns rows deleted."""
        cutoff = _us(now or datetime.now(UTC)) // exp.DAY_US - keep_days

        def body(tx: _Tx) -> int:
            n = tx.run("DELETE FROM exposure_days WHERE day < ?", (cutoff,))
            n += tx.run("DELETE FROM exposure_profile_days WHERE day < ?", (cutoff,))
            n += tx.run(
                "DELETE FROM exposure_profiles WHERE NOT EXISTS (SELECT 1 FROM exposure_profile_days d"
                " WHERE d.profile = exposure_profiles.id) AND NOT EXISTS (SELECT 1 FROM host_exposure h"
                " WHERE h.profile = exposure_profiles.id OR h.counted_profile = exposure_profiles.id)"
            )
            return n

        deleted = self._retry_write(body)
        log.info("exposure purged rows=%d before_day=%d", deleted, cutoff)
        return deleted

    def hosts_reporting(self, since: datetime) -> dict[str, int]:
        """Hosts whose last heartbeat is at or after `since`, by kernel release."""
        with self._read_tx() as tx:
            rows = tx.all(
                "SELECT kernel_release, COUNT(*) FROM hosts WHERE last_heartbeat >= ? GROUP BY kernel_release",
                (_us(since),),
            )
        return {str(r): int(n) for r, n in rows}

    def new_clusters(self, since: datetime) -> list[NewCluster]:
        """Clusters whose first crash happened at or after `since` (index clusters_first_seen)."""
        with self._read_tx() as tx:
            rows = tx.all("SELECT id, count, first_seen FROM clusters WHERE first_seen >= ?", (_us(since),))
        return [NewCluster(str(cid), int(n), _dt(int(first))) for cid, n, first in rows]

    # Rates -----------------------------------------------------------------------------------

    def rates(
        self, dim: str | None = None, window: Window | None = None, cluster_id: str | None = None
    ) -> list[RateRow]:
        """Crashes per 1,000 host-days over the window: the fleet (dim None) or per value of `dim`."""

        from collector.analytics.rates import rate_rows

        w = window or Window(None, None)
        if dim is not None:
            exp.check_dimension(dim)
        with self._read_tx() as tx:
            if cluster_id:
                self._check_cluster(tx, cluster_id)
            crash_terms = "k.occurred_at >= ? AND k.occurred_at < ?" + (
                " AND k.cluster_id = ?" if cluster_id else ""
            )
            params: list[Any] = [w.since_us, w.until_us] + ([cluster_id] if cluster_id else [])
            if dim is None:
                # Seconds and hosts per day in one pass over the window (exposure_profile_days_window
                # covers it): the fleet's host-days, and its busiest day's hosts.
                days = tx.all(
                    "SELECT SUM(seconds), SUM(hosts) FROM exposure_profile_days WHERE day >= ? AND day < ?"
                    " GROUP BY day",
                    (w.first_day, w.end_day),
                )
                count = tx.one(f"SELECT COUNT(*) FROM crashes k WHERE {crash_terms}", params)
                seconds = sum(int(s) for s, _ in days)
                cells = [
                    (
                        "",
                        "",
                        int(count[0]) if count else 0,
                        max((int(n) for _, n in days), default=0),
                        seconds / SECONDS_PER_DAY,
                    )
                ]
                return rate_rows(cells)
            exposure = {
                value: (int(seconds), int(hosts))
                for value, seconds, hosts in tx.all(
                    "SELECT value, SUM(seconds), MAX(hosts) FROM exposure_days WHERE dim = ? AND day >= ? AND day < ?"
                    " GROUP BY value",
                    (dim, w.first_day, w.end_day),
                )
            }
            crashes = self._crash_counts(tx, dim, crash_terms, params, w, cluster_id)
        cells = []
        for value in sorted(set(exposure) | set(crashes)):
            seconds, hosts = exposure.get(value, (0, 0))
            cells.append((dim, value, crashes.get(value, 0), hosts, seconds / SECONDS_PER_DAY))
        return rate_rows(cells)

    def _crash_counts(
        self, tx: _Tx, dim: str, terms: str, params: list[Any], w: Window, cluster_id: str | None = None
    ) -> dict[str, int]:
        """Crashes per value of `dim`: the crash's own release, hardware and modules; the host's
        machine, agent version and labels."""
        if dim in _CLUSTER_DIMS and self._window_covers(tx, w, cluster_id):
            # Every crash of the clusters concerned lies in the window: the per-cluster counts the
            # ingest path keeps (cluster_dims) are the answer, without reading a crash.
            sql = "SELECT value, SUM(count) FROM cluster_dims WHERE dim = ?"
            args: list[Any] = [dim]
            if cluster_id:
                sql += " AND cluster_id = ?"
                args.append(cluster_id)
            return {str(v): int(n) for v, n in tx.all(sql + " GROUP BY value", args) if v}
        if dim in _CRASH_DIM_COLUMNS:
            column = _CRASH_DIM_COLUMNS[dim]
            sql = f"SELECT {column}, COUNT(*) FROM crashes k WHERE {terms} GROUP BY {column}"
        elif dim == "module":
            sql = (
                f"SELECT m.module, COUNT(*) FROM crashes k JOIN crash_modules m ON m.crash_id = k.id"
                f" WHERE {terms} GROUP BY m.module /* scan: crash_modules has no index by crash, only"
                " when the window cuts a cluster's crashes (docs/analytics.md, Rates) */"
            )
        elif dim in _HOST_DIM_COLUMNS:
            column = _HOST_DIM_COLUMNS[dim]
            sql = (
                f"SELECT {column}, COUNT(*) FROM crashes k JOIN hosts h ON h.hostname = k.host"
                f" WHERE {terms} GROUP BY {column}"
            )
        else:
            key = dim[len(exp.LABEL_PREFIX) :]
            per_host = tx.all(f"SELECT k.host, COUNT(*) FROM crashes k WHERE {terms} GROUP BY k.host", params)
            labels = self._host_labels(tx, [h for h, _ in per_host])
            counts: dict[str, int] = {}
            for host, n in per_host:
                value = labels.get(host, {}).get(key, "")
                if value:
                    counts[value] = counts.get(value, 0) + int(n)
            return counts
        return {str(v): int(n) for v, n in tx.all(sql, params) if v}

    @staticmethod
    def _window_covers(tx: _Tx, w: Window, cluster_id: str | None) -> bool:
        """Whether every crash of the cluster (of all clusters) happened inside the window."""
        if cluster_id:
            row = tx.one("SELECT first_seen, last_seen FROM clusters WHERE id = ?", (cluster_id,))
        else:  # each bound from the end of its index (clusters_first_seen, clusters_recent)
            row = tx.one("SELECT (SELECT MIN(first_seen) FROM clusters), (SELECT MAX(last_seen) FROM clusters)")
        if row is None or row[0] is None:
            return True
        return bool(w.since_us <= int(row[0]) and int(row[1]) < w.until_us)

    @staticmethod
    def _host_labels(tx: _Tx, hosts: Sequence[str]) -> dict[str, dict[str, str]]:
        labels: dict[str, dict[str, str]] = {}
        for chunk in _chunks(sorted(set(hosts))):
            for host, text in tx.all(
                f"SELECT hostname, labels FROM host_exposure WHERE hostname IN ({_marks(len(chunk))})", chunk
            ):
                labels[host] = {str(k): str(v) for k, v in _json_dict(text).items()}
        return labels

    @staticmethod
    def _check_cluster(tx: _Tx, cluster_id: str) -> None:
        if tx.one("SELECT 1 FROM clusters WHERE id = ?", (cluster_id,)) is None:
            raise UnknownCluster(cluster_id)

    # Suspects and regressions ---------------------------------------------------------------

    def suspects(
        self, cluster_id: str, window: Window | None = None, params: SuspectParams | None = None
    ) -> SuspectReport:
        """What is different about the hosts this cluster hit (UnknownCluster when there is none)."""
        from collector.analytics.suspects import ProfileExposure, SuspectParams, find_suspects

        w = window or Window(None, None)
        with self._read_tx() as tx:
            self._check_cluster(tx, cluster_id)
            crashes = tx.all(
                "SELECT host, kernel_release, hardware, modules FROM crashes WHERE cluster_id = ?"
                " AND occurred_at >= ? AND occurred_at < ? ORDER BY occurred_at",
                (cluster_id, w.since_us, w.until_us),
            )
            latest = {host: (release, hardware, modules) for host, release, hardware, modules in crashes}
            hosts = self._crashing_hosts(tx, latest)
            rows = tx.all(
                "SELECT profile, day, seconds, hosts FROM exposure_profile_days WHERE day >= ? AND day < ?",
                (w.first_day, w.end_day),
            )
            attrs = self._profile_attrs(tx, {r[0] for r in rows})
        # Per profile: its seconds, and its hosts on each day (distinct hosts are a day's sum over
        # profiles; over the window, the busiest day's).
        width = w.end_day - w.first_day
        per: dict[str, tuple[list[int], list[int]]] = {}
        for pid, day, seconds, n in rows:
            total, daily = per.setdefault(pid, ([0], [0] * width))
            total[0] += int(seconds)
            daily[int(day) - w.first_day] += int(n)
        profiles = [
            ProfileExposure(attrs[pid], total[0] / SECONDS_PER_DAY, max(daily), tuple(daily))
            for pid, (total, daily) in per.items()
            if pid in attrs
        ]
        return find_suspects(hosts, profiles, params or SuspectParams())

    def _crashing_hosts(self, tx: _Tx, latest: dict[str, tuple[str, str, str]]) -> list[CrashingHost]:
        """Each crashing host with what it ran at its latest crash: the crash's own release,
        hardware and modules; machine, agent version and labels from its last heartbeat."""
        from collector.analytics.suspects import CrashingHost

        facts: dict[str, tuple[str, str, str, str]] = {}
        for chunk in _chunks(sorted(latest)):
            for host, machine, agent, hardware, labels in tx.all(
                "SELECT h.hostname, h.machine, h.agent_version, h.hardware, COALESCE(e.labels, '{}') FROM hosts h"
                f" LEFT JOIN host_exposure e ON e.hostname = h.hostname WHERE h.hostname IN ({_marks(len(chunk))})",
                chunk,
            ):
                facts[host] = (machine, agent, hardware, labels)
        # Hosts of one configuration share their values: each distinct inventory (as stored) is
        # parsed and turned into attributes once per process, and its hosts share one frozenset.
        known = self._inventories
        result = []
        for host, (release, hardware, modules) in sorted(latest.items()):
            machine, agent, host_hardware, labels = facts.get(host, ("", "", "", "{}"))
            key = (release, hardware or host_hardware, modules, machine, agent, labels)
            attrs = known.get(key)
            if attrs is None:
                attrs = frozenset(
                    exp.host_attributes(
                        kernel_release=release, machine=machine, hardware=hardware or host_hardware,
                        agent_version=agent, modules=json.loads(modules),
                        labels={str(k): str(v) for k, v in _json_dict(labels).items()},
                    )
                )  # fmt: skip
                with self._inventories_lock:
                    if len(known) >= PROFILE_CACHE:
                        known.clear()
                    known[key] = attrs
            result.append(CrashingHost(host, attrs))
        return result

    def regression(
        self, cluster_id: str, window: Window | None = None, stratum: tuple[exp.Attr, ...] = ()
    ) -> RegressionWindow:
        """The releases this cluster was seen on, with exposure, and its regression window; with
        `stratum` (the top suspect's values), counted among the hosts with them only."""
        from collector.analytics.regression import regression_window

        w = window or Window(None, None)
        with self._read_tx() as tx:
            self._check_cluster(tx, cluster_id)
            if stratum:
                cells = self._stratum_cells(tx, cluster_id, w, frozenset(stratum))
                return self._window_of(cells, lambda c: regression_window(c, stratum=stratum))
            counts = dict(
                tx.all(
                    "SELECT kernel_release, COUNT(*) FROM crashes WHERE cluster_id = ? AND occurred_at >= ?"
                    " AND occurred_at < ? AND kernel_release <> '' GROUP BY kernel_release",
                    (cluster_id, w.since_us, w.until_us),
                )
            )
            exposure = dict(
                tx.all(
                    "SELECT value, SUM(seconds) FROM exposure_days WHERE dim = 'kernel_release' AND day >= ?"
                    " AND day < ? GROUP BY value",
                    (w.first_day, w.end_day),
                )
            )
        cells = []
        for release in set(counts) | set(exposure):
            cells.append(
                (str(release), int(counts.get(release, 0)), int(exposure.get(release, 0)) / SECONDS_PER_DAY)
            )
        return self._window_of(cells, regression_window)

    @staticmethod
    def _window_of(
        cells: list[tuple[str, int, float]], window: Callable[[list[tuple[str, int, float]]], RegressionWindow]
    ) -> RegressionWindow:
        from collector.analytics.releases import ReleaseError

        try:
            return window(cells)
        except ReleaseError:
            # A release no ordering accepts (a custom build name): order what can be ordered.
            good = []
            for cell in cells:
                try:
                    window([cell])
                except ReleaseError:
                    continue
                good.append(cell)
            return window(good)

    def _stratum_cells(
        self, tx: _Tx, cluster_id: str, w: Window, stratum: frozenset[exp.Attr]
    ) -> list[tuple[str, int, float]]:
        """(release, crashes of hosts with every value of `stratum`, those hosts' host-days) for
        every release of the window. A crash is the stratum's when what its host ran at the crash
        holds the values (as suspects reads it: the crash's release, hardware and modules, the
        host's machine, agent version and labels)."""
        counts: dict[str, int] = {}
        for release, hardware, modules, machine, agent, host_hardware, labels in tx.all(
            "SELECT k.kernel_release, k.hardware, k.modules, h.machine, h.agent_version, h.hardware,"
            " COALESCE(e.labels, '{}') FROM crashes k LEFT JOIN hosts h ON h.hostname = k.host"
            " LEFT JOIN host_exposure e ON e.hostname = k.host WHERE k.cluster_id = ? AND k.occurred_at >= ?"
            " AND k.occurred_at < ? AND k.kernel_release <> ''",
            (cluster_id, w.since_us, w.until_us),
        ):
            crash_attrs = exp.host_attributes(
                kernel_release=release, machine=machine or "", hardware=hardware or host_hardware or "",
                agent_version=agent or "", modules=json.loads(modules),
                labels={str(k): str(v) for k, v in _json_dict(labels).items()},
            )  # fmt: skip
            if stratum <= set(crash_attrs):
                counts[str(release)] = counts.get(str(release), 0) + 1
        rows = tx.all(
            "SELECT profile, SUM(seconds) FROM exposure_profile_days WHERE day >= ? AND day < ? GROUP BY profile",
            (w.first_day, w.end_day),
        )
        profiles = self._profile_attrs(tx, [r[0] for r in rows])
        seconds: dict[str, int] = {}
        for pid, s in rows:
            attrs = profiles.get(pid, frozenset())
            for dim, release in attrs:
                if dim == "kernel_release":
                    seconds[release] = seconds.get(release, 0) + (int(s) if stratum <= attrs else 0)
        return [
            (release, counts.get(release, 0), seconds.get(release, 0) / SECONDS_PER_DAY)
            for release in set(counts) | set(seconds)
        ]

    # Bad hosts -------------------------------------------------------------------------------

    def bad_hosts(self, limit: int = 100, user_faults: dict[str, int] | None = None) -> list[BadHost]:
        """Hosts scored as hardware suspects (collector.analytics.badhosts), highest score first,
        over everything stored (lifetime crashes against lifetime exposure). Only hosts with some
        evidence are scored; the others count in the correction as p = 1. `user_faults` (host ->
        user-space faults this boot) defaults to what the hosts' last heartbeats reported."""
        from collector.analytics.badhosts import HostEvidence, score_hosts

        with self._read_tx() as tx:
            crashed = tx.one("SELECT COUNT(*) FROM hosts WHERE crashes > 0")
            total_crashes = tx.one("SELECT COALESCE(SUM(count), 0) FROM clusters /* scan: a row per bug */")
            total_seconds = tx.one("SELECT COALESCE(SUM(seconds), 0) FROM exposure_profile_days")
            # The host of each cluster seen on a single host: driven from clusters (a row per bug)
            # into their breakdown rows by primary key, not from the host rows of every cluster
            # (`dim || ''` keeps SQLite off the (dim, value) index, which it otherwise walks whole).
            unshared = dict(
                tx.all(
                    "SELECT d.value, COUNT(*) FROM cluster_dims d WHERE d.dim || '' = 'host' AND d.cluster_id IN"
                    " (SELECT c.id FROM clusters c WHERE c.hosts = 1 /* scan: a row per bug, not per crash */)"
                    " GROUP BY d.value"
                )
            )
            errors = {
                host: {str(k): int(v) for k, v in _json_dict(text).items()}
                for host, text in tx.all(
                    "SELECT hostname, hardware_errors FROM host_exposure WHERE hardware_errors <> '{}'"
                )
            }
            if user_faults is None:  # the counts the agents' heartbeats carry (HostFacts.user_faults)
                user_faults = {
                    str(host): int(n)
                    for host, n in tx.all(
                        "SELECT hostname, SUM(faults) FROM host_user_faults GROUP BY hostname"
                        " /* scan: only hosts whose kernel reported user-space faults have rows */"
                    )
                }
            # Hosts with several crashes, with their exposure, in one indexed read.
            crashes: dict[str, int] = {}
            seconds: dict[str, int] = {}
            # (The hosts' clusters are counted after scoring, for the hosts returned only.)
            evidence_sql = (
                "SELECT h.hostname, h.crashes, COALESCE(e.seconds, 0) FROM hosts h"
                " LEFT JOIN host_exposure e ON e.hostname = h.hostname WHERE "
            )

            def take(rows: list[tuple[Any, ...]]) -> None:
                for host, n, s in rows:
                    crashes[host], seconds[host] = int(n), int(s)

            take(tx.all(evidence_sql + "h.crashes >= 3"))
            others = sorted(
                ({h for h, n in unshared.items() if n >= 2} | set(errors) | set(user_faults or {}))
                - set(crashes)
            )
            for chunk in _chunks(others):
                take(tx.all(evidence_sql + f"h.hostname IN ({_marks(len(chunk))})", chunk))
            candidates = sorted(set(crashes) | set(others))
            # The clusters of each host do not enter the score: counted for the hosts shown only.
            evidence = [
                HostEvidence(
                    h,
                    crashes.get(h, 0),
                    seconds.get(h, 0) / SECONDS_PER_DAY,
                    0,
                    int(unshared.get(h, 0)),
                    errors.get(h, {}),
                    (user_faults or {}).get(h),
                )
                for h in candidates
            ]
            scored = score_hosts(
                evidence,
                int(total_crashes[0]) if total_crashes else 0,
                (int(total_seconds[0]) if total_seconds else 0) / SECONDS_PER_DAY,
                tested=int(crashed[0]) if crashed else 0,
                limit=max(1, limit),
            )
            clusters: dict[str, int] = {}
            for chunk in _chunks([b.host for b in scored]):
                clusters.update(
                    tx.all(
                        "SELECT value, COUNT(*) FROM cluster_dims WHERE dim = 'host'"
                        f" AND value IN ({_marks(len(chunk))}) GROUP BY value",
                        list(chunk),
                    )
                )
        return [dataclasses.replace(b, clusters=int(clusters.get(b.host, 0))) for b in scored]

    # Triage ----------------------------------------------------------------------------------

    def get_triage(self, cluster_id: str) -> Triage:
        with self._read_tx() as tx:
            self._check_cluster(tx, cluster_id)
            row = tx.one(
                "SELECT state, fixed_in, note, link, updated_at, regressed_release FROM cluster_triage WHERE cluster_id = ?",
                (cluster_id,),
            )
        return _triage(cluster_id, row)

    def triage_states(self, cluster_ids: Sequence[str]) -> dict[str, Triage]:
        """The triage of each listed cluster that has one (the cluster list's badges); clusters
        never triaged are absent (state new). Primary-key lookups, MAX_IN ids a statement."""
        found: dict[str, Triage] = {}
        with self._read_tx() as tx:
            for chunk in _chunks(sorted(set(cluster_ids))):
                for cluster_id, *rest in tx.all(
                    "SELECT cluster_id, state, fixed_in, note, link, updated_at, regressed_release"
                    f" FROM cluster_triage WHERE cluster_id IN ({_marks(len(chunk))})",
                    chunk,
                ):
                    found[str(cluster_id)] = _triage(str(cluster_id), tuple(rest))
        return found

    def set_triage(
        self, cluster_id: str, action: str, fixed_in: str = "", note: str | None = None, link: str | None = None,
        at: datetime | None = None,
    ) -> Triage:  # fmt: skip
        """Apply a triage action (TriageError for bad input, UnknownCluster for a bad id)."""
        when = at or datetime.now(UTC)

        def body(tx: _Tx) -> Triage:
            self._check_cluster(tx, cluster_id)
            row = tx.one(
                "SELECT state, fixed_in, note, link, updated_at, regressed_release FROM cluster_triage WHERE cluster_id = ?",
                (cluster_id,),
            )
            new = apply(_triage(cluster_id, row), action, when, fixed_in=fixed_in, note=note, link=link)
            _write_triage(tx, new)
            return new

        result = self._retry_write(body)
        log.info("cluster triaged cluster=%s state=%s fixed_in=%s", cluster_id, result.state, result.fixed_in)
        return result

    def fixed_clusters(self) -> dict[str, str]:
        """Fixed clusters and their release: what the ingest path checks each crash against."""
        with self._read_tx() as tx:
            return {
                c: r
                for c, r in tx.all("SELECT cluster_id, fixed_in FROM cluster_triage WHERE state = 'fixed'")
            }

    def count_regressed(self) -> int:
        with self._read_tx() as tx:
            row = tx.one("SELECT COUNT(*) FROM cluster_triage WHERE state = 'regressed'")
        return int(row[0]) if row else 0

    def mark_regressed(self, cluster_id: str, release: str, at: datetime | None = None) -> Triage | None:
        """Reopen a fixed cluster that crashed on its fixed release or later; None when it was not."""
        when = at or datetime.now(UTC)

        def body(tx: _Tx) -> Triage | None:
            row = tx.one(
                "SELECT state, fixed_in, note, link, updated_at, regressed_release FROM cluster_triage WHERE cluster_id = ?",
                (cluster_id,),
            )
            new = after_crash(_triage(cluster_id, row), release, when)
            if new is not None:
                _write_triage(tx, new)
            return new

        result = self._retry_write(body)
        if result is not None:
            log.warning(
                "cluster regressed cluster=%s release=%s fixed_in=%s", cluster_id, release, result.fixed_in
            )
        return result


def _triage(cluster_id: str, row: tuple[Any, ...] | None) -> Triage:
    if row is None:
        return Triage(cluster_id)
    state, fixed_in, note, link, updated, regressed = row
    return Triage(cluster_id, state, fixed_in, note, link, _dt(int(updated)), regressed)


def _write_triage(tx: _Tx, t: Triage) -> None:
    tx.run(
        "INSERT INTO cluster_triage (cluster_id, state, fixed_in, note, link, updated_at, regressed_release)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (cluster_id) DO UPDATE SET state = excluded.state,"
        " fixed_in = excluded.fixed_in, note = excluded.note, link = excluded.link,"
        " updated_at = excluded.updated_at, regressed_release = excluded.regressed_release",
        (
            t.cluster_id,
            t.state,
            t.fixed_in,
            t.note,
            t.link,
            _us(t.updated_at or datetime.now(UTC)),
            t.regressed_release,
        ),
    )
