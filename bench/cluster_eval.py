"""How well collector clusters match syzkaller's "same bug" judgement: pairwise precision and recall.

Usage: bench/cluster_eval.py [DIR] [--show N]

DIR defaults to ../shared/corpora/syzkaller/report beside the checkout. Every file there with a
TITLE: header and no `CORRUPTED: Y` is analyzed (analysis.signature.analyze), its first crash
(syzkaller reports the first one) is sent through the real ingest path (collector.ingest.Ingestor:
validation, server-side fingerprint, dedupe, exact + similarity clustering, SQLite store in a temp
dir), one host per file. Two files are "the same bug" when their expected titles agree (TITLE or
any ALT:). Over all pairs of files:

    precision = pairs in one cluster that are the same bug / pairs in one cluster
    recall    = same-bug pairs in one cluster / same-bug pairs

A file in which the analyzer finds no crash counts as a cluster of its own. The same numbers are
printed for exact fingerprints alone, so the similarity step's contribution is visible.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prometheus_client import CollectorRegistry  # noqa: E402

from analysis.signature import analyze  # noqa: E402
from bench.syzcorpus import CorpusCase, read_case  # noqa: E402
from collector.ingest import Ingestor  # noqa: E402
from collector.metrics import Metrics  # noqa: E402
from collector.store.sqlite import SqliteStore  # noqa: E402
from wire import convert  # noqa: E402
from wire.v1 import crash_pb2  # noqa: E402

DEFAULT_DIR = REPO.parent / "shared" / "corpora" / "syzkaller" / "report"


def pairwise(groups: dict[str, str], cases: dict[str, CorpusCase]) -> tuple[float, float, int, int, int]:
    """(precision, recall, true pairs, predicted pairs, expected pairs) of a file -> cluster map."""
    names = sorted(groups)
    tp = predicted = expected = 0
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            same_cluster = groups[a] == groups[b]
            same_bug = bool(set(cases[a].titles) & set(cases[b].titles))
            predicted += same_cluster
            expected += same_bug
            tp += same_cluster and same_bug
    precision = tp / predicted if predicted else 1.0
    recall = tp / expected if expected else 1.0
    return precision, recall, tp, predicted, expected


def _show(title: str, pairs: Iterable[tuple[str, str, str]], limit: int) -> None:
    items = list(pairs)
    if limit and items:
        print(f"\n{title} ({len(items)}, first {min(limit, len(items))}):")
        for a, b, why in items[:limit]:
            print(f"  {a} / {b}: {why}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", default=str(DEFAULT_DIR))
    parser.add_argument("--show", type=int, default=0, metavar="N",
                        help="print N wrong merges and splits with the (kind | reason | frames) clustering saw")  # fmt: skip
    args = parser.parse_args()
    folder = Path(args.dir)
    if not folder.is_dir():
        print(f"cluster_eval: {folder}: not a directory (pass the syzkaller report corpus)", file=sys.stderr)
        return 2
    cases = {c.name: c for c in (read_case(p) for p in sorted(folder.iterdir()) if p.is_file())}
    cases = {n: c for n, c in cases.items() if c.titles and not c.corrupted}
    clusters: dict[str, str] = {}
    exact: dict[str, str] = {}
    signatures: dict[str, str] = {}  # what clustering compared, for --show
    no_crash = 0
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(f"{tmp}/eval.db")
        ingestor = Ingestor(store, Metrics(CollectorRegistry()))
        try:
            for name, case in cases.items():
                records = analyze(case.log)
                if not records:
                    no_crash += 1
                    clusters[name] = exact[name] = f"none:{name}"
                    continue
                record = records[0]
                host = crash_pb2.HostFacts(hostname=f"syz-{name}", kernel_release=record.kernel_release or "")
                request = convert.report_request(
                    record, key=convert.idempotency_key(hashlib.sha256(case.log).hexdigest(), 0), host=host,
                    source_path=f"corpus/{name}",
                )  # fmt: skip
                result = ingestor.report(request, host.hostname)
                crash = ingestor.validate(request, host.hostname)
                signatures[name] = f"[{crash.kind} | {crash.normalized_reason} | {' '.join(crash.frames)}]"
                clusters[name] = result.cluster_id
                exact[name] = record.fingerprint.value if record.fingerprint else f"nofp:{name}"
            total_clusters = store.count_clusters()
        finally:
            store.close()
    seconds = time.perf_counter() - start
    bugs = Counter(min(c.titles) for c in cases.values())
    print(f"corpus: {folder}")
    print(f"files: {len(cases)} non-corrupted with a title, {len(bugs)} distinct expected titles, "
          f"{no_crash} where the analyzer found no crash; {total_clusters} clusters; {seconds:.1f} s")  # fmt: skip
    for label, groups in (("collector clusters", clusters), ("exact fingerprints only", exact)):
        precision, recall, tp, predicted, expected = pairwise(groups, cases)
        print(f"{label:<24} pairwise precision {precision:.3f} ({tp}/{predicted})  "
              f"recall {recall:.3f} ({tp}/{expected})")  # fmt: skip
    if args.show:
        names = sorted(clusters)
        merges, splits = [], []
        by_cluster: dict[str, list[str]] = defaultdict(list)
        for n in names:
            by_cluster[clusters[n]].append(n)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                same_bug = bool(set(cases[a].titles) & set(cases[b].titles))
                seen = f"\n      {signatures.get(a, '-')}\n      {signatures.get(b, '-')}"
                if clusters[a] == clusters[b] and not same_bug:
                    merges.append((a, b, f"{min(cases[a].titles)!r} vs {min(cases[b].titles)!r}{seen}"))
                elif same_bug and clusters[a] != clusters[b]:
                    splits.append((a, b, f"{min(set(cases[a].titles) & set(cases[b].titles))!r}{seen}"))
        _show("wrongly merged pairs", merges, args.show)
        _show("wrongly split pairs", splits, args.show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
