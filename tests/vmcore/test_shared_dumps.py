"""The real Debian 6.1 dumps in ../shared: `crashfleet dmesg` byte-identical to makedumpfile's output,
and `open_capture`/`inspect --json` give the system facts and the crash the serial console saw."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.sources import open_capture
from analysis.vmcore import read_dump
from tests.conftest import shared_path

# (crash type, dump file, expected SystemFacts.format)
DUMPS: tuple[tuple[str, str, str], ...] = (
    ("null", "vmcore.kdump-zlib", "kdump-zlib"),
    ("null", "vmcore.kdump-lzo", "kdump-lzo"),
    ("null", "vmcore.flat", "kdump-zlib+flattened"),
    ("null", "vmcore.elf.gz", "elf+gzip"),
    ("bug", "vmcore.kdump-zlib", "kdump-zlib"),
    ("warn", "vmcore.kdump-zlib", "kdump-zlib"),
    ("softlockup", "vmcore.kdump-zlib", "kdump-zlib"),
)
IDS = [f"{kind}/{name}" for kind, name, _ in DUMPS]
RELEASE = "6.1.0-56-amd64"
BUILD_ID = "eb4fbcd037e7253717950bf2b93bd5566f47c56f"
_REPORT_LINE = re.compile(rb"\] ((?:BUG|WARNING|watchdog: BUG|Kernel panic)[^\n]*)")


@pytest.mark.parametrize(("kind", "name", "fmt"), DUMPS, ids=IDS)
def test_dmesg_is_byte_identical_to_makedumpfile(kind: str, name: str, fmt: str) -> None:
    dump = shared_path("vmcores", kind, name)
    expected = shared_path("vmcores", kind, "dmesg.txt").read_bytes()
    proc = subprocess.run(
        [sys.executable, "-m", "crashfleet", "dmesg", str(dump)], capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == b""
    assert proc.stdout == expected


@pytest.mark.parametrize(("kind", "name", "fmt"), DUMPS, ids=IDS)
def test_system_facts(kind: str, name: str, fmt: str) -> None:
    facts = read_dump(str(shared_path("vmcores", kind, name))).system
    assert facts.format == fmt
    assert facts.release == RELEASE
    assert facts.version is not None and facts.version.startswith("#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2")
    assert facts.nodename == "(none)"  # the busybox initramfs never set a hostname
    assert facts.machine == "x86_64"
    assert facts.cpus == 2  # QEMU -smp 2
    assert facts.memory_bytes is not None and 250 << 20 <= facts.memory_bytes <= 260 << 20  # -m 256M
    assert facts.crash_time is None  # QEMU dumps carry no CRASHTIME
    assert facts.build_id == BUILD_ID
    assert facts.kernel_offset is not None and facts.kernel_offset > 0  # KASLR
    assert facts.panic_message


@pytest.mark.parametrize("kind", ["null", "bug", "warn", "softlockup"])
def test_crash_report_matches_the_serial_console(kind: str) -> None:
    """The dump's log holds the same oops/warning/panic lines the serial console printed."""
    log = read_dump(str(shared_path("vmcores", kind, "vmcore.kdump-zlib"))).log
    serial = shared_path("vmcores", kind, "serial.log").read_bytes()
    lines = _REPORT_LINE.findall(log)
    assert lines, "no crash report line in the dump's log"
    for line in lines:
        assert line in serial


def test_kdump_directory_prefers_the_dump() -> None:
    capture = open_capture(str(shared_path("vmcores", "null")))
    assert capture.system is not None
    assert capture.format.startswith(("kdump", "elf"))
    assert Path(capture.source).name.startswith("vmcore")
    assert capture.log == shared_path("vmcores", "null", "dmesg.txt").read_bytes()


@pytest.mark.parametrize(("kind", "name", "fmt"), DUMPS, ids=IDS)
def test_inspect_json_has_system_object(kind: str, name: str, fmt: str) -> None:
    dump = shared_path("vmcores", kind, name)
    proc = subprocess.run(
        [sys.executable, "-m", "crashfleet", "inspect", "--json", str(dump)], capture_output=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    system = doc["system"]
    for key in (
        "release",
        "version",
        "nodename",
        "machine",
        "cpus",
        "memory_bytes",
        "crash_time",
        "format",
        "build_id",
    ):
        assert key in system
    assert system["release"] == RELEASE
    assert system["format"] == fmt
    assert system["build_id"] == BUILD_ID
