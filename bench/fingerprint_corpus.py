"""How the fingerprint groups syzkaller's corpus compared with syzkaller's own titles.

Usage: bench/fingerprint_corpus.py [DIR] [--show]

DIR defaults to ../shared/corpora/syzkaller/report beside the checkout. For every
non-corrupted crash log with a TITLE: header, the first record `analysis.signature.analyze`
returns for the console log (the file minus its header and expected REPORT:) is fingerprinted.
syzbot's title is its bug identity, so:

- a fingerprint shared by two different titles is a merge of different bugs (goal: none),
  except KASAN titles that differ only in the access direction (`Read`/`Write in f`), which
  the fingerprint merges on purpose and which are counted apart;
- a title split over several fingerprints is either one bug reached through different call
  paths (the fingerprint hashes the top frames, the title only names one function) or two bugs
  that share a title; these are listed with --show to be judged by eye.

Also prints fingerprints per second over the whole pipeline (parse + decode + fingerprint).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.signature import analyze  # noqa: E402
from bench.syzcorpus import split_case  # noqa: E402

_DIRECTION = re.compile(r" (?:Read|Write)(?= in )")
DEFAULT_DIR = REPO.parent / "shared" / "corpora" / "syzkaller" / "report"


@dataclass(slots=True)
class Grouping:
    """How the fingerprints of one corpus group its titles."""

    analyzed: int = 0
    elapsed: float = 0.0
    by_title: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    by_fingerprint: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    files_per_title: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def repeated(self) -> list[str]:
        return [t for t, n in self.files_per_title.items() if n > 1]

    @property
    def kept_together(self) -> list[str]:
        return [t for t in self.repeated if len(self.by_title[t]) == 1]

    @property
    def split(self) -> list[str]:
        return sorted(t for t in self.by_title if len(self.by_title[t]) > 1)

    @property
    def merged_all(self) -> list[str]:
        return sorted(v for v, titles in self.by_fingerprint.items() if len(titles) > 1)

    @property
    def merged(self) -> list[str]:
        """Fingerprints shared by different bugs. syzbot titles KASAN reports by access direction
        ("Read in f" / "Write in f"); the fingerprint deliberately does not (one freed object,
        one bug): such merges are by design and not counted here."""
        return [v for v in self.merged_all if len({_DIRECTION.sub("", t) for t in self.by_fingerprint[v]}) > 1]


def group(files: list[Path]) -> Grouping:
    """Fingerprint the first record of every non-corrupted titled log of `files`."""
    g = Grouping()
    for path in files:
        fields, log = split_case(path.read_bytes())
        title = fields.get("TITLE")
        if not title or fields.get("CORRUPTED") == "Y":
            continue
        start = time.perf_counter()
        records = analyze(log)
        g.elapsed += time.perf_counter() - start
        g.analyzed += 1
        if not records or records[0].fingerprint is None:
            continue
        value = records[0].fingerprint.value
        g.by_title[title].add(value)
        g.by_fingerprint[value].add(title)
        g.files_per_title[title] += 1
    return g


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--show", action="store_true", help="list split titles and merged fingerprints")
    args = parser.parse_args()
    files = sorted(p for p in args.dir.glob("*") if p.is_file())
    if not files:
        print(f"no reports under {args.dir}", file=sys.stderr)
        return 2
    g = group(files)
    repeated, kept_together = g.repeated, g.kept_together
    print(f"crash logs fingerprinted:            {sum(g.files_per_title.values())} of {g.analyzed}")
    print(f"distinct titles:                     {len(g.by_title)}")
    print(f"distinct fingerprints:               {len(g.by_fingerprint)}")
    print(f"fingerprints shared by 2+ titles:    {len(g.merged)} (different bugs merged; goal 0)")
    print(f"  ... differing only in Read/Write:  {len(g.merged_all) - len(g.merged)} (merged by design)")
    share = 100 * len(kept_together) / max(len(repeated), 1)
    print(f"titles in 2+ logs kept together:     {len(kept_together)}/{len(repeated)} ({share:.0f} %)")
    print(f"titles split over 2+ fingerprints:   {len(g.split)}")
    print(f"logs/s (parse+decode+fingerprint):   {g.analyzed / max(g.elapsed, 1e-9):.0f}")
    if args.show:
        for title in g.split:
            print(f"  split  {len(g.by_title[title])}x  {title}")
        for value in g.merged_all:
            print(f"  merged {value}  {sorted(g.by_fingerprint[value])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
