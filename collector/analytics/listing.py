"""Which explained combinations a reader is shown (docs/analytics.md, "Suspects", 7).

Pure and without numpy, so that the CLI's text (crashfleet.commands.suspects) and the web page
(collector.web) share the rule; JSON keeps every combination.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.analytics.exposure import Attr

__all__ = ["EXPLAINED_SHOWN", "worth_listing"]

# Explained combinations listed under each finding in text; the rest are counted.
EXPLAINED_SHOWN = 3


def worth_listing(suspects: Sequence[tuple[Sequence[Attr], Sequence[Attr]]]) -> list[bool]:
    """For each suspect of a report as (attributes, explained_by): whether it is listed on its own.
    Findings and explained single values are. An explained pair is not when either of its values is
    already named (a finding's value, or an explained single value): its over-representation is
    that value's, restricted to the hosts that also have the other one, so it adds nothing."""
    named = {a for attrs, by in suspects if not by or len(attrs) == 1 for a in attrs}
    return [not by or len(attrs) == 1 or not set(attrs) & named for attrs, by in suspects]
