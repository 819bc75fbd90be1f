"""open_capture on kdump directories of every distribution's layout: the dump first, the text beside
it when the dump is unreadable, incomplete or still being written."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from analysis.errors import CrashfleetInputError
from analysis.sources import open_capture
from tests.vmcore.dumpwriter import Kernel, Record, flatten, write_elf, write_kdump

TEXT = b"[    1.000000] Kernel panic - not syncing: from the text file\n"


def _kernel() -> Kernel:
    kernel = Kernel()
    kernel.add_lockless_log([Record(1_000_000_000, b"Kernel panic - not syncing: from the dump")])
    return kernel


DUMP_LOG = b"[    1.000000] Kernel panic - not syncing: from the dump\n"

# (layout, dump file name, text file name, dump bytes)
LAYOUTS: tuple[tuple[str, str, str, str], ...] = (
    ("rhel", "vmcore", "vmcore-dmesg.txt", "kdump-lzo"),
    ("debian", "dump.202611252038", "dmesg.202611252038", "kdump-zlib+flattened"),
    ("suse", "vmcore", "dmesg.txt", "elf"),
    ("suse-old", "vmcore", "dmesg", "kdump-zlib"),
)


def _dump(fmt: str) -> bytes:
    kernel = _kernel()
    if fmt == "kdump-lzo":
        return write_kdump(kernel, codec="lzo")
    if fmt == "kdump-zlib+flattened":
        return flatten(write_kdump(kernel))
    if fmt == "elf":
        return write_elf(kernel)
    return write_kdump(kernel)


@pytest.mark.parametrize(("layout", "dump", "text", "fmt"), LAYOUTS, ids=[row[0] for row in LAYOUTS])
def test_directory_prefers_the_dump(layout: str, dump: str, text: str, fmt: str, tmp_path: Path) -> None:
    (tmp_path / dump).write_bytes(_dump(fmt))
    (tmp_path / text).write_bytes(TEXT)
    capture = open_capture(str(tmp_path))
    assert capture.log == DUMP_LOG
    assert capture.format == fmt
    assert capture.source == str(tmp_path / dump)
    assert capture.system is not None and capture.system.release == "6.1.0-synthetic"
    assert capture.dump_error is None


@pytest.mark.parametrize(("layout", "dump", "text", "fmt"), LAYOUTS, ids=[row[0] for row in LAYOUTS])
def test_directory_falls_back_to_text_when_dump_is_truncated(
    layout: str, dump: str, text: str, fmt: str, tmp_path: Path
) -> None:
    (tmp_path / dump).write_bytes(_dump(fmt)[:300])
    (tmp_path / text).write_bytes(TEXT)
    capture = open_capture(str(tmp_path))
    assert capture.log == TEXT
    assert capture.format == "text"
    assert capture.system is None
    assert capture.dump_error is not None and dump in capture.dump_error


def test_rhel_dump_still_being_written_uses_the_text(tmp_path: Path) -> None:
    (tmp_path / "vmcore-incomplete").write_bytes(_dump("kdump-lzo"))
    (tmp_path / "vmcore-dmesg.txt").write_bytes(gzip.compress(TEXT))
    capture = open_capture(str(tmp_path))
    assert capture.log == TEXT
    assert capture.format == "text+gzip"
    assert capture.dump_error is not None and "still being written" in capture.dump_error


def test_renamed_dump_is_found_by_content(tmp_path: Path) -> None:
    (tmp_path / "core.copy").write_bytes(_dump("kdump-zlib"))
    assert open_capture(str(tmp_path)).log == DUMP_LOG


def test_gzip_text_log_is_not_taken_for_a_dump(tmp_path: Path) -> None:
    path = tmp_path / "kern.log.gz"
    path.write_bytes(gzip.compress(TEXT))
    capture = open_capture(str(path))
    assert (capture.log, capture.format, capture.system) == (TEXT, "text+gzip", None)


def test_directory_with_nothing_usable(tmp_path: Path) -> None:
    with pytest.raises(CrashfleetInputError, match="no crash dump or kernel log"):
        open_capture(str(tmp_path))
    (tmp_path / "vmcore").write_bytes(b"KDUMP   " + bytes(100))
    with pytest.raises(CrashfleetInputError, match=r"vmcore: truncated in the kdump header"):
        open_capture(str(tmp_path))
