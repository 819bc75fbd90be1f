"""Symbolizer agreement with eu-addr2line -i and addr2line -f -i, per class of kernel text.

Usage: bench/symbolize_parity.py [--vmlinux PATH] [--shared DIR] [--per-class N] [--seed S] [--show K]

--vmlinux defaults to $CRASHFLEET_DEBUG_VMLINUX (Debian's linux-image-6.1.0-56-amd64-dbg,
`apt-get download` + `dpkg -x` outside the repo). Classes (a function can be in several):

- `trace`: every vmlinux frame of the shared crashes' serial logs (RIP at its offset, call-trace
  entries at offset - 1), `?` guesses included;
- `init.text`: functions in the `.init.text` section;
- `noinstr`, `entry`, `cpuidle`, `sched`, `lock`, `kprobes`, `irqentry`, `softirqentry`: functions
  between the linker's `__<name>_text_start` / `_end` markers (these sections are merged into
  `.text` in vmlinux; the markers say where each one went);
- `cold`, `part`, `isra`, `constprop`: compiler clones, by name;
- `inlined` (reported, not selected): the addresses where addr2line prints an inline chain.

`__pfx_`/`__cfi_` symbols (6.2+'s call padding before each function) are left out: they are
padding, not functions. For each selected function three addresses are looked up: its first byte, its middle and its
last byte; at most --per-class functions per class (seeded sample). An address agrees with
eu-addr2line when the (file, line) chain is identical at every inline level, with binutils when
(function, file, line) is. Addresses where the tool itself prints nothing are counted apart.
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
from analysis.symbolize.elfinfo import ElfImage  # noqa: E402

FRAME = re.compile(r"(?:RIP: \w+:|\]\s+(?:\? )?)([A-Za-z_][\w.]*)\+0x([0-9a-f]+)/0x([0-9a-f]+)(?: \[(\w+)\])?")
MARKED = ("noinstr", "entry", "cpuidle", "sched", "lock", "kprobes", "irqentry", "softirqentry")
CLONES = {name: re.compile(rf"\.{name}(?:\.\d+)?(?:\.|$)") for name in ("cold", "part", "isra", "constprop")}


def run_tool(cmd: list[str], addresses: list[int]) -> list[str]:
    proc = subprocess.run(cmd, input="\n".join(f"0x{a:x}" for a in addresses) + "\n",
                          capture_output=True, text=True, check=True, timeout=1200)
    return proc.stdout.splitlines()


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
        if not (lines[i] == "??" and path == "??"):
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


def trace_addresses(sym: Symbolizer, shared: Path) -> list[int]:
    out: set[int] = set()
    for log in sorted(shared.glob("vmcores/*/serial.log")):
        for line in log.read_text(errors="replace").splitlines():
            match = FRAME.search(line)
            if match and match.group(4) is None:
                is_rip = "RIP:" in line
                offset = int(match.group(2), 16) - (0 if is_rip else 1)
                address = sym.address_of(match.group(1), offset, int(match.group(3), 16))
                if address is not None:
                    out.add(address)
    return sorted(out)


def classes(sym: Symbolizer, vmlinux: str, shared: Path, per_class: int, seed: int) -> dict[str, list[int]]:
    rng = random.Random(seed)
    # `__pfx_f` / `__cfi_f` (6.2+: the 16 bytes of call padding before each function) are padding,
    # not functions: no DWARF function covers them.
    functions = [s for s in sym.index.all_symbols() if s.size > 0 and not s.name.startswith(("__pfx_", "__cfi_"))]
    with ElfImage(vmlinux) as image:
        markers = image.symbol_values({f"__{m}_text_{edge}" for m in MARKED for edge in ("start", "end")})
    picked: dict[str, list[int]] = {"trace": trace_addresses(sym, shared) if shared.is_dir() else []}
    selected: dict[str, list[object]] = {"init.text": [s for s in functions if s.section == ".init.text"]}
    for name in MARKED:
        low, high = markers.get(f"__{name}_text_start"), markers.get(f"__{name}_text_end")
        if low is not None and high is not None:
            selected[name] = [s for s in functions if low <= s.address < high]
    for name, pattern in CLONES.items():
        selected[name] = [s for s in functions if pattern.search(s.name)]
    for name, symbols in selected.items():
        sample = rng.sample(symbols, min(per_class, len(symbols)))
        addresses: set[int] = set()
        for s in sample:
            addresses.update((s.address, s.address + s.size // 2, s.address + s.size - 1))  # type: ignore[attr-defined]
        picked[name] = sorted(addresses)
    return picked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vmlinux", default=os.environ.get("CRASHFLEET_DEBUG_VMLINUX", ""))
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--per-class", type=int, default=400, help="functions sampled per class")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache", type=Path, default=None, help="symbol index cache (default: a temp dir)")
    parser.add_argument("--show", type=int, default=3, help="disagreements printed per class")
    args = parser.parse_args()
    if not os.path.isfile(args.vmlinux):
        print("no debug vmlinux; pass --vmlinux or set CRASHFLEET_DEBUG_VMLINUX", file=sys.stderr)
        return 2
    eu, binutils = shutil.which("eu-addr2line"), shutil.which("addr2line")
    if eu is None or binutils is None:
        print("eu-addr2line and addr2line are needed (Debian: elfutils, binutils)", file=sys.stderr)
        return 2
    cache = args.cache or Path(tempfile.mkdtemp(prefix="symparity-"))
    try:
        with Symbolizer.open(args.vmlinux, cache_dir=cache) as sym:
            picked = classes(sym, args.vmlinux, args.shared, args.per_class, args.seed)
            everything = sorted({a for addresses in picked.values() for a in addresses})
            started = time.perf_counter()
            ours = {a: sym.lookup(a) for a in everything}
            spent = time.perf_counter() - started
        print(f"{len(everything)} addresses, ours {spent:.1f} s")
        want_eu = parse_elfutils(run_tool([eu, "-i", "-a", "-e", args.vmlinux], everything))
        want_bu = parse_binutils(run_tool([binutils, "-f", "-i", "-a", "-e", args.vmlinux], everything))
        inlined = [a for a in everything if len(want_eu.get(a, [])) > 1]
        picked["inlined"] = inlined
        print("| class | addresses | eu-addr2line agrees | addr2line agrees | no line where eu-addr2line / addr2line has one |")
        print("|---|---|---|---|---|")
        shown: list[str] = []
        total_eu = total_bu = 0
        for name, addresses in picked.items():
            if not addresses:
                continue
            eu_same = bu_same = empty = empty_bu = 0
            for a in addresses:
                got = ours[a]
                if [(s.file, s.line) for s in got] == want_eu.get(a, []):
                    eu_same += 1
                elif len([x for x in shown if x.startswith(f"{name} eu ")]) < args.show:
                    shown.append(f"{name} eu 0x{a:x}: ours={[(s.function, s.file, s.line) for s in got]} "
                                 f"eu={want_eu.get(a, [])}")
                if [(s.function, s.file, s.line) for s in got] == want_bu.get(a, []):
                    bu_same += 1
                elif len([x for x in shown if x.startswith(f"{name} addr2line ")]) < args.show:
                    shown.append(f"{name} addr2line 0x{a:x}: ours={[(s.function, s.file, s.line) for s in got]} "
                                 f"addr2line={want_bu.get(a, [])}")
                has_line = any(s.line for s in got)
                if not has_line and want_eu.get(a):
                    empty += 1
                if not has_line and any(line for _, _, line in want_bu.get(a, [])):
                    empty_bu += 1
            n = len(addresses)
            print(f"| {name} | {n} | {eu_same}/{n} ({eu_same / n:.1%}) | {bu_same}/{n} ({bu_same / n:.1%}) | {empty} / {empty_bu} |")
        for a in everything:
            total_eu += [(s.file, s.line) for s in ours[a]] == want_eu.get(a, [])
            total_bu += [(s.function, s.file, s.line) for s in ours[a]] == want_bu.get(a, [])
        n = len(everything)
        either = sum(
            1 for a in everything
            if [(s.file, s.line) for s in ours[a]] == want_eu.get(a, [])
            or [(s.function, s.file, s.line) for s in ours[a]] == want_bu.get(a, [])
        )  # fmt: skip
        print(f"| all (distinct) | {n} | {total_eu}/{n} ({total_eu / n:.1%}) | {total_bu}/{n} ({total_bu / n:.1%}) | |")
        print(f"agrees with one of the two: {either}/{n} ({either / n:.2%})")
        for line in shown:
            print(line)
    finally:
        if args.cache is None:
            shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
