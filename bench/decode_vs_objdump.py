"""Compare `analysis.decode` with GNU objdump (what the kernel's scripts/decodecode runs) on real Code: lines.

Usage: bench/decode_vs_objdump.py [SHARED] [--limit N] [--show-disagreements]

SHARED defaults to ../shared beside the checkout. Every x86 `Code:` line with a `<..>` marker
in corpora/syzkaller/report/*, the seed and the vmcore consoles is decoded twice: by
`decode_code` (capstone) and by `objdump -D -b binary -m i386:x86-64 -M intel` on the bytes
from the marker, as decodecode does. Prints how often the faulting instruction agrees (exactly,
after removing whitespace and case; and by mnemonic), and the time per line of each, with the
ratio. objdump's time includes its process start, which is what decodecode pays per line too.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from analysis.decode import decode_code, parse_code_line  # noqa: E402

X86_CODE = re.compile(r"Code: ((?:[0-9a-f]{2} )*<[0-9a-f]{2}>(?: [0-9a-f]{2})*)")


def code_lines(shared: Path) -> list[str]:
    """Distinct x86 Code: lines (with a marker) from the corpora, in a stable order."""
    files = sorted((shared / "corpora" / "syzkaller" / "report").glob("*"))
    files += sorted((shared / "corpora" / "seed").glob("*.txt"))
    files += sorted((shared / "vmcores").glob("*/serial.log"))
    seen: dict[str, None] = {}
    for path in files:
        for match in X86_CODE.finditer(path.read_text(errors="replace")):
            seen.setdefault("Code: " + match.group(1).strip(), None)
    return list(seen)


def objdump_first(objdump: str, data: bytes, address: int, workdir: Path) -> str | None:
    blob = workdir / "code.bin"
    blob.write_bytes(data)
    out = subprocess.run(
        [
            objdump,
            "-D",
            "-b",
            "binary",
            "-m",
            "i386:x86-64",
            "-M",
            "intel",
            f"--adjust-vma={address:#x}",
            str(blob),
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[0].strip().rstrip(":") == f"{address:x}":
            return parts[2].strip()
    return None


_NUMBER = re.compile(r"(?<![a-z0-9_])(-?)(0x[0-9a-f]+|\d+)(?![a-z0-9_])")
# Mnemonics the two print differently for the same encoding.
_PREFIXES = frozenset({"rep", "repe", "repz", "repne", "repnz", "lock"})
_ALIASES = {"pushfq": "pushf", "popfq": "popf", "movabs": "mov"}


def squash(text: str) -> str:
    """Comparable form: case, whitespace and objdump's `# target` comment removed, numbers as
    64-bit two's complement hex (capstone prints `-0xfff` where objdump prints `0xff...f001`),
    objdump's explicit `*1` scale, `+0x0` and default `ds:`/`es:` segments dropped, capstone's
    size-suffixed string mnemonics (`movsq`) reduced to objdump's (`movs`)."""
    text = text.lower().split("#")[0].strip()
    mnemonic, _, operands = text.partition(" ")
    if mnemonic in _PREFIXES:
        second, _, operands = operands.strip().partition(" ")
        mnemonic = f"{mnemonic} {second}"
    mnemonic = _ALIASES.get(mnemonic, mnemonic)
    operands = re.sub(r"\s+", "", operands).replace("*1]", "]").replace("*1+", "+")
    operands = operands.replace("ds:", "").replace("es:", "").replace("+0x0]", "]")
    operands = re.sub(r"([cdefgs]s):(0x[0-9a-f]+)", r"\1:[\2]", operands)
    mnemonic = re.sub(r"^(rep[a-z]* )?(movs|stos|lods|cmps|scas)[bwdq]$", r"\1\2", mnemonic)

    def number(match: re.Match[str]) -> str:
        value = int(match.group(2), 0) * (-1 if match.group(1) else 1)
        return hex(value % (1 << 64))

    return mnemonic + " " + _NUMBER.sub(number, operands)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shared", nargs="?", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--limit", type=int, default=0, help="only the first N Code: lines")
    parser.add_argument("--show-disagreements", action="store_true")
    args = parser.parse_args()
    objdump = shutil.which("objdump")
    if objdump is None:
        print("objdump (binutils) is not installed; nothing to compare against", file=sys.stderr)
        return 2
    lines = code_lines(args.shared)
    if args.limit:
        lines = lines[: args.limit]
    if not lines:
        print(f"no x86 Code: lines under {args.shared}", file=sys.stderr)
        return 2
    ours_time = theirs_time = 0.0
    exact = mnemonic = both_decoded = 0
    with tempfile.TemporaryDirectory() as tmp:
        for line in lines:
            start = time.perf_counter()
            got = decode_code(line, "x86_64", {}, None)
            ours_time += time.perf_counter() - start
            parsed = parse_code_line(line, "x86_64")
            start = time.perf_counter()
            theirs = objdump_first(
                objdump, parsed.data[parsed.fault_offset :], parsed.fault_offset, Path(tmp)
            )
            theirs_time += time.perf_counter() - start
            if got.instruction is None or theirs is None or theirs == "(bad)":
                continue
            both_decoded += 1
            same = squash(got.instruction) == squash(theirs)
            exact += same
            mnemonic += squash(got.instruction).split()[0] == squash(theirs).split()[0]
            if not same and args.show_disagreements:
                print(f"  capstone {got.instruction!r:48} objdump {theirs!r}")
    n = len(lines)
    print(f"x86 Code: lines:            {n}")
    print(f"decoded by both:            {both_decoded}")
    print(f"faulting instruction exact: {exact}/{both_decoded} ({100 * exact / max(both_decoded, 1):.1f} %)")
    print(
        f"same mnemonic:              {mnemonic}/{both_decoded} ({100 * mnemonic / max(both_decoded, 1):.1f} %)"
    )
    print(f"decode_code per line:       {1e3 * ours_time / n:.3f} ms (disassembly + verdict)")
    print(f"objdump per line:           {1e3 * theirs_time / n:.3f} ms (process per line, as decodecode)")
    print(f"speed ratio objdump/ours:   {theirs_time / max(ours_time, 1e-9):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
