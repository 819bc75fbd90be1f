"""Differential tests: the symbolizer against binutils `addr2line -f -i` and elfutils `eu-addr2line`.

Programs under tests/data/symbolize/prog are compiled at test time with `gcc -g -O2` (inlined
static helpers, a cold split, two compile units), as an executable and as a relocatable object,
and every byte address of their code is looked up by all three.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.model import SourceLocation
from analysis.symbolize import Symbolizer, elfinfo
from analysis.symbolize.elfinfo import ElfImage
from tests.conftest import shared_path
from tests.symbolize import oracles

PROG = Path(__file__).resolve().parents[1] / "data" / "symbolize" / "prog"
CFLAGS = ["-g", "-O2", "-fno-omit-frame-pointer"]


def _gcc(out: Path, *args: str) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    subprocess.run([gcc, *CFLAGS, "-o", str(out), *args], check=True, timeout=120)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("prog")
    return {
        "exe": _gcc(root / "prog", str(PROG / "main.c"), str(PROG / "walk.c"), str(PROG / "entry.S")),
        "obj": _gcc(root / "walk.o", "-c", str(PROG / "walk.c")),
        "exe_dwarf4": _gcc(root / "prog4", "-gdwarf-4", str(PROG / "main.c"), str(PROG / "walk.c")),
    }


def _chain(locations: list[SourceLocation]) -> list[tuple[str, str, int]]:
    return [(loc.function, loc.file, loc.line) for loc in locations]


def _code_range(elf: Path, section: str) -> tuple[int, int]:
    with ElfImage(str(elf)) as image:
        base = image.allocated_sections()[section]
        return base, base + image.section_size(section)


@pytest.mark.parametrize("variant", ["exe", "exe_dwarf4"])
def test_every_code_address_matches_binutils(built: dict[str, Path], tmp_path: Path, variant: str) -> None:
    elf = built[variant]
    low, high = _code_range(elf, ".text")
    addresses = list(range(low, high))
    expected = oracles.binutils(str(elf), addresses)
    # Where no DWARF covers an address (alignment padding, CRT code) binutils falls back to the
    # nearest ELF symbol with line 0; the symbolizer answers nothing there and the caller keeps
    # the kernel's own symbol+offset.
    covered = [a for a in addresses if expected[a] and expected[a][0][2] != 0]
    assert len(covered) > len(addresses) // 2
    with Symbolizer.open(str(elf), cache_dir=tmp_path) as sym:
        got = {a: _chain(sym.lookup(a)) for a in addresses}
    mismatches = [(hex(a), got[a], expected[a]) for a in covered if got[a] != expected[a]]
    assert not mismatches[:5], f"{len(mismatches)} of {len(covered)} addresses differ"
    assert all(got[a] == [] for a in addresses if a not in covered)
    # The program really has inline chains and assembly, or this test would prove little.
    assert any(len(chain) >= 3 for chain in expected.values())
    if variant == "exe":
        assert any(chain[0][0] == "asm_add_twice" and chain[0][2] > 0 for chain in expected.values())


def test_file_lines_match_elfutils(built: dict[str, Path], tmp_path: Path) -> None:
    elf = built["exe"]
    low, high = _code_range(elf, ".text")
    addresses = list(range(low, high))
    expected = oracles.elfutils(str(elf), addresses)
    with Symbolizer.open(str(elf), cache_dir=tmp_path) as sym:
        got = {a: [(loc.file, loc.line) for loc in sym.lookup(a)] for a in addresses}
    # elfutils stretches a sequence's last row over the padding after it, where the symbolizer
    # (like binutils) answers nothing; compare where both have an answer.
    covered = [a for a in addresses if got[a]]
    assert len(covered) > len(addresses) // 2
    differ = [hex(a) for a in covered if got[a] != expected[a]]
    assert not differ, differ[:10]


def test_relocatable_object_matches_binutils_by_section(built: dict[str, Path], tmp_path: Path) -> None:
    elf = built["obj"]
    low, high = _code_range(elf, ".text")
    offsets = list(range(0, high - low))
    expected = oracles.binutils(str(elf), offsets, section=".text")
    with Symbolizer.open(str(elf), cache_dir=tmp_path) as sym:
        mismatches = [o for o in offsets if _chain(sym.lookup(low + o)) != expected[o]]
    assert not mismatches, [hex(o) for o in mismatches[:10]]


def test_function_offset_and_return_addresses(built: dict[str, Path], tmp_path: Path) -> None:
    elf = built["exe"]
    with Symbolizer.open(str(elf), cache_dir=tmp_path) as sym:
        walk = sym.resolve_symbol("walk")
        assert walk is not None
        assert sym.symbolize_frame("walk", 9, is_return_address=False) == sym.lookup(walk.address + 9)
        assert sym.symbolize_frame("walk", 9, is_return_address=True) == sym.lookup(walk.address + 8)
        assert sym.symbolize_frame("no_such_function", 1, is_return_address=False) == []
        assert sym.symbolize_frame("walk", walk.size + 100, is_return_address=False) == []
        assert sym.symbolize_frame("walk", None, is_return_address=True) == []
        # Raw runtime addresses: the slide is subtracted first.
        assert sym.symbolize_address(walk.address + 0x1000 + 9, kaslr_offset=0x1000) == sym.lookup(walk.address + 9)


def test_index_is_built_once_per_build_id(built: dict[str, Path], tmp_path: Path) -> None:
    elf = str(built["exe"])
    with Symbolizer.open(elf, cache_dir=tmp_path) as sym:
        build_id = sym.build_id
        first = sym.index.db_path
    assert build_id is not None and first.name.startswith(build_id[2:])
    stamp = first.stat().st_mtime_ns
    with Symbolizer.open(elf, cache_dir=tmp_path) as sym:
        assert sym.index.db_path == first
        assert sym.lookup(sym.index.symbols_named("main")[0].address)
    assert first.stat().st_mtime_ns == stamp


def test_lazy_index_fills_compile_units_on_demand(built: dict[str, Path], tmp_path: Path) -> None:
    elf = str(built["exe"])
    with Symbolizer.open(elf, cache_dir=tmp_path, eager=False) as sym:
        assert sym.index.stats()["cu_done"] == 0
        walk = sym.resolve_symbol("walk")
        assert walk is not None
        assert sym.lookup(walk.address)[0].function in {"walk", "twice", "sum_values", "node_value", "node_empty"}
        assert sym.index.stats()["cu_done"] == 1


def test_lazy_index_without_its_elf_degrades(built: dict[str, Path], tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copy(built["exe"], copy)
    with Symbolizer.open(str(copy), cache_dir=tmp_path / "cache", eager=False) as sym:
        address = sym.index.symbols_named("walk")[0].address
    copy.unlink()
    with Symbolizer(sym.index.open_existing(sym.index.db_path, str(copy))) as gone:
        assert gone.lookup(address) == []  # no source lines, no exception
        assert gone.resolve_symbol("walk") is not None  # symbol+offset still known


def test_crashme_module_rip_is_list_empty_inlined(tmp_path: Path) -> None:
    """The real 6.1 crash: RIP crashme_napi_pending.constprop.0.isra.0+0x5/0x20 [crashme]."""
    ko = shared_path("vmcores", "module", "crashme.ko")
    with Symbolizer.open(str(ko), cache_dir=tmp_path) as sym:
        got = sym.symbolize_frame("crashme_napi_pending.constprop.0.isra.0", 0x5, False, size=0x20)
        assert [(s.function, s.file.rsplit("/", 2)[-2:], s.line) for s in got] == [
            ("list_empty", ["linux", "list.h"], 299),
            ("crashme_napi_pending", ["crashme-1.0", "crashme.c"], 46),
        ]
        base = sym.index.section_base(".text")
        assert base is not None
        trace = [("crashme_null", 0x34, 0x60), ("crashme_write", 0x22D, 0x2F6)]
        for function, offset, size in trace:
            symbol = sym.resolve_symbol(function, size)
            assert symbol is not None and symbol.section == ".text"
            section_offset = symbol.address - base + offset - 1
            expected = oracles.binutils(str(ko), [section_offset], section=".text")[section_offset]
            assert _chain(sym.symbolize_frame(function, offset, True, size)) == expected


def test_pyelftools_walk_fallback_gives_the_same_answers(
    built: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CU with a DIE form the byte scanner does not know is walked by pyelftools instead."""
    elf = str(built["exe"])
    low, high = _code_range(built["exe"], ".text")
    with Symbolizer.open(elf, cache_dir=tmp_path / "scan") as sym:
        scanned = {a: sym.lookup(a) for a in range(low, high)}

    def unsupported(*args: object, **kwargs: object) -> None:
        raise elfinfo._UnsupportedForm("DW_FORM_pretend")

    monkeypatch.setattr(elfinfo._AbbrevPlan, "of", unsupported)
    with Symbolizer.open(elf, cache_dir=tmp_path / "walk") as sym:
        walked = {a: sym.lookup(a) for a in range(low, high)}
    assert walked == scanned
    assert sum(1 for chain in scanned.values() if len(chain) >= 2) > 10
