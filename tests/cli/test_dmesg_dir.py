"""`crashfleet dmesg DIR` takes the kdump directories `inspect` takes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, shared_path


def dmesg(path: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "crashfleet", "dmesg", str(path)],
        capture_output=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
    )  # fmt: skip


def test_a_debian_kdump_directory_prints_its_dumps_log(tmp_path: Path) -> None:
    """kdump-tools' layout: /var/crash/YYYYMMDDHHMM/dump.YYYYMMDDHHMM beside dmesg.YYYYMMDDHHMM."""
    folder = tmp_path / "202612070000"
    folder.mkdir()
    (folder / "dump.202612070000").symlink_to(shared_path("vmcores", "null", "vmcore.kdump-zlib"))
    (folder / "dmesg.202612070000").write_bytes(b"not what is printed: the dump comes first\n")
    done = dmesg(folder)
    assert done.returncode == 0, done.stderr
    assert done.stdout == shared_path("vmcores", "null", "dmesg.txt").read_bytes()  # makedumpfile's own
    assert done.stderr == b""


def test_a_directory_whose_dump_is_unusable_prints_the_saved_text_and_says_why(tmp_path: Path) -> None:
    folder = tmp_path / "202612070000"
    folder.mkdir()
    (folder / "dump.202612070000").write_bytes(b"KDUMP   " + b"\x00" * 100)
    (folder / "dmesg.202612070000").write_bytes(b"[    1.000000] BUG: kernel NULL pointer dereference\n")
    done = dmesg(folder)
    assert done.returncode == 0
    assert done.stdout == b"[    1.000000] BUG: kernel NULL pointer dereference\n"
    [note] = done.stderr.decode().splitlines()
    assert note.startswith(f"crashfleet dmesg: {folder}: no usable dump (dump.202612070000: ")
    assert note.endswith(f"; printing {folder / 'dmesg.202612070000'}")


def test_an_empty_directory_is_one_line_naming_it(tmp_path: Path) -> None:
    done = dmesg(tmp_path)
    assert done.returncode == 1 and done.stdout == b""
    assert done.stderr.decode().splitlines() == [
        f"crashfleet dmesg: {tmp_path}: no crash dump or kernel log in this directory"
    ]
