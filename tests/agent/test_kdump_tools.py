"""Real kdump-tools captures, from the `make e2e` guest and the capture lab's: picked up by the agent as
kdump-tools leaves them.

Each `tests/data/agent/kdump_tools/<distro>-<kernel>-<arch>-<trigger>/` was made by
scripts/e2e/fixtures.py from a kept e2e run or capture lab run (scripts/e2e/capture.py): `var/crash/<stamp>/dump.<stamp>.xz` and `dmesg.<stamp>.xz` are what kdump-tools' capture
kernel wrote (the dump trimmed by scripts/trim-dump.py, then both xz-compressed for the repository),
`serial.log` the crashed boot's console (ground truth), `expected.json` the run's facts. Each test
puts the directory back the way kdump-tools left it (the `.xz` removed) under a /var/crash of its
own, and reads it the way the agent does.
"""

from __future__ import annotations

import json
import lzma
import platform
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.extract import extract_capture
from agent.layouts import CaptureState, Root, assess, discover
from analysis.signature import analyze
from analysis.sources import open_capture
from analysis.vmcore import read_dump
from analysis.vmcore.printk import without_caller_ids

DATA = Path(__file__).resolve().parents[1] / "data" / "agent" / "kdump_tools"
CASES = sorted(p.name for p in DATA.iterdir() if (p / "expected.json").is_file())
_TS = re.compile(rb"^\[ *[0-9]+\.[0-9]+\] ")
_FORWARDED = re.compile(rb"^\[ *[0-9]+\.[0-9]+\] [\w.@-]+\[[0-9]+\]: ")


def expected(case: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / case / "expected.json").read_text())
    return data


def var_crash(case: str, into: Path) -> Path:
    """The case's /var/crash as kdump-tools left it: every `.xz` decompressed under its own name."""
    crash = into / "var" / "crash"
    for path in sorted((DATA / case / "var" / "crash").rglob("*")):
        target = crash / path.relative_to(DATA / case / "var" / "crash")
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".xz":
            target.with_suffix("").write_bytes(lzma.decompress(path.read_bytes()))
        else:
            shutil.copy(path, target)
    return crash


MACHINES = {"amd64": "x86_64", "arm64": "aarch64"}


def host_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def test_cases_exist() -> None:
    assert {"debian12-6.1-amd64-sysrq-c", "debian12-6.1-amd64-module-null"} <= set(CASES)
    # The capture lab's arm64 guest: kdump-tools on Debian 12 arm64 (docs/vmcore.md).
    assert {"debian12-6.1-arm64-sysrq-c", "debian12-6.1-arm64-module-null"} <= set(CASES)
    for case in CASES:
        want = expected(case)
        line = ".".join(re.split(r"[.+-]", want["release"])[:2])
        # The name says what the capture is: the distribution, the kernel line, the arch, the trigger.
        assert case == f"{want['distro']}-{line}-{want['arch']}-{want['trigger']['kind']}"
        assert want["machine"] == MACHINES[want["arch"]]
        assert want["trigger"]["kind"] in ("sysrq-c", "module-null")


@pytest.mark.parametrize("trigger", ["sysrq-c", "module-null"])
def test_arm64_capture_is_the_same_crash_as_amd64(trigger: str) -> None:
    """The same trigger on the same Debian 12 kernel line, arm64 and x86_64: one title, one faulting
    function and module, one fault address, however each architecture words its report."""
    keys = ("kind", "title", "rip", "module", "fault_address")
    arm64, amd64 = (
        [{k: c.get(k) for k in keys} for c in expected(f"debian12-6.1-{arch}-{trigger}")["crashes"]]
        for arch in ("arm64", "amd64")
    )
    assert arm64 == amd64


@pytest.mark.parametrize("case", CASES)
def test_the_layout_is_kdump_tools_own(case: str, tmp_path: Path) -> None:
    crash = var_crash(case, tmp_path)
    stamp = expected(case)["stamp"]
    (directory,) = [p for p in crash.iterdir() if p.is_dir()]
    assert directory.name == stamp and re.fullmatch(r"\d{12}", stamp)
    assert sorted(p.name for p in directory.iterdir()) == [f"dmesg.{stamp}", f"dump.{stamp}"]
    # The stamp is the capture kernel's clock (UTC in the guest), a few minutes after the trigger.
    when = datetime.strptime(stamp, "%Y%m%d%H%M").replace(tzinfo=UTC).timestamp()
    assert expected(case)["trigger"]["at"] - 60 <= when <= expected(case)["trigger"]["at"] + 900


@pytest.mark.parametrize("case", CASES)
def test_agent_finds_one_complete_debian_capture(case: str, tmp_path: Path) -> None:
    crash = var_crash(case, tmp_path)
    stamp = expected(case)["stamp"]
    (found,) = discover(Root.CRASH, crash)  # kexec_cmd and the like beside it are not captures
    assert found.rule.name == "debian" and found.path == crash / stamp
    result = assess(found)
    assert result.state == CaptureState.COMPLETE, result.reason
    assert [p.name for p in result.dumps] == [f"dump.{stamp}"]
    assert [p.name for p in result.texts] == [f"dmesg.{stamp}"]


def _check_report(case: str, report: Any, *, from_dump: bool) -> None:
    want = expected(case)
    (crash,) = want["crashes"]
    record = report.record
    assert report.kind == "crash"
    assert (record.kind.value, record.title) == (crash["kind"], crash["title"])
    rip = record.rip  # none for sysrq-c on 6.1: a bare panic, its only RIP line is user space's
    assert (rip.function if rip else None, rip.module if rip else None) == (crash["rip"], crash["module"])
    assert record.fault_address == crash.get("fault_address")
    if "verdict" in crash:
        assert record.code is not None
        assert (record.code.instruction, record.code.bad_register, record.code.access) == (
            crash["instruction"], crash["bad_register"], crash["verdict"],
        )  # fmt: skip
    assert record.kernel_release == want["release"]
    if from_dump:
        # The address the oops text lacks, from the exception frame on the crashed task's stack.
        assert (f"{rip.address:#x}" if rip and rip.address else None) == crash["rip_address"]
        # CRASHTIME from the dump's VMCOREINFO, within the trigger's minute; the host from init_uts_ns.
        assert report.system is not None and report.system.nodename == want["nodename"] == "e2e-guest01"
        assert report.crash_time == datetime.fromtimestamp(want["crash_time"], UTC)
        assert want["trigger"]["at"] <= want["crash_time"] <= want["trigger"]["at"] + 60


@pytest.mark.parametrize("case", CASES)
def test_agent_reads_the_dump_with_the_right_title_and_rip(case: str, tmp_path: Path) -> None:
    crash = var_crash(case, tmp_path)
    stamp = expected(case)["stamp"]
    (found,) = discover(Root.CRASH, crash)
    extraction = extract_capture(assess(found), analyze, scratch=tmp_path)
    assert not extraction.failed, extraction.reason
    (report,) = extraction.reports
    assert report.source_path == str(crash / stamp / f"dump.{stamp}")
    _check_report(case, report, from_dump=True)


@pytest.mark.parametrize("case", CASES)
def test_without_the_dump_the_dmesg_file_gives_the_same_crash(case: str, tmp_path: Path) -> None:
    """makedumpfile -c -d 31 failing (disk full) still leaves kdump-tools' dmesg.<stamp>."""
    crash = var_crash(case, tmp_path)
    stamp = expected(case)["stamp"]
    (crash / stamp / f"dump.{stamp}").unlink()
    (found,) = discover(Root.CRASH, crash)
    extraction = extract_capture(assess(found), analyze, scratch=tmp_path)
    assert not extraction.failed, extraction.reason
    (report,) = extraction.reports
    assert report.source_path == str(crash / stamp / f"dmesg.{stamp}")
    _check_report(case, report, from_dump=False)


@pytest.mark.parametrize("case", CASES)
def test_inspect_reads_the_directory(case: str, tmp_path: Path) -> None:
    """`crashfleet inspect /var/crash/<stamp>/` opens the dump, not the text beside it."""
    crash = var_crash(case, tmp_path)
    stamp = expected(case)["stamp"]
    capture = open_capture(str(crash / stamp))
    assert capture.system is not None and capture.system.format == expected(case)["format"]
    assert [c.title for c in analyze(capture.log)] == [c["title"] for c in expected(case)["crashes"]]


@pytest.mark.parametrize("case", CASES)
def test_dmesg_is_byte_identical_to_makedumpfile(case: str, tmp_path: Path) -> None:
    """The oracle is makedumpfile itself: kdump-tools' dmesg.<stamp>, written by the capture kernel."""
    crash = var_crash(case, tmp_path)
    stamp = expected(case)["stamp"]
    dump, written = crash / stamp / f"dump.{stamp}", (crash / stamp / f"dmesg.{stamp}").read_bytes()
    # makedumpfile 1.7.4+ in the capture kernel (Debian 13's) prints caller ids; crashfleet prints
    # the form of 1.7.2 (the host's): the same bytes once that column is taken out.
    oracle = without_caller_ids(written)
    assert (oracle != written) == expected(case)["dmesg_caller_ids"]
    proc = subprocess.run([sys.executable, "-m", "crashfleet", "dmesg", str(dump)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == oracle
    if shutil.which("makedumpfile") is None or expected(case)["arch"] != host_arch():
        # the host's makedumpfile reads only its own architecture's dumps; the oracle reader
        # (expected.json "oracle") agreeing on the trimmed file was checked when it was made
        return
    # kdump-tools' dump is makedumpfile -F's flattened stream; makedumpfile reads it after -R.
    plain, out = tmp_path / "plain", tmp_path / "makedumpfile.dmesg"
    with dump.open("rb") as stream:
        subprocess.run(["makedumpfile", "-R", str(plain)], stdin=stream, capture_output=True, check=True, timeout=60)
    subprocess.run(["makedumpfile", "--dump-dmesg", str(plain), str(out)], capture_output=True, check=True, timeout=60)
    assert out.read_bytes() in (oracle, written)


@pytest.mark.parametrize("case", CASES)
def test_console_lines_are_in_the_dump_and_give_the_same_crash(case: str, tmp_path: Path) -> None:
    crash = var_crash(case, tmp_path)
    stamp = expected(case)["stamp"]
    dump = read_dump(str(crash / stamp / f"dump.{stamp}"))
    assert dump.system.crash_time == expected(case)["crash_time"]
    log = [_TS.sub(b"", line).strip() for line in dump.log.split(b"\n")]
    console = (DATA / case / "serial.log").read_bytes()
    # The kernel's own console lines; journald forwards services' lines (`[ts] kdump-tools[204]: ...`)
    # to the console too, and those are not in the kernel's log.
    texts = [
        _TS.sub(b"", line.rstrip(b"\r")).strip()
        for line in console.split(b"\n")
        if _TS.match(line) and not _FORWARDED.match(line)
    ]
    assert len(texts) > 20  # with `quiet`, mostly the report itself (5.10's sysrq panic: 25 lines)
    pos = 0
    for text in texts:  # in order: each console line after the previous one
        pos = log.index(text, pos) + 1
    assert [c.title for c in analyze(console)] == [c.title for c in analyze(dump.log)]
