"""The fingerprint of a crash under the previous rule edition: the secondary fingerprint.

When a rule that decides fingerprints changes, every new crash of an old bug gets a fingerprint
no stored cluster has. Like Sentry's secondary grouping config, the collector then also computes
the fingerprint the previous edition would have given (PREVIOUS_FINGERPRINT_VERSION) and, during
a transition window, lets a crash whose new fingerprint is unknown join the cluster that holds
its secondary one (collector.store; docs/collector.md "Rule transitions").

The previous edition is the current code with GUILTY_FRAME_RULES undone: today that is one rule,
analysis.title.STALL_RIP_RULE (a stall or lockup whose RIP is a module's code in task context is
titled after the RIP function; before, after the caller of the dispatch anchor, `proc_reg_write`
for every lockup reached through a procfs write). The guilty frame is chosen from the report's
text, so the secondary is computed from the crash's log excerpt, re-read under
`analysis.title.previous_rules()`; only the kinds that rule can touch are re-read.
"""

from __future__ import annotations

from dataclasses import replace

from analysis.fingerprint import PREVIOUS_FINGERPRINT_VERSION, compute
from analysis.model import CrashKind, CrashRecord, Fingerprint
from analysis.oops import parse_log
from analysis.title import OOPS_GROUPS, Extractor, previous_rules

__all__ = ["EDITION_KINDS", "secondary_fingerprint"]

# The kinds whose guilty frame GUILTY_FRAME_RULES can change: those of the STALL extractor's rules.
EDITION_KINDS: frozenset[CrashKind] = frozenset(
    rule.kind for group in OOPS_GROUPS for rule in group.rules if rule.extractor is Extractor.STALL
)


def secondary_fingerprint(record: CrashRecord, excerpt: str, primary: Fingerprint) -> Fingerprint | None:
    """The fingerprint under PREVIOUS_FINGERPRINT_VERSION when it differs from `primary`, else None.

    The record is re-read from `excerpt` under the previous rules and the report of the same kind
    and reason taken (the excerpt is this report's text, so there is one); when the excerpt reads
    as no such report, the record's own guilty frame stands and there is no secondary.
    """
    if record.kind not in EDITION_KINDS or not excerpt:
        return None
    with previous_rules():
        again = parse_log(excerpt)
    match = next((r for r in again if r.kind is record.kind and r.reason == record.reason), None)
    if match is None or match.guilty_frame == record.guilty_frame:
        return None
    previous = compute(replace(record, guilty_frame=match.guilty_frame))
    if previous.value == primary.value:
        return None
    return replace(previous, version=PREVIOUS_FINGERPRINT_VERSION)
