"""Recognise a dump by its content (never its name) and open the right reader.

Layers peel off in order: a compression wrapper (gzip, xz, bzip2), then the flattened stream,
then the dump itself (ELF core or kdump-compressed). Only the first bytes of each layer are
read here, so a multi-GiB file of zeros fails at once.
"""

from __future__ import annotations

import os

from analysis.errors import DumpFormatError
from analysis.vmcore.dump import Dump
from analysis.vmcore.elf import open_elf
from analysis.vmcore.flattened import FLAT_SIGNATURE, FlattenedSource
from analysis.vmcore.io import DecompressedSource, FileSource, Source, wrapper_of
from analysis.vmcore.kdump import DISKDUMP_SIGNATURE, KDUMP_SIGNATURE, open_kdump

__all__ = ["DUMP_SIGNATURES", "looks_like_dump", "open_dump", "sniff"]

_SNIFF = 64

# What each layer starts with, by name (the wrappers are in analysis.vmcore.io.WRAPPERS).
DUMP_SIGNATURES: tuple[tuple[str, bytes], ...] = (
    ("elf", b"\x7fELF"),
    ("kdump", KDUMP_SIGNATURE),
    ("diskdump", DISKDUMP_SIGNATURE),
    ("flattened", FLAT_SIGNATURE),
)


def sniff(head: bytes) -> str | None:
    """The dump layer or wrapper `head` starts with, or None."""
    for name, magic in DUMP_SIGNATURES:
        if head.startswith(magic):
            return name
    return wrapper_of(head)


def looks_like_dump(path: str) -> bool:
    """True when the file starts like a dump or a compressed file (cheap: reads 64 bytes)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_SNIFF)
    except OSError:
        return False
    kind = sniff(head)
    if kind in ("gzip", "xz", "bzip2"):
        # A gzip-wrapped text log is a log, not a dump: look one layer in.
        source = FileSource(path)
        try:
            inner = DecompressedSource(source, kind).pread(0, _SNIFF)
        except DumpFormatError:
            return False
        finally:
            source.close()
        return sniff(inner) in ("elf", "kdump", "diskdump", "flattened")
    return kind is not None


def _describe_unknown(head: bytes) -> str:
    if not head.strip(b"\x00"):
        return "no dump signature: the file starts with zero bytes (preallocated, sparse or never written)"
    return "unknown format: not an ELF core, kdump-compressed, flattened, gzip, xz or bzip2 file"


def open_dump(path: str) -> Dump:
    """Open a crash dump of any supported format; DumpFormatError names the file and the reason."""
    if os.path.isdir(path):
        raise DumpFormatError(path, "is a directory")
    source: Source = FileSource(path)
    suffixes: list[str] = []
    try:
        if source.size() == 0:
            raise DumpFormatError(path, "empty file")
        head = source.pread(0, _SNIFF)
        wrapper = wrapper_of(head)
        if wrapper is not None:
            source = DecompressedSource(source, wrapper)
            suffixes.append(wrapper)
            head = source.pread(0, _SNIFF)
            if not head:
                raise DumpFormatError(path, f"empty {wrapper} stream")
        if head.startswith(FLAT_SIGNATURE):
            source = FlattenedSource(source)
            suffixes.insert(0, "flattened")
            head = source.pread(0, _SNIFF)
        dump: Dump
        if head.startswith(b"\x7fELF"):
            dump = open_elf(source)
        elif head.startswith((KDUMP_SIGNATURE, DISKDUMP_SIGNATURE)):
            dump = open_kdump(source)
        elif len(head) < 8:
            raise DumpFormatError(path, "truncated: too short to be a crash dump")
        else:
            raise DumpFormatError(path, _describe_unknown(head))
    except BaseException:
        source.close()
        raise
    dump.format = "+".join([dump.format, *suffixes])
    return dump
