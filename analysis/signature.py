"""Kernel log -> finished crash records: parse, decode the `Code:` line, fingerprint.

This is the one entry point the CLI, the agent and the collector call, so that all three agree
on what a crash is and what its signature is. `analysis.oops.parse_log` finds the reports and
fills every field it can read off the text; this module adds the two derived ones:

- `code`: `analysis.decode.decode_code` over the record's `Code:` line, its register dump and
  its fault address (only when the report printed a `Code:` line);
- `fingerprint`: `analysis.fingerprint.compute` over the finished record.

Like its parts, `analyze` raises nothing on any input: garbage gives no records, damaged
reports give records marked `corrupted`.
"""

from __future__ import annotations

import logging

from analysis.decode import decode_code
from analysis.fingerprint import compute
from analysis.model import CrashKind, CrashRecord
from analysis.oops import ParsedLog, parse_kernel_log, parse_log

__all__ = ["INTERRUPTED_KINDS", "analyze", "analyze_log", "finish_record"]

log = logging.getLogger(__name__)

# Reports whose `Code:` line shows where a timer or NMI interrupt found the CPU (a loop that ran
# too long), not an instruction that faulted: decoded, but no pointer verdict. A deliberate
# panic() (out of memory, sysrq, any "Kernel panic - not syncing" with no oops before it) faults
# nowhere either: a `Code:` line in its trace is an exception frame the task was in, e.g. the
# user page fault whose allocation ran out of memory inside clear_user's `rep stos`.
INTERRUPTED_KINDS = frozenset(
    {
        CrashKind.SOFT_LOCKUP, CrashKind.HARD_LOCKUP, CrashKind.RCU_STALL, CrashKind.HUNG_TASK,
        CrashKind.PANIC, CrashKind.OUT_OF_MEMORY,
    }
)  # fmt: skip


# Oopses whose error code is the x86 #PF one (a GPF's `0000` is a segment selector, not that).
PAGE_FAULT_KINDS = frozenset({CrashKind.NULL_DEREF, CrashKind.PAGING_REQUEST})


def finish_record(record: CrashRecord) -> CrashRecord:
    """Add the decoded `Code:` line and the fingerprint to a parsed record (in place; returned)."""
    if record.code_line:
        record.code = decode_code(
            record.code_line,
            record.arch,
            record.registers,
            record.fault_address,
            interrupted=record.kind in INTERRUPTED_KINDS,
            warning=record.kind is CrashKind.WARNING,
            pf_error=record.oops_code.value if record.oops_code and record.kind in PAGE_FAULT_KINDS else None,
            stack_guard=record.kind is CrashKind.STACK_GUARD_PAGE,
        )
        if record.code.error:
            log.debug("code not decoded title=%r reason=%r", record.title, record.code.error)
    record.fingerprint = compute(record)
    return record


def analyze(data: bytes | str) -> list[CrashRecord]:
    """Every crash in a kernel log, in log order, decoded and fingerprinted."""
    return [finish_record(record) for record in parse_log(data)]


def analyze_log(data: bytes | str) -> ParsedLog:
    """`analyze` with what the parse also learnt: the log's form, the other programs' lines it
    skipped and the user-space faults it counted (what `crashfleet inspect` reports)."""
    parsed = parse_kernel_log(data)
    for record in parsed.records:
        finish_record(record)
    return parsed
