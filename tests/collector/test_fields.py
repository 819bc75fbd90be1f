"""collector.fields: every string field of the wire has a rule, every rule names a field, and the
rules refuse no crash the analyzer finds in real logs (the project's fixtures and, when present,
the syzkaller corpus and the QEMU console logs of ../shared)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from analysis.signature import analyze
from collector.fields import FIELD_RULES, FieldError, check_strings, rule_for, strings_clean
from tests.conftest import REPO, SHARED
from wire import convert
from wire.v1 import crash_pb2, ingest_service_pb2

REQUESTS = (ingest_service_pb2.ReportCrashRequest.DESCRIPTOR, ingest_service_pb2.HeartbeatRequest.DESCRIPTOR)


def string_paths(descriptor: Descriptor, prefix: str = "") -> Iterator[str]:
    """Every string-valued path under a message type, as FIELD_RULES names them."""
    for field in descriptor.fields:
        path = f"{prefix}.{field.name}" if prefix else field.name
        inner = field.message_type
        if inner is not None and inner.GetOptions().map_entry:
            for part in ("key", "value"):
                if inner.fields_by_name[part].type == FieldDescriptor.TYPE_STRING:
                    yield f"{path}.{part}"
        elif inner is not None:
            yield from string_paths(inner, path)
        elif field.type == FieldDescriptor.TYPE_STRING:
            yield path


WIRE_PATHS = sorted({p for d in REQUESTS for p in string_paths(d)})


def test_every_string_field_has_a_rule() -> None:
    """A string field added to the proto without a row in FIELD_RULES fails here, by name."""
    missing = [p for p in WIRE_PATHS if p not in FIELD_RULES]
    assert missing == [], f"string fields without a rule in collector/fields.py FIELD_RULES: {missing}"


def test_every_rule_names_a_field() -> None:
    stale = sorted(set(FIELD_RULES) - set(WIRE_PATHS))
    assert stale == [], f"FIELD_RULES rows for fields the wire no longer has: {stale}"


def map_paths(descriptor: Descriptor, prefix: str = "") -> Iterator[str]:
    for field in descriptor.fields:
        path = f"{prefix}.{field.name}" if prefix else field.name
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            yield path
        elif field.message_type is not None:
            yield from map_paths(field.message_type, path)


MAP_PATHS = {p for d in REQUESTS for p in map_paths(d)}


def _field_path(field: str) -> str:
    """`signature.call_trace[0].source[0].file` -> `signature.call_trace.source.file`."""
    return re.sub(r"\[[^\]]*\]", "", field)


@pytest.mark.parametrize("path", WIRE_PATHS)
def test_the_walk_covers_every_field(path: str) -> None:
    """Put a value one character over its bound into each string field in turn: the fast path and
    the walk must both refuse it, and the walk must name that field (a skipped field would pass)."""
    request = ingest_service_pb2.ReportCrashRequest()
    _set(request, path.split("."), "x" * (rule_for(path).max_chars + 1))
    assert not strings_clean(request)
    with pytest.raises(FieldError) as err:
        check_strings(request)
    assert err.value.too_large
    owner = path.rsplit(".", 1)[0]
    assert _field_path(err.value.field) == (owner if owner in MAP_PATHS else path)


def _set(msg: Message, parts: list[str], value: str) -> None:
    """Set the field at `parts` (adding list items and map entries on the way) to `value`."""
    name, rest = parts[0], parts[1:]
    field = msg.DESCRIPTOR.fields_by_name[name]
    target = getattr(msg, name)
    inner = field.message_type
    if inner is not None and inner.GetOptions().map_entry:
        value_is_string = inner.fields_by_name["value"].type == FieldDescriptor.TYPE_STRING
        if rest == ["key"]:
            target[value] = "ok" if value_is_string else 1
        else:
            target["k"] = value
    elif inner is not None:
        item = target.add() if field.is_repeated else target
        _set(item, rest, value)
    elif field.is_repeated:
        target.append(value)
    else:
        setattr(msg, name, value)


def _logs() -> list[Path]:
    own = sorted(p for p in (REPO / "tests" / "data").rglob("*") if p.suffix in (".log", ".txt") and p.is_file())
    shared: list[Path] = []
    corpus = SHARED / "corpora" / "syzkaller" / "report"
    if corpus.is_dir():
        shared += sorted(corpus.iterdir())
    vmcores = SHARED / "vmcores"
    if vmcores.is_dir():
        shared += sorted(vmcores.glob("*/serial.log")) + sorted(vmcores.glob("*/dmesg.txt"))
    return own + shared


def test_the_rules_refuse_no_real_crash() -> None:
    """Every crash the analyzer finds in real logs, as the agent would send it, passes the rules:
    a bound set too tight or a character set too narrow would drop genuine crashes."""
    logs = _logs()
    checked = 0
    refused: list[str] = []
    for path in logs:
        for index, record in enumerate(analyze(path.read_bytes())):
            request = convert.report_request(
                record,
                key=f"corpus-{checked:08d}",
                host=crash_pb2.HostFacts(hostname="web-1"),
                source_path=str(path.name),
            )
            checked += 1
            if not strings_clean(request):
                try:
                    check_strings(request)
                except Exception as exc:
                    refused.append(f"{path.name}#{index}: {exc}")
    assert checked >= 20, f"only {checked} crashes in {len(logs)} logs: the fixtures moved?"
    assert refused == []
    if not (SHARED / "corpora" / "syzkaller").is_dir():
        pytest.skip(f"checked {checked} crashes from the project's fixtures; ../shared absent, corpus not run")
