"""collector.signing: the memoized signer answers exactly what compute() answers.

The contract it rests on — compute() ignores every field in OCCURRENCE_FIELDS and the per-build
numbers of frames — is checked here on hand-built records and on every crash of the shared
syzkaller corpus the analyzer parses, so a fingerprint rule that starts reading one of those
fields fails this test instead of making the cache answer wrongly."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest

from analysis.fingerprint import compute
from analysis.model import CallFrame, CodeDecode, CrashRecord, PageFaultCode, Rip, SourceLocation
from collector.signing import OCCURRENCE_FIELDS, CachedSigner, signing_key
from tests.collector.records import null_deref

# A different value for every occurrence field (types as in analysis.model).
SCRAMBLE: dict[str, object] = {
    "fault_address": 0xDEAD0000,
    "oops_code": PageFaultCode.decode(0x11),
    "oops_code_raw": 0x11,
    "oops_number": 7,
    "oops_flags": ("KASAN",),
    "tainted": "G        W",
    "taint_flags": ("WARN",),
    "cpu": 63,
    "pid": 1,
    "comm": "kworker/0:1",
    "kernel_release": "6.12.0-1-amd64",
    "kernel_build": "#1 SMP Debian 6.12.1-1",
    "hardware": "Dell Inc. PowerEdge R650",
    "bios": "2.1.3",
    "modules": ("xfs", "bonding"),
    "module_taints": {"xfs": "E"},
    "last_unloaded": "nf_tables",
    "registers": {"rax": 1, "rip": 2},
    "code_line": "90 90 <0f> 0b",
    "code": CodeDecode("x86_64", b"\x0f\x0b", 0, "ud2"),
    "fingerprint": None,
    "related": ("follows-warning",),
    "first_line": 99,
    "last_line": 120,
    "excerpt": "another excerpt\n",
}


def _scrambled(record: CrashRecord, rng: random.Random) -> CrashRecord:
    """The same bug on another host, build and moment: occurrence fields and frame numbers changed."""
    changes: dict[str, object] = {name: SCRAMBLE[name] for name in OCCURRENCE_FIELDS if rng.random() < 0.8}
    frames = tuple(
        dataclasses.replace(
            f,
            offset=None if f.offset is None else f.offset + rng.randrange(1, 64),
            size=None if f.size is None else f.size + rng.randrange(1, 64),
            address=None if f.address is None else f.address ^ (rng.randrange(1, 1 << 20) << 12),
        )
        for f in record.call_trace
    )
    if record.normalized_reason:  # the raw line carries addresses; only the normalized one counts
        changes["reason"] = record.reason + " at ffff888012345678"
    rip = record.rip
    if rip is not None:
        rip = dataclasses.replace(rip, address=None if rip.address is None else rip.address + 0x1000)
    return dataclasses.replace(record, call_trace=frames, rip=rip, **changes)  # type: ignore[arg-type]


def test_every_occurrence_field_is_a_crash_record_field() -> None:
    names = {f.name for f in dataclasses.fields(CrashRecord)}
    assert names >= OCCURRENCE_FIELDS and set(SCRAMBLE) == OCCURRENCE_FIELDS


def test_compute_ignores_occurrence_fields_on_hand_built_records() -> None:
    rng = random.Random(7)
    inline = CallFrame("helper", None, None, None, reliable=True, source=(SourceLocation("helper", "a.c", 3),))
    records = [
        null_deref(),
        dataclasses.replace(null_deref(), guilty_frame=None),
        dataclasses.replace(null_deref(), call_trace=(inline, *null_deref().call_trace)),
        dataclasses.replace(null_deref(), rip=Rip("memcpy_orig", 0x10, 0x200, None, 0xFFFFFFFF81000000)),
    ]
    for record in records:
        for _ in range(20):
            other = _scrambled(record, rng)
            assert signing_key(other) == signing_key(record)
            assert compute(other) == compute(record)


def test_compute_ignores_occurrence_fields_on_the_syzkaller_corpus(shared_dir: Path) -> None:
    from analysis.signature import analyze

    reports = sorted((shared_dir / "corpora" / "syzkaller" / "report").glob("*"))
    if not reports:
        pytest.skip("no syzkaller reports in the shared corpus")
    rng = random.Random(11)
    checked = 0
    for path in reports[::5]:
        if path.is_dir() or path.name.endswith(".json"):
            continue
        for record in analyze(path.read_text(errors="replace")):
            assert compute(_scrambled(record, rng)) == compute(record), path.name
            checked += 1
    assert checked > 50


def test_cached_signer_answers_like_compute_and_stays_bounded() -> None:
    calls: list[CrashRecord] = []

    def counting(record: CrashRecord) -> object:
        calls.append(record)
        return compute(record)

    signer = CachedSigner(counting, size=2)  # type: ignore[arg-type]
    a, b, c = null_deref(), null_deref(("bug_b", "f", "g")), null_deref(("bug_c", "f", "g"))
    assert signer(a) == compute(a)
    assert signer(_scrambled(a, random.Random(1))) == compute(a)  # another occurrence: a hit
    assert (signer.hits, signer.misses, len(calls)) == (1, 1, 1)
    assert signer(b) == compute(b) and signer(c) == compute(c)  # evicts a (least recently used)
    assert signer(a) == compute(a)
    assert (signer.hits, signer.misses) == (1, 4)
    other_bug = dataclasses.replace(a, guilty_frame="other_function")
    assert signer(other_bug) == compute(other_bug) != compute(a)
