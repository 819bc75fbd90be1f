"""An in-memory StoreReader for the HTTP/web tests: filters and offset pagination over lists.

It lets the HTTP layer be tested without a database; the end-to-end tests use the real SQLite
store. Page tokens are "o<offset>"; anything else is rejected like a real store rejects them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from collector.store.base import InvalidPageToken
from wire.model import (
    Breakdown,
    ClusterDetail,
    ClusterSummary,
    CrashDetail,
    CrashSummary,
    HostSummary,
    Page,
    QueryFilter,
)

T = TypeVar("T")

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _paginate(rows: Sequence[T], page: Page) -> tuple[list[T], str]:
    offset = 0
    if page.token:
        if not page.token.startswith("o") or not page.token[1:].isdigit():
            raise InvalidPageToken(f"bad page token {page.token!r}")
        offset = int(page.token[1:])
    chunk = list(rows[offset : offset + page.size])
    nxt = f"o{offset + page.size}" if offset + page.size < len(rows) else ""
    return chunk, nxt


@dataclass
class MemStore:
    clusters: list[ClusterDetail] = field(default_factory=list)
    crashes: list[CrashDetail] = field(default_factory=list)
    hosts: list[HostSummary] = field(default_factory=list)
    calls: list[tuple[str, QueryFilter | str, Page | None]] = field(default_factory=list)
    fail: bool = False
    threads: set[int] = field(default_factory=set)  # threads that called in (pool reuse)

    def _check(self) -> None:
        self.threads.add(threading.get_ident())
        if self.fail:
            raise RuntimeError("database is locked")

    def list_clusters(self, flt: QueryFilter, page: Page) -> tuple[list[ClusterSummary], str]:
        self._check()
        self.calls.append(("list_clusters", flt, page))
        rows = [d.summary for d in self.clusters]
        if flt.kernel_release:
            rows = [r for r in rows if flt.kernel_release in r.kernel_releases]
        if flt.kind:
            rows = [r for r in rows if r.kind == flt.kind]
        if flt.since:
            rows = [r for r in rows if r.last_seen >= flt.since]
        if flt.host:
            ids = {c.summary.cluster_id for c in self.crashes if c.summary.host == flt.host}
            rows = [r for r in rows if r.id in ids]
        rows.sort(key=lambda r: r.last_seen, reverse=True)
        return _paginate(rows, page)

    def get_cluster(self, cluster_id: str) -> ClusterDetail | None:
        self._check()
        self.calls.append(("get_cluster", cluster_id, None))
        return next((d for d in self.clusters if d.summary.id == cluster_id), None)

    def list_crashes(self, flt: QueryFilter, page: Page) -> tuple[list[CrashSummary], str]:
        self._check()
        self.calls.append(("list_crashes", flt, page))
        rows = [d.summary for d in self.crashes]
        if flt.cluster_id:
            rows = [r for r in rows if r.cluster_id == flt.cluster_id]
        if flt.host:
            rows = [r for r in rows if r.host == flt.host]
        rows.sort(key=lambda r: r.received_at, reverse=True)
        return _paginate(rows, page)

    def get_crash(self, crash_id: str) -> CrashDetail | None:
        self._check()
        self.calls.append(("get_crash", crash_id, None))
        return next((d for d in self.crashes if d.summary.id == crash_id), None)

    def list_hosts(self, flt: QueryFilter, page: Page) -> tuple[list[HostSummary], str]:
        self._check()
        self.calls.append(("list_hosts", flt, page))
        return _paginate(sorted(self.hosts, key=lambda h: h.hostname), page)

    def _count(self, listing: Any, flt: QueryFilter | None) -> int:
        rows, _ = listing(flt or QueryFilter(), Page(size=10**9))
        self.calls.pop()  # a count is not a listing the tests look for
        return len(rows)

    def count_clusters(self, flt: QueryFilter | None = None) -> int:
        return self._count(self.list_clusters, flt)

    def count_crashes(self, flt: QueryFilter | None = None) -> int:
        return self._count(self.list_crashes, flt)

    def count_hosts(self, flt: QueryFilter | None = None) -> int:
        return self._count(self.list_hosts, flt)


HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'

SIGNATURE = {
    "crashes": [
        {
            "kind": "null-deref",
            "title": "BUG: kernel NULL pointer dereference in e1000_clean_rx_irq",
            "fault_address": 0x60,
            "rip": {"function": "e1000_clean_rx_irq", "offset": 0x1A2, "size": 0x6C0, "module": "e1000e"},
            "code": {
                "instruction": "cmp qword ptr [r12 + 0x60], rax",
                "bad_register": "r12",
                "bad_register_value": 0,
                "access": "NULL pointer + 0x60 through r12",
            },
            "fingerprint": {"value": "fp-e1000"},
        }
    ]
}


def sample_store() -> MemStore:
    """Three clusters, one with a hostile title/host/module, plus crashes and hosts."""
    store = MemStore()
    specs = [
        ("c-e1000", "BUG: kernel NULL pointer dereference in e1000_clean_rx_irq", "null-deref", 9, 3, 1),
        ("c-ext4", "WARNING in ext4_da_update_reserve_space", "warning", 2, 1, 3),
        ("c-evil", f"general protection fault in {HOSTILE}", "general-protection-fault", 1, 1, 6),
    ]
    for cid, title, kind, count, hosts, age_days in specs:
        last = NOW - timedelta(days=age_days)
        daily = tuple((i * 7 + count) % 4 if i % 3 else 0 for i in range(14))
        summary = ClusterSummary(
            id=cid,
            title=title,
            kind=kind,
            fingerprint=f"fp-{cid[2:]}",
            count=count,
            hosts=hosts,
            first_seen=last - timedelta(days=10),
            last_seen=last,
            kernel_releases=("6.1.0-18-amd64", "6.1.0-17-amd64") if cid == "c-e1000" else ("6.1.0-18-amd64",),
            hardware=("QEMU Standard PC (i440FX + PIIX, 1996)",),
            common_modules=("e1000e",) if cid == "c-e1000" else (HOSTILE,) if cid == "c-evil" else (),
            representative_crash_id=f"{cid}-crash-0",
            guilty_frame="e1000_clean_rx_irq" if cid == "c-e1000" else "",
            daily_counts=daily,
        )
        store.clusters.append(
            ClusterDetail(
                summary=summary,
                by_host=(Breakdown("web-1", 5), Breakdown("web-2", 3), Breakdown(HOSTILE, 1)),
                by_kernel_release=(Breakdown("6.1.0-18-amd64", count),),
                by_hardware=(Breakdown("QEMU Standard PC (i440FX + PIIX, 1996)", count),),
                by_module=(Breakdown("e1000e", count),),
                fingerprints=(summary.fingerprint,),
            )
        )
        for i in range(min(count, 3)):
            crash = CrashSummary(
                id=f"{cid}-crash-{i}",
                cluster_id=cid,
                host=HOSTILE if cid == "c-evil" else f"web-{i + 1}",
                title=title,
                kind=kind,
                fingerprint=summary.fingerprint,
                source=f"/var/crash/2026112{i}/dmesg.txt",
                crash_time=last - timedelta(hours=i + 1),
                received_at=last - timedelta(hours=i),
                kernel_release="6.1.0-18-amd64",
                hardware="QEMU Standard PC (i440FX + PIIX, 1996)",
                guilty_frame=summary.guilty_frame,
            )
            signature = (
                json.dumps(SIGNATURE) if cid == "c-e1000" else json.dumps({"crashes": [{"title": title}]})
            )
            store.crashes.append(
                CrashDetail(
                    summary=crash,
                    signature_json=signature,
                    excerpt=f"[  12.3] {title}\n[  12.4] RIP: 0010:{HOSTILE}+0x1a/0x60\n",
                    modules=("e1000e", "ext4", HOSTILE),
                    host_facts={"cpus": "4", "bios": HOSTILE},
                )
            )
    store.hosts = [
        HostSummary(
            hostname=name,
            kernel_release="6.1.0-18-amd64",
            machine="x86_64",
            hardware="QEMU Standard PC (i440FX + PIIX, 1996)",
            agent_version="0.1.0",
            cpus=4,
            memory_bytes=8 << 30,
            modules=("e1000e",),
            last_heartbeat=NOW,
            crashes=n,
        )
        for name, n in (("web-1", 3), ("web-2", 1), (HOSTILE, 1))
    ]
    return store


def with_title(store: MemStore, cluster_id: str, title: str) -> None:
    """Replace one cluster's title (for escaping tests)."""
    store.clusters = [
        replace(d, summary=replace(d.summary, title=title)) if d.summary.id == cluster_id else d
        for d in store.clusters
    ]
