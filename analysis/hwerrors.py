"""Hardware-error events in a kernel log, counted by kind: is it the kernel or the machine?

The patterns are a table (PATTERNS), one row per message the kernel prints once per event, so
an event is counted once however many detail lines follow it. A row may take its count from the
message (EDAC prints "2 CE ..."). The agent counts these in /dev/kmsg and in captured logs and
sends the counts with its heartbeat; the collector's bad-host rules weigh them
(collector.analytics.badhosts: mce, edac_ue, memory_failure, aer_uncorrected and aer_fatal are
severe, the corrected kinds less so).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["KINDS", "PATTERNS", "HardwareErrorCounter", "Pattern", "count_hardware_errors"]


class Pattern(NamedTuple):
    """One kind of event and the message that marks it."""

    kind: str
    regex: re.Pattern[str]
    count_group: str | None  # a named group holding how many events the line reports, else 1


PATTERNS: tuple[Pattern, ...] = (
    # arch/x86/kernel/cpu/mce/core.c, mce_panic() and print_mce(): one "CPU N: Machine Check" per event.
    Pattern("mce", re.compile(r"\[Hardware Error\]: CPU \d+: Machine Check"), None),
    # mce_notify_irq(): corrected machine checks handed to user space (mcelog, rasdaemon).
    Pattern("mce_corrected", re.compile(r"mce: \[Hardware Error\]: Machine check events logged"), None),
    # drivers/edac/edac_mc.c, edac_mc_handle_error(): "EDAC MC0: 2 CE memory read error on ...";
    # some drivers put their name first ("EDAC skx MC1: ...").
    Pattern("edac_ce", re.compile(r"EDAC (?:\S+ )?MC\d+: (?P<n>\d+) CE "), "n"),
    Pattern("edac_ue", re.compile(r"EDAC (?:\S+ )?MC\d+: (?P<n>\d+) UE "), "n"),
    # drivers/pci/pcie/aer.c, aer_print_error() and aer_isr_one_error(): "AER: Corrected error
    # received", "Uncorrected (Non-Fatal)" or "Uncorrected (Fatal) error received"; "Multiple ..."
    # when the root port saw several.
    Pattern("aer_corrected", re.compile(r"AER: (?:Multiple )?Corrected error received"), None),
    Pattern("aer_uncorrected", re.compile(r"AER: (?:Multiple )?Uncorrected \(Non-Fatal\) error received"), None),
    Pattern("aer_fatal", re.compile(r"AER: (?:Multiple )?Uncorrected \(Fatal\) error received"), None),
    # mm/memory-failure.c: "Memory failure: 0x1234: recovery action for dirty LRU page: Recovered".
    Pattern("memory_failure", re.compile(r"Memory failure: 0x[0-9a-f]+: "), None),
)
KINDS = tuple(dict.fromkeys(p.kind for p in PATTERNS))
# A line longer than this is not one of these messages (and must not cost a long regex scan).
MAX_LINE = 1024


def _match(line: str) -> tuple[str, int] | None:
    if len(line) > MAX_LINE or ("rror" not in line and "EDAC" not in line and "ailure" not in line):
        return None
    for pattern in PATTERNS:
        m = pattern.regex.search(line)
        if m is not None:
            n = int(m.group(pattern.count_group)) if pattern.count_group else 1
            return pattern.kind, min(n, 1_000_000)
    return None


class HardwareErrorCounter:
    """Counts fed lines; `counts` is what a heartbeat sends (sorted (kind, count) pairs)."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def feed(self, line: str) -> str | None:
        """Count one log line; returns the kind it was, or None."""
        hit = _match(line)
        if hit is None:
            return None
        self._counts[hit[0]] += hit[1]
        return hit[0]

    def add(self, counts: Iterable[tuple[str, int]]) -> None:
        for kind, n in counts:
            if kind in KINDS and n > 0:
                self._counts[kind] += n

    @property
    def counts(self) -> tuple[tuple[str, int], ...]:
        return tuple(sorted((k, n) for k, n in self._counts.items() if n))


def count_hardware_errors(text: str) -> tuple[tuple[str, int], ...]:
    """The hardware-error events of a whole log."""
    counter = HardwareErrorCounter()
    for line in text.splitlines():
        counter.feed(line)
    return counter.counts
