"""The store interface: StoreReader (wire.model) plus the write side the collector needs.

Both implementations (SQLite, PostgreSQL) share one schema and one body of SQL
(`collector.store.sql`); only connection handling and the few dialect differences live in
their own modules. Every write is one transaction: a report is acknowledged only after commit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from wire.model import (
    ClusterDetail,
    ClusterSummary,
    CrashDetail,
    CrashSummary,
    HostRecord,
    HostSummary,
    Page,
    QueryFilter,
)

__all__ = [
    "AmbiguousId",
    "BuildCrash",
    "ClusterMove",
    "GroupCommit",
    "HostRecord",
    "IngestResult",
    "InvalidPageToken",
    "NewCrash",
    "PendingWrite",
    "PurgeReport",
    "QueuedHeartbeats",
    "ReclusterReport",
    "Resign",
    "Store",
    "StoreError",
    "StoredSignature",
    "from_us",
    "to_us",
]


class StoreError(Exception):
    """The store cannot do what was asked (unreachable database, schema newer than this code ...)."""


class InvalidPageToken(ValueError):
    """A page token that this store did not hand out (or that a client edited)."""


class AmbiguousId(ValueError):
    """An id prefix that more than one stored cluster or crash starts with."""

    def __init__(self, what: str, prefix: str, candidates: Sequence[str], shown: int = 10) -> None:
        self.what = what
        self.prefix = prefix
        self.candidates = tuple(candidates)
        listed = ", ".join(self.candidates[:shown])
        more = " and more" if len(self.candidates) > shown else ""
        super().__init__(f"{what} id prefix {prefix!r} is ambiguous: {listed}{more}; give more digits")


def to_us(when: datetime) -> int:
    """Microseconds since the epoch, the stores' time column unit (a naive time is taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1_000_000)


def from_us(micros: int) -> datetime:
    return datetime.fromtimestamp(micros / 1_000_000, tz=UTC)


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What a purge removed (or, dry run, would remove)."""

    crashes: int
    clusters: int  # clusters left without crashes, removed with them
    module_sets: int  # module sets no host used any more
    dry_run: bool = False


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
    # The fingerprint under the previous rule edition (analysis.editions) while a rule transition
    # lasts, '' otherwise: a crash whose fingerprint is unknown joins the cluster holding this one.
    secondary_fingerprint: str = ""


@dataclass(frozen=True, slots=True)
class IngestResult:
    crash_id: str
    cluster_id: str
    duplicate: bool
    cluster_created: bool = False
    cluster_new_host: bool = False  # the cluster had not seen this host before
    similarity: float = 1.0  # 1.0 for an exact fingerprint match or a new cluster
    # How the crash found its cluster: 'exact', 'created', 'similar' or 'secondary' (MERGE_REASONS);
    # '' for a duplicate.
    match: str = ""


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



class StoreReader(Protocol):
    """The read side every store implements (SQLite and PostgreSQL alike); synchronous,
    thread-safe, called from the gRPC servicers via `asyncio.to_thread` and from the HTTP threads."""

    def list_clusters(self, flt: QueryFilter, page: Page) -> tuple[list[ClusterSummary], str]:
        """Clusters sorted by last_seen descending (recent activity first); returns (rows, next_token)."""
        ...

    def get_cluster(self, cluster_id: str) -> ClusterDetail | None: ...

    def list_crashes(self, flt: QueryFilter, page: Page) -> tuple[list[CrashSummary], str]:
        """Crashes sorted by received_at descending; returns (rows, next_token)."""
        ...

    def get_crash(self, crash_id: str) -> CrashDetail | None: ...

    def list_hosts(self, flt: QueryFilter, page: Page) -> tuple[list[HostSummary], str]: ...

    def count_clusters(self, flt: QueryFilter | None = None) -> int:
        """Clusters the filter matches (all without one): the total beside a first page."""
        ...

    def count_crashes(self, flt: QueryFilter | None = None) -> int: ...

    def count_hosts(self, flt: QueryFilter | None = None) -> int: ...



class Store(StoreReader, Protocol):
    """StoreReader plus writes. Implementations are thread-safe and synchronous."""

    def ingest(self, crash: NewCrash) -> IngestResult:
        """Dedupe, assign a cluster and insert in one transaction; duplicate=True when the
        idempotency key is already stored (the stored crash's ids are returned, nothing counted)."""
        ...

    def heartbeat(self, host: HostRecord, at: datetime) -> None: ...

    def begin_transition(self, version: str, previous_version: str, at: datetime) -> datetime:
        """When this database first met fingerprint rule edition `version` (whose predecessor is
        `previous_version`): `at` the first time it is asked, the stored time ever after, on
        every replica. The start of that edition's transition window."""
        ...

    def user_faults(self, hostname: str) -> dict[str, int]:
        """User-space faults per program the host's last heartbeat counted this boot ({} when none)."""
        ...

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

    def purge(self, before: datetime, dry_run: bool = False) -> PurgeReport:
        """Remove crashes received before `before`, then the clusters they leave empty and the
        module sets no host uses; cluster and host aggregates lose what the crashes added.
        Batches of their own transactions, so a running collector keeps ingesting."""
        ...

    def close(self) -> None: ...


class PendingWrite(Protocol):
    """One write of a group commit: after `GroupCommit.commit`, `result` or `error` is set."""

    result: Any
    error: BaseException | None


@runtime_checkable
class GroupCommit(Protocol):
    """A store whose writes an event loop can batch into one transaction and commit itself,
    without a second thread, except when another writer holds the database (SQLite does;
    collector.groupcommit drives it)."""

    def ingest_write(self, crash: NewCrash) -> PendingWrite: ...

    def heartbeat_write(self, host: HostRecord, at: datetime) -> PendingWrite: ...

    def commit(self, writes: Sequence[Any], wait: bool = True) -> bool:
        """Run the writes as one transaction on the calling thread; each write's `result` or
        `error` is final when this returns True. With `wait=False`: False, nothing done, where
        it would have to wait for another writer."""
        ...

    def submit(self, write: Any) -> Future[Any]:
        """Queue one write for the store's own writer thread, which waits for other writers."""
        ...


@runtime_checkable
class QueuedHeartbeats(Protocol):
    """A store whose own writer thread batches heartbeats into one transaction (PostgreSQL;
    collector.store.writer): the event loop queues each heartbeat and awaits its Future, with no
    worker thread per call."""

    def submit_heartbeat(self, host: HostRecord, at: datetime) -> Future[None]: ...
