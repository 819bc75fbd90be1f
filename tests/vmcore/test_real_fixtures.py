"""Real dumps the project made itself (scripts/make-vmcores.sh, cut down by scripts/trim-dump.py),
one directory per case under tests/data/vmcore/real/: `crashfleet dmesg` byte-identical to
makedumpfile's `--dump-dmesg` of that very file (dmesg.txt) where makedumpfile reads it, else
(expected.json says why) holding every serial-console line in order; and the crash parsed from
the dump's log agreeing with the serial console (serial.log) and with expected.json. Newer cases
keep serial.log and dmesg.txt xz-compressed (`.xz`) like the dump, to keep the repository lean."""

from __future__ import annotations

import json
import lzma
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from analysis.decode import context_listing
from analysis.esr import decode_esr
from analysis.model import CrashRecord
from analysis.signature import analyze
from analysis.title import title_kind
from analysis.vmcore import read_dump
from tests.conftest import shared_path

_TS = re.compile(rb"^\[ *[0-9]+\.[0-9]+\] ")
REAL = Path(__file__).resolve().parents[1] / "data" / "vmcore" / "real"
CASES = sorted(p.name for p in REAL.iterdir() if (p / "expected.json").is_file())


def _expected(case: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REAL / case / "expected.json").read_text())
    return data


def _dump(case: str) -> Path:
    (dump,) = (REAL / case).glob("vmcore.*")
    return dump


def _has(case: str, name: str) -> bool:
    return (REAL / case / name).is_file() or (REAL / case / f"{name}.xz").is_file()


def read_text_fixture(path: Path) -> bytes:
    """The bytes of `path`, or of `path`.xz decompressed when only that is committed."""
    if path.is_file():
        return path.read_bytes()
    return lzma.decompress(path.with_name(path.name + ".xz").read_bytes())


def test_cases_exist() -> None:
    assert len(CASES) >= 3


def test_every_case_has_an_oracle_or_says_why_not() -> None:
    for case in CASES:
        has_oracle = _has(case, "dmesg.txt")
        assert has_oracle == (_expected(case)["oracle"] is not None), case
        assert has_oracle or _expected(case)["no_oracle_because"]


@pytest.mark.parametrize("case", CASES)
def test_console_lines_are_in_the_extracted_log(case: str) -> None:
    # A record's second line is `[ts] text` on the console and indented in the log: compare texts.
    log = [_TS.sub(b"", line).strip() for line in read_dump(str(_dump(case))).log.split(b"\n")]
    console = [line.rstrip(b"\r") for line in read_text_fixture(REAL / case / "serial.log").split(b"\n")]
    texts = [_TS.sub(b"", line).strip() for line in console if _TS.match(line)]
    assert len(texts) > 100
    pos = 0
    for text in texts:  # in order: each console line after the previous one
        pos = log.index(text, pos) + 1


@pytest.mark.parametrize("case", [c for c in CASES if _has(c, "dmesg.txt")])
def test_dmesg_is_byte_identical_to_makedumpfile(case: str, tmp_path: Path) -> None:
    expected = read_text_fixture(REAL / case / "dmesg.txt")
    dump = _dump(case)
    proc = subprocess.run([sys.executable, "-m", "crashfleet", "dmesg", str(dump)], capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected
    # The plain kdump file makedumpfile read, without the xz wrapper the repository keeps it in.
    if dump.suffix == ".xz":
        plain = tmp_path / dump.stem
        plain.write_bytes(lzma.decompress(dump.read_bytes()))
        assert read_dump(str(plain)).log == expected


@pytest.mark.parametrize("case", CASES)
def test_system_facts(case: str) -> None:
    want = _expected(case)
    facts = read_dump(str(_dump(case))).system
    assert (facts.release, facts.machine, facts.format) == (want["release"], want["machine"], want["format"])
    if want["memory_mib"] is not None:  # a trimmed ELF's segments no longer span the machine's RAM
        assert facts.memory_bytes is not None and abs(facts.memory_bytes - (want["memory_mib"] << 20)) < 8 << 20
    assert facts.cpus == 2


def _summary(record: CrashRecord) -> tuple[object, ...]:
    """What the dump's log and the serial console must agree on, field by field."""
    rip = record.rip
    code = record.code
    return (
        record.kind, record.title, record.guilty_frame, rip.function if rip else None, rip.module if rip else None,
        record.fault_address, (code.instruction, code.bad_register, code.access) if code else None,
    )  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_crashes_match_expected_and_console(case: str) -> None:
    want = _expected(case)["crashes"]
    from_dump = analyze(read_dump(str(_dump(case))).log)
    from_console = analyze(read_text_fixture(REAL / case / "serial.log"))
    assert [_summary(c) for c in from_console] == [_summary(c) for c in from_dump]
    assert [(c.kind.value, c.title) for c in from_dump] == [(w["kind"], w["title"]) for w in want]
    for record, w in zip(from_dump, want, strict=True):
        rip = record.rip
        assert (rip.function if rip else None, rip.module if rip else None) == (w["rip"], w["module"])
        if "guilty_frame" in w:
            assert record.guilty_frame == w["guilty_frame"]
        # The one title -> kind table agrees with the rule that titled this report.
        assert title_kind(record.title) is record.kind
        if "fault_address" in w:
            assert record.fault_address == w["fault_address"]
        if "esr" in w:
            assert record.oops_code_raw is not None
            assert decode_esr(record.oops_code_raw).describe() == w["esr"]
        if "verdict" in w:
            assert record.code is not None
            assert (record.code.instruction, record.code.bad_register, record.code.access) == (
                w["instruction"], w["bad_register"], w["verdict"],
            )  # fmt: skip
        if "code_listing" in w:  # the whole `Code:` line disassembled, the faulting word marked `>`
            assert record.code is not None
            listing = [("> " if line.faulting else "  ") + line.text for line in context_listing(record.code)]
            assert listing == w["code_listing"]


@pytest.mark.parametrize("case", [c for c in CASES if "same_bug_as_shared" in _expected(c)])
def test_same_bug_on_another_kernel_has_the_same_fingerprint(case: str) -> None:
    """A crashme bug on Debian 11's 5.10 or Debian 13's / 12-backports' 6.12 and the same bug on
    Debian 12's 6.1 (../shared) is one bug: one fingerprint, although the 6.12 oops header reads
    `Oops: Oops: 0000`, addresses differ and 6.12 also reports an RCU stall before the soft lockup.
    BUG_ON and WARN_ON hash the `at FILE:LINE` of their report: they match because every dump's
    module was built as DKMS builds it, so that FILE is /usr/src/crashme-1.0/crashme.c."""
    other = shared_path(*_expected(case)["same_bug_as_shared"].split("/"))
    mine = analyze(read_dump(str(_dump(case))).log)[-1]  # 6.12 also reports the RCU stall first
    (theirs,) = analyze(read_dump(str(other)).log)
    assert mine.kernel_release != theirs.kernel_release
    assert mine.fingerprint is not None and theirs.fingerprint is not None
    assert mine.fingerprint.value == theirs.fingerprint.value
    assert mine.title == theirs.title


@pytest.mark.parametrize("case", [c for c in CASES if "same_bug_as" in _expected(c)])
def test_same_bug_as_another_fixture_has_the_same_fingerprint(case: str) -> None:
    """The crashme bugs on Debian 13's arm64 6.12 (52-bit VA, no ftrace patch site in the module,
    `CPU: 0 UID: 0 PID:` lines) and on Debian 12's arm64 6.1, and x86_64's BUG_ON and WARN_ON on
    Debian 11's 5.10 and Debian 13's 6.12, are the same bugs: one fingerprint and one title each,
    although offsets, addresses and the kernel's wording differ (no ../shared needed)."""
    other = _expected(case)["same_bug_as"]
    mine = analyze(read_dump(str(_dump(case))).log)[-1]
    theirs = analyze(read_dump(str(_dump(other))).log)[-1]
    assert mine.kernel_release != theirs.kernel_release
    assert mine.fingerprint is not None and theirs.fingerprint is not None
    assert (mine.title, mine.fingerprint.value) == (theirs.title, theirs.fingerprint.value)
