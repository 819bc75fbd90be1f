"""Compressed wrappers read as random-access sources: any order of reads returns the right bytes,
memory stays bounded (a cache and a capped number of gzip checkpoints)."""

from __future__ import annotations

import bz2
import gzip
import lzma
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from analysis.vmcore.io import BLOCK_SIZE, DecompressedSource, FileSource

SIZE = 9 * BLOCK_SIZE + 12345
WRAPPERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress,
    "xz": lzma.compress,
    "bzip2": bz2.compress,
}


def _payload() -> bytes:
    rng = random.Random(7)
    # Half random, half repetitive: compressible enough to be quick, varied enough to catch offsets.
    return b"".join(rng.randbytes(512) + bytes([i % 256]) * 512 for i in range(SIZE // 1024 + 1))[:SIZE]


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_random_reads_match(wrapper: str, tmp_path: Path) -> None:
    data = _payload()
    path = tmp_path / "blob"
    path.write_bytes(WRAPPERS[wrapper](data))
    source = DecompressedSource(FileSource(str(path)), wrapper)
    rng = random.Random(1)
    for _ in range(60):
        off = rng.randrange(0, SIZE + 100)
        n = rng.randrange(0, 3 * BLOCK_SIZE)
        assert source.pread(off, n) == data[off : off + n]
    assert source.pread(SIZE - 10, 100) == data[-10:]
    assert source.pread(SIZE + 5, 10) == b""
    assert source.size() == SIZE
    source.close()


def test_concatenated_gzip_members(tmp_path: Path) -> None:
    data = _payload()
    path = tmp_path / "blob.gz"
    path.write_bytes(gzip.compress(data[:100_000]) + gzip.compress(data[100_000:]))
    source = DecompressedSource(FileSource(str(path)), "gzip")
    assert source.pread(99_990, 20) == data[99_990:100_010]
    assert source.pread(0, SIZE) == data


def test_gzip_checkpoints_make_backward_reads_cheap(tmp_path: Path) -> None:
    """Going back resumes from a checkpoint, not from the start of the stream."""
    data = _payload()
    path = tmp_path / "blob.gz"
    path.write_bytes(gzip.compress(data))
    inner = FileSource(str(path))
    source = DecompressedSource(inner, "gzip")
    source._interval = BLOCK_SIZE  # checkpoint every block for the test
    assert source.pread(SIZE - 5, 5) == data[-5:]
    before = inner.bytes_read
    for block in range(9):  # the cache holds them all; evict by reading around
        source._cache.clear()
        assert (
            source.pread(block * BLOCK_SIZE + 7, 3) == data[block * BLOCK_SIZE + 7 : block * BLOCK_SIZE + 10]
        )
    # Each backward read decompressed about one block's worth of input, not the whole stream.
    assert inner.bytes_read - before < 9 * len(path.read_bytes()) // 3
