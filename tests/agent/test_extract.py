"""Extraction: dump first, text as fallback, failed captures with the text beside them, pstore and apport."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from agent.extract import apport_fields, assemble_pstore, extract_capture, failed_record
from agent.layouts import Assessment, Root, assess, discover
from analysis.model import CrashKind
from analysis.signature import analyze
from tests.agent import builders
from tests.conftest import shared_path

DATA = Path(__file__).resolve().parents[1] / "data" / "agent"
WARNING_LOG = (DATA / "logs" / "warning.log").read_bytes()


def only_capture(root: Root, directory: Path) -> Assessment:
    (found,) = discover(root, directory)
    return assess(found)


def test_text_capture_gives_records_with_a_content_key(tmp_path: Path) -> None:
    builders.debian(tmp_path, None, WARNING_LOG)
    assessment = only_capture(Root.CRASH, tmp_path)
    first = extract_capture(assessment, analyze, scratch=tmp_path)
    again = extract_capture(assessment, analyze, scratch=tmp_path)
    assert not first.failed
    (report,) = first.reports
    assert report.kind == "crash" and report.record.title == "WARNING in example_xmit"
    assert report.source_path.endswith(f"dmesg.{builders.STAMP}")
    assert [r.key for r in again.reports] == [report.key]  # restart-safe: same content, same key
    assert len(report.key) == 64


def test_real_dump_wins_over_text_and_carries_system_facts(tmp_path: Path) -> None:
    dump = shared_path("vmcores", "null", "vmcore.kdump-lzo")
    builders.rhel(tmp_path, dump, WARNING_LOG)
    result = extract_capture(only_capture(Root.CRASH, tmp_path), analyze, scratch=tmp_path)
    (report,) = result.reports
    assert report.record.kind == CrashKind.NULL_DEREF
    assert (
        report.record.title == "BUG: unable to handle kernel NULL pointer dereference in crashme_napi_pending"
    )
    assert report.system is not None and report.system.release == "6.1.0-56-amd64"
    assert report.source_path.endswith("/vmcore")


def test_truncated_dump_falls_back_to_the_text_beside_it(tmp_path: Path) -> None:
    source = shared_path("vmcores", "bug", "vmcore.kdump-zlib")
    truncated = tmp_path / "truncated"
    with open(source, "rb") as f:
        truncated.write_bytes(f.read(1_000_000))
    crash = tmp_path / "crash"
    crash.mkdir()
    builders.debian(crash, truncated, WARNING_LOG)
    result = extract_capture(only_capture(Root.CRASH, crash), analyze, scratch=tmp_path)
    assert not result.failed
    assert result.reports[0].record.title == "WARNING in example_xmit"


def test_truncated_dump_without_text_is_a_failed_capture(tmp_path: Path) -> None:
    source = shared_path("vmcores", "bug", "vmcore.kdump-zlib")
    crash = tmp_path / "crash"
    crash.mkdir()
    directory = builders.rhel(crash, None, None)
    with open(source, "rb") as f:
        (directory / "vmcore").write_bytes(f.read(1_000_000))
    result = extract_capture(only_capture(Root.CRASH, crash), analyze, scratch=tmp_path)
    assert result.failed
    (report,) = result.reports
    assert report.kind == "failed-capture"
    assert report.record.corrupted and report.record.kind == CrashKind.UNKNOWN
    assert "truncated" in (report.record.corrupted_reason or "")
    assert report.record.title == "failed capture (rhel)"


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({"dmesg.202611251200": b""}, "empty file"),
        ({"dmesg.202611251200": b"\x00\x01\x02" * 1000}, "binary data"),
        ({"dmesg.202611251200": b"[    1.000000] nothing happened\n"}, "no crash in the kernel log"),
        ({"dump.202611251200": b"garbage that is no dump at all\n" * 3}, "no crash"),
        ({"dmesg.202611251200.gz": b"\x1f\x8b\x08\x00broken"}, "corrupt gzip"),
    ],
)
def test_hostile_or_empty_inputs_become_failed_captures(
    tmp_path: Path, files: dict[str, bytes], reason: str
) -> None:
    directory = tmp_path / builders.STAMP
    directory.mkdir()
    for name, data in files.items():
        (directory / name).write_bytes(data)
    result = extract_capture(only_capture(Root.CRASH, tmp_path), analyze, scratch=tmp_path)
    assert result.failed and reason in result.reason
    assert (
        result.reports[0].key
        == extract_capture(only_capture(Root.CRASH, tmp_path), analyze, scratch=tmp_path).reports[0].key
    )


def test_forced_failure_keeps_the_text_beside_it(tmp_path: Path) -> None:
    directory = builders.rhel(tmp_path, None, WARNING_LOG)
    (directory / "vmcore-incomplete").write_bytes(b"partial")
    result = extract_capture(
        only_capture(Root.CRASH, tmp_path),
        analyze,
        scratch=tmp_path,
        failure="in progress: vmcore-incomplete",
    )
    (report,) = result.reports
    assert report.kind == "failed-capture"
    assert "example_xmit" in report.record.excerpt


def test_failed_record_strips_what_the_collector_refuses() -> None:
    record = failed_record("failed capture (x)", "bad\x00name\x1b" + "y" * 5000, b"a\x00b")
    assert "\x00" not in record.reason and "\x1b" not in record.reason and len(record.reason) < 1100
    assert record.excerpt == "ab"


# --- pstore -------------------------------------------------------------------------------


def test_assemble_pstore_orders_parts_oldest_text_first() -> None:
    parts = [
        ("dmesg-efi-1", builders.pstore_record(b"newest\n", 1)),
        ("dmesg-efi-2", builders.pstore_record(b"oldest\n", 2)),
    ]
    assert assemble_pstore(parts) == b"oldest\nnewest\n"
    assert assemble_pstore([("x", b"no header")]) == b"no header\n"


def test_systemd_pstore_folder_parts(tmp_path: Path) -> None:
    builders.pstore_folder(tmp_path, WARNING_LOG)
    result = extract_capture(only_capture(Root.PSTORE, tmp_path), analyze, scratch=tmp_path)
    assert [r.record.title for r in result.reports] == ["WARNING in example_xmit"]


def test_pstore_reassembled_dmesg_txt_wins(tmp_path: Path) -> None:
    directory = builders.pstore_folder(tmp_path, b"[    1.0] nothing\n")
    (directory / "dmesg.txt").write_bytes(WARNING_LOG)
    result = extract_capture(only_capture(Root.PSTORE, tmp_path), analyze, scratch=tmp_path)
    assert result.reports[0].source_path.endswith("dmesg.txt")
    assert not result.failed


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS])
def test_compressed_ramoops_record(tmp_path: Path, wbits: int) -> None:
    compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
    data = compressor.compress(builders.pstore_record(WARNING_LOG, 1, "Oops")) + compressor.flush()
    (tmp_path / "dmesg-ramoops-0.enc.z").write_bytes(data)
    result = extract_capture(only_capture(Root.PSTORE, tmp_path), analyze, scratch=tmp_path)
    assert result.reports[0].record.title == "WARNING in example_xmit"


def test_pstore_inflation_bomb_and_garbage_are_failed_captures(tmp_path: Path) -> None:
    (tmp_path / "dmesg-ramoops-0.enc.z").write_bytes(zlib.compress(b"\0" * (40 * 1024 * 1024), 9))
    (tmp_path / "dmesg-ramoops-1.enc.z").write_bytes(b"not zlib at all")
    captures = [assess(c) for c in discover(Root.PSTORE, tmp_path)]
    reasons = [extract_capture(a, analyze, scratch=tmp_path).reason for a in captures]
    assert "inflates beyond" in reasons[0]
    assert "corrupt compressed pstore record" in reasons[1]


# --- apport -------------------------------------------------------------------------------


def test_apport_vmcore_field_is_unpacked_and_read(tmp_path: Path) -> None:
    crash = tmp_path / "crash"
    crash.mkdir()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    report = builders.write_apport(
        crash / "linux-image-6.1.0-56-amd64-202611251200.crash", vmcore=WARNING_LOG
    )
    result = extract_capture(only_capture(Root.CRASH, crash), analyze, scratch=scratch)
    assert result.reports[0].record.title == "WARNING in example_xmit"
    assert result.reports[0].source_path == str(report)
    assert list(scratch.iterdir()) == []  # the unpacked VmCore is removed


def test_apport_text_field_when_no_vmcore(tmp_path: Path) -> None:
    builders.write_apport(tmp_path / "linux-image-x.crash", fields={"VmCoreDmesg": WARNING_LOG.rstrip(b"\n")})
    fields, vmcore = apport_fields(tmp_path / "linux-image-x.crash", tmp_path)
    assert vmcore is None and fields["VmCoreDmesg"].startswith(b"[    0.000000] Linux version")
    result = extract_capture(only_capture(Root.CRASH, tmp_path), analyze, scratch=tmp_path)
    assert result.reports[0].source_path.endswith(":VmCoreDmesg")


def test_apport_with_corrupt_base64_is_a_failed_capture(tmp_path: Path) -> None:
    (tmp_path / "linux-image-x.crash").write_bytes(
        b"ProblemType: KernelCrash\nVmCore: base64\n !!!notbase64\n"
    )
    result = extract_capture(only_capture(Root.CRASH, tmp_path), analyze, scratch=tmp_path)
    assert result.failed and "corrupt base64/gzip field" in result.reason
