"""The JSON objects of the collector's query API, one function per query type.

The HTTP API (collector.http) answers with them and `crashfleet clusters|cluster|crashes|hosts
--json` prints them, so a script can move between the two without reshaping anything. Kept apart
from collector.http so the CLI renders rows without importing the HTTP server, the web page or
prometheus_client.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from wire.model import Breakdown, ClusterDetail, ClusterSummary, CrashSummary, HostSummary

__all__ = ["cluster_detail_json", "cluster_json", "crash_json", "host_json"]


def _iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _breakdown(items: tuple[Breakdown, ...]) -> list[dict[str, Any]]:
    return [{"value": b.value, "count": b.count} for b in items]


def cluster_json(c: ClusterSummary) -> dict[str, Any]:
    return {
        "id": c.id,
        "title": c.title,
        "kind": c.kind,
        "fingerprint": c.fingerprint,
        "count": c.count,
        "hosts": c.hosts,
        "first_seen": _iso(c.first_seen),
        "last_seen": _iso(c.last_seen),
        "kernel_releases": list(c.kernel_releases),
        "hardware": list(c.hardware),
        "common_modules": list(c.common_modules),
        "representative_crash_id": c.representative_crash_id,
        "guilty_frame": c.guilty_frame,
        "daily_counts": list(c.daily_counts),
        # first/last_seen are when the crashes happened; these when they arrived (null: unknown)
        "first_received": _iso(c.first_received) if c.first_received is not None else None,
        "last_received": _iso(c.last_received) if c.last_received is not None else None,
    }


def cluster_detail_json(d: ClusterDetail) -> dict[str, Any]:
    out = cluster_json(d.summary)
    out.update(
        by_host=_breakdown(d.by_host),
        by_kernel_release=_breakdown(d.by_kernel_release),
        by_hardware=_breakdown(d.by_hardware),
        by_module=_breakdown(d.by_module),
        fingerprints=list(d.fingerprints),
        merges=[
            {
                "fingerprint": m.fingerprint, "reason": m.reason, "detail": m.detail,
                "similarity": m.similarity, "fingerprint_version": m.fingerprint_version,
                "joined": _iso(m.joined) if m.joined is not None else None,
            }
            for m in d.merges
        ],
    )  # fmt: skip
    return out


def crash_json(c: CrashSummary) -> dict[str, Any]:
    return {
        "id": c.id,
        "cluster_id": c.cluster_id,
        "host": c.host,
        "title": c.title,
        "kind": c.kind,
        "fingerprint": c.fingerprint,
        "source": c.source,
        "crash_time": _iso(c.crash_time),
        "received_at": _iso(c.received_at),
        "kernel_release": c.kernel_release,
        "hardware": c.hardware,
        "guilty_frame": c.guilty_frame,
    }


def host_json(h: HostSummary) -> dict[str, Any]:
    return {
        "hostname": h.hostname,
        "kernel_release": h.kernel_release,
        "machine": h.machine,
        "hardware": h.hardware,
        "agent_version": h.agent_version,
        "cpus": h.cpus,
        "memory_bytes": h.memory_bytes,
        "modules": list(h.modules),
        "last_heartbeat": _iso(h.last_heartbeat),
        "crashes": h.crashes,
    }
