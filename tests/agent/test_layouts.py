"""Layouts: each distribution's tree, its in-progress and done signals, and the names to ignore."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.layouts import CaptureState, Root, assess, capture_for_path, discover, match_rule

# (layout, root, entry, files while in progress, files when done, dumps expected, texts expected)
CASES = [
    (
        "rhel",
        Root.CRASH,
        "127.0.0.1-2026-11-25-12:00:01",
        ["vmcore-dmesg.txt", "vmcore-incomplete"],
        ["vmcore-dmesg.txt", "vmcore", "kexec-dmesg.log"],
        ["vmcore"],
        ["vmcore-dmesg.txt", "kexec-dmesg.log"],
    ),
    (
        "debian",
        Root.CRASH,
        "202611251200",
        ["dump-incomplete"],
        ["dump.202611251200", "dmesg.202611251200"],
        ["dump.202611251200"],
        ["dmesg.202611251200"],
    ),
    (
        "suse",
        Root.CRASH,
        "2026-11-25-12:00",
        ["vmcore", "dmesg.txt"],
        ["vmcore", "dmesg.txt", "README.txt"],
        ["vmcore"],
        ["dmesg.txt"],
    ),
    (
        "systemd-pstore",
        Root.PSTORE,
        "1732536000",
        [],
        ["dmesg-efi-173253600001001", "dmesg.txt"],
        [],
        ["dmesg.txt", "dmesg-efi-173253600001001"],
    ),
]


def make(base: Path, entry: str, files: list[str]) -> Path:
    directory = base / entry
    directory.mkdir(exist_ok=True)
    for old in directory.iterdir():
        old.unlink()
    for name in files:
        (directory / name).write_text(f"{name}\n")
    return directory


@pytest.mark.parametrize(("layout", "root", "entry", "partial", "done", "dumps", "texts"), CASES)
def test_directory_layout_goes_from_incomplete_to_complete(
    tmp_path: Path,
    layout: str,
    root: Root,
    entry: str,
    partial: list[str],
    done: list[str],
    dumps: list[str],
    texts: list[str],
) -> None:
    make(tmp_path, entry, partial)
    (found,) = discover(root, tmp_path)
    assert found.rule.name == layout
    first = assess(found)
    assert first.state in (CaptureState.INCOMPLETE, CaptureState.EMPTY)
    make(tmp_path, entry, done)
    second = assess(found)
    assert second.state == CaptureState.COMPLETE, second.reason
    assert [p.name for p in second.dumps] == dumps
    assert [p.name for p in second.texts] == texts
    assert second.identity != first.identity


def test_debian_gzip_dump_and_text_are_recognized(tmp_path: Path) -> None:
    make(tmp_path, "202611251200", ["dump.202611251200.gz", "dmesg.202611251200.gz"])
    (found,) = discover(Root.CRASH, tmp_path)
    result = assess(found)
    assert result.state == CaptureState.COMPLETE
    assert [p.name for p in result.dumps] == ["dump.202611251200.gz"]


def test_empty_directory_is_empty_not_complete(tmp_path: Path) -> None:
    (tmp_path / "202611251200").mkdir()
    (found,) = discover(Root.CRASH, tmp_path)
    assert assess(found).state == CaptureState.EMPTY


def test_text_only_rhel_capture_is_complete(tmp_path: Path) -> None:
    """makedumpfile failed but vmcore-dmesg.txt was saved: the crash is still in the text."""
    make(tmp_path, "10.0.0.5-2026-11-25-12:00:01", ["vmcore-dmesg.txt"])
    (found,) = discover(Root.CRASH, tmp_path)
    result = assess(found)
    assert result.state == CaptureState.COMPLETE and not result.dumps


@pytest.mark.parametrize(
    "name",
    ["kdump_lock", "kexec_cmd", ".hidden", "lost+found", "_usr_bin_bash.1000.crash", "random.txt", "vmcore"],
)
def test_ignored_and_unknown_names(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("x")
    assert discover(Root.CRASH, tmp_path) == []


def test_apport_file_is_a_capture(tmp_path: Path) -> None:
    (tmp_path / "linux-image-6.1.0-56-amd64-202611251200.crash").write_text("ProblemType: KernelCrash\n")
    (found,) = discover(Root.CRASH, tmp_path)
    assert found.rule.name == "apport"
    result = assess(found)
    assert result.state == CaptureState.COMPLETE
    assert result.dumps == (found.path,)


def test_efi_parts_of_one_crash_are_one_capture_and_ramoops_records_are_separate(tmp_path: Path) -> None:
    # id = (seconds * 100 + part) * 1000 + count: two parts of the crash at second 1732536000.
    for name in ("dmesg-efi-173253600001001", "dmesg-efi-173253600002001", "dmesg-efi-173253700001001"):
        (tmp_path / name).write_text("Panic#1 Part1\n")
    for name in ("dmesg-ramoops-0", "dmesg-ramoops-1.enc.z", "console-ramoops-0", "pmsg-ramoops-0"):
        (tmp_path / name).write_text("x")
    found = discover(Root.PSTORE, tmp_path)
    groups = sorted(tuple(p.name for p in f.members) for f in found)
    assert groups == [
        ("dmesg-efi-173253600001001", "dmesg-efi-173253600002001"),
        ("dmesg-efi-173253700001001",),
        ("dmesg-ramoops-0",),
        ("dmesg-ramoops-1.enc.z",),
    ]
    event = capture_for_path(Root.PSTORE, tmp_path, tmp_path / "dmesg-efi-173253600002001")
    assert event is not None
    assert [p.name for p in event.members] == ["dmesg-efi-173253600001001", "dmesg-efi-173253600002001"]


def test_event_paths_map_to_their_capture(tmp_path: Path) -> None:
    directory = make(tmp_path, "202611251200", ["dump-incomplete"])
    capture = capture_for_path(Root.CRASH, tmp_path, directory / "dump-incomplete")
    assert capture is not None and capture.path == directory and capture.rule.name == "debian"
    assert capture_for_path(Root.CRASH, tmp_path, tmp_path / "kdump_lock") is None
    assert capture_for_path(Root.CRASH, tmp_path, Path("/elsewhere/x")) is None
    assert capture_for_path(Root.CRASH, tmp_path, tmp_path) is None


def test_settle_clock_is_the_newest_change(tmp_path: Path) -> None:
    directory = make(tmp_path, "202611251200", ["dump.202611251200", "dmesg.202611251200"])
    os.utime(directory / "dump.202611251200", (1000, 1000))
    os.utime(directory / "dmesg.202611251200", (2000, 2000))
    os.utime(directory, (1500, 1500))
    (found,) = discover(Root.CRASH, tmp_path)
    assert assess(found).newest_mtime == 2000


def test_missing_root_is_no_captures(tmp_path: Path) -> None:
    assert discover(Root.CRASH, tmp_path / "absent") == []


def test_rule_table_claims_names_unambiguously() -> None:
    rule = match_rule(Root.CRASH, "2026-11-25-12:00", True)
    assert rule is not None and rule.name == "suse"
    rule = match_rule(Root.CRASH, "127.0.0.1-2026-11-25-12:00:01", True)
    assert rule is not None and rule.name == "rhel"
    assert match_rule(Root.CRASH, "202611251200", False) is None  # a file with a kdump-tools name


def test_symlinks_are_never_captures(tmp_path: Path) -> None:
    """A symlink named like an apport report must not make a root agent read (and ship) its target."""
    secret = tmp_path / "secret"
    secret.write_text("root:x:0:0\n")
    crash = tmp_path / "crash"
    crash.mkdir()
    link = crash / "linux-image-6.1.0-56-amd64-202611251200.crash"
    link.symlink_to(secret)
    assert discover(Root.CRASH, crash) == []
    assert capture_for_path(Root.CRASH, crash, link) is None


def test_entries_of_untrusted_owners_are_skipped(tmp_path: Path) -> None:
    entry = tmp_path / "linux-image-6.1.0-56-amd64-202611251200.crash"
    entry.write_text("ProblemType: KernelCrash\n")
    if os.getuid() != 0:
        pytest.skip("needs root to give a file to another owner")
    os.chown(entry, 65534, 65534)
    assert discover(Root.CRASH, tmp_path) == []
    assert capture_for_path(Root.CRASH, tmp_path, entry) is None
