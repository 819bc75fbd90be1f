"""Builders of crash trees the way each distribution's tools leave them (shared by the agent tests)."""

from __future__ import annotations

import base64
import os
import shutil
import struct
import zlib
from pathlib import Path

STAMP = "202611251200"


def write_apport(path: Path, *, vmcore: bytes | None = None, fields: dict[str, bytes] | None = None) -> Path:
    """An apport problem report as apport writes one (problem_report.ProblemReport.write).

    Text fields are `Key: value` with continuation lines indented by a space. A binary field is
    `Key: base64`, then indented base64 lines: the first is a gzip header alone (FNAME = the key),
    then raw-deflate blocks, then the gzip trailer (CRC-32, size).
    """
    lines = [b"ProblemType: KernelCrash", b"Package: linux-image-6.1.0-56-amd64 6.1.192-2"]
    for key, value in (fields or {}).items():
        body = value.split(b"\n")
        lines.append(key.encode() + b":")
        lines.extend(b" " + line for line in body)
    if vmcore is not None:
        lines.append(b"VmCore: base64")
        header = b"\037\213\010\010\000\000\000\000\002\377" + b"VmCore\000"
        lines.append(b" " + base64.b64encode(header))
        compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        for start in range(0, len(vmcore), 1 << 20):
            block = compressor.compress(vmcore[start : start + (1 << 20)])
            if block:
                lines.append(b" " + base64.b64encode(block))
        tail = compressor.flush() + struct.pack("<LL", zlib.crc32(vmcore), len(vmcore) & 0xFFFFFFFF)
        lines.append(b" " + base64.b64encode(tail))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def place(source: Path, dest: Path) -> Path:
    """Put a dump in the tree: a hard link when possible (no 16 MB copy), else a copy."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)
    return dest


def rhel(
    crash_dir: Path, dump: Path | None, text: bytes | None, name: str = "127.0.0.1-2026-11-25-12:00:01"
) -> Path:
    directory = crash_dir / name
    directory.mkdir()
    if text is not None:
        (directory / "vmcore-dmesg.txt").write_bytes(text)
    if dump is not None:
        place(dump, directory / "vmcore-incomplete")
        os.rename(directory / "vmcore-incomplete", directory / "vmcore")
    return directory


def debian(crash_dir: Path, dump: Path | None, text: bytes | None, stamp: str = STAMP) -> Path:
    directory = crash_dir / stamp
    directory.mkdir()
    if text is not None:
        (directory / f"dmesg.{stamp}").write_bytes(text)
    if dump is not None:
        place(dump, directory / "dump-incomplete")
        os.rename(directory / "dump-incomplete", directory / f"dump.{stamp}")
    return directory


def suse(crash_dir: Path, dump: Path | None, text: bytes | None, name: str = "2026-11-25-12:00") -> Path:
    directory = crash_dir / name
    directory.mkdir()
    if dump is not None:
        place(dump, directory / "vmcore")
    if text is not None:
        (directory / "dmesg.txt").write_bytes(text)
    (directory / "README.txt").write_text("Kernel crashdump\n----------------\nDump level: 31\n")
    return directory


def pstore_record(text: bytes, part: int = 1, reason: str = "Panic") -> bytes:
    return f"{reason}#1 Part{part}\n".encode() + text


def pstore_folder(pstore_dir: Path, text: bytes, name: str = "1732536000") -> Path:
    """systemd-pstore's per-crash folder: the EFI parts (newest text in Part1) and no dmesg.txt."""
    directory = pstore_dir / name
    directory.mkdir()
    lines = text.splitlines(keepends=True)
    half = len(lines) // 2
    (directory / "dmesg-efi-173253600002001").write_bytes(pstore_record(b"".join(lines[:half]), 2))
    (directory / "dmesg-efi-173253600001001").write_bytes(pstore_record(b"".join(lines[half:]), 1))
    return directory
