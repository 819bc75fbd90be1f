"""The store interface: StoreReader (collector.model) plus the write side the collector needs.

Both implementations (SQLite, PostgreSQL) share one schema and one body of SQL
(`collector.store.sql`); only connection handling and the few dialect differences live in
their own modules. Every write is one transaction: a report is acknowledged only after commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from collector.model import StoreReader

__all__ = [
    "BuildCrash",
    "ClusterMove",
    "HostRecord",
    "IngestResult",
    "InvalidPageToken",
    "NewCrash",
    "QueuedIngest",
    "ReclusterReport",
    "Resign",
    "Store",
    "StoreError",
    "StoredSignature",
]


class StoreError(Exception):
    """The store cannot do what was asked (unreachable database, schema newer than this code ...)."""


class InvalidPageToken(ValueError):
    """A page token that this store did not hand out (or that a client edited)."""


@dataclass(frozen=True, slots=True)
class NewCrash:
    """One validated crash report, ready to store; the ingest path builds it."""

    idempotency_key: str
    host: str
    title: str
    kind: str
    normalized_reason: str
    guilty_frame: str
    fingerprint: str
    fingerprint_version: str
    frames: tuple[str, ...]  # the fingerprint frames, guilty first: what similarity compares
    source: str
    crash_time: datetime | None
    received_at: datetime
    kernel_release: str
    hardware: str
    modules: tuple[str, ...]
    signature_json: str
    excerpt: str
    host_facts: dict[str, str] = field(default_factory=dict)
    build_id: str = ""  # the kernel's BUILD-ID from its dump: which uploaded symbol index fits it
    symbolized_json: str = ""  # the record with source lines, when the collector had the index


@dataclass(frozen=True, slots=True)
class IngestResult:
    crash_id: str
    cluster_id: str
    duplicate: bool
    cluster_created: bool = False
    cluster_new_host: bool = False  # the cluster had not seen this host before
    similarity: float = 1.0  # 1.0 for an exact fingerprint match or a new cluster


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


@dataclass(frozen=True, slots=True)
class StoredSignature:
    """What recluster reads back of one stored crash."""

    crash_id: str
    signature_json: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class BuildCrash:
    """What retroactive symbolization reads back of one stored crash of a kernel build."""

    crash_id: str
    signature_json: str
    kernel_offset: int | None  # the KASLR slide its dump reported, for raw-address frames


@dataclass(frozen=True, slots=True)
class Resign:
    """The fingerprint a re-signing pass computed for a stored crash."""

    fingerprint: str
    fingerprint_version: str
    kind: str
    normalized_reason: str
    frames: tuple[str, ...]
    title: str
    guilty_frame: str
    signature_json: str = ""  # the re-signed signature to store in its place; "" keeps the stored text


@dataclass(frozen=True, slots=True)
class ClusterMove:
    """Crashes that left one cluster for another in a recluster run."""

    old_cluster_id: str
    old_title: str
    new_cluster_id: str
    new_title: str
    crashes: int


@dataclass(frozen=True, slots=True)
class ReclusterReport:
    crashes: int
    clusters_before: int
    clusters_after: int
    refingerprinted: int  # crashes whose fingerprint changed
    moves: tuple[ClusterMove, ...]
    failed: tuple[tuple[str, str], ...] = ()  # (crash id, reason) the signer refused; left where they were


class Store(StoreReader, Protocol):
    """StoreReader plus writes. Implementations are thread-safe and synchronous."""

    def ingest(self, crash: NewCrash) -> IngestResult:
        """Dedupe, assign a cluster and insert in one transaction; duplicate=True when the
        idempotency key is already stored (the stored crash's ids are returned, nothing counted)."""
        ...

    def heartbeat(self, host: HostRecord, at: datetime) -> None: ...

    def count_clusters(self) -> int: ...

    def hosts_by_release(self) -> dict[str, int]:
        """Hosts per kernel release of their last heartbeat (the crashfleet_hosts gauge)."""
        ...

    def recluster(self, resign: Callable[[StoredSignature], Resign]) -> ReclusterReport:
        """Re-sign every stored crash with `resign` and rebuild all clusters in one transaction."""
        ...

    def crashes_of_build(
        self, build_id: str, after: str = "", limit: int = 200, pending_only: bool = False
    ) -> list[BuildCrash]:
        """Stored crashes of kernel build `build_id` with ids after `after`, in id order (keyset
        batches); `pending_only` keeps those not symbolized yet."""
        ...

    def set_symbolized(self, updates: Sequence[tuple[str, str]]) -> int:
        """Store (crash id, symbolized JSON) pairs in one transaction; returns the rows updated.
        Touches nothing but `symbolized_json`: fingerprints and clusters stay as they are."""
        ...

    def builds_to_symbolize(self) -> list[str]:
        """Build-ids of stored crashes not symbolized yet."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class QueuedIngest(Protocol):
    """A store that queues ingests for a group commit and can answer through a Future, so an
    event loop can await the commit without parking a thread per report (SQLite does)."""

    def submit_ingest(self, crash: NewCrash) -> Future[IngestResult]: ...

    def submit_heartbeat(self, host: HostRecord, at: datetime) -> Future[None]: ...
