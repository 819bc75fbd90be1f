"""Regression floor on syzkaller's 747 annotated console logs (../shared; skipped where absent).

The floors sit just under what bench/eval_corpus.py measured when they were set, so a change
that loses titles, frames or crash detection fails here; raise them when the parser improves.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from tests.conftest import REPO, shared_path

FLOORS = {
    "crash_agreement": 99.8,  # measured 100.00 (747/747)
    "title_agreement": 99.0,  # measured 99.65 (570/572)
    "frame_agreement": 95.0,  # measured 100.00 (21/21)
    "corrupted_agreement": 99.0,  # measured 99.72 (710/712)
}


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("eval_corpus", REPO / "bench" / "eval_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("eval_corpus", module)
    spec.loader.exec_module(module)
    return module


def test_syzkaller_corpus_floors() -> None:
    directory = shared_path("corpora", "syzkaller", "report")
    score = _bench().evaluate(directory)
    assert score.files >= 700
    ratios = score.ratios()
    below = {k: round(ratios[k], 2) for k, floor in FLOORS.items() if ratios[k] < floor}
    assert not below, f"below floor {below}; first mismatches: {score.failures[:10]}"


def test_corpus_reader_splits_headers_log_and_report(tmp_path: Path) -> None:
    case = tmp_path / "1"
    case.write_bytes(
        b"TITLE: WARNING in foo\nALT: bad-access in foo\nFRAME: foo\nCORRUPTED: Y\n\n"
        b"[ 1.0] WARNING: CPU: 0 PID: 1 at a.c:1 foo+0x1/0x2\n\nREPORT:\nWARNING in foo\n"
    )
    got = _bench().read_case(case)
    assert got.titles == ["WARNING in foo", "bad-access in foo"]
    assert (got.frame, got.corrupted) == ("foo", True)
    assert got.log == b"[ 1.0] WARNING: CPU: 0 PID: 1 at a.c:1 foo+0x1/0x2"


KEPT_TOGETHER_FLOOR = 37  # measured 38 of the 51 titles seen in 2+ logs (bench/fingerprint_corpus.py)


def _fingerprint_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fingerprint_corpus", REPO / "bench" / "fingerprint_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("fingerprint_corpus", module)
    spec.loader.exec_module(module)
    return module


def test_fingerprints_never_merge_titles_and_keep_repeats_together() -> None:
    """Two different syzbot titles never share a fingerprint; most repeated titles keep one."""
    directory = shared_path("corpora", "syzkaller", "report")
    grouping = _fingerprint_bench().group(sorted(p for p in directory.iterdir() if p.is_file()))
    assert grouping.analyzed >= 500
    assert grouping.merged == [], {v: sorted(grouping.by_fingerprint[v]) for v in grouping.merged}
    assert len(grouping.kept_together) >= KEPT_TOGETHER_FLOOR, f"split titles: {grouping.split}"


def test_fingerprint_bench_reads_the_log_not_the_header() -> None:
    """The header's `TITLE: BUG: ...` line is not part of the log (it would parse as a crash)."""
    fields, log = _fingerprint_bench().split_case(
        b"TITLE: BUG: soft lockup in foo\nCORRUPTED: N\n\n[ 1.0] BUG: soft lockup - CPU#0 stuck for 22s!\n"
        b"\nREPORT:\nBUG: soft lockup in foo\n"
    )
    assert fields == {"TITLE": "BUG: soft lockup in foo", "CORRUPTED": "N"}
    assert log == b"[ 1.0] BUG: soft lockup - CPU#0 stuck for 22s!"
