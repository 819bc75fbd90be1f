"""Exposure: how many host-days of the fleet ran each attribute value, from heartbeats.

A host contributes the time between consecutive heartbeats, capped at `cap` when they stop (a
host that goes silent for a week contributed `cap` after its last heartbeat, not a week), to
every attribute value it reported: its kernel release, machine, hardware, agent version, each
loaded module and each label. The whole set of values is the host's *profile*; storing exposure
per (UTC day, profile) lets any conjunction of values (a module on one hardware model) be summed
exactly over a window, and per (UTC day, dimension, value) keeps the rates query one GROUP BY.

The heartbeat path must stay cheap, so nothing is written per heartbeat: a host's uncredited
stretch (`since` .. its last heartbeat) is credited in one go when its profile changes, its UTC
day ends, the stretch reaches `flush` seconds, or heartbeats stopped for longer than `cap`.
`account` is that decision, pure; collector.store.analytics writes what it returns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "DAY_US",
    "DEFAULT_CAP_S",
    "DEFAULT_FLUSH_S",
    "DIMENSIONS",
    "LABEL_PREFIX",
    "Attr",
    "Credit",
    "ExposureState",
    "account",
    "check_dimension",
    "host_attributes",
    "profile_id",
    "split_by_day",
]

DAY_US = 86_400_000_000
SECOND_US = 1_000_000
# Three missed heartbeats at the collector's 60 s interval: a host that stops reporting (crashed,
# powered off, cut off) is counted as up for three minutes after its last heartbeat, no longer.
DEFAULT_CAP_S = 180
# Exposure lags the heartbeats by at most this much (the uncredited stretch of each host).
DEFAULT_FLUSH_S = 3600
LABEL_PREFIX = "label:"
# The dimensions a value can belong to; `label:KEY` for each label key (see check_dimension).
DIMENSIONS = ("kernel_release", "machine", "hardware", "module", "agent_version")

Attr = tuple[str, str]  # (dimension, value)


def check_dimension(dim: str) -> str:
    """`dim` if it names a dimension, else ValueError saying which ones exist."""
    if dim in DIMENSIONS or (dim.startswith(LABEL_PREFIX) and len(dim) > len(LABEL_PREFIX)):
        return dim
    raise ValueError(f"unknown dimension {dim!r}: one of {', '.join(DIMENSIONS)} or label:KEY")


def host_attributes(
    *,
    kernel_release: str = "",
    machine: str = "",
    hardware: str = "",
    agent_version: str = "",
    modules: Iterable[str] = (),
    labels: Mapping[str, str] | None = None,
) -> tuple[Attr, ...]:
    """Every (dimension, value) a host ran, sorted and without empty values."""
    attrs: set[Attr] = {
        ("kernel_release", kernel_release), ("machine", machine),
        ("hardware", hardware), ("agent_version", agent_version),
    }  # fmt: skip
    attrs.update(("module", m) for m in modules)
    attrs.update((LABEL_PREFIX + k, v) for k, v in (labels or {}).items())
    return tuple(sorted(a for a in attrs if a[1]))


def profile_id(attrs: Iterable[Attr]) -> str:
    """A stable name for a set of attribute values (32 hex digits of its SHA-256)."""
    text = json.dumps(sorted(attrs), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def split_by_day(start_us: int, end_us: int) -> list[tuple[int, int]]:
    """[start, end) cut at UTC midnights: (day number, whole seconds) per day touched."""
    pieces: list[tuple[int, int]] = []
    at = start_us
    while at < end_us:
        day = at // DAY_US
        stop = min(end_us, (day + 1) * DAY_US)
        seconds = stop // SECOND_US - at // SECOND_US
        if seconds > 0:
            pieces.append((day, seconds))
        at = stop
    return pieces


@dataclass(frozen=True, slots=True)
class ExposureState:
    """What the store keeps per host between heartbeats."""

    profile: str  # the profile of the uncredited stretch
    since_us: int  # its start
    counted_day: int = -1  # the last UTC day this host was counted as a host of some profile
    counted_profile: str = ""  # ... and that profile


@dataclass(frozen=True, slots=True)
class Credit:
    """Seconds of one profile on one UTC day; `already_counted` is the profile this host was
    already counted under that day ("" when none): values it shares are not counted twice."""

    day: int
    profile: str
    seconds: int
    already_counted: str


def account(
    state: ExposureState | None,
    last_us: int | None,
    profile: str,
    at_us: int,
    cap_s: int = DEFAULT_CAP_S,
    flush_s: int = DEFAULT_FLUSH_S,
) -> tuple[ExposureState | None, list[Credit]]:
    """One heartbeat at `at_us` reporting `profile`, the previous one at `last_us`.

    Returns the new state (None when nothing changed, so nothing needs writing) and the credits
    to add. An out-of-order heartbeat (before `last_us`) changes nothing.
    """
    if state is None or last_us is None:
        return ExposureState(profile, at_us), []
    if at_us < last_us:
        return None, []
    if at_us - last_us > cap_s * SECOND_US:
        end, next_since = last_us + cap_s * SECOND_US, at_us
    elif (
        profile != state.profile
        or at_us // DAY_US != state.since_us // DAY_US
        or at_us - state.since_us >= flush_s * SECOND_US
    ):
        end = next_since = at_us
    else:
        return None, []
    credits = []
    counted_day, counted_profile = state.counted_day, state.counted_profile
    for day, seconds in split_by_day(state.since_us, end):
        credits.append(Credit(day, state.profile, seconds, counted_profile if day == counted_day else ""))
        counted_day, counted_profile = day, state.profile
    return ExposureState(profile, next_since, counted_day, counted_profile), credits
