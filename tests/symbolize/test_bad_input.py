"""What the symbolizer does with empty, foreign, truncated, corrupt and hostile files: a
`DebuginfoError` naming the file and the reason, or (for bad DWARF in a good ELF) lookups that
degrade to symbol+offset — never a traceback, a hang or unbounded memory."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.errors import DebuginfoError
from analysis.symbolize import Symbolizer
from analysis.symbolize.elfinfo import ElfImage
from analysis.symbolize.index import SymbolIndex

PROG = Path(__file__).resolve().parents[1] / "data" / "symbolize" / "prog"


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    out = tmp_path_factory.mktemp("bad") / "prog"
    subprocess.run(["gcc", "-g", "-O2", "-o", str(out), str(PROG / "main.c"), str(PROG / "walk.c")],
                   check=True, timeout=120)
    return out


def _patched(prog: Path, dest: Path, section: str, fill: bytes) -> Path:
    shutil.copy(prog, dest)
    with ElfImage(str(dest)) as image:
        where = image.section_file_range(section)
    assert where is not None
    offset, size = where
    data = bytearray(dest.read_bytes())
    data[offset : offset + size] = (fill * size)[:size]
    dest.write_bytes(bytes(data))
    return dest


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not an ELF file"),
        (b"just some text, not an ELF\n", "not an ELF file"),
        (b"\x7fELF", "corrupt ELF"),
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 9 + b"\xff" * 48, "corrupt ELF"),
    ],
    ids=["empty", "text", "magic-only", "garbage-header"],
)
def test_unreadable_files_raise_with_path_and_reason(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "debug.elf"
    path.write_bytes(content)
    with pytest.raises(DebuginfoError, match=reason) as info:
        Symbolizer.open(str(path), cache_dir=tmp_path / "cache")
    assert info.value.path == str(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DebuginfoError, match="no such file"):
        Symbolizer.open(str(tmp_path / "absent"), cache_dir=tmp_path)
    with pytest.raises(DebuginfoError, match="is a directory"):
        Symbolizer.open(str(tmp_path), cache_dir=tmp_path)


@pytest.mark.parametrize("keep", [0.05, 0.5, 0.9])
def test_truncated_elf_raises(prog: Path, tmp_path: Path, keep: float) -> None:
    data = prog.read_bytes()
    path = tmp_path / "truncated"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(DebuginfoError) as info, Symbolizer.open(str(path), cache_dir=tmp_path / "cache") as sym:
        sym.lookup(sym.index.symbols_named("main")[0].address)
    assert info.value.path == str(path)


@pytest.mark.parametrize("section", [".debug_info", ".debug_line", ".debug_abbrev", ".debug_aranges"])
@pytest.mark.parametrize("fill", [b"\xff", b"\x00", b"\x13\x37"], ids=["ff", "zero", "pattern"])
def test_corrupt_dwarf_degrades_to_symbols(prog: Path, tmp_path: Path, section: str, fill: bytes) -> None:
    path = _patched(prog, tmp_path / "corrupt", section, fill)
    with Symbolizer.open(str(path), cache_dir=tmp_path / "cache") as sym:
        walk = sym.resolve_symbol("walk")
        assert walk is not None  # symbol+offset still works
        for offset in range(0, walk.size, 7):
            for loc in sym.lookup(walk.address + offset):  # no exception, whatever it finds
                assert loc.function and loc.file
        if section in (".debug_info", ".debug_abbrev"):
            assert sym.index.dwarf_error is not None
            assert sym.lookup(walk.address) == []


def test_stripped_elf_has_symbols_but_no_source(prog: Path, tmp_path: Path) -> None:
    if shutil.which("strip") is None:
        pytest.skip("binutils strip is not installed")
    path = tmp_path / "stripped"
    subprocess.run(["strip", "-g", "-o", str(path), str(prog)], check=True, timeout=60)
    with Symbolizer.open(str(path), cache_dir=tmp_path / "cache") as sym:
        assert sym.symbolize_frame("walk", 4, False) == []
        assert sym.resolve_symbol("walk") is not None


def test_corrupt_cache_file_is_rebuilt(prog: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with Symbolizer.open(str(prog), cache_dir=tmp_path) as sym:
        db = sym.index.db_path
        expected = sym.symbolize_frame("walk", 4, False)
    db.write_bytes(b"this is not sqlite" * 100)
    with Symbolizer.open(str(prog), cache_dir=tmp_path) as sym:
        assert sym.symbolize_frame("walk", 4, False) == expected
    assert "unreadable" in caplog.text


def test_foreign_index_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.symidx"
    path.write_bytes(b"")
    with pytest.raises(DebuginfoError, match="not a crashfleet symbol index"):
        SymbolIndex.open_existing(path)
    with pytest.raises(DebuginfoError, match="no such symbol index"):
        SymbolIndex.open_existing(tmp_path / "absent.symidx")


def test_swapped_elf_behind_a_lazy_index_is_not_used(prog: Path, tmp_path: Path) -> None:
    """The file at the recorded path was replaced by another build: no source, no exception."""
    copy = tmp_path / "vmlinux"
    shutil.copy(prog, copy)
    with Symbolizer.open(str(copy), cache_dir=tmp_path / "cache", eager=False) as sym:
        db = sym.index.db_path
        address = sym.index.symbols_named("walk")[0].address
    subprocess.run(["gcc", "-g", "-O0", "-o", str(copy), str(PROG / "main.c"), str(PROG / "walk.c")],
                   check=True, timeout=120)
    with Symbolizer(SymbolIndex.open_existing(db, str(copy))) as sym:
        assert sym.lookup(address) == []


def test_unwritable_cache_is_a_debuginfo_error(prog: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")
    with pytest.raises(DebuginfoError, match="symbol cache not writable"):
        Symbolizer.open(str(prog), cache_dir=blocker)
