"""Differential test over the kernel's special text sections, cold splits and clones.

tests/data/symbolize/prog/sections.c puts functions in `.noinstr.text`, `.entry.text`,
`.cpuidle.text` (an idle halt whose instructions belong to an inlined header helper, like
`native_safe_halt` -> irqflags.h), `.sched.text` and `.init.text`, and has a `.cold` split in
`.text.unlikely` and a `.constprop` clone. Compiled with `gcc -g -O2` as an executable (sections
laid out by the linker, as in vmlinux) and as a relocatable object (each section apart, as in a
module), every byte of every code section is looked up by the symbolizer and by binutils
`addr2line -f -i` (function, file, line at every inline level), and for the executable by
elfutils `eu-addr2line -i` (file, line) too.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.symbolize import Symbolizer
from analysis.symbolize.elfinfo import ElfImage
from tests.symbolize import oracles

PROG = Path(__file__).resolve().parents[1] / "data" / "symbolize" / "prog"
SPECIAL = (".noinstr.text", ".entry.text", ".cpuidle.text", ".sched.text", ".init.text")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    root = tmp_path_factory.mktemp("sections")
    out = {"exe": root / "sections", "obj": root / "sections.o"}
    flags = ["-g", "-O2", "-fno-omit-frame-pointer"]
    subprocess.run([gcc, *flags, "-o", str(out["exe"]), str(PROG / "sections.c")], check=True, timeout=120)
    subprocess.run([gcc, *flags, "-c", "-o", str(out["obj"]), str(PROG / "sections.c")], check=True, timeout=120)
    return out


def _code_sections(elf: Path) -> dict[str, tuple[int, int]]:
    with ElfImage(str(elf)) as image:
        return {
            name: (base, image.section_size(name))
            for name, base in image.allocated_sections().items()
            if name == ".text" or name.startswith(".text.") or name in SPECIAL
        }


def _chain(elf: Path, cache: Path, addresses: list[int]) -> dict[int, list[tuple[str, str, int]]]:
    with Symbolizer.open(str(elf), cache_dir=cache) as sym:
        return {a: [(s.function, s.file, s.line) for s in sym.lookup(a)] for a in addresses}


def test_fixture_has_every_class(built: dict[str, Path]) -> None:
    sections = _code_sections(built["obj"])
    assert set(SPECIAL) | {".text", ".text.unlikely"} <= set(sections)
    with ElfImage(str(built["exe"])) as image:
        names = {s.name for s in image.function_symbols()}
    assert {"checked_add.cold", "scale.constprop.0", "idle_halt", "entry_dispatch", "early_setup"} <= names


def test_executable_matches_binutils_and_elfutils(built: dict[str, Path], tmp_path: Path) -> None:
    elf = built["exe"]
    sections = _code_sections(elf)
    for name in SPECIAL:
        assert name in sections, f"the linker dropped {name}"
    addresses = [a for base, size in sections.values() for a in range(base, base + size)]
    want = oracles.binutils(str(elf), addresses)
    want_eu = oracles.elfutils(str(elf), addresses)
    got = _chain(elf, tmp_path, addresses)
    covered = [a for a in addresses if want[a] and want[a][0][2] != 0]
    differ = [(hex(a), got[a], want[a]) for a in covered if got[a] != want[a]]
    assert not differ, f"{len(differ)} of {len(covered)} differ from addr2line: {differ[:3]}"
    assert all(got[a] == [] for a in addresses if a not in covered)
    differ_eu = [(hex(a), got[a], want_eu[a]) for a in covered if [(f, n) for _, f, n in got[a]] != want_eu[a]]
    assert not differ_eu, f"{len(differ_eu)} differ from eu-addr2line: {differ_eu[:3]}"
    # The idle halt: the instruction belongs to the inlined header helper, two levels deep.
    base, size = sections[".cpuidle.text"]
    chains = [got[a] for a in range(base, base + size)]
    assert any([f.rsplit("/", 1)[-1] for _, f, _ in c] == ["irqflags.h", "irqflags.h", "sections.c"] for c in chains)
    assert any(c and c[-1][0] == "idle_halt" for c in chains)


@pytest.mark.parametrize(
    "section", [".text", ".text.unlikely", ".text.startup", *SPECIAL]
)
def test_relocatable_object_matches_binutils_in_every_section(
    built: dict[str, Path], tmp_path: Path, section: str
) -> None:
    elf = built["obj"]
    base, size = _code_sections(elf)[section]
    offsets = list(range(size))
    want = oracles.binutils(str(elf), offsets, section=section)
    got = _chain(elf, tmp_path, [base + o for o in offsets])
    differ = [(hex(o), got[base + o], want[o]) for o in offsets if got[base + o] != want[o]]
    assert not differ, f"{len(differ)} of {size} bytes differ: {differ[:3]}"
    assert any(want[o] for o in offsets), "binutils resolved nothing: the test would prove little"
