"""Triage state of a cluster: new → acknowledged → fixed in release R, and regressed.

Transitions are a table (TRANSITIONS), not scattered ifs; the store keeps the state by cluster
id, so it survives `recluster` for every cluster whose id survives (a cluster's id derives from
its creating fingerprint). A crash of a fixed cluster on R or a later release (in the
distribution's order) marks it regressed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

__all__ = ["ACTIONS", "STATES", "TRANSITIONS", "Triage", "TriageError", "after_crash", "apply"]

STATES = ("new", "acknowledged", "fixed", "regressed")
ACTIONS = ("ack", "fixed")
# (state, action) -> new state. Every state may be acknowledged again (a regression looked at)
# or marked fixed again (a later release fixes it for good).
TRANSITIONS: dict[tuple[str, str], str] = {
    (state, action): ("acknowledged" if action == "ack" else "fixed")
    for state in STATES
    for action in ACTIONS
}
MAX_NOTE = 2000
MAX_LINK = 500


class TriageError(ValueError):
    """A triage change that cannot be made; the message says why."""


@dataclass(frozen=True, slots=True)
class Triage:
    cluster_id: str
    state: str = "new"
    fixed_in: str = ""
    note: str = ""
    link: str = ""
    updated_at: datetime | None = None
    regressed_release: str = ""  # the release of the crash that reopened it


def apply(
    current: Triage,
    action: str,
    at: datetime,
    fixed_in: str = "",
    note: str | None = None,
    link: str | None = None,
) -> Triage:
    """The state after `action` ('ack' or 'fixed'); TriageError for bad input."""
    from collector.analytics.releases import ReleaseError, compare_releases  # python-debian: on use

    if (current.state, action) not in TRANSITIONS:
        raise TriageError(f"cannot {action} a cluster in state {current.state}")
    if action == "fixed":
        try:
            compare_releases(fixed_in, fixed_in)
        except ReleaseError as exc:
            raise TriageError(f"--fixed-in: {exc}") from None
    elif fixed_in:
        raise TriageError("a release is only given with fixed")
    for name, text, limit in (("note", note, MAX_NOTE), ("link", link, MAX_LINK)):
        if text is not None and (len(text) > limit or any(ord(ch) < 32 and ch not in "\t\n" for ch in text)):
            raise TriageError(f"{name}: longer than {limit} characters or holds control characters")
    if link and not link.startswith(("https://", "http://")):
        raise TriageError("link: must be an http(s) URL")
    return replace(
        current,
        state=TRANSITIONS[(current.state, action)],
        fixed_in=fixed_in if action == "fixed" else current.fixed_in,
        note=current.note if note is None else note,
        link=current.link if link is None else link,
        updated_at=at,
        regressed_release="" if action == "fixed" else current.regressed_release,
    )


def after_crash(current: Triage, release: str, at: datetime) -> Triage | None:
    """The regressed state when a crash on `release` reopens a fixed cluster, else None."""
    from collector.analytics.releases import ReleaseError, compare_releases

    if current.state != "fixed" or not release:
        return None
    try:
        if compare_releases(release, current.fixed_in) < 0:
            return None
    except ReleaseError:
        return None  # a release nobody can order cannot prove a regression
    return replace(current, state="regressed", regressed_release=release, updated_at=at)
