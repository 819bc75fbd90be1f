"""Turn a complete (or given-up) capture into crash reports: the dump first, the text beside it second.

Every capture yields at least one report. When neither the dump nor any text gives a crash — a
truncated dump, a capture that never completed, an empty log — the result is a *failed-capture*
report carrying the reason and whatever text was there, so an operator sees that a host crashed
even when the evidence is damaged. Nothing here raises for bad input: readers' typed errors become
reasons.

Formats the analysis library does not know are unwrapped here: pstore records (a `Panic#1 Part1`
header per part, parts newest-first, `.enc.z` zlib-compressed) and Ubuntu apport's
`linux-image-*.crash` (RFC822-style fields; binary ones are `base64` followed by indented lines
of base64 gzip data).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import errno
import hashlib
import logging
import re
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agent.layouts import Assessment, Root, SaveStatus
from analysis.errors import CrashfleetInputError
from analysis.model import CrashKind, CrashRecord, SystemFacts
from analysis.sources import MAX_LOG_BYTES, open_capture, read_log_file

__all__ = [
    "MAX_TEXT_BYTES",
    "Analyzer",
    "ExtractedReport",
    "Extraction",
    "ScratchFull",
    "apport_fields",
    "assemble_pstore",
    "default_analyzer",
    "extract_capture",
    "failed_record",
    "report_key",
]

log = logging.getLogger(__name__)

Analyzer = Callable[[bytes], list[CrashRecord]]

MAX_TEXT_BYTES = 16 * 1024 * 1024  # a pstore record or an apport text field is never larger
EXCERPT_BYTES = 64 * 1024  # the collector's excerpt cap (wire.convert.MAX_EXCERPT_BYTES)
MAX_REASON_CHARS = 1000  # a failure reason lists every source tried; the collector caps strings
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # the collector refuses control characters in fields

# Apport fields that hold the crashed kernel's log, best first. CurrentDmesg is the *next* boot's.
APPORT_TEXT_FIELDS = ("VmCoreDmesg", "VmCoreLog", "Dmesg")
APPORT_DUMP_FIELD = "VmCore"

PSTORE_ROOTS = (Root.PSTORE, Root.PSTORE_FS)  # roots whose texts are pstore records, not plain logs
# Crash-time forms in a status file that carry their zone (a zone-less time is left to the dump).
STATUS_TIME_FORMATS = ("%Y-%m-%d %H:%M (%z)", "%Y-%m-%dT%H:%M:%S%z")

_PSTORE_HEADER = re.compile(rb"^(?:Panic|Oops|Emergency|Restart|Halt|Poweroff|Unknown)#(\d+) Part(\d+)\r?\n")


def default_analyzer() -> Analyzer:
    """The analysis library's log -> records entry point (imported late: it pulls capstone)."""
    from analysis.signature import analyze

    return analyze


@dataclass(frozen=True, slots=True)
class ExtractedReport:
    """One report ready for the spool (the service turns it into the wire request)."""

    key: str  # idempotency key
    kind: str  # "crash" or "failed-capture"
    record: CrashRecord
    system: SystemFacts | None
    source_path: str
    crash_time: datetime | None
    log: bytes = b""  # the whole kernel log the record came from (matching live-log reports)


@dataclass(frozen=True, slots=True)
class Extraction:
    reports: tuple[ExtractedReport, ...]
    failed: bool
    reason: str  # what was read, or why it failed
    # The kernel log the capture held: the source the reports came from, or for a failed capture
    # the longest text found ("" when none). The worker counts its hardware-error events.
    log: bytes = b""


def report_key(content: bytes, index: int) -> str:
    """Idempotency key from content: the same log read twice (restart, kill -9) gives the same key."""
    digest = hashlib.sha256(content).hexdigest()
    return hashlib.sha256(f"{digest}:{index}".encode()).hexdigest()


def failed_record(title: str, reason: str, text: bytes) -> CrashRecord:
    """The record of a capture that held no readable crash: unknown kind, corrupted, text attached."""
    excerpt = text[-EXCERPT_BYTES:].decode("utf-8", errors="replace").replace("\0", "")
    reason = _CONTROL.sub(" ", reason)[:MAX_REASON_CHARS]
    return CrashRecord(
        kind=CrashKind.UNKNOWN,
        reason=f"failed capture: {reason}",
        normalized_reason="failed capture",
        title=title,
        corrupted=True,
        corrupted_reason=reason,
        excerpt=excerpt,
    )


# --- pstore -------------------------------------------------------------------------------


def _inflate(data: bytes, path: str) -> bytes:
    """pstore's .enc.z: zlib-wrapped or raw deflate depending on the kernel; capped."""
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS):
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(data, MAX_TEXT_BYTES + 1)
        except zlib.error:
            continue
        if len(out) > MAX_TEXT_BYTES:
            raise CrashfleetInputError(path, f"inflates beyond {MAX_TEXT_BYTES} bytes")
        return out
    raise CrashfleetInputError(path, "corrupt compressed pstore record (.enc.z)")


def _read_capped(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TEXT_BYTES + 1)
    except OSError as exc:
        raise CrashfleetInputError(str(path), exc.strerror or str(exc)) from None
    if len(data) > MAX_TEXT_BYTES:
        raise CrashfleetInputError(str(path), f"larger than {MAX_TEXT_BYTES} bytes; not a pstore record")
    return data


def assemble_pstore(parts: list[tuple[str, bytes]]) -> bytes:
    """pstore dmesg parts (name, bytes) -> one log, oldest text first.

    The kernel writes the newest text as Part1 and older text in higher parts (kmsg_dump walks
    the log backwards), each behind a `Panic#N PartM` header line. Parts without a header go in
    descending name order, as systemd-pstore joins them (a higher record id is a higher part, so
    older text). A `.enc.z` part must already be inflated.
    """
    keyed: list[tuple[int, int, str, bytes]] = []
    for name, data in parts:
        match = _PSTORE_HEADER.match(data)
        if match:
            keyed.append((int(match.group(1)), -int(match.group(2)), name, data[match.end() :]))
        else:
            keyed.append((0, 0, name, data))
    keyed.sort(key=lambda k: k[2], reverse=True)
    keyed.sort(key=lambda k: (k[0], k[1]))  # stable: equal headers keep descending names
    return b"".join(body if body.endswith(b"\n") else body + b"\n" for *_, body in keyed if body)


def _pstore_parts(texts: tuple[Path, ...]) -> bytes | None:
    """The raw dmesg-* parts of a pstore capture, inflated and assembled; None when there are none."""
    parts = []
    for path in texts:
        if path.name == "dmesg.txt":
            continue
        data = _read_capped(path)
        if path.name.endswith(".enc.z"):
            data = _inflate(data, str(path))
        parts.append((path.name, data))
    return assemble_pstore(parts) if parts else None


def _pstore_log(texts: tuple[Path, ...]) -> tuple[str, bytes, bytes]:
    """(source, log, key content) of a pstore capture: a reassembled dmesg.txt wins over the raw parts.

    The key content is the parts as we assemble them whenever there are parts, so a record read
    live from /sys/fs/pstore and the same record after systemd-pstore archived it (with its own
    dmesg.txt) get the same idempotency keys: one crash, one report.
    """
    try:
        assembled = _pstore_parts(texts)
    except CrashfleetInputError:
        assembled = None
        if not any(p.name == "dmesg.txt" for p in texts):
            raise
    for path in texts:
        if path.name == "dmesg.txt":
            data = read_log_file(str(path))
            return str(path), data, assembled if assembled else data
    if assembled is None:
        raise CrashfleetInputError("pstore", "no records")
    if not assembled.strip():
        raise CrashfleetInputError(str(texts[0]), "empty pstore record")
    return str(texts[0]), assembled, assembled


def status_crash_time(status: SaveStatus) -> datetime | None:
    """The status file's crash time when it names its time zone (kdumptool's "(+0100)"), else None."""
    value = status.get("crash_time")
    if not value:
        return None
    for fmt in STATUS_TIME_FORMATS:
        try:
            return datetime.strptime(value, fmt).astimezone(UTC)
        except ValueError:
            continue
    return None


# --- apport -------------------------------------------------------------------------------


def _apport_lines(path: Path) -> Iterator[tuple[str, bool, list[bytes]]]:
    """Stream (key, is_base64, value lines) from an apport report without loading binary fields."""
    key = ""
    binary = False
    lines: list[bytes] = []
    with open(path, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\n")
            if line.startswith(b" ") and key:
                lines.append(line[1:])
                continue
            if key:
                yield key, binary, lines
            name, sep, value = line.partition(b":")
            if not sep or not name or b" " in name:
                key, lines = "", []
                continue
            key = name.decode("ascii", errors="replace")
            value = value.strip()
            binary = value == b"base64"
            lines = [] if binary or not value else [value]
        if key:
            yield key, binary, lines


class ScratchFull(Exception):
    """No room in the state directory to unpack a dump: the capture waits for room, it did not fail."""


def apport_fields(path: Path, scratch: Path) -> tuple[dict[str, bytes], Path | None]:
    """Text fields of an apport report (capped) and its VmCore unpacked into `scratch` (or None).

    Binary values are gzip streams split into base64 lines; they are inflated line by line into
    a file so a multi-gigabyte VmCore never sits in memory.
    """
    fields: dict[str, bytes] = {}
    vmcore: Path | None = None
    try:
        for key, binary, lines in _apport_lines(path):
            if binary:
                if key != APPORT_DUMP_FIELD:
                    continue
                inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)
                with tempfile.NamedTemporaryFile(dir=scratch, prefix="vmcore-", delete=False) as out:
                    vmcore = Path(out.name)
                    for chunk in lines:
                        out.write(inflater.decompress(base64.b64decode(chunk, validate=True)))
                    out.write(inflater.flush())
            elif key in APPORT_TEXT_FIELDS:
                fields[key] = b"\n".join(lines)[:MAX_TEXT_BYTES]
    except (binascii.Error, zlib.error, OSError) as exc:
        if vmcore is not None:
            vmcore.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ScratchFull(f"{path}: no room to unpack its VmCore under {scratch}") from None
        if isinstance(exc, OSError):
            raise CrashfleetInputError(str(path), exc.strerror or str(exc)) from None
        raise CrashfleetInputError(str(path), f"corrupt base64/gzip field: {exc}") from None
    return fields, vmcore


# --- the extraction -----------------------------------------------------------------------


@dataclass(slots=True)
class _Attempt:
    errors: list[str]
    best_text: bytes = b""


def _records_of(
    analyzer: Analyzer,
    source: str,
    log_bytes: bytes,
    system: SystemFacts | None,
    when: datetime | None,
    *,
    key_content: bytes | None = None,
    status: SaveStatus | None = None,
    dump_path: str | None = None,
) -> list[ExtractedReport]:
    records = analyzer(log_bytes)
    if dump_path is not None:  # the RIP address the text lacked is on the dump's stack
        from analysis.vmcore.faultframe import fill_rip_addresses

        records = fill_rip_addresses(dump_path, records)
    if system is not None and system.crash_time is not None:
        when = datetime.fromtimestamp(system.crash_time, UTC)
    elif status is not None:
        when = status_crash_time(status) or when
    release = system.release if system is not None and system.release else None
    if release is None and status is not None:
        release = status.kernel_release
    reports = []
    for index, record in enumerate(records):
        if record.kernel_release is None and release:
            record.kernel_release = release
        reports.append(
            ExtractedReport(
                key=report_key(log_bytes if key_content is None else key_content, index),
                kind="crash",
                record=record,
                system=system,
                source_path=source,
                crash_time=when,
                log=log_bytes,
            )
        )
    return reports


def _try_dump(
    path: Path, analyzer: Analyzer, attempt: _Attempt, when: datetime | None, status: SaveStatus | None = None
) -> list[ExtractedReport]:
    try:
        capture = open_capture(str(path))
    except CrashfleetInputError as exc:
        attempt.errors.append(f"{path.name}: {exc.reason}")
        return []
    if not attempt.best_text:
        attempt.best_text = capture.log
    dump_path = capture.source if capture.system is not None else None
    reports = _records_of(
        analyzer, str(path), capture.log, capture.system, when, status=status, dump_path=dump_path
    )
    if not reports:
        attempt.errors.append(f"{path.name}: no crash in the kernel log ({len(capture.log)} bytes)")
    return reports


def extract_capture(
    assessment: Assessment,
    analyzer: Analyzer,
    *,
    scratch: Path,
    failure: str | None = None,
) -> Extraction:
    """Read a capture and return its reports; `failure` forces a failed capture (it never completed).

    Order: each dump (open_capture: ELF, kdump-compressed, flattened, gzip), then each text
    (vmcore-dmesg.txt, dmesg.<stamp>, pstore records). The first source that yields records wins.
    """
    rule = assessment.capture.rule
    when = datetime.fromtimestamp(assessment.newest_mtime, UTC) if assessment.newest_mtime else None
    status = assessment.status
    # What the dump tool itself says it could not save (layouts left those files out).
    tool_says = [f"{rule.status.name}: {f}" for f in status.failures] if status and rule.status else []
    attempt = _Attempt(errors=list(tool_says))
    if failure is None:
        for dump in assessment.dumps:
            if rule.name == "apport":
                reports = _try_apport(dump, analyzer, attempt, scratch, when)
            else:
                reports = _try_dump(dump, analyzer, attempt, when, status)
            if reports:
                return Extraction(
                    tuple(reports), False, f"{len(reports)} crash(es) from {dump.name}", reports[0].log
                )
    for source, data, key_content in _texts(assessment, attempt):
        if len(data) > len(attempt.best_text) or not attempt.best_text:
            attempt.best_text = data
        if failure is not None:
            continue
        reports = _records_of(analyzer, source, data, None, when, key_content=key_content, status=status)
        if reports:
            return Extraction(
                tuple(reports), False, f"{len(reports)} crash(es) from {Path(source).name}", data
            )
        attempt.errors.append(f"{Path(source).name}: no crash in the kernel log")
    if failure is not None and tool_says:
        failure = "; ".join([failure, *tool_says])
    reason = failure or "; ".join(attempt.errors) or "no dump and no kernel log"
    return Extraction(
        (_failed(assessment, reason, attempt.best_text, when),), True, reason, attempt.best_text
    )


def _texts(assessment: Assessment, attempt: _Attempt) -> Iterator[tuple[str, bytes, bytes]]:
    """(source, log, key content) of each text in order."""
    if not assessment.texts:
        return
    if assessment.capture.rule.root in PSTORE_ROOTS:
        try:
            yield _pstore_log(assessment.texts)
        except CrashfleetInputError as exc:
            attempt.errors.append(f"{Path(exc.path).name}: {exc.reason}")
        return
    for path in assessment.texts:
        try:
            data = read_log_file(str(path))
            yield str(path), data, data
        except CrashfleetInputError as exc:
            attempt.errors.append(f"{path.name}: {exc.reason}")


def _try_apport(
    path: Path, analyzer: Analyzer, attempt: _Attempt, scratch: Path, when: datetime | None
) -> list[ExtractedReport]:
    try:
        fields, vmcore = apport_fields(path, scratch)
    except CrashfleetInputError as exc:
        attempt.errors.append(f"{path.name}: {exc.reason}")
        return []
    try:
        if vmcore is not None:
            reports = _try_dump(vmcore, analyzer, attempt, when)
            if reports:
                return [_resource(r, str(path)) for r in reports]
        for name in APPORT_TEXT_FIELDS:
            data = fields.get(name, b"")
            if not data.strip():
                continue
            attempt.best_text = attempt.best_text or data
            reports = _records_of(analyzer, f"{path}:{name}", data[:MAX_LOG_BYTES], None, when)
            if reports:
                return reports
        if vmcore is None and not fields:
            attempt.errors.append(f"{path.name}: no {APPORT_DUMP_FIELD} and no kernel log field")
        return []
    finally:
        if vmcore is not None:
            vmcore.unlink(missing_ok=True)


def _resource(report: ExtractedReport, source: str) -> ExtractedReport:
    """Name the apport file, not the temporary file its VmCore was unpacked into."""
    return dataclasses.replace(report, source_path=source)


def _failed(assessment: Assessment, reason: str, text: bytes, when: datetime | None) -> ExtractedReport:
    capture = assessment.capture
    record = failed_record(f"failed capture ({capture.rule.name})", reason, text)
    content = f"failed\0{capture.key}\0{assessment.identity}".encode()
    return ExtractedReport(
        key=report_key(content, 0),
        kind="failed-capture",
        record=record,
        system=None,
        source_path=str(capture.path),
        crash_time=when,
    )
