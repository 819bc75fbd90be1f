"""The collector's signer: `analysis.fingerprint.compute`, remembered for signatures it has seen.

The collector never takes a fingerprint from a report: agents on older releases sign with
older rules, and a hostile sender could aim its crashes at any cluster. It recomputes every
one, and on a busy collector that was the largest single cost of a report (profile in
docs/collector.md). Reports of one bug repeat the same stack, so the result is memoized,
keyed by the record minus the fields that change from one occurrence to the next and that the
fingerprint never reads (addresses, registers, CPU, PID, taint, modules, the excerpt ...:
`OCCURRENCE_FIELDS`; the raw reason line too when the normalized one is there). Everything else — any field added to CrashRecord later included — is in
the key, so the cache can only miss more, never answer for a different signature. The contract
that compute() ignores OCCURRENCE_FIELDS is a test (tests/collector/test_signing.py), so a
fingerprint rule that starts reading one of them fails there, not silently here.
"""

from __future__ import annotations

import dataclasses
import operator
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from analysis import fingerprint as fingerprint_rules
from analysis.model import CallFrame, CrashRecord, Fingerprint, Rip

__all__ = ["DEFAULT_CACHE_SIZE", "OCCURRENCE_FIELDS", "CachedSigner", "signing_key"]

DEFAULT_CACHE_SIZE = 4096  # distinct signatures remembered (a few hundred bytes each)

# CrashRecord fields that vary between occurrences of one bug and that the fingerprint does not
# read (analysis.fingerprint: it hashes kind, normalized reason, guilty function and frames).
OCCURRENCE_FIELDS = frozenset(
    {
        "fault_address", "oops_code", "oops_code_raw", "oops_number", "oops_flags", "tainted",
        "taint_flags", "cpu", "pid", "comm", "kernel_release", "kernel_build", "hardware", "bios",
        "modules", "module_taints", "last_unloaded", "registers", "code_line", "code", "fingerprint",
        "related", "first_line", "last_line", "excerpt",
    }
)  # fmt: skip
_KEY_FIELDS = tuple(f.name for f in dataclasses.fields(CrashRecord) if f.name not in OCCURRENCE_FIELDS)


def _frame_key(frame: CallFrame) -> Hashable:
    # Offsets and addresses differ per build and per KASLR slide; only whether they are there
    # matters to the frame rules (an inlined frame has neither).
    return (frame.function, frame.reliable, frame.context, frame.module, frame.offset is None,
            frame.size is None, frame.address is None, frame.source)  # fmt: skip


def _rip_key(rip: Rip | None) -> Hashable:
    if rip is None:
        return None
    return (rip.function, rip.module, rip.offset is None, rip.size is None, rip.address is None, rip.source)


# The key fields taken as they are, read in one call (signing_key runs for every report).
_read_plain_fields = operator.attrgetter(
    *(name for name in _KEY_FIELDS if name not in ("call_trace", "rip", "reason"))
)


def signing_key(record: CrashRecord) -> tuple[Hashable, ...]:
    """What compute() may depend on: every field but OCCURRENCE_FIELDS, frames without their
    per-build numbers."""
    # compute() reads the raw reason line only without a normalized one (it has addresses)
    reason = None if record.normalized_reason else record.reason
    return (
        _read_plain_fields(record),
        reason,
        _rip_key(record.rip),
        tuple(map(_frame_key, record.call_trace)),
    )


class CachedSigner:
    """`compute` with a bounded LRU memo; thread-safe (the memo is shared by worker threads)."""

    def __init__(
        self,
        compute: Callable[[CrashRecord], Fingerprint] = fingerprint_rules.compute,
        size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self._compute = compute
        self._size = size
        self._memo: OrderedDict[tuple[Hashable, ...], Fingerprint] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __call__(self, record: CrashRecord) -> Fingerprint:
        key = signing_key(record)
        with self._lock:
            found = self._memo.get(key)
            if found is not None:
                self._memo.move_to_end(key)
                self.hits += 1
                return found
        fp = self._compute(record)  # outside the lock: a miss must not serialize the others
        with self._lock:
            self.misses += 1
            self._memo[key] = fp
            self._memo.move_to_end(key)
            while len(self._memo) > self._size:
                self._memo.popitem(last=False)
        return fp
