"""The stored signature format (collector.signature): report JSON in, report JSON out, and rows
written by older collectors (protobuf JSON) still read, convert and re-sign."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest

from analysis.fingerprint import compute
from analysis.model import Fingerprint
from analysis.report import record_to_json
from collector.ingest import Ingestor, resign_stored
from collector.metrics import Metrics
from collector.signature import (
    StoredSignatureError,
    as_report_json,
    is_report_json,
    record_from_stored,
    stored_json,
)
from collector.store import Store, open_store
from tests.collector.conftest import make_crash
from tests.collector.records import null_deref
from wire import convert
from wire.v1 import crash_pb2

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "report.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

OTHER_FP = Fingerprint(
    "0" * 32, "fp-old", "null-deref", "BUG: kernel NULL pointer dereference", ("x", "y", "z")
)


def _validate_crash(document: dict[str, object]) -> None:
    """The stored document is a crash object of docs/report.schema.json (inside an input object,
    which is how the schema defines crashes)."""
    VALIDATOR.validate({"path": "stored", "crashes": [document]})


def test_stored_json_is_schema_valid_report_json_without_excerpt() -> None:
    record = null_deref()
    text = stored_json(record, OTHER_FP)
    document = json.loads(text)
    _validate_crash(document)
    assert is_report_json(document)
    assert document["excerpt"] == "" and document["fingerprint"] == OTHER_FP.value
    assert document["registers"]["rip"] == "0xffffffffc0a1b01d"  # hex: JSON readers round 64-bit numbers


def test_current_format_round_trips() -> None:
    record = null_deref()
    assert record_from_stored(stored_json(record)) == dataclasses.replace(record, excerpt="")
    assert record_from_stored(stored_json(record, OTHER_FP)) == dataclasses.replace(
        record, excerpt="", fingerprint=OTHER_FP
    )


def test_stored_json_is_the_compact_dump_of_the_signed_record() -> None:
    """stored_json overrides the fingerprint and excerpt instead of copying the record; the text
    must stay what dumping the copy gave, byte for byte (stored rows are compared as text)."""
    record = null_deref()
    assert record.excerpt and record.fingerprint is not None
    for fingerprint in (None, OTHER_FP):
        signed = dataclasses.replace(record, excerpt="", fingerprint=fingerprint or record.fingerprint)
        expected = json.dumps(record_to_json(signed), separators=(",", ":"), ensure_ascii=False)
        assert stored_json(record, fingerprint) == expected


def test_legacy_protobuf_json_still_reads_and_converts() -> None:
    record = null_deref()
    legacy = convert.signature_to_json(record)
    assert not is_report_json(json.loads(legacy))
    assert record_from_stored(legacy) == dataclasses.replace(record, excerpt="")
    converted = as_report_json(legacy)
    _validate_crash(json.loads(converted))
    assert record_from_stored(converted) == dataclasses.replace(record, excerpt="")
    assert as_report_json(converted) == converted  # current rows pass through untouched


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not JSON"),
        ('{"kind": ', "not JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"kind": 5}', "neither report JSON nor a CrashSignature"),
        ('{"no_such_field": 1}', "neither report JSON nor a CrashSignature"),
        ('{"fingerprint_frames": [], "kind": "null-deref", "title": "t"}', "crash.reason: missing"),
        (
            '{"fingerprint_frames": [], "kind": "null-deref", "title": "t", "reason": "r", "cpu": "one"}',
            "crash.cpu",
        ),
    ],
)
def test_unreadable_text_is_a_typed_error(text: str, message: str) -> None:
    with pytest.raises(StoredSignatureError, match=message) as err:
        record_from_stored(text, "crash k1")
    assert "crash k1" in str(err.value)


@pytest.mark.parametrize("text", ["", "not json", "[1]", '{"kind": 5}', "null"])
def test_as_report_json_shows_what_it_cannot_convert(text: str) -> None:
    assert as_report_json(text) == text


def test_ingest_stores_report_json_signed_by_the_collector() -> None:
    """The stored fingerprint is the collector's, not whatever the agent sent."""
    record = dataclasses.replace(null_deref(), fingerprint=OTHER_FP)
    request = convert.report_request(
        record, key="signature-test-1", host=crash_pb2.HostFacts(hostname="web-1"), source_path="/var/crash/1"
    )
    store = open_store("sqlite:///:memory:")
    try:
        new = Ingestor(store, Metrics()).validate(request, "web-1")
    finally:
        store.close()
    document = json.loads(new.signature_json)
    _validate_crash(document)
    assert document["fingerprint"] == new.fingerprint == compute(record).value
    assert document["fingerprint_frames"] == list(new.frames)
    assert document["excerpt"] == "" and new.excerpt == request.log_excerpt


def test_legacy_rows_read_as_report_json_and_recluster_rewrites_them(store: Store) -> None:
    record = dataclasses.replace(null_deref(), fingerprint=OTHER_FP)  # as an old agent signed it
    legacy = convert.signature_to_json(record)
    result = store.ingest(dataclasses.replace(make_crash("legacy-row-1"), signature_json=legacy))
    detail = store.get_crash(result.crash_id)
    assert detail is not None
    document = json.loads(detail.signature_json)
    assert is_report_json(document) and document["fingerprint"] == OTHER_FP.value

    report = store.recluster(resign_stored())
    assert report.crashes == 1 and report.refingerprinted == 1 and not report.failed
    detail = store.get_crash(result.crash_id)
    assert detail is not None
    document = json.loads(detail.signature_json)
    _validate_crash(document)
    # Re-signed and rewritten: the stored document now carries the fingerprint the row has.
    assert document["fingerprint"] == detail.summary.fingerprint == compute(record).value
    assert record_from_stored(detail.signature_json) == dataclasses.replace(
        record, excerpt="", fingerprint=compute(record)
    )


def test_recluster_with_current_rules_moves_nothing(store: Store) -> None:
    record = null_deref()
    fp = compute(record)
    crash = make_crash(
        "current-row-1", fingerprint=fp.value, frames=fp.frames, kind=fp.kind, reason=fp.reason
    )
    result = store.ingest(dataclasses.replace(crash, signature_json=stored_json(record, fp)))
    report = store.recluster(resign_stored())
    assert (report.refingerprinted, report.moves, report.failed) == (0, (), ())
    detail = store.get_crash(result.crash_id)
    assert detail is not None and detail.signature_json == stored_json(record, fp)
