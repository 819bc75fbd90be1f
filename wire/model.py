"""The records the wire carries besides crash records: what queries return and what a heartbeat reports.

The collector's stores build them, its gRPC query servicers, HTTP JSON API and web page render
them, and the CLI gets them back from `wire.convert`: they live here, below both, so that the
command line never imports the collector to read its answers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

# Bounds of a host's labels, shared by the agent's config check and the collector's ingest check:
# every label value becomes exposure rows and a `label:KEY` dimension of the fleet analytics.
MAX_LABELS = 32
MAX_LABEL_VALUE_CHARS = 128
LABEL_KEY = re.compile(r"[a-z0-9_]{1,32}")


def label_problem(key: str, value: str) -> str:
    """Why a label cannot be sent ("" when it can)."""
    if not LABEL_KEY.fullmatch(key):
        return "key is not 1-32 of a-z 0-9 _"
    if len(value) > MAX_LABEL_VALUE_CHARS:
        return f"{len(value)} characters, more than {MAX_LABEL_VALUE_CHARS}"
    if not value.isprintable():
        return "value holds control or unprintable characters"
    return ""


@dataclass(frozen=True, slots=True)
class QueryFilter:
    """Filters shared by every list query; None means "any"."""

    since: datetime | None = None
    until: datetime | None = None
    kernel_release: str | None = None
    host: str | None = None
    module: str | None = None
    kind: str | None = None
    hardware: str | None = None
    cluster_id: str | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """Keyset pagination: `token` is opaque to clients; an empty `next_token` means the last page."""

    size: int = 100
    token: str = ""


@dataclass(frozen=True, slots=True)
class Breakdown:
    """How a cluster's crashes spread over one dimension (host, kernel release, hardware, module)."""

    value: str
    count: int


@dataclass(frozen=True, slots=True)
class ClusterSummary:
    id: str
    title: str
    kind: str
    fingerprint: str  # the fingerprint the cluster was created from
    count: int  # genuine occurrences (duplicates of one dump count once)
    hosts: int  # distinct hosts
    first_seen: datetime
    last_seen: datetime
    kernel_releases: tuple[str, ...] = ()
    hardware: tuple[str, ...] = ()
    common_modules: tuple[str, ...] = ()  # modules loaded in every crash of the cluster
    representative_crash_id: str = ""
    guilty_frame: str = ""
    daily_counts: tuple[int, ...] = ()  # last 14 days, oldest first: the sparkline
    # When the first and last crash were received; first_seen/last_seen are when they happened
    # (a backfill or a long outage makes them differ). None from a store or collector without them.
    first_received: datetime | None = None
    last_received: datetime | None = None


@dataclass(frozen=True, slots=True)
class ClusterMerge:
    """One fingerprint of a cluster and why it is there: 'created' (it made the cluster),
    'similar' (same bug class and guilty frame, collector.clustering) or 'secondary' (its
    fingerprint under the previous rule edition was the cluster's: a rule transition)."""

    fingerprint: str
    reason: str
    detail: str = ""  # what matched, in words
    similarity: float = 1.0
    fingerprint_version: str = ""
    joined: datetime | None = None


@dataclass(frozen=True, slots=True)
class ClusterDetail:
    summary: ClusterSummary
    by_host: tuple[Breakdown, ...] = ()
    by_kernel_release: tuple[Breakdown, ...] = ()
    by_hardware: tuple[Breakdown, ...] = ()
    by_module: tuple[Breakdown, ...] = ()
    fingerprints: tuple[str, ...] = ()  # every fingerprint that joined (exact + similar)
    merges: tuple[ClusterMerge, ...] = ()  # the same fingerprints, each with why it joined


@dataclass(frozen=True, slots=True)
class CrashSummary:
    id: str
    cluster_id: str
    host: str
    title: str
    kind: str
    fingerprint: str
    source: str  # the path the crash came from on its host
    crash_time: datetime | None
    received_at: datetime
    kernel_release: str = ""
    hardware: str = ""
    guilty_frame: str = ""


@dataclass(frozen=True, slots=True)
class CrashDetail:
    summary: CrashSummary
    signature_json: str  # the full record as analysis.report renders it (docs/report-schema.md)
    excerpt: str  # the log around the crash, capped
    modules: tuple[str, ...] = ()
    host_facts: dict[str, str] = field(default_factory=dict)
    symbolized_json: str = ""  # source lines added by the symbol store (issue 7), never part of the fingerprint


@dataclass(frozen=True, slots=True)
class HostSummary:
    hostname: str
    kernel_release: str
    machine: str
    hardware: str
    agent_version: str
    cpus: int
    memory_bytes: int
    modules: tuple[str, ...]
    last_heartbeat: datetime | None
    crashes: int


@dataclass(frozen=True, slots=True)
class HostRecord:
    """A host's inventory as a heartbeat reports it."""

    hostname: str
    kernel_release: str = ""
    machine: str = ""
    hardware: str = ""
    agent_version: str = ""
    cpus: int = 0
    memory_bytes: int = 0
    modules: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()  # the agent's [host] labels, sorted by key
    hardware_errors: tuple[tuple[str, int], ...] = ()  # (kind, count) the agent saw since it started
    # (program, count) of the user-space faults the host's kernel reported this boot (analysis.userfaults)
    user_faults: tuple[tuple[str, int], ...] = ()
