"""The live pstore filesystem (/sys/fs/pstore): grouped and ordered like systemd-pstore, read only
when systemd-pstore has not archived the records, never deleted unless configured, and one crash
read live and again from systemd-pstore's archive is one report."""

from __future__ import annotations

import zlib
from pathlib import Path

from agent.config import AgentConfig, replace
from agent.extract import extract_capture
from agent.layouts import Root, archived_by_systemd_pstore, assess, discover
from agent.service import _capture_job
from agent.worker import open_spool, run_worker
from analysis.signature import analyze
from tests.agent import builders
from tests.agent.test_service import FakeCollector, Running, make_config, service_for, wait_for
from tests.agent.test_worker import config_for

DATA = Path(__file__).resolve().parents[1] / "data" / "agent"
WARNING_LOG = (DATA / "logs" / "warning.log").read_bytes()
# EFI record ids: (seconds * 100 + part) * 1000 + count. Part 1 holds the newest text.
PART1 = "dmesg-efi-173253600001001"
PART2 = "dmesg-efi-173253600002001"


def efi_records(directory: Path, text: bytes, *, headers: bool = True) -> list[Path]:
    """One crash as the kernel leaves it in pstore: older half in Part2, newer half in Part1."""
    lines = text.splitlines(keepends=True)
    half = len(lines) // 2
    older, newer = b"".join(lines[:half]), b"".join(lines[half:])
    if headers:
        older, newer = builders.pstore_record(older, 2), builders.pstore_record(newer, 1)
    (directory / PART2).write_bytes(older)
    (directory / PART1).write_bytes(newer)
    return [directory / PART1, directory / PART2]


def test_parts_of_one_dump_are_one_capture_and_ramoops_records_are_separate(tmp_path: Path) -> None:
    efi_records(tmp_path, WARNING_LOG)
    (tmp_path / "dmesg-efi-173253700001001").write_bytes(b"another crash, another second\n")
    for name in ("dmesg-ramoops-0", "dmesg-ramoops-1", "console-ramoops-0", "pmsg-ramoops-0"):
        (tmp_path / name).write_bytes(builders.pstore_record(WARNING_LOG, 1))
    found = discover(Root.PSTORE_FS, tmp_path)
    groups = sorted(tuple(m.name for m in c.members) for c in found)
    assert groups == [
        (PART1, PART2),
        ("dmesg-efi-173253700001001",),
        ("dmesg-ramoops-0",),
        ("dmesg-ramoops-1",),
    ]
    assert all(c.rule.name == "pstore-fs" for c in found)


def test_parts_without_headers_join_in_systemd_order(tmp_path: Path) -> None:
    """No `Panic#1 PartN` line: descending record id, as systemd-pstore joins them (oldest text first)."""
    efi_records(tmp_path, WARNING_LOG, headers=False)
    (capture,) = discover(Root.PSTORE_FS, tmp_path)
    result = extract_capture(assess(capture), analyze, scratch=tmp_path)
    assert [r.record.title for r in result.reports] == ["WARNING in example_xmit"]
    assert result.reports[0].log == WARNING_LOG


def test_compressed_parts_are_inflated_and_joined(tmp_path: Path) -> None:
    for path in efi_records(tmp_path, WARNING_LOG):
        path.with_name(path.name + ".enc.z").write_bytes(zlib.compress(path.read_bytes()))
        path.unlink()
    (capture,) = discover(Root.PSTORE_FS, tmp_path)
    assert len(capture.members) == 2
    result = extract_capture(assess(capture), analyze, scratch=tmp_path)
    assert result.reports[0].record.title == "WARNING in example_xmit"


def test_archived_means_every_record_is_in_systemd_pstores_archive(tmp_path: Path) -> None:
    live, archive = tmp_path / "live", tmp_path / "archive"
    live.mkdir()
    (archive / "173253600").mkdir(parents=True)
    members = efi_records(live, WARNING_LOG)
    assert not archived_by_systemd_pstore(members, archive)
    (archive / "173253600" / PART1).write_bytes(b"x")
    assert not archived_by_systemd_pstore(members, archive)  # one part is not the record
    (archive / PART2).write_bytes(b"x")
    assert archived_by_systemd_pstore(members, archive)
    assert not archived_by_systemd_pstore(members, tmp_path / "absent")


def _run_job(config: AgentConfig, path: Path, collector: FakeCollector, root: Root = Root.PSTORE_FS) -> None:
    """What the daemon does when the capture at `path` is ready: a job, then a worker run."""
    spool = open_spool(config)
    key, data = _capture_job(root, path, None)
    spool.add_job(key, "capture", data)
    spool.close()
    assert run_worker(config, heartbeat=False, shipper_factory=lambda _c: collector, analyzer=analyze) == 0


def test_live_records_are_shipped_and_left_in_place(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    assert config.pstore_fs_dir is not None
    members = efi_records(config.pstore_fs_dir, WARNING_LOG)
    collector = FakeCollector()
    _run_job(config, members[0], collector)
    assert collector.titles() == ["WARNING in example_xmit"]
    assert all(m.exists() for m in members), "deleting from /sys/fs/pstore is systemd-pstore's job"


def test_configured_unlink_removes_records_after_they_are_spooled(tmp_path: Path) -> None:
    config = replace(config_for(tmp_path), pstore_fs_unlink=True)
    assert config.pstore_fs_dir is not None
    members = efi_records(config.pstore_fs_dir, WARNING_LOG)
    collector = FakeCollector()
    _run_job(config, members[0], collector)
    assert collector.titles() == ["WARNING in example_xmit"]
    assert not any(m.exists() for m in members)


def test_records_systemd_pstore_archived_are_not_read_live(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    assert config.pstore_fs_dir is not None
    members = efi_records(config.pstore_fs_dir, WARNING_LOG)
    efi_records(config.pstore_dir, WARNING_LOG)  # Storage=external, Unlink=no: both copies stay
    collector = FakeCollector()
    _run_job(config, members[0], collector)
    assert collector.received == {}
    spool = open_spool(config)
    assert spool.capture_identity("pstore-fs:dmesg-efi-173253600") is not None  # handled: not looked at again
    spool.close()


def test_read_live_then_archived_by_systemd_pstore_is_one_report(tmp_path: Path) -> None:
    """The agent read /sys/fs/pstore before systemd-pstore ran; the archived folder (its own
    dmesg.txt, the parts beside it) must give the same idempotency key."""
    config = config_for(tmp_path)
    assert config.pstore_fs_dir is not None
    members = efi_records(config.pstore_fs_dir, WARNING_LOG)
    collector = FakeCollector()
    _run_job(config, members[0], collector)
    folder = config.pstore_dir / "173253600"
    folder.mkdir()
    joined = b""
    for member in sorted(members, reverse=True):
        (folder / member.name).write_bytes(member.read_bytes())
        joined += member.name.encode() + b":\n" + member.read_bytes()
    (folder / "dmesg.txt").write_bytes(joined)
    _run_job(config, folder, collector, Root.PSTORE)
    assert len(collector.received) == 1
    assert collector.calls == 2  # sent again, and the collector (by key) knew it


def test_daemon_scans_the_live_pstore_at_start(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert config.pstore_fs_dir is not None
    members = efi_records(config.pstore_fs_dir, WARNING_LOG)
    collector = FakeCollector()
    with Running(service_for(config, collector)):
        wait_for(lambda: len(collector.received) == 1, "the live pstore record at the collector")
    assert collector.titles() == ["WARNING in example_xmit"]
    assert all(m.exists() for m in members)
