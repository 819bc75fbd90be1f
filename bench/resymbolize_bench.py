"""Retroactive symbolization at the collector: how fast stored crashes gain source lines when
their kernel build's index is uploaded, next to eu-addr2line doing the same lookups.

Usage: bench/resymbolize_bench.py [--crashes N] [--distinct K] [--db URL] [--batch N]

Compiles the test program of tests/data/symbolize/prog (`gcc -g -O2`, inlined helpers) as the
stand-in kernel and indexes it fully, stores N crashes of its build through the real ingest path
without a symbol store (SQLite in a temporary directory, or --db, e.g. a PostgreSQL URL with
?schema=NAME of a scratch schema). The crashes are K distinct traces (RIP offsets in walk()
times return offsets in main()); a pass looks each distinct trace up once, so K = N (the
default) is its worst case, and a fleet's many repeats of a few bugs the common one. Prints,
measured in this run:
- the retroactive pass (`CollectorSymbols.resymbolize`: read, symbolize, write in batches);
- the same crashes symbolized at ingest (the extra cost of `Ingestor.validate` with the index);
- eu-addr2line -f -i on the same addresses (RIP + two kernel frames per crash), batched in one
  process, and one process per crash (what a script around addr2line would do).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prometheus_client import CollectorRegistry  # noqa: E402

from analysis.model import CallFrame, CrashKind, CrashRecord, Rip, SystemFacts  # noqa: E402
from analysis.symbolize.index import SymbolIndex  # noqa: E402
from collector.ingest import Ingestor  # noqa: E402
from collector.metrics import Metrics  # noqa: E402
from collector.store import open_store  # noqa: E402
from collector.symbols import CollectorSymbols  # noqa: E402
from wire import convert  # noqa: E402
from wire.v1 import crash_pb2, ingest_service_pb2  # noqa: E402

PROG = REPO / "tests" / "data" / "symbolize" / "prog"
def symbols_of(elf: Path) -> dict[str, tuple[int, int]]:
    """name -> (address, size) of the ELF's sized symbols."""
    nm = subprocess.run(["nm", "-S", "--defined-only", str(elf)], check=True, capture_output=True, text=True)
    return {f[3]: (int(f[0], 16), int(f[1], 16)) for f in map(str.split, nm.stdout.splitlines()) if len(f) == 4}


def trace_offsets(i: int, distinct: int, table: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """(RIP offset in walk, return offset in main) of crash i: `distinct` different pairs."""
    j = i % distinct
    walk, main = table["walk"][1] - 1, table["main"][1] - 1
    return 1 + j % walk, 1 + (j // walk) % main


def requests(
    n: int, distinct: int, table: dict[str, tuple[int, int]], build_id: str
) -> list[ingest_service_pb2.ReportCrashRequest]:
    host = crash_pb2.HostFacts(hostname="bench-1", kernel_release="6.1.0-bench", machine="x86_64")
    system = SystemFacts(format="kdump-zlib", build_id=build_id)
    out = []
    for i in range(n):
        rip, ret = trace_offsets(i, distinct, table)
        record = CrashRecord(
            kind=CrashKind.BUG, reason=f"BUG: bench {i % 50}", normalized_reason=f"BUG: bench {i % 50}",
            title=f"BUG: bench {i % 50}", rip=Rip("walk", rip),
            call_trace=(CallFrame("main", ret), CallFrame("fail_loudly", 0x10), CallFrame("helper", 0x8, module="mod")),
        )  # fmt: skip
        out.append(convert.report_request(record, key=f"bench-{i:08d}", host=host, source_path="/var/crash/b", system=system))
    return out


def addresses(table: dict[str, tuple[int, int]], n: int, distinct: int) -> list[int]:
    """The lookups of every crash, as addresses (call-trace entries: return address - 1)."""
    out = []
    for i in range(n):
        rip, ret = trace_offsets(i, distinct, table)
        out += [table["walk"][0] + rip, table["main"][0] + ret - 1, table["fail_loudly"][0] + 0x10 - 1]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crashes", type=int, default=2000)
    parser.add_argument("--distinct", type=int, default=0, help="distinct traces (default: all)")
    parser.add_argument("--db", default="", help="store URL (default: SQLite in a temporary directory)")
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    eu = shutil.which("eu-addr2line")
    if shutil.which("gcc") is None or shutil.which("nm") is None or eu is None:
        print("gcc, nm and eu-addr2line are needed (Debian: gcc, binutils, elfutils)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        elf = root / "vmlinux"
        subprocess.run(["gcc", "-g", "-O2", "-Wl,--build-id=sha1", "-o", str(elf), str(PROG / "main.c"),
                        str(PROG / "walk.c")], check=True)  # fmt: skip
        with SymbolIndex.open_or_build(str(elf), cache_dir=root / "symbols") as index:
            index.index_all()
            build_id = index.build_id
        assert build_id is not None
        symbols = CollectorSymbols(root / "symbols")
        table = symbols_of(elf)
        distinct = min(args.distinct if args.distinct > 0 else args.crashes,
                       (table["walk"][1] - 1) * (table["main"][1] - 1))  # fmt: skip
        store = open_store(args.db or f"sqlite:///{root}/bench.db")
        try:
            batch = requests(args.crashes, distinct, table, build_id)
            plain = Ingestor(store, Metrics(CollectorRegistry()))
            enriched = Ingestor(store, Metrics(CollectorRegistry()), symbolize=symbols.enrich)
            for request in batch:
                plain.report(request, "bench-1")

            started = time.perf_counter()
            report = symbols.resymbolize(store, build_id, batch=args.batch)
            retro = time.perf_counter() - started
            assert report.symbolized == args.crashes, report

            started = time.perf_counter()
            for request in batch:
                plain.validate(request, "bench-1")
            base = time.perf_counter() - started
            started = time.perf_counter()
            for request in batch:
                enriched.validate(request, "bench-1")
            at_ingest = time.perf_counter() - started - base
        finally:
            store.close()

        lookups = addresses(table, args.crashes, distinct)
        started = time.perf_counter()
        subprocess.run([eu, "-f", "-i", "-e", str(elf)], input="\n".join(hex(a) for a in lookups),
                       capture_output=True, text=True, check=True)  # fmt: skip
        eu_batched = time.perf_counter() - started
        sample = min(args.crashes, 200)
        started = time.perf_counter()
        for i in range(sample):
            subprocess.run([eu, "-f", "-i", "-e", str(elf), *(hex(a) for a in lookups[3 * i : 3 * i + 3])],
                           capture_output=True, check=True)  # fmt: skip
        eu_each = (time.perf_counter() - started) / sample * args.crashes

    n = args.crashes
    store_kind = args.db.split(":")[0] or "sqlite"
    print(f"crashes: {n} of one build ({distinct} distinct traces), 3 kernel lookups each, store {store_kind}")
    rows = [
        ("retroactive pass (read + symbolize + write)", retro),
        ("symbolize at ingest (extra validate cost)", at_ingest),
        ("eu-addr2line -f -i, one batched process", eu_batched),
        ("eu-addr2line -f -i, one process per crash", eu_each),
    ]
    for name, seconds in rows:
        print(f"{name:48s} {seconds:8.3f} s  {seconds / n * 1e6:9.1f} µs/crash  {seconds / retro:6.2f}x retro")
    return 0


if __name__ == "__main__":
    sys.exit(main())
