"""The stored form of a crash signature: the report JSON of docs/report-schema.md.

`crashes.signature_json` holds `analysis.report.record_to_json` of the crash as the collector
signed it (its `fingerprint*` keys are the collector's own fingerprint, the one the crash row
and its cluster carry), so `CrashDetail.signature_json`, the HTTP API and the web page hand out
the same document `crashfleet inspect --json` prints, and `crashfleet recluster` re-signs it
with `record_from_json`. The excerpt is kept in its own column, so the stored document's
`excerpt` is empty.

Collectors before this format stored protobuf's JSON mapping of the `CrashSignature` message
(`wire.convert.signature_to_json`). This module is the one place that tells the two apart
(`is_report_json`): readers get report JSON either way (`as_report_json`), recluster reads both
(`record_from_stored`) and rewrites what it re-signs in the current format.
"""

from __future__ import annotations

import json
from typing import Any

from analysis.errors import CrashfleetInputError
from analysis.model import CrashRecord, Fingerprint
from analysis.report import record_from_json, record_to_json
from wire import convert

__all__ = ["StoredSignatureError", "as_report_json", "is_report_json", "record_from_stored", "stored_json"]

# A key every record_to_json object has and protobuf's CrashSignature mapping never has.
_REPORT_MARKER = "fingerprint_frames"


class StoredSignatureError(ValueError):
    """Stored signature text that is neither report JSON nor the legacy protobuf JSON."""


# Built once: json.dumps with options other than the defaults builds an encoder per call, and
# stored_json runs for every report on the ingest path. record_to_json builds a fresh tree, so
# there is no cycle to look for.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)


def stored_json(record: CrashRecord, fingerprint: Fingerprint | None = None) -> str:
    """The text to store for `record` signed with `fingerprint` (compact, excerpt left out)."""
    return _COMPACT.encode(record_to_json(record, fingerprint=fingerprint, excerpt=""))


def is_report_json(document: object) -> bool:
    """True for a parsed report object; False for legacy protobuf JSON (or anything else)."""
    return isinstance(document, dict) and _REPORT_MARKER in document


def record_from_stored(text: str, source: str = "signature_json") -> CrashRecord:
    """The record stored text describes, in either format; StoredSignatureError says why not."""
    try:
        document: Any = json.loads(text)
    except ValueError as exc:
        raise StoredSignatureError(f"{source}: not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise StoredSignatureError(f"{source}: expected a JSON object, got {type(document).__name__}")
    if is_report_json(document):
        try:
            return record_from_json(document, source)
        except CrashfleetInputError as exc:
            raise StoredSignatureError(str(exc)) from None
    try:
        return convert.signature_from_json(text)
    except convert.WireError as exc:
        raise StoredSignatureError(
            f"{source}: neither report JSON nor a CrashSignature: {exc.reason}"
        ) from None


def as_report_json(text: str) -> str:
    """Stored text as report JSON: current rows unchanged, legacy rows converted (their
    `fingerprint*` keys are then what the agent sent; `crashfleet recluster` rewrites them).

    Text that is not a signature at all (a hand-edited row, a test double) is returned as is,
    so a reader still shows what is there instead of failing the whole crash page.
    """
    if not text:
        return text
    try:
        document = json.loads(text)
    except ValueError:
        return text
    if is_report_json(document) or not isinstance(document, dict):
        return text
    try:
        return stored_json(convert.signature_from_json(text))
    except convert.WireError:
        return text
