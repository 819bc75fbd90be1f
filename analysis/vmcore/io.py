"""Random access to dump bytes: plain files, and gzip/xz/bz2 streams read without unpacking to disk.

Every dump reader sees a `Source` (`pread(offset, length)`), so a dump inside a compressed
wrapper or a flattened stream is read through the same code. Compressed streams are decompressed
forward on demand; gzip keeps a bounded set of decompressor checkpoints so going back costs one
checkpoint interval, not the whole stream. Memory stays bounded whatever the dump's size.
"""

from __future__ import annotations

import os
import zlib
from collections import OrderedDict
from typing import Protocol

from analysis.errors import DumpFormatError

__all__ = [
    "BLOCK_SIZE",
    "WRAPPERS",
    "DecompressedSource",
    "FileSource",
    "Source",
    "wrapper_of",
]

BLOCK_SIZE = 256 * 1024  # unit of decompressed output kept in the cache
_CACHE_BLOCKS = 16  # 4 MiB of decompressed output cached
_MAX_CHECKPOINTS = 48  # gzip decompressor states kept (~40 KiB each)
_FIRST_CHECKPOINT_INTERVAL = 4 * 1024 * 1024
_RAW_CHUNK = 64 * 1024
_STREAM_ERRORS: tuple[type[Exception], ...] = (zlib.error, OSError, EOFError, ValueError)
_ZLIB_DECODER = type(zlib.decompressobj())  # zlib's decoder class has no public name at runtime

# Magic bytes of the compression wrappers kdump tools and admins put around dumps, by name.
WRAPPERS: tuple[tuple[str, bytes], ...] = (
    ("gzip", b"\x1f\x8b"),
    ("xz", b"\xfd7zXZ\x00"),
    ("bzip2", b"BZh"),
)


def wrapper_of(head: bytes) -> str | None:
    """The compression wrapper whose magic `head` starts with, if any."""
    for name, magic in WRAPPERS:
        if head.startswith(magic):
            return name
    return None


class Source(Protocol):
    """Positional reads over a dump's bytes; short reads only at the end of the data."""

    name: str

    def pread(self, offset: int, length: int) -> bytes: ...

    def size(self) -> int | None:
        """Total length when known without reading everything (None for compressed streams)."""
        ...

    def close(self) -> None: ...


class FileSource:
    """A regular file read with os.pread; counts the bytes it read so tests can prove laziness."""

    def __init__(self, path: str) -> None:
        self.name = path
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise DumpFormatError(path, "no such file") from None
        except PermissionError:
            raise DumpFormatError(path, "permission denied") from None
        except OSError as exc:
            raise DumpFormatError(path, exc.strerror or str(exc)) from None
        self._size = os.fstat(self._fd).st_size
        self.bytes_read = 0

    def pread(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise DumpFormatError(self.name, f"negative read at offset {offset} length {length}")
        if offset >= self._size or length == 0:
            return b""
        try:
            data = os.pread(self._fd, min(length, self._size - offset), offset)
        except OSError as exc:
            raise DumpFormatError(self.name, f"read error at offset {offset}: {exc.strerror}") from None
        self.bytes_read += len(data)
        return data

    def size(self) -> int | None:
        return self._size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _Decoder(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _ZlibDecoder(_Decoder, Protocol):
    @property
    def unconsumed_tail(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...

    def copy(self) -> _ZlibDecoder: ...


class _Checkpoint:
    """Where gzip decompression can resume: raw input offset, decoder state, block-aligned output."""

    __slots__ = ("decoder", "out_pos", "pending", "raw_pos")

    def __init__(self, raw_pos: int, out_pos: int, decoder: _ZlibDecoder, pending: bytes) -> None:
        self.raw_pos = raw_pos
        self.out_pos = out_pos
        self.decoder = decoder
        self.pending = pending


class DecompressedSource:
    """A gzip/xz/bz2 stream made seekable: forward decompression, an output cache, gzip checkpoints.

    Output is produced in whole `BLOCK_SIZE` blocks (decompression never runs past a block
    boundary), so a checkpoint taken between blocks resumes exactly at a block start.
    """

    def __init__(self, inner: Source, wrapper: str) -> None:
        self.name = inner.name
        self.wrapper = wrapper
        self._inner = inner
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._checkpoints: list[_Checkpoint] = []
        self._interval = _FIRST_CHECKPOINT_INTERVAL
        self._end: int | None = None  # decompressed length once the stream has been read to its end
        self._errors: tuple[type[Exception], ...] = _STREAM_ERRORS
        self._restart(None)

    def _new_decoder(self) -> _Decoder:
        # xz and bzip2 are imported on first use: most dumps are not wrapped in them.
        if self.wrapper == "gzip":
            return zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, auto-detected
        if self.wrapper == "xz":
            import lzma

            self._errors = (lzma.LZMAError, *_STREAM_ERRORS)
            return lzma.LZMADecompressor()
        import bz2

        return bz2.BZ2Decompressor()

    def _restart(self, checkpoint: _Checkpoint | None) -> None:
        if checkpoint is None:
            self._decoder: _Decoder = self._new_decoder()
            self._raw_pos = 0
            self._out_pos = 0
            self._pending = b""
        else:
            self._decoder = checkpoint.decoder.copy()
            self._raw_pos = checkpoint.raw_pos
            self._out_pos = checkpoint.out_pos
            self._pending = checkpoint.pending
        self._done = False

    def _save_checkpoint(self) -> None:
        if self.wrapper != "gzip" or self._done:
            return
        if self._checkpoints and self._out_pos - self._checkpoints[-1].out_pos < self._interval:
            return
        decoder = self._decoder
        assert isinstance(decoder, _ZLIB_DECODER)
        self._checkpoints.append(_Checkpoint(self._raw_pos, self._out_pos, decoder.copy(), self._pending))
        if len(self._checkpoints) > _MAX_CHECKPOINTS:
            self._checkpoints = self._checkpoints[::2]
            self._interval *= 2

    def _feed(self) -> bytes:
        if not self._pending:
            self._pending = self._inner.pread(self._raw_pos, _RAW_CHUNK)
            self._raw_pos += len(self._pending)
            if not self._pending:
                raise DumpFormatError(
                    self.name, f"truncated {self.wrapper} stream (ends inside compressed data)"
                )
        return self._pending

    def _decompress(self, limit: int) -> bytes:
        """Up to `limit` more bytes of output; b"" once the stream has ended."""
        while not self._done:
            decoder = self._decoder
            try:
                if isinstance(decoder, _ZLIB_DECODER):
                    out = decoder.decompress(self._feed(), limit)
                    self._pending = bytes(decoder.unconsumed_tail)
                else:
                    data = self._feed() if getattr(decoder, "needs_input", True) else b""
                    self._pending = b""
                    out = decoder.decompress(data, limit)
            except self._errors as exc:
                raise DumpFormatError(self.name, f"corrupt {self.wrapper} stream: {exc}") from None
            if decoder.eof:
                rest = bytes(decoder.unused_data) + self._pending
                if not rest:
                    rest = self._inner.pread(self._raw_pos, _RAW_CHUNK)
                    self._raw_pos += len(rest)
                if wrapper_of(rest) == self.wrapper:
                    self._decoder = self._new_decoder()  # concatenated members (`cat a.gz b.gz`)
                    self._pending = rest
                else:
                    self._done = True  # trailing zero padding or garbage after the last member
            if out:
                return out
        return b""

    def _block(self, index: int) -> bytes:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        start = index * BLOCK_SIZE
        if self._end is not None and start >= self._end:
            return b""
        if start < self._out_pos:
            self._rewind(start)
        while True:
            block_index = self._out_pos // BLOCK_SIZE
            parts: list[bytes] = []
            filled = 0
            while filled < BLOCK_SIZE:
                out = self._decompress(BLOCK_SIZE - filled)
                if not out:
                    break
                parts.append(out)
                filled += len(out)
            block = b"".join(parts)
            self._out_pos += filled
            if filled < BLOCK_SIZE:
                self._end = self._out_pos
            if block:
                self._remember(block_index, block)
            self._save_checkpoint()
            if block_index == index or filled < BLOCK_SIZE:
                return block if block_index == index else b""

    def _rewind(self, target: int) -> None:
        best: _Checkpoint | None = None
        for cp in self._checkpoints:
            if cp.out_pos <= target:
                best = cp
        self._restart(best)

    def _remember(self, index: int, data: bytes) -> None:
        self._cache[index] = data
        self._cache.move_to_end(index)
        while len(self._cache) > _CACHE_BLOCKS:
            self._cache.popitem(last=False)

    # -- Source ------------------------------------------------------------------------------
    def pread(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise DumpFormatError(self.name, f"negative read at offset {offset} length {length}")
        parts: list[bytes] = []
        pos = offset
        end = offset + length
        while pos < end:
            index, within = divmod(pos, BLOCK_SIZE)
            block = self._block(index)
            piece = block[within : within + (end - pos)]
            if not piece:
                break
            parts.append(piece)
            pos += len(piece)
            if len(block) < BLOCK_SIZE:
                break
        return b"".join(parts)

    def size(self) -> int | None:
        return self._end

    def close(self) -> None:
        self._inner.close()
        self._cache.clear()
        self._checkpoints.clear()
