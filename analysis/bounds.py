"""The numbers a crash record may hold: the widths the wire carries, as one table.

A kernel log is untrusted text. An offset printed with 8,000 digits, a PID past 2**32 or an
address of 20 hex digits is not a number a kernel printed: it is corruption. Left in, it breaks
every consumer downstream — protobuf refuses it (and the agent turned the whole capture into a
failed capture), JSON readers cannot hold it, Python refuses to print an int of more than 4,300
decimal digits. `fit_record` leaves such a value out (None, or the register dropped) and names
it in the record's `corrupt_fields`, so that everything else the report shows — kind, title,
frames, fingerprint — survives to the wire. The parser applies it to every record it makes, and
`wire.convert` once more to whatever it is handed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from analysis.model import CallFrame, CodeDecode, CrashRecord, Rip, SourceLocation, SystemFacts

__all__ = [
    "CODE_FIELDS",
    "FRAME_FIELDS",
    "RECORD_FIELDS",
    "REGISTER_RANGE",
    "SYSTEM_FIELDS",
    "decimal",
    "fit_record",
    "fit_system",
]

Range = tuple[int, int]  # inclusive
U32: Range = (0, 2**32 - 1)
U64: Range = (0, 2**64 - 1)
S32: Range = (-(2**31), 2**31 - 1)
S64: Range = (-(2**63), 2**63 - 1)

# Optional integer fields and the range their proto field holds (proto/crashfleet/v1/crash.proto).
RECORD_FIELDS: tuple[tuple[str, Range], ...] = (
    ("fault_address", U64),
    ("oops_code_raw", U64),
    ("oops_number", U32),
    ("cpu", U32),
    ("pid", U32),
)
FRAME_FIELDS: tuple[tuple[str, Range], ...] = (("offset", U64), ("size", U64), ("address", U64))  # Rip too
CODE_FIELDS: tuple[tuple[str, Range], ...] = (("displacement", S64), ("bad_register_value", U64))
REGISTER_RANGE = U64
PAGE_FAULT_RANGE = U32
LINE_RANGE = U32  # record first/last line, source lines: not optional, clamped
SYSTEM_FIELDS: tuple[tuple[str, Range], ...] = (
    ("cpus", U32),
    ("memory_bytes", U64),
    ("crash_time", S64),
    ("page_size", U32),
    ("kernel_offset", U64),
    ("panic_cpu", U32),
    ("panic_pid", U32),
)

_TOO_BIG = 2**64  # what `decimal` returns for digits no field can hold


def decimal(digits: str) -> int:
    """A decimal number from a log, never raising: past 20 digits it is `2**64`, out of every
    range above (Python refuses to convert more than 4,300 digits at all)."""
    significant = digits.lstrip("0") or "0"
    return int(significant) if len(significant) <= 20 else _TOO_BIG


def _fits(value: int | None, bounds: Range) -> bool:
    return value is None or bounds[0] <= value <= bounds[1]


def _fit_fields(
    obj: object, table: tuple[tuple[str, Range], ...], where: str, bad: list[str]
) -> dict[str, None]:
    changes: dict[str, None] = {}
    for name, bounds in table:
        if not _fits(getattr(obj, name), bounds):
            changes[name] = None
            bad.append(f"{where}{name}")
    return changes


def _fit_source(source: tuple[SourceLocation, ...], where: str, bad: list[str]) -> tuple[SourceLocation, ...]:
    if all(_fits(s.line, LINE_RANGE) for s in source):
        return source
    bad.append(f"{where}source")
    return tuple(s if _fits(s.line, LINE_RANGE) else dataclasses.replace(s, line=0) for s in source)


_Frame = Rip | CallFrame


def _fit_frame(frame: _Frame, where: str, bad: list[str]) -> _Frame:
    changes: dict[str, object] = dict(_fit_fields(frame, FRAME_FIELDS, where, bad))
    source = _fit_source(frame.source, where, bad)
    if source is not frame.source:
        changes["source"] = source
    return dataclasses.replace(frame, **changes) if changes else frame  # type: ignore[arg-type]


def _fit_code(code: CodeDecode, bad: list[str]) -> CodeDecode:
    changes = _fit_fields(code, CODE_FIELDS, "code.", bad)
    return dataclasses.replace(code, **changes) if changes else code  # type: ignore[arg-type]


# Each step looks at one part of the record and returns the replacements it needs (or none).
_Step = Callable[[CrashRecord, list[str]], dict[str, object]]


def _scalars(rec: CrashRecord, bad: list[str]) -> dict[str, object]:
    return dict(_fit_fields(rec, RECORD_FIELDS, "", bad))


def _page_fault(rec: CrashRecord, bad: list[str]) -> dict[str, object]:
    if rec.oops_code is None or _fits(rec.oops_code.value, PAGE_FAULT_RANGE):
        return {}
    bad.append("oops_code")
    return {"oops_code": None}


def _lines(rec: CrashRecord, bad: list[str]) -> dict[str, object]:
    changes: dict[str, object] = {}
    for name in ("first_line", "last_line"):
        value = getattr(rec, name)
        if not _fits(value, LINE_RANGE):
            changes[name] = min(max(value, LINE_RANGE[0]), LINE_RANGE[1])
            bad.append(name)
    return changes


def _registers(rec: CrashRecord, bad: list[str]) -> dict[str, object]:
    wide = [name for name, value in rec.registers.items() if not _fits(value, REGISTER_RANGE)]
    if not wide:
        return {}
    bad.extend(f"registers.{name}" for name in wide)
    return {"registers": {n: v for n, v in rec.registers.items() if n not in wide}}


def _rip(rec: CrashRecord, bad: list[str]) -> dict[str, object]:
    if rec.rip is None:
        return {}
    rip = _fit_frame(rec.rip, "rip.", bad)
    return {} if rip is rec.rip else {"rip": rip}


def _trace(rec: CrashRecord, bad: list[str]) -> dict[str, object]:
    frames = tuple(_fit_frame(f, f"call_trace[{i}].", bad) for i, f in enumerate(rec.call_trace))
    return {} if all(a is b for a, b in zip(frames, rec.call_trace, strict=True)) else {"call_trace": frames}


def _code(rec: CrashRecord, bad: list[str]) -> dict[str, object]:
    if rec.code is None:
        return {}
    code = _fit_code(rec.code, bad)
    return {} if code is rec.code else {"code": code}


STEPS: tuple[_Step, ...] = (_scalars, _page_fault, _lines, _registers, _rip, _trace, _code)


def fit_record(rec: CrashRecord) -> CrashRecord:
    """`rec` itself when every number fits its field; else a copy with the misfits left out and
    named in `corrupt_fields` (`pid`, `call_trace[3].offset`, `registers.rax` ...)."""
    bad: list[str] = []
    changes: dict[str, object] = {}
    for step in STEPS:
        changes.update(step(rec, bad))
    if not bad:
        return rec
    named = tuple(dict.fromkeys((*rec.corrupt_fields, *bad)))
    return dataclasses.replace(rec, **changes, corrupt_fields=named)  # type: ignore[arg-type]


def fit_system(facts: SystemFacts) -> tuple[SystemFacts, tuple[str, ...]]:
    """The facts with misfit numbers left out, and the names of those left out."""
    bad: list[str] = []
    changes = _fit_fields(facts, SYSTEM_FIELDS, "", bad)
    if not changes:
        return facts, ()
    return dataclasses.replace(facts, **changes), tuple(bad)  # type: ignore[arg-type]
