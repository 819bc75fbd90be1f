"""The request string checks (collector.fields): the fast path (`_strings_clean`, one regex per
rule over the strings it governs) says "clean" exactly when the field-naming walk
(`_check_strings`) finds nothing, and a refused report still names its field."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from collector.fields import rule_for
from collector.ingest import (
    MAX_REPEATED,
    IngestError,
    Ingestor,
    InvalidReport,
    ReportTooLarge,
    _check_strings,
    _strings_clean,
)
from collector.metrics import Metrics
from collector.store import open_store
from tests.collector.records import null_deref
from wire import convert
from wire.v1 import crash_pb2, ingest_service_pb2

Mutation = Callable[[ingest_service_pb2.ReportCrashRequest], None]
REASON_MAX = rule_for("signature.reason").max_chars
MODULE_MAX = rule_for("signature.modules").max_chars

CASES: list[tuple[str, Mutation, str | None]] = [
    ("untouched", lambda r: None, None),
    ("tab in reason", lambda r: setattr(r.signature, "reason", "a\tb"), None),
    ("newline in title", lambda r: setattr(r.signature, "title", "BUG\nforged line"), "signature.title"),
    ("C1 CSI in hardware", lambda r: setattr(r.signature, "hardware", "QEMU\x9b31m"), "signature.hardware"),
    ("escape in excerpt (log text is evidence)", lambda r: setattr(r, "log_excerpt", "x\x1b[0m"), None),
    ("NUL in excerpt", lambda r: setattr(r, "log_excerpt", "x\x00y"), "log_excerpt"),
    ("control bytes in code line", lambda r: setattr(r.signature, "code_line", "\x07 <48>"), "signature.code_line"),
    ("terminal escape in code line", lambda r: setattr(r.signature, "code_line", "48 8b \x1b]0;pwned\x07"),
     "signature.code_line"),
    ("3 MB code line", lambda r: setattr(r.signature, "code_line", "48 " * 1_000_000), "signature.code_line"),
    ("non-ASCII in code line", lambda r: setattr(r.signature, "code_line", "48 8b <44> \u00e9"), "signature.code_line"),
    ("space in kind", lambda r: setattr(r.signature, "kind", "null deref"), "signature.kind"),
    ("symbol over its bound", lambda r: setattr(r.signature.rip, "function", "f" * 1025), "signature.rip.function"),
    ("NUL in title", lambda r: setattr(r.signature, "title", "BUG\x00"), "signature.title"),
    ("DEL in comm", lambda r: setattr(r.signature, "comm", "a\x7f"), "signature.comm"),
    ("escape in module", lambda r: r.signature.modules.append("\x1b[31m"), "signature.modules[3]"),
    ("control in frame", lambda r: setattr(r.signature.call_trace[1], "function", "f\x01"),
     "signature.call_trace[1].function"),
    ("control in map key", lambda r: r.signature.module_taints.__setitem__("m\x02", "O"),
     "signature.module_taints['m\\x02']"),
    ("control in map value", lambda r: r.signature.module_taints.__setitem__("m", "\x03"),
     "signature.module_taints['m']"),
    ("control in host facts", lambda r: setattr(r.host, "hardware", "QEMU\x0c"), "host.hardware"),
    ("code_line only exempt in the signature", lambda r: setattr(r.signature.code, "instruction", "\x05"),
     "signature.code.instruction"),
    ("string too long", lambda r: setattr(r.signature, "reason", "r" * (REASON_MAX + 1)), "signature.reason"),
    ("too many modules", lambda r: r.signature.modules.extend(["m"] * MAX_REPEATED), "signature.modules"),
    ("longest string allowed", lambda r: setattr(r.signature, "reason", "r" * REASON_MAX), None),
    ("long strings, none too long", lambda r: r.signature.modules.extend(["m" * MODULE_MAX] * 3), None),
    ("too long among many", lambda r: r.signature.modules.extend(["m" * 9, "m" * (MODULE_MAX + 1)]),
     "signature.modules[4]"),
    ("control in system facts", lambda r: setattr(r.system, "build_id", "ab\x00"), "system.build_id"),
    ("control in fingerprint skip", lambda r: r.signature.fingerprint.skipped.append(
        crash_pb2.SkippedFrame(function="f", rule="\x1f")),
     "signature.fingerprint.skipped[3].rule"),
    ("control in a frame's source", lambda r: r.signature.call_trace[0].source.append(
        crash_pb2.SourceLocation(function="f", file="a\x01.c")),
     "signature.call_trace[0].source[0].file"),
    ("too many source lines", lambda r: r.signature.call_trace[0].source.extend(
        [crash_pb2.SourceLocation(function="f")] * (MAX_REPEATED + 1)), "signature.call_trace[0].source"),
    ("too many registers", lambda r: r.signature.registers.update({f"r{i}": i for i in range(MAX_REPEATED + 1)}),
     "signature.registers"),
    ("control in register name", lambda r: r.signature.registers.__setitem__("r\x0b", 1),
     "signature.registers['r\\x0b']"),
]  # fmt: skip


def _request() -> ingest_service_pb2.ReportCrashRequest:
    return convert.report_request(
        null_deref(),
        key="string-check-1",
        host=crash_pb2.HostFacts(hostname="web-1"),
        source_path="/var/crash/1",
    )


@pytest.mark.parametrize(("case", "mutate", "field"), CASES, ids=[c for c, _, _ in CASES])
def test_fast_path_agrees_with_the_field_naming_walk(case: str, mutate: Mutation, field: str | None) -> None:
    request = _request()
    mutate(request)
    assert _strings_clean(request) is (field is None)
    if field is None:
        _check_strings(request, "")
        return
    with pytest.raises(IngestError) as err:
        _check_strings(request, "")
    assert err.value.field == field


@pytest.mark.parametrize(("case", "mutate", "field"), [c for c in CASES if c[2] is not None],
                         ids=[c for c, _, f in CASES if f is not None])  # fmt: skip
def test_validate_names_the_field(case: str, mutate: Mutation, field: str) -> None:
    request = _request()
    mutate(request)
    store = open_store("sqlite:///:memory:")
    try:
        with pytest.raises((InvalidReport, ReportTooLarge)) as err:
            Ingestor(store, Metrics()).validate(request, "web-1")
    finally:
        store.close()
    assert err.value.field == field
