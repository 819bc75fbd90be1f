"""Symbolizer speed and parity on the debug vmlinux, next to eu-addr2line and addr2line -i.

Usage: bench/symbolize_bench.py [--vmlinux PATH] [--shared DIR] [--addresses N] [--full SECONDS]

--vmlinux defaults to $CRASHFLEET_DEBUG_VMLINUX, else /usr/lib/debug/boot/vmlinux-6.1.0-56-amd64
(Debian's linux-image-6.1.0-56-amd64-dbg: `apt-get download` it and `dpkg -x` it anywhere
outside the repo). Addresses: every kernel frame of the shared crashes' serial logs (../shared
beside the checkout, or --shared), plus N seeded random instructions inside random functions.

Prints, measured in this one run:
- cold: index build time (symbols + CU ranges) and cache size, then the first lookups, which
  index the compile units they land in (lazy), and the cache size after;
- warm: lookup time per address from the on-disk index (fresh process state, cache reused);
- eu-addr2line -f -i and addr2line -f -i -a on the same addresses, batched in one process each
  (their per-address cost including their own DWARF loading), and one-address invocations;
- parity with addr2line (function, file, line for every inline level);
- with --full S: how far indexing every CU gets in S seconds (pyelftools' speed on 170 MB DWARF).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.symbolize import Symbolizer  # noqa: E402
from analysis.symbolize.index import SymbolIndex  # noqa: E402

DEFAULT_VMLINUX = "/usr/lib/debug/boot/vmlinux-6.1.0-56-amd64"
FRAME = re.compile(r"(?:RIP: \w+:|\]\s+(?:\? )?)([A-Za-z_][\w.]*)\+0x([0-9a-f]+)/0x([0-9a-f]+)(?: \[(\w+)\])?")


def trace_frames(shared: Path) -> list[tuple[str, int, int, bool]]:
    """(function, offset, size, is_rip) of every vmlinux frame in the shared serial logs."""
    out: set[tuple[str, int, int, bool]] = set()
    for log in sorted(shared.glob("vmcores/*/serial.log")):
        for line in log.read_text(errors="replace").splitlines():
            match = FRAME.search(line)
            if match and match.group(4) is None:
                out.add((match.group(1), int(match.group(2), 16), int(match.group(3), 16), "RIP:" in line))
    return sorted(out)


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_tool(cmd: list[str], addresses: list[int]) -> tuple[float, list[str]]:
    started = time.perf_counter()
    proc = subprocess.run(cmd, input="\n".join(f"0x{a:x}" for a in addresses) + "\n",
                          capture_output=True, text=True, check=True, timeout=600)
    return time.perf_counter() - started, proc.stdout.splitlines()


def parse_binutils(lines: list[str]) -> dict[int, list[tuple[str, str, int]]]:
    result: dict[int, list[tuple[str, str, int]]] = {}
    current: list[tuple[str, str, int]] = []
    i = 0
    while i < len(lines):
        if re.fullmatch(r"0x[0-9a-f]+", lines[i]):
            current = result.setdefault(int(lines[i], 16), [])
            i += 1
            continue
        where = re.sub(r" \(discriminator \d+\)$", "", lines[i + 1])
        path, _, line = where.rpartition(":")
        current.append((lines[i], path, int(line) if line.isdigit() else 0))
        i += 2
    return result


def parse_elfutils(lines: list[str]) -> dict[int, list[tuple[str, int]]]:
    result: dict[int, list[tuple[str, int]]] = {}
    current: list[tuple[str, int]] = []
    for line in lines:
        if re.fullmatch(r"0x[0-9a-f]+", line):
            current = result.setdefault(int(line, 16), [])
            continue
        match = re.match(r"^(.*?):(\d+)(?::\d+)?$", line)
        if match and match.group(1) != "??":
            current.append((match.group(1), int(match.group(2))))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vmlinux", default=os.environ.get("CRASHFLEET_DEBUG_VMLINUX", DEFAULT_VMLINUX))
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--addresses", type=int, default=300, help="random addresses besides the crash frames")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--full", type=float, default=0.0, metavar="SECONDS",
                        help="also try indexing every CU, for at most this long")
    args = parser.parse_args()
    if not os.path.isfile(args.vmlinux):
        print(f"no debug vmlinux at {args.vmlinux}; pass --vmlinux or set CRASHFLEET_DEBUG_VMLINUX", file=sys.stderr)
        return 2
    eu, binutils = shutil.which("eu-addr2line"), shutil.which("addr2line")
    if eu is None or binutils is None:
        print("eu-addr2line and addr2line are needed (Debian: elfutils, binutils)", file=sys.stderr)
        return 2
    cache = Path(tempfile.mkdtemp(prefix="symbench-"))
    try:
        size_mb = os.path.getsize(args.vmlinux) / 2**20
        print(f"vmlinux: {args.vmlinux} ({size_mb:.0f} MB)")

        started = time.perf_counter()
        sym = Symbolizer.open(args.vmlinux, cache_dir=cache)
        cold_open = time.perf_counter() - started
        print(f"cold index (symbols + CU ranges): {cold_open:.2f} s, cache {dir_size(cache) / 2**20:.1f} MB, "
              f"build-id {sym.build_id}")

        rng = random.Random(args.seed)
        addresses: list[int] = []
        frames = trace_frames(args.shared) if args.shared.is_dir() else []
        for function, offset, size, is_rip in frames:
            address = sym.address_of(function, offset - (0 if is_rip else 1), size)
            if address is not None:
                addresses.append(address)
        functions = [s for s in sym.index.all_symbols() if s.size > 0]
        for symbol in rng.sample(functions, min(args.addresses, len(functions))):
            addresses.append(symbol.address + rng.randrange(symbol.size))
        print(f"addresses: {len(addresses)} ({len(frames)} from the shared crashes' traces)")

        started = time.perf_counter()
        ours = {a: sym.lookup(a) for a in addresses}
        first = time.perf_counter() - started
        stats = sym.index.stats()
        sym.close()
        print(f"first lookups (index {stats['cu_done']} CUs on demand): {first:.2f} s total, "
              f"{first / len(addresses) * 1e3:.1f} ms/address; cache now {dir_size(cache) / 2**20:.1f} MB "
              f"({stats['lines']} line rows, {stats['funcs']} functions, {stats['inlines']} inline ranges)")

        started = time.perf_counter()
        warm_sym = Symbolizer(SymbolIndex.open_or_build(args.vmlinux, cache_dir=cache))
        reopen = time.perf_counter() - started
        started = time.perf_counter()
        for a in addresses:
            warm_sym.lookup(a)
        warm = (time.perf_counter() - started) / len(addresses)
        warm_sym.close()
        print(f"warm: reopen index {reopen * 1e3:.1f} ms, lookup {warm * 1e6:.0f} us/address")

        eu_time, eu_lines = run_tool([eu, "-i", "-a", "-e", args.vmlinux], addresses)
        bu_time, bu_lines = run_tool([binutils, "-f", "-i", "-a", "-e", args.vmlinux], addresses)
        eu_one, _ = run_tool([eu, "-f", "-i", "-e", args.vmlinux], addresses[:1])
        bu_one, _ = run_tool([binutils, "-f", "-i", "-e", args.vmlinux], addresses[:1])
        n = len(addresses)
        print(f"eu-addr2line -i:    {eu_time / n * 1e6:.0f} us/address batched ({eu_time:.2f} s for {n}); "
              f"one address per process {eu_one * 1e3:.0f} ms")
        print(f"addr2line -f -i:    {bu_time / n * 1e6:.0f} us/address batched ({bu_time:.2f} s for {n}); "
              f"one address per process {bu_one * 1e3:.0f} ms")
        print(f"ratio warm/eu-addr2line batched: {warm / (eu_time / n):.2f}x (goal <= 2x); "
              f"warm/addr2line batched: {warm / (bu_time / n):.2f}x; "
              f"reopen+1 lookup vs eu-addr2line one-shot: {(reopen + warm) / eu_one:.2f}x")

        expected = parse_binutils(bu_lines)
        same = 0
        differ: list[str] = []
        for a in addresses:
            got = [(s.function, s.file, s.line) for s in ours[a]]
            want = [level for level in expected.get(a, []) if level[2] != 0 or level[1] != "??"]
            if got == want:
                same += 1
            elif len(differ) < 5:
                differ.append(f"  0x{a:x}: ours={got} addr2line={want}")
        print(f"parity with addr2line -f -i: {same}/{n} addresses identical (function, file, line, all levels)")
        for line in differ:
            print(line)
        eu_expected = parse_elfutils(eu_lines)
        eu_same = sum(1 for a in addresses if [(s.file, s.line) for s in ours[a]] == eu_expected.get(a, []))
        print(f"parity with eu-addr2line -i: {eu_same}/{n} addresses identical (file, line, all levels)")

        if args.full > 0:
            index = SymbolIndex.open_or_build(args.vmlinux, cache_dir=cache)
            started = time.perf_counter()
            done, total = index.index_all(args.full)
            spent = time.perf_counter() - started
            rate = done / spent if spent else 0.0
            print(f"full index: {done}/{total} CUs in {spent:.0f} s ({rate:.1f} CU/s"
                  + (f"; whole file would take ~{total / rate / 60:.0f} min" if done < total and rate else "")
                  + f"), cache {dir_size(cache) / 2**20:.0f} MB")
            index.close()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
