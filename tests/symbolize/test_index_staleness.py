"""A cached symbol index that no longer describes its file is rebuilt (or not used), and said so.

`inspect` used an index under ~/.cache/crashfleet/symbols without looking at the file it came
from again: a module rebuilt without a build-id at the same path and size, or an index made from
a stripped copy before the debug file was installed, silently gave old or no source lines.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.symbolize.index import SymbolIndex

PROG = Path(__file__).resolve().parents[1] / "data" / "symbolize" / "prog"


def _gcc(out: Path, *args: str) -> Path:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed")
    subprocess.run([gcc, "-g", "-O2", "-o", str(out), *args, str(PROG / "main.c"), str(PROG / "walk.c")],
                   check=True, timeout=120)  # fmt: skip
    return out


def test_a_modified_file_without_build_id_is_reindexed_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    elf = _gcc(tmp_path / "prog", "-Wl,--build-id=none")
    with SymbolIndex.open_or_build(str(elf), cache_dir=tmp_path / "cache") as index:
        assert index.build_id is None
        first = index.meta["elf_mtime_ns"]
    stat = elf.stat()
    os.utime(elf, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # rebuilt: same path, same size
    with (
        caplog.at_level(logging.WARNING),
        SymbolIndex.open_or_build(str(elf), cache_dir=tmp_path / "cache") as index,
    ):
        assert index.meta["elf_mtime_ns"] == str(stat.st_mtime_ns + 10**9) != first
    [message] = [r.getMessage() for r in caplog.records if "stale" in r.getMessage()]
    assert "symbol index stale, rebuilding" in message and "reason=modified since it was indexed" in message


def test_an_index_of_a_stripped_copy_is_rebuilt_once_the_debug_file_is_there(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    debug = _gcc(tmp_path / "prog.debug", "-Wl,--build-id")
    stripped = tmp_path / "prog"
    subprocess.run(["strip", "--strip-debug", "-o", str(stripped), str(debug)], check=True, timeout=60)
    with SymbolIndex.open_or_build(str(stripped), cache_dir=tmp_path / "cache") as index:
        assert index.meta["has_dwarf"] == "0"
        build_id = index.build_id
    with (
        caplog.at_level(logging.WARNING),
        SymbolIndex.open_or_build(str(debug), cache_dir=tmp_path / "cache") as index,
    ):
        assert index.build_id == build_id and index.meta["has_dwarf"] == "1"
        walk = index.symbols_named("walk")[0]
        index.ensure_cu(walk.address)
        assert index.line_at(walk.address) is not None
    assert any("indexed from a copy without DWARF" in r.getMessage() for r in caplog.records)


def test_find_does_not_hand_out_an_index_whose_file_changed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    elf = _gcc(tmp_path / "prog", "-Wl,--build-id")
    with SymbolIndex.open_or_build(str(elf), cache_dir=tmp_path / "cache", eager=False) as index:
        build_id = index.build_id
    assert build_id is not None
    found = SymbolIndex.find(build_id, cache_dir=tmp_path / "cache")
    assert found is not None
    found.close()
    with elf.open("ab") as f:  # replaced in place: another size now
        f.write(b"\0" * 16)
    with caplog.at_level(logging.WARNING):
        assert SymbolIndex.find(build_id, cache_dir=tmp_path / "cache") is None
    assert any("symbol index stale, not used" in r.getMessage() and "size changed" in r.getMessage()
               for r in caplog.records)  # fmt: skip
