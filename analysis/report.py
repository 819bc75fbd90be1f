"""Crash records as JSON: what `crashfleet inspect --json` prints, the agent spools and the collector stores.

The layout is documented key by key in docs/report-schema.md and pinned by the JSON Schema
docs/report.schema.json (tests validate every output against it). `record_from_json` is the
exact inverse of `record_to_json`, so a record survives the agent's spool and the collector's
store unchanged; anything that is not a report of this shape is refused with a
`CrashfleetInputError` naming the source and what is wrong.

Register values are hex strings (`"0xffffffff8142bb40"`): JavaScript and jq hold numbers as
doubles and would round them. Addresses stay integers (JavaScript readers must parse them as
BigInt); `record_from_json` also takes register values stored as integers by older releases.
Byte strings (the `Code:` bytes) are hex.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from analysis.errors import CrashfleetInputError
from analysis.model import (
    CallFrame,
    CodeDecode,
    CrashKind,
    CrashRecord,
    Fingerprint,
    PageFaultCode,
    Rip,
    SkippedFrame,
    SourceLocation,
    StackContext,
    SystemFacts,
)

__all__ = [
    "REPORT_SCHEMA_ID",
    "capture_to_json",
    "record_from_json",
    "record_to_json",
    "system_from_json",
    "system_to_json",
]

REPORT_SCHEMA_ID = "https://crashfleet.invalid/schemas/report.schema.json"

JSON = dict[str, Any]
T = TypeVar("T")


def _source(locations: Sequence[SourceLocation]) -> list[JSON]:
    return [{"function": s.function, "file": s.file, "line": s.line} for s in locations]


def _rip(rip: Rip | None) -> JSON | None:
    if rip is None:
        return None
    out: JSON = {"function": rip.function, "offset": rip.offset, "size": rip.size, "module": rip.module}
    out["address"] = rip.address
    if rip.source:
        out["source"] = _source(rip.source)
    return out


def _frame(frame: CallFrame) -> JSON:
    out: JSON = {
        "function": frame.function,
        "offset": frame.offset,
        "size": frame.size,
        "module": frame.module,
        "reliable": frame.reliable,
        "context": frame.context.value,
        "address": frame.address,
    }
    if frame.source:
        out["source"] = _source(frame.source)
    return out


def _hex(value: int | None) -> str | None:
    return None if value is None else hex(value)


def _code(code: CodeDecode | None) -> JSON | None:
    if code is None:
        return None
    return {
        "instruction": code.instruction,
        "bad_register": code.bad_register,
        "bad_register_value": _hex(code.bad_register_value),
        "access": code.access,
        "operation": code.operation,
        "base_register": code.base_register,
        "index_register": code.index_register,
        "displacement": code.displacement,
        "arch": code.arch,
        "bytes": code.code_bytes.hex(),
        "fault_offset": code.fault_offset,
        "error": code.error,
    }


def _oops_code(code: PageFaultCode | None) -> JSON | None:
    if code is None:
        return None
    return {
        "value": code.value,
        "write": code.write,
        "user": code.user,
        "protection": code.protection,
        "instruction_fetch": code.instruction_fetch,
        "reserved_bit": code.reserved_bit,
        "protection_key": code.protection_key,
        "description": code.describe(),
    }


def record_to_json(
    record: CrashRecord, *, fingerprint: Fingerprint | None = None, excerpt: str | None = None
) -> JSON:
    """One crash as the JSON object of docs/report-schema.md (the issue's keys first, then extras).

    `fingerprint` and `excerpt`, when given, stand in for the record's own: the collector stores
    every report under its own fingerprint and without the excerpt, and copying the record with
    `dataclasses.replace` to say so cost more than the conversion itself.
    """
    fp = fingerprint if fingerprint is not None else record.fingerprint
    return {
        "kind": record.kind.value,
        "title": record.title,
        "reason": record.reason,
        "guilty_frame": record.guilty_frame,
        "fingerprint": fp.value if fp else None,
        "corrupted": record.corrupted,
        "fault_address": record.fault_address,
        "cpu": record.cpu,
        "pid": record.pid,
        "comm": record.comm,
        "tainted": record.tainted,
        "kernel_release": record.kernel_release,
        "hardware": record.hardware,
        "modules": list(record.modules),
        "panic_message": record.panic_message,
        "rip": _rip(record.rip),
        "call_trace": [_frame(f) for f in record.call_trace],
        "registers": {name: hex(value) for name, value in record.registers.items()},
        "code": _code(record.code),
        # documented extras
        "normalized_reason": record.normalized_reason,
        "fingerprint_version": fp.version if fp else None,
        "fingerprint_reason": fp.reason if fp else None,
        "fingerprint_frames": list(fp.frames) if fp else [],
        "fingerprint_skipped": [{"function": s.function, "rule": s.rule} for s in fp.skipped] if fp else [],
        "arch": record.arch,
        "oops_code": _oops_code(record.oops_code),
        "oops_code_raw": record.oops_code_raw,
        "oops_number": record.oops_number,
        "oops_flags": list(record.oops_flags),
        "taint_flags": list(record.taint_flags),
        "corrupted_reason": record.corrupted_reason,
        "corrupt_fields": list(record.corrupt_fields),
        "kernel_build": record.kernel_build,
        "bios": record.bios,
        "module_taints": dict(record.module_taints),
        "last_unloaded": record.last_unloaded,
        "code_line": record.code_line,
        "related": list(record.related),
        "first_line": record.first_line,
        "last_line": record.last_line,
        "excerpt": record.excerpt if excerpt is None else excerpt,
    }


def system_to_json(system: SystemFacts) -> JSON:
    """A dump's `sys` facts; every SystemFacts field under its own name (tuples as JSON arrays)."""
    out = dataclasses.asdict(system)
    if system.load_average is not None:
        out["load_average"] = list(system.load_average)
    return out


def capture_to_json(
    path: str,
    records: Sequence[CrashRecord],
    system: SystemFacts | None = None,
    *,
    format: str | None = None,
    source: str | None = None,
    log_form: str | None = None,
    skipped_lines: int | None = None,
    user_faults: dict[str, int] | None = None,
) -> JSON:
    """One input of `crashfleet inspect --json`: its path, its crashes and, for dumps, the `sys` facts.

    `format` and `source` (what `open_capture` found and where the log came from), `log_form`,
    `skipped_lines` (other programs' lines not read) and `user_faults` (user-space faults per
    program, analysis.userfaults) are added when given.
    """
    out: JSON = {"path": path}
    if format is not None:
        out["format"] = format
    if source is not None:
        out["source"] = source
    if log_form is not None:
        out["log_form"] = log_form
    if skipped_lines is not None:
        out["skipped_lines"] = skipped_lines
    if user_faults is not None:
        out["user_faults"] = dict(sorted(user_faults.items()))
    out["crashes"] = [record_to_json(r) for r in records]
    if system is not None:
        out["system"] = system_to_json(system)
    return out


# --- the way back ------------------------------------------------------------------------------


def _register_value(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.startswith("0x") and 2 < len(value) <= 18:
        try:
            return int(value, 16)
        except ValueError:
            return None
    return None


class _Reader:
    """Typed access to one JSON object; every mistake becomes a CrashfleetInputError naming the key."""

    def __init__(self, data: object, source: str, where: str) -> None:
        if not isinstance(data, Mapping):
            raise CrashfleetInputError(source, f"{where}: expected an object, got {type(data).__name__}")
        self.data: Mapping[str, object] = data
        self.source = source
        self.where = where

    def _fail(self, key: str, expected: str) -> CrashfleetInputError:
        got = type(self.data.get(key)).__name__ if key in self.data else "nothing"
        return CrashfleetInputError(self.source, f"{self.where}.{key}: expected {expected}, got {got}")

    def _get(self, key: str, kind: type[T], expected: str, default: T | None, required: bool) -> T | None:
        if key not in self.data:
            if required:
                raise self._fail(key, expected)
            return default
        value = self.data[key]
        if value is None:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self._fail(key, expected)
        return value

    def text_or_none(self, key: str, required: bool = False) -> str | None:
        return self._get(key, str, "a string or null", None, required)

    def text(self, key: str, default: str = "") -> str:
        value = self._get(key, str, "a string", default, False)
        return default if value is None else value

    def integer_or_none(self, key: str, required: bool = False) -> int | None:
        return self._get(key, int, "an integer or null", None, required)

    def integer(self, key: str, default: int = 0) -> int:
        value = self._get(key, int, "an integer", default, False)
        return default if value is None else value

    def number_or_none(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._fail(key, "a number or null")
        return float(value)

    def numbers_or_none(self, key: str, count: int) -> tuple[float, ...] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if (
            not isinstance(value, list)
            or len(value) != count
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value)
        ):
            raise self._fail(key, f"an array of {count} numbers or null")
        return tuple(float(v) for v in value)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self._get(key, bool, "true or false", default, False)
        return default if value is None else value

    def array(self, key: str) -> list[object]:
        value = self._get(key, list, "an array", [], False)
        return [] if value is None else value

    def strings(self, key: str) -> tuple[str, ...]:
        items = self.array(key)
        if not all(isinstance(i, str) for i in items):
            raise self._fail(key, "an array of strings")
        return tuple(str(i) for i in items)

    def child(self, key: str) -> _Reader | None:
        value = self.data.get(key)
        return None if value is None else _Reader(value, self.source, f"{self.where}.{key}")

    def register(self, key: str) -> int | None:
        """A register value: a hex string, or an integer as releases before hex strings stored it."""
        value = self.data.get(key)
        number = _register_value(value)
        if value is not None and number is None:
            raise self._fail(key, "a hex string (0x...) or null")
        return number

    def register_map(self, key: str) -> dict[str, int]:
        value = self.data.get(key) or {}
        if not isinstance(value, Mapping):
            raise self._fail(key, "an object of hex strings")
        out: dict[str, int] = {}
        for name, raw in value.items():
            number = _register_value(raw)
            if not isinstance(name, str) or number is None:
                raise self._fail(key, "an object of hex strings (0x...)")
            out[name] = number
        return out

    def str_map(self, key: str) -> dict[str, str]:
        value = self.data.get(key) or {}
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self._fail(key, "an object of strings")
        return {str(k): str(v) for k, v in value.items()}

    def children(self, key: str) -> list[_Reader]:
        return [
            _Reader(item, self.source, f"{self.where}.{key}[{i}]") for i, item in enumerate(self.array(key))
        ]

    def enum(self, key: str, kind: type[CrashKind] | type[StackContext], default: str) -> str:
        value = self.text(key, default)
        try:
            return kind(value).value
        except ValueError:
            allowed = ", ".join(m.value or '""' for m in kind)
            raise CrashfleetInputError(
                self.source, f"{self.where}.{key}: {value!r} is not one of {allowed}"
            ) from None


def _source_back(reader: _Reader) -> tuple[SourceLocation, ...]:
    return tuple(
        SourceLocation(function=s.text("function"), file=s.text("file"), line=s.integer("line"))
        for s in reader.children("source")
    )


def _rip_back(reader: _Reader | None) -> Rip | None:
    if reader is None:
        return None
    return Rip(
        function=reader.text("function"),
        offset=reader.integer_or_none("offset"),
        size=reader.integer_or_none("size"),
        module=reader.text_or_none("module"),
        address=reader.integer_or_none("address"),
        source=_source_back(reader),
    )


def _frame_back(reader: _Reader) -> CallFrame:
    return CallFrame(
        function=reader.text("function"),
        offset=reader.integer_or_none("offset"),
        size=reader.integer_or_none("size"),
        module=reader.text_or_none("module"),
        reliable=reader.flag("reliable", True),
        context=StackContext(reader.enum("context", StackContext, "")),
        address=reader.integer_or_none("address"),
        source=_source_back(reader),
    )


def _code_back(reader: _Reader | None) -> CodeDecode | None:
    if reader is None:
        return None
    raw = reader.text("bytes")
    try:
        code_bytes = bytes.fromhex(raw)
    except ValueError:
        raise CrashfleetInputError(reader.source, f"{reader.where}.bytes: not a hex string") from None
    return CodeDecode(
        arch=reader.text("arch"),
        code_bytes=code_bytes,
        fault_offset=reader.integer("fault_offset", -1),
        instruction=reader.text_or_none("instruction"),
        base_register=reader.text_or_none("base_register"),
        index_register=reader.text_or_none("index_register"),
        displacement=reader.integer_or_none("displacement"),
        bad_register=reader.text_or_none("bad_register"),
        bad_register_value=reader.register("bad_register_value"),
        access=reader.text_or_none("access"),
        operation=reader.text_or_none("operation"),
        error=reader.text_or_none("error"),
    )


def _oops_code_back(reader: _Reader | None) -> PageFaultCode | None:
    if reader is None:
        return None
    value = reader.integer_or_none("value", required=True)
    if value is None:
        raise CrashfleetInputError(reader.source, f"{reader.where}.value: expected an integer, got null")
    return PageFaultCode.decode(value)


def _fingerprint_back(reader: _Reader, kind: str) -> Fingerprint | None:
    value = reader.text_or_none("fingerprint")
    if value is None:
        return None
    return Fingerprint(
        value=value,
        version=reader.text("fingerprint_version"),
        kind=kind,
        reason=reader.text("fingerprint_reason"),
        frames=reader.strings("fingerprint_frames"),
        skipped=tuple(
            SkippedFrame(function=s.text("function"), rule=s.text("rule"))
            for s in reader.children("fingerprint_skipped")
        ),
    )


def record_from_json(data: object, source: str = "<report>") -> CrashRecord:
    """The CrashRecord a `record_to_json` object describes; refuses malformed input naming `source`.

    The fingerprint's kind is the record's kind (compute() never makes them differ).
    """
    r = _Reader(data, source, "crash")
    for key in ("kind", "title", "reason"):
        if key not in r.data:
            raise CrashfleetInputError(source, f"crash.{key}: missing")
    kind = CrashKind(r.enum("kind", CrashKind, CrashKind.UNKNOWN.value))
    return CrashRecord(
        kind=kind,
        reason=r.text("reason"),
        normalized_reason=r.text("normalized_reason"),
        title=r.text("title"),
        guilty_frame=r.text_or_none("guilty_frame"),
        arch=r.text("arch", "x86_64"),
        fault_address=r.integer_or_none("fault_address"),
        oops_code=_oops_code_back(r.child("oops_code")),
        oops_code_raw=r.integer_or_none("oops_code_raw"),
        oops_number=r.integer_or_none("oops_number"),
        oops_flags=r.strings("oops_flags"),
        tainted=r.text_or_none("tainted"),
        taint_flags=r.strings("taint_flags"),
        cpu=r.integer_or_none("cpu"),
        pid=r.integer_or_none("pid"),
        comm=r.text_or_none("comm"),
        kernel_release=r.text_or_none("kernel_release"),
        kernel_build=r.text_or_none("kernel_build"),
        hardware=r.text_or_none("hardware"),
        bios=r.text_or_none("bios"),
        modules=r.strings("modules"),
        module_taints=r.str_map("module_taints"),
        last_unloaded=r.text_or_none("last_unloaded"),
        panic_message=r.text_or_none("panic_message"),
        rip=_rip_back(r.child("rip")),
        call_trace=tuple(_frame_back(f) for f in r.children("call_trace")),
        registers=r.register_map("registers"),
        code_line=r.text_or_none("code_line"),
        code=_code_back(r.child("code")),
        fingerprint=_fingerprint_back(r, kind.value),
        corrupted=r.flag("corrupted"),
        corrupted_reason=r.text_or_none("corrupted_reason"),
        corrupt_fields=r.strings("corrupt_fields"),
        related=r.strings("related"),
        first_line=r.integer("first_line"),
        last_line=r.integer("last_line"),
        excerpt=r.text("excerpt"),
    )


def system_from_json(data: object, source: str = "<report>") -> SystemFacts:
    """The SystemFacts a `system_to_json` object describes."""
    r = _Reader(data, source, "system")
    values: dict[str, object] = {}
    for f in dataclasses.fields(SystemFacts):
        if f.name == "format":
            values[f.name] = r.text("format")
        elif f.type in ("int | None", int | None):
            values[f.name] = r.integer_or_none(f.name)
        elif f.name == "uptime_seconds":
            values[f.name] = r.number_or_none(f.name)
        elif f.name == "load_average":
            values[f.name] = r.numbers_or_none(f.name, 3)
        else:
            values[f.name] = r.text_or_none(f.name)
    return SystemFacts(**values)  # type: ignore[arg-type]
