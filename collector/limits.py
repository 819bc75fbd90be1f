"""The ingest rate limits: token buckets per reporting host and per peer, and what a refusal says.

Two keys, because without mTLS the host name is only what a request claims: a sender rotating
names gets a fresh per-host bucket each time, but not a fresh connection address. So every
report is checked against both buckets — its host's (`[limits] reports_per_second`,
`report_burst`; under mTLS the certificate identity) and its peer's (`peer_reports_per_second`,
`peer_report_burst`; the connection's source address, shared by every host behind one NAT, hence
the larger default).

Only new crashes cost a token. A request is admitted when both buckets hold one, and charged only
after the store said it was not a duplicate, so a backfill run twice, or an agent resending after
a lost acknowledgement, is never throttled by its own duplicates. Concurrent requests that all
saw the last token may drive a bucket below zero; the debt is bounded by the requests in flight
and simply lengthens the next wait. A refusal carries how long until the bucket holds a token
again (`RateLimited.retry_after`, sent as `retry-after-ms` trailing metadata, wire.retry).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Admission", "RecentKeys", "ReportLimiter", "TokenBuckets", "peer_key"]

V = TypeVar("V")


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class TokenBuckets:
    """A token bucket per key, so one flooding sender cannot starve the others.

    Memory is bounded: at most `max_keys` buckets, least recently used evicted (an evicted key
    simply starts with a full bucket again).
    """

    def __init__(
        self, rate: float, burst: int, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    def _refreshed(self, key: str) -> _Bucket:
        """The key's bucket refilled up to now (caller holds the lock)."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
        return bucket

    def wait(self, key: str) -> float:
        """Seconds until `key` holds a whole token (0.0: it may send now). Charges nothing."""
        with self._lock:
            bucket = self._refreshed(key)
            return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / self.rate

    def charge(self, key: str) -> None:
        """Take one token; may leave the bucket in debt (see the module docstring)."""
        with self._lock:
            self._refreshed(key).tokens -= 1.0

    def allow(self, key: str) -> bool:
        """Check and charge in one step: True when a token was taken."""
        with self._lock:
            bucket = self._refreshed(key)
            if bucket.tokens < 1.0:
                return False
            bucket.tokens -= 1.0
            return True


@dataclass(frozen=True, slots=True)
class Admission:
    """A refusal: which bucket is empty (`host` or `peer`) and how long until it holds a token."""

    scope: str
    retry_after: float


class ReportLimiter:
    """The per-host and per-peer buckets, checked together, charged together."""

    def __init__(self, host: TokenBuckets, peer: TokenBuckets) -> None:
        self.host = host
        self.peer = peer

    def check(self, host: str, peer: str) -> Admission | None:
        """None when both buckets hold a token; else the refusal with the longer wait."""
        waits = [(self.host.wait(host), "host"), (self.peer.wait(peer) if peer else 0.0, "peer")]
        seconds, scope = max(waits)
        return Admission(scope, seconds) if seconds > 0.0 else None

    def charge(self, host: str, peer: str) -> None:
        self.host.charge(host)
        if peer:
            self.peer.charge(peer)


class RecentKeys(Generic[V]):
    """The last `size` idempotency keys this process stored, with their answers.

    A throttled request whose key is here is a duplicate: it is answered at once, without a
    token and without the store (its cluster id is the one from when it was stored).
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._items: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: str, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            if len(self._items) > self.size:
                self._items.popitem(last=False)


def peer_key(peer: str) -> str:
    """The limiter key of a gRPC peer string: the address without its port.

    `ipv4:10.0.0.7:51234` -> `ipv4:10.0.0.7`, `ipv6:[::1]:51234` -> `ipv6:[::1]`; anything else
    (a unix socket) as it is.
    """
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6") and ":" in rest:
        return f"{kind}:{rest.rpartition(':')[0]}"
    return peer
