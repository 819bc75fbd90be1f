"""SUSE kdump's README.txt: parsed as data, and used to tell a finished save from a running or failed one.

Each `tests/data/agent/suse_readme/<case>.txt` is a README.txt in one of the forms SUSE's tools
write (kdump-save's temporary and final forms, kdumptool's older aligned form) or a damaged one;
`<case>.expected.json` beside it is what `parse_status` must make of it.
`CRASHFLEET_UPDATE_GOLDEN=1` rewrites the expected files (review the diff).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from agent.extract import extract_capture, status_crash_time
from agent.layouts import SUSE_README, CaptureState, Root, assess, discover, match_rule, parse_status
from analysis.signature import analyze

DATA = Path(__file__).resolve().parents[1] / "data" / "agent"
CASES = DATA / "suse_readme"
WARNING_LOG = (DATA / "logs" / "warning.log").read_bytes()
# The same WARNING without the lines that name the kernel release (a dmesg that lost its start).
NO_RELEASE_LOG = b"".join(line for line in WARNING_LOG.splitlines(True) if b"6.1.0-56" not in line)
UPDATE = os.environ.get("CRASHFLEET_UPDATE_GOLDEN") == "1"


def summary(text: str) -> dict[str, Any]:
    status = parse_status(SUSE_README, text)
    when = status_crash_time(status)
    return {
        "in_progress": status.in_progress,
        "fields": dict(status.fields),
        "failures": list(status.failures),
        "unusable": list(status.unusable),
        "kernel_release": status.kernel_release,
        "crash_time_utc": when.isoformat() if when else None,
    }


@pytest.mark.parametrize("case", sorted(p.stem for p in CASES.glob("*.txt")))
def test_readme_golden(case: str) -> None:
    text = (CASES / f"{case}.txt").read_bytes().decode("utf-8", errors="replace")
    got = summary(text)
    expected_path = CASES / f"{case}.expected.json"
    if UPDATE:
        expected_path.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert expected_path.exists(), f"no {expected_path.name}; run with CRASHFLEET_UPDATE_GOLDEN=1 and review"
    assert got == json.loads(expected_path.read_text())


def suse_dir(
    crash_dir: Path,
    readme: str | None,
    *,
    name: str = "2026-11-25-12-00",
    vmcore: bytes | None,
    dmesg: bytes = WARNING_LOG,
) -> Path:
    directory = crash_dir / name
    directory.mkdir()
    (directory / "dmesg").write_bytes(dmesg)
    if vmcore is not None:
        (directory / "vmcore").write_bytes(vmcore)
    if readme is not None:
        (directory / "README.txt").write_bytes((CASES / f"{readme}.txt").read_bytes())
    return directory


@pytest.mark.parametrize("name", ["2026-11-25-12-00", "2026-11-25-12:00", "web-17-2026-11-25-12-00"])
def test_both_directory_namings_are_suse(name: str) -> None:
    rule = match_rule(Root.CRASH, name, True)
    assert rule is not None and rule.name == "suse"
    other = match_rule(Root.CRASH, "127.0.0.1-2026-11-25-12:00:41", True)
    assert other is not None and other.name == "rhel"


def test_temporary_readme_is_a_save_in_progress(tmp_path: Path) -> None:
    suse_dir(tmp_path, "temporary", vmcore=b"partial vmcore")
    (found,) = discover(Root.CRASH, tmp_path)
    result = assess(found)
    assert result.state == CaptureState.INCOMPLETE
    assert "temporary" in result.reason


def test_no_readme_yet_is_in_progress(tmp_path: Path) -> None:
    suse_dir(tmp_path, None, vmcore=b"partial vmcore")
    (found,) = discover(Root.CRASH, tmp_path)
    assert assess(found).state == CaptureState.INCOMPLETE


def test_final_readme_completes_and_gives_the_crashed_release(tmp_path: Path) -> None:
    suse_dir(tmp_path, "final-ok", vmcore=None, dmesg=NO_RELEASE_LOG)
    (found,) = discover(Root.CRASH, tmp_path)
    result = assess(found)
    assert result.state == CaptureState.COMPLETE, result.reason
    assert [p.name for p in result.texts] == ["dmesg"]
    extraction = extract_capture(result, analyze, scratch=tmp_path)
    assert not extraction.failed
    (report,) = extraction.reports
    assert report.record.title == "WARNING in example_xmit"
    # The log names no release: the README's "Kernel version" (from VMCOREINFO) fills it.
    assert report.record.kernel_release == "6.4.0-150600.23.7-default"


def test_legacy_readme_crash_time_with_its_zone_dates_the_report(tmp_path: Path) -> None:
    suse_dir(tmp_path, "legacy-kdumptool", name="2026-11-25-12:00", vmcore=None, dmesg=NO_RELEASE_LOG)
    (found,) = discover(Root.CRASH, tmp_path)
    (report,) = extract_capture(assess(found), analyze, scratch=tmp_path).reports
    assert report.crash_time is not None and report.crash_time.isoformat() == "2026-11-25T11:00:00+00:00"
    assert report.record.kernel_release == "4.12.14-122.37-default"


def test_vmcore_the_tool_failed_to_save_is_not_read(tmp_path: Path) -> None:
    suse_dir(tmp_path, "vmcore-failed", vmcore=b"KDUMP   truncated")
    (found,) = discover(Root.CRASH, tmp_path)
    result = assess(found)
    assert result.state == CaptureState.COMPLETE
    assert result.dumps == ()  # the tool says it is broken: the dmesg beside it is the source
    assert "vmcore: error while saving, return code: 1" in result.reason
    extraction = extract_capture(result, analyze, scratch=tmp_path)
    assert not extraction.failed
    assert extraction.reports[0].record.title == "WARNING in example_xmit"


def test_nothing_saved_whole_is_a_failed_capture_at_once(tmp_path: Path) -> None:
    directory = suse_dir(tmp_path, "both-failed", vmcore=b"KDUMP   truncated")
    (found,) = discover(Root.CRASH, tmp_path)
    result = assess(found)
    assert result.state == CaptureState.COMPLETE  # finished: no need to wait for the timeout
    extraction = extract_capture(result, analyze, scratch=tmp_path)
    assert extraction.failed
    assert "README.txt: vmcore: error while saving" in extraction.reason
    assert "README.txt: dmesg: error while saving" in extraction.reason
    assert extraction.reports[0].source_path == str(directory)


def test_given_up_capture_names_the_readme_failures(tmp_path: Path) -> None:
    suse_dir(tmp_path, "vmcore-deleted", vmcore=None)
    (found,) = discover(Root.CRASH, tmp_path)
    extraction = extract_capture(assess(found), analyze, scratch=tmp_path, failure="untouched for 3600s")
    assert extraction.failed
    assert extraction.reason.startswith("untouched for 3600s; README.txt: vmcore: deleted")


def test_hostile_readme_neither_crashes_nor_blocks_the_dump(tmp_path: Path) -> None:
    suse_dir(tmp_path, "hostile", vmcore=None)
    (found,) = discover(Root.CRASH, tmp_path)
    result = assess(found)
    assert result.state == CaptureState.COMPLETE
    assert [p.name for p in result.texts] == ["dmesg"]


def test_huge_readme_is_read_only_up_to_its_cap(tmp_path: Path) -> None:
    directory = suse_dir(tmp_path, None, vmcore=None)
    filler = "x" * (SUSE_README.max_bytes + 10)
    (directory / "README.txt").write_text(filler + "\nvmcore status: error while saving\n")
    (found,) = discover(Root.CRASH, tmp_path)
    result = assess(found)
    assert result.status is not None and result.status.failures == ()
