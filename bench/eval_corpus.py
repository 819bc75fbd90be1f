"""Score `analysis.oops.parse_log` against syzkaller's annotated console logs.

Usage: bench/eval_corpus.py [DIR] [--failures] [--limit N]

DIR defaults to ../shared/corpora/syzkaller/report beside the checkout. Each file there has
header lines (TITLE:, ALT:, FRAME:, CORRUPTED: ...) up to the first empty line, then the
console log, then optionally an empty line, `REPORT:` and the expected report (ignored).
A file without TITLE: holds no crash. The first record parse_log returns is compared, as
syzkaller reports the first crash of a log.

Prints crash/no-crash agreement, exact title agreement on non-corrupted crashes (TITLE or any
ALT), guilty-frame agreement where FRAME: is given, corrupted agreement, and logs/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.oops import parse_log  # noqa: E402
from bench.syzcorpus import read_case  # noqa: E402

DEFAULT_DIR = REPO.parent / "shared" / "corpora" / "syzkaller" / "report"


@dataclass(slots=True)
class Score:
    files: int = 0
    crash_agree: int = 0
    title_total: int = 0
    title_agree: int = 0
    frame_total: int = 0
    frame_agree: int = 0
    corrupted_total: int = 0
    corrupted_agree: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def ratios(self) -> dict[str, float]:
        def pct(a: int, b: int) -> float:
            return 100.0 * a / b if b else 100.0

        return {
            "crash_agreement": pct(self.crash_agree, self.files),
            "title_agreement": pct(self.title_agree, self.title_total),
            "frame_agreement": pct(self.frame_agree, self.frame_total),
            "corrupted_agreement": pct(self.corrupted_agree, self.corrupted_total),
        }


def evaluate(directory: Path) -> Score:
    """Parse every file of `directory` and count agreements with its headers."""
    score = Score()
    paths = sorted((p for p in directory.iterdir() if p.is_file()), key=lambda p: (len(p.name), p.name))
    cases = [read_case(p) for p in paths]
    start = time.perf_counter()
    results = [(case, parse_log(case.log)) for case in cases]
    score.seconds = time.perf_counter() - start
    for case, records in results:
        score.files += 1
        first = records[0] if records else None
        expect_crash = bool(case.titles)
        if (first is not None) == expect_crash:
            score.crash_agree += 1
        else:
            got = first.title if first else "no crash"
            score.failures.append(f"{case.name}: crash? expected {case.titles[:1] or 'no crash'}, got {got!r}")
            continue
        if first is None:
            continue
        score.corrupted_total += 1
        if first.corrupted == case.corrupted:
            score.corrupted_agree += 1
        else:
            score.failures.append(
                f"{case.name}: corrupted expected {case.corrupted}, got {first.corrupted} "
                f"({first.corrupted_reason}) title={first.title!r}"
            )
        if not case.corrupted:
            score.title_total += 1
            if first.title in case.titles:
                score.title_agree += 1
            else:
                score.failures.append(f"{case.name}: title expected {case.titles[0]!r}, got {first.title!r}")
        if case.frame is not None:
            score.frame_total += 1
            if first.guilty_frame == case.frame or (case.frame == "corrupted" and first.guilty_frame is None):
                score.frame_agree += 1
            else:
                score.failures.append(f"{case.name}: frame expected {case.frame!r}, got {first.guilty_frame!r}")
    return score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--failures", action="store_true", help="list every mismatch")
    args = parser.parse_args(argv)
    if not args.directory.is_dir():
        print(f"{args.directory}: not a directory (pass the syzkaller report corpus)", file=sys.stderr)
        return 2
    score = evaluate(args.directory)
    if args.failures:
        for line in score.failures:
            print(line)
    r = score.ratios()
    print(f"files:                {score.files}")
    print(f"crash/no-crash:       {r['crash_agreement']:6.2f} %  ({score.crash_agree}/{score.files}, goal 100 %)")
    print(f"title (non-corrupted):{r['title_agreement']:6.2f} %  ({score.title_agree}/{score.title_total}, goal >= 90 %)")
    print(f"guilty frame:         {r['frame_agreement']:6.2f} %  ({score.frame_agree}/{score.frame_total}, goal >= 95 %)")
    print(f"corrupted:            {r['corrupted_agreement']:6.2f} %  ({score.corrupted_agree}/{score.corrupted_total})")
    rate = score.files / score.seconds if score.seconds else float("inf")
    print(f"speed:                {rate:8.1f} logs/s ({score.seconds:.2f} s parse time)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
