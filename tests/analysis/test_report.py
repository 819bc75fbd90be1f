"""`analysis.report`: the JSON matches docs/report.schema.json and round-trips to the same record."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis.decode import decode_code
from analysis.errors import CrashfleetInputError
from analysis.fingerprint import compute
from analysis.model import (
    CallFrame,
    CrashKind,
    CrashRecord,
    PageFaultCode,
    Rip,
    SourceLocation,
    StackContext,
    SystemFacts,
)
from analysis.report import capture_to_json, record_from_json, record_to_json, system_from_json
from analysis.signature import analyze
from tests.analysis.records import seed_record
from tests.conftest import REPO, shared_path

SCHEMA = json.loads((REPO / "docs" / "report.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())

# The keys the issue names for one crash, in order; everything else is a documented extra.
ISSUE_KEYS = [
    "kind", "title", "reason", "guilty_frame", "fingerprint", "corrupted", "fault_address", "cpu", "pid",
    "comm", "tainted", "kernel_release", "hardware", "modules", "panic_message", "rip", "call_trace",
    "registers", "code",
]  # fmt: skip


def finished_seed() -> CrashRecord:
    record = seed_record(
        oops_code=PageFaultCode.decode(0),
        oops_code_raw=0,
        oops_number=1,
        oops_flags=("SMP",),
        modules=("veth", "e1000e"),
        module_taints={"e1000e": "OE"},
        last_unloaded="scsi_wait_scan",
        code_line="Code: 4c 8b 63 20 49 8d 44 24 60 <49> 39 44 24 60 74 44",
    )
    assert record.code_line is not None
    record.code = decode_code(record.code_line, record.arch, record.registers, record.fault_address)
    record.fingerprint = compute(record)
    return record


def roundtrip(record: CrashRecord) -> CrashRecord:
    return record_from_json(json.loads(json.dumps(record_to_json(record))))


def test_issue_keys_first_and_schema_valid() -> None:
    doc = record_to_json(finished_seed())
    assert list(doc)[: len(ISSUE_KEYS)] == ISSUE_KEYS
    assert doc["fingerprint"] == finished_seed().fingerprint.value  # type: ignore[union-attr]
    assert doc["code"]["instruction"] == "cmp qword ptr [r12 + 0x60], rax"
    assert doc["code"]["bad_register"] == "r12"
    assert doc["code"]["bad_register_value"] == "0x0"
    assert doc["rip"] == {
        "function": "__netif_receive_skb",
        "offset": 0x60,
        "size": 0x6E0,
        "module": None,
        "address": 0xFFFFFFFF8142BB40,
    }
    assert doc["oops_code"]["description"] == "kernel-mode read, not-present page"
    VALIDATOR.validate(capture_to_json("seed.txt", [finished_seed()]))


def test_roundtrip_exact() -> None:
    record = finished_seed()
    assert roundtrip(record) == record


def test_roundtrip_symbolized_and_contexts() -> None:
    where = (
        SourceLocation("inlined_helper", "net/core/dev.c", 3120),
        SourceLocation("__netif_receive_skb", "net/core/dev.c", 3200),
    )
    record = seed_record(
        rip=Rip("__netif_receive_skb", 0x60, 0x6E0, "mod", 0xFFFFFFFF8142BB40, where),
        call_trace=(CallFrame("f", 1, 2, "m", False, StackContext.IRQ, 0xFFFF, where),),
    )
    record.fingerprint = compute(record)
    assert roundtrip(record) == record
    VALIDATOR.validate(capture_to_json("x", [record]))


def test_capture_with_system_facts() -> None:
    system = SystemFacts(
        format="kdump-zlib",
        release="6.1.0-56-amd64",
        cpus=2,
        memory_bytes=256 << 20,
        kernel_offset=0x1C000000,
    )
    doc = capture_to_json("vmcore", [], system, format="kdump-zlib", source="vmcore")
    VALIDATOR.validate(doc)
    assert doc["crashes"] == []
    assert system_from_json(doc["system"]) == system


def test_system_facts_from_debuginfo_roundtrip() -> None:
    """TASKS, LOAD AVERAGE and UPTIME (filled only with the debug vmlinux) as JSON and back."""
    system = SystemFacts(
        format="kdump-zlib", cpus=2, tasks=57, load_average=(0.240234375, 0.05, 0.0), uptime_seconds=9.652
    )
    doc = capture_to_json("vmcore", [], system, format="kdump-zlib", source="vmcore")
    VALIDATOR.validate(doc)
    assert doc["system"]["load_average"] == [0.240234375, 0.05, 0.0]
    assert system_from_json(json.loads(json.dumps(doc["system"]))) == system
    assert system_from_json({"format": "elf", "load_average": [1, 2, 3], "uptime_seconds": 5}) == SystemFacts(
        "elf", load_average=(1.0, 2.0, 3.0), uptime_seconds=5.0
    )


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("load_average", [1.0, 2.0], "an array of 3 numbers or null"),
        ("load_average", [1.0, 2.0, "3"], "an array of 3 numbers or null"),
        ("load_average", [True, 2.0, 3.0], "an array of 3 numbers or null"),
        ("load_average", "1 2 3", "an array of 3 numbers or null"),
        ("uptime_seconds", "4s", "a number or null"),
        ("uptime_seconds", True, "a number or null"),
        ("tasks", 5.5, "an integer or null"),
    ],
)
def test_malformed_system_facts_name_the_key(key: str, value: object, expected: str) -> None:
    doc = {"format": "elf", key: value}
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate({**capture_to_json("vmcore", []), "system": doc})
    with pytest.raises(CrashfleetInputError, match=f"system.{key}: expected {expected}"):
        system_from_json(doc, "report.json")


def test_schema_rejects_undocumented_keys() -> None:
    doc = capture_to_json("x", [finished_seed()])
    doc["crashes"][0]["surprise"] = 1
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(doc)


def test_schema_documents_every_key() -> None:
    """docs/report-schema.md names every key the schema allows."""
    prose = (REPO / "docs" / "report-schema.md").read_text()
    keys: set[str] = set(SCHEMA["properties"])
    for definition in SCHEMA["$defs"].values():
        keys |= set(definition.get("properties", {}))
    missing = sorted(k for k in keys if f"`{k}`" not in prose)
    assert not missing, f"undocumented keys in docs/report-schema.md: {missing}"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("kind"), "crash.kind: missing"),
        (lambda d: d.update(kind="meltdown"), "crash.kind: 'meltdown' is not one of"),
        (lambda d: d.update(cpu="twelve"), "crash.cpu: expected an integer or null, got str"),
        (lambda d: d.update(corrupted=1), "crash.corrupted: expected true or false, got int"),
        (lambda d: d.update(registers={"rax": "sixty"}), "crash.registers: expected an object of hex strings"),
        (lambda d: d.update(registers={"rax": "0x" + "f" * 17}), "crash.registers: expected an object of hex strings"),
        (lambda d: d.update(modules=[1]), "crash.modules: expected an array of strings"),
        (lambda d: d.update(call_trace=[7]), "crash.call_trace[0]: expected an object, got int"),
        (lambda d: d["code"].update(bytes="zz"), "crash.code.bytes: not a hex string"),
        (
            lambda d: d["call_trace"][0].update(context="elsewhere"),
            "crash.call_trace[0].context: 'elsewhere'",
        ),
    ],
)
def test_malformed_json_names_source_and_key(mutate: Any, message: str) -> None:
    doc = record_to_json(finished_seed())
    mutate(doc)
    with pytest.raises(CrashfleetInputError) as info:
        record_from_json(doc, source="spool/0001.json")
    assert info.value.path == "spool/0001.json"
    assert message in info.value.reason


def test_not_an_object() -> None:
    with pytest.raises(CrashfleetInputError, match="expected an object, got list"):
        record_from_json([], source="x")


_text = st.text(max_size=30)
_opt_int = st.one_of(st.none(), st.integers(0, 2**64 - 1))


@st.composite
def records(draw: st.DrawFn) -> CrashRecord:
    frames = draw(
        st.lists(
            st.builds(
                CallFrame,
                function=_text,
                offset=st.one_of(st.none(), st.integers(0, 2**32)),
                size=st.one_of(st.none(), st.integers(0, 2**32)),
                module=st.one_of(st.none(), _text),
                reliable=st.booleans(),
                context=st.sampled_from(list(StackContext)),
                address=_opt_int,
            ),
            max_size=5,
        )
    )
    record = CrashRecord(
        kind=draw(st.sampled_from(list(CrashKind))),
        reason=draw(_text),
        normalized_reason=draw(_text),
        title=draw(_text),
        guilty_frame=draw(st.one_of(st.none(), _text)),
        fault_address=draw(_opt_int),
        oops_code=draw(st.one_of(st.none(), st.integers(0, 0x3F).map(PageFaultCode.decode))),
        cpu=draw(st.one_of(st.none(), st.integers(0, 8191))),
        pid=draw(st.one_of(st.none(), st.integers(0, 2**22))),
        comm=draw(st.one_of(st.none(), _text)),
        tainted=draw(st.one_of(st.none(), _text)),
        modules=tuple(draw(st.lists(_text, max_size=4))),
        rip=draw(
            st.one_of(
                st.none(), st.builds(Rip, function=_text, offset=st.one_of(st.none(), st.integers(0, 2**32)))
            )
        ),
        call_trace=tuple(frames),
        registers=draw(
            st.dictionaries(st.sampled_from(["rax", "r12", "x0", "pc", "cr2"]), st.integers(0, 2**64 - 1))
        ),
        code_line=draw(st.one_of(st.none(), _text)),
        corrupted=draw(st.booleans()),
        excerpt=draw(_text),
    )
    if record.code_line is not None:
        record.code = decode_code(record.code_line, record.arch, record.registers, record.fault_address)
    if draw(st.booleans()):
        record.fingerprint = compute(record)
    return record


@settings(max_examples=60, deadline=None)
@given(records())
def test_roundtrip_any_record(record: CrashRecord) -> None:
    doc = record_to_json(record)
    VALIDATOR.validate({"path": "p", "crashes": [doc]})
    assert roundtrip(record) == record


def _real_logs() -> list[Path]:
    seed = shared_path("corpora", "seed")
    logs = sorted(seed.glob("buildtest07-console*.txt"))
    logs += sorted(shared_path("vmcores").glob("*/serial.log"))
    logs += sorted(shared_path("corpora", "syzkaller", "report").glob("*"))[::10]
    return logs


def test_real_logs_validate_and_roundtrip() -> None:
    """Every record of the seed, the vmcore consoles and a tenth of the syzkaller corpus."""
    count = 0
    for path in _real_logs():
        found = analyze(path.read_bytes())
        VALIDATOR.validate(capture_to_json(str(path), found))
        for record in found:
            assert roundtrip(record) == record, path
            count += 1
    assert count > 100


def test_dataclass_fields_all_serialized() -> None:
    """A new CrashRecord field must be added to the JSON (and the schema), or this fails."""
    doc = record_to_json(finished_seed())
    derived = {"oops_code", "code", "fingerprint", "rip", "call_trace"}
    for f in dataclasses.fields(CrashRecord):
        assert f.name in doc or f.name in derived, f"CrashRecord.{f.name} is not in the report JSON"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(list(record_to_json(finished_seed()))), _json, max_size=12))
def test_hostile_json_only_raises_input_error(doc: dict[str, Any]) -> None:
    """Whatever a spool file or a database row holds, the way back raises nothing but the input error."""
    base = record_to_json(finished_seed())
    base.update(doc)
    try:
        record = record_from_json(base, source="row 7")
    except CrashfleetInputError as exc:
        assert exc.path == "row 7"
    else:
        assert isinstance(record, CrashRecord)
