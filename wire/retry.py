"""How long to wait before asking a collector again: its own hint, else backoff, always with jitter.

The collector's limiter knows when a host's next report would be accepted; it says so in the
trailing metadata of its RESOURCE_EXHAUSTED answer (`retry-after-ms: <milliseconds>`, like HTTP's
`Retry-After`). The agent and `crashfleet submit` read it here, so both clients honour the same
hint the same way: wait at least that long, plus up to a quarter more at random, so that hosts
throttled together do not come back in lockstep. Without a hint they fall back to exponential
backoff with "equal jitter" (half the step fixed, half random).

Which failures are about the path to the collector — never a reason to age a report — is the
agent's `agent.ship.CLASSIFICATION`. This module does not import grpc: the agent's daemon, which
must not load it, imports it through agent.spool.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from typing import Any, Final

__all__ = [
    "MAX_RETRY_AFTER_S",
    "RETRY_AFTER_KEY",
    "THROTTLE_JITTER",
    "backoff_delay",
    "call_retry_after",
    "retry_after_metadata",
    "retry_after_seconds",
    "throttle_delay",
]

RETRY_AFTER_KEY: Final = "retry-after-ms"
MAX_RETRY_AFTER_S: Final = 3600.0  # a hint beyond an hour is a bug or hostile: capped
THROTTLE_JITTER: Final = 0.25  # up to this fraction of the hint is added at random


def retry_after_metadata(seconds: float) -> tuple[tuple[str, str], ...]:
    """The trailing metadata the collector sends with a throttled answer (whole milliseconds, >= 1)."""
    return ((RETRY_AFTER_KEY, str(max(1, math.ceil(seconds * 1000)))),)


def retry_after_seconds(metadata: Iterable[tuple[str, str | bytes]] | None) -> float | None:
    """The collector's hint from trailing metadata, in seconds; None when absent or malformed."""
    for key, value in metadata or ():
        if key.lower() != RETRY_AFTER_KEY:
            continue
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        if not text.strip().isdigit():
            return None
        return min(int(text) / 1000.0, MAX_RETRY_AFTER_S)
    return None


def call_retry_after(error: Any) -> float | None:
    """`retry_after_seconds` of a failed synchronous call's trailing metadata (a grpc.RpcError)."""
    trailing = getattr(error, "trailing_metadata", None)
    if not callable(trailing):
        return None
    try:
        return retry_after_seconds(trailing())
    except Exception:  # a channel-level failure may carry no call state at all
        return None


def throttle_delay(hint: float, rand: Callable[[], float] = random.random) -> float:
    """Wait for a throttled call: the hint plus up to THROTTLE_JITTER of it more, at random."""
    return hint * (1.0 + THROTTLE_JITTER * rand())


def backoff_delay(
    attempt: int, initial: float, maximum: float, rand: Callable[[], float] = random.random
) -> float:
    """Exponential backoff with equal jitter: half of min(maximum, initial * 2**attempt) fixed, half random."""
    step = min(maximum, initial * (2.0 ** min(attempt, 62)))
    return step / 2.0 + rand() * step / 2.0

