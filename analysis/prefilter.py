"""Which lines of a log hold any of a set of literals: one scan of the whole text, not one per line.

The stages after `analysis.logforms.kernel_lines` look closer only at lines that hold one of
their literals: a report anchor (`analysis.title.OOPS_GROUPS`), a user-space fault hint
(`analysis.userfaults.FAULT_HINTS`). Asking every line in turn costs a pattern call per line
and per stage, half a million calls for a 50 MB log before anything is found. A `Prefilter`
asks the whole log once: the lines are joined with `\\n`, encoded to UTF-8 and searched by one
RE2 alternation of every literal (a DFA over the bytes: linear, no backtracking), and the scan
jumps from each hit to the next line, so a line is reported once however many literals it holds.

It narrows, never decides: each stage runs its own exact check on every line passed, so it
finds what a walk over all lines found, because a line the prefilter drops holds none of the
literals. That holds since no literal contains a line break (each occurrence lies inside one
line) and UTF-8 has no `\\n` byte but the line break itself (byte offsets map to line numbers).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from analysis.linear import compile_bytes

__all__ = ["Prefilter"]


def _escape(literal: str) -> bytes:
    """The literal as an RE2 pattern over UTF-8 bytes: every byte but [A-Za-z0-9_] and non-ASCII escaped."""
    out = bytearray()
    for byte in literal.encode("utf-8"):
        if not (byte >= 0x80 or chr(byte).isalnum() or byte == 0x5F):
            out += b"\\"
        out.append(byte)
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Prefilter:
    """The lines holding any of `literals` (case-sensitive, anywhere in the line)."""

    name: str
    literals: tuple[str, ...]
    pattern: re.Pattern[bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        words = sorted(set(self.literals))
        if not words or any(not w or "\n" in w for w in words):
            raise ValueError(f"prefilter {self.name}: literals must be non-empty and hold no line break")
        object.__setattr__(self, "pattern", compile_bytes(b"|".join(_escape(w) for w in words)))

    def lines(self, lines: Sequence[str], source: bytes | None = None) -> list[int]:
        """Indexes of the lines holding a literal, ascending, each once.

        `source`, when given, is read instead of the lines joined: UTF-8 whose `\n`-separated
        line i holds all of `lines[i]` (the input a console log was split from, see
        analysis.logforms.KernelLines.source). It may hold more: a line is passed when its
        source line holds a literal, and the stages' own checks reject what the line lacks.
        """
        text = "\n".join(lines).encode("utf-8", errors="surrogatepass") if source is None else source
        search = self.pattern.search
        found: list[int] = []
        line = 0  # the line `pos` starts
        pos = 0
        while (m := search(text, pos)) is not None:
            start = m.start()
            line += text.count(b"\n", pos, start)
            if line >= len(lines):
                break
            found.append(line)
            end = text.find(b"\n", start)
            if end < 0:
                break
            line += 1
            pos = end + 1
        return found
