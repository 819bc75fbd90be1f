"""Every synthetic case: our log equals the golden `<case>.dmesg`, and makedumpfile's own output.

Set CRASHFLEET_UPDATE_GOLDEN=1 to rewrite the golden files from the current reader (then review
the diff: the makedumpfile cross-check below is what proves them right).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.vmcore import read_dump, read_dump_log
from tests.vmcore.cases import CASES_DIR, build_case, case_names, load_case, oracle_can_read

UPDATE = os.environ.get("CRASHFLEET_UPDATE_GOLDEN") == "1"
MAKEDUMPFILE = shutil.which("makedumpfile") or next(
    (p for p in ("/usr/sbin/makedumpfile", "/usr/bin/makedumpfile") if os.path.exists(p)), None
)


@pytest.mark.parametrize("name", case_names())
def test_case_matches_golden(name: str, tmp_path: Path) -> None:
    path = build_case(name, tmp_path)
    log = read_dump_log(str(path))
    golden = CASES_DIR / f"{name}.dmesg"
    if UPDATE:
        golden.write_bytes(log)
    assert golden.exists(), f"{golden} missing: run with CRASHFLEET_UPDATE_GOLDEN=1"
    assert log == golden.read_bytes()


@pytest.mark.parametrize("name", [n for n in case_names() if oracle_can_read(load_case(n))])
def test_case_matches_makedumpfile(name: str, tmp_path: Path) -> None:
    if MAKEDUMPFILE is None:
        pytest.skip("makedumpfile is not installed (Debian package makedumpfile)")
    path = build_case(name, tmp_path)
    out = tmp_path / "makedumpfile.dmesg"
    proc = subprocess.run(
        [MAKEDUMPFILE, "--dump-dmesg", str(path), str(out)], capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_dump_log(str(path)) == out.read_bytes()


def test_format_names(tmp_path: Path) -> None:
    """SystemFacts.format names the dump format and every layer around it."""
    expected = {
        "lockless-kdump-zlib": "kdump-zlib",
        "lockless-kdump-lzo-kaslr": "kdump-lzo",
        "lockless-kdump-snappy": "kdump-snappy",
        "lockless-kdump-zstd": "kdump-zstd",
        "lockless-kdump-raw-v5": "kdump-raw",
        "lockless-elf-qemu": "elf",
        "lockless-flat-gzip": "kdump-zlib+flattened+gzip",
        "lockless-flat-lzo": "kdump-lzo+flattened",
        "lockless-elf-xz": "elf+xz",
        "lockless-elf-bzip2": "elf+bzip2",
    }
    for name, fmt in expected.items():
        assert read_dump(str(build_case(name, tmp_path))).system.format == fmt, name


def test_system_facts_of_synthetic_kdump(tmp_path: Path) -> None:
    facts = read_dump(str(build_case("lockless-kdump-zlib", tmp_path))).system
    assert facts.release == "6.1.0-synthetic"
    assert facts.nodename == "testhost"
    assert facts.machine == "x86_64"
    assert facts.version == "#1 SMP PREEMPT_DYNAMIC Debian 6.1.0-1 (2026-01-01)"
    assert facts.cpus == 2
    assert facts.build_id == "0123456789abcdef0123456789abcdef01234567"
    assert facts.crash_time is None  # no CRASHTIME= line: not recorded, not guessed
    assert facts.panic_message == "Fatal exception"
    assert facts.page_size == 4096
