"""Which lines of a log hold any of a set of literals: one scan of the whole text, not one per line.

The stages after `analysis.logforms.kernel_lines` look closer only at lines that hold one of
their literals: a report anchor (`analysis.title.OOPS_GROUPS`), a user-space fault hint
(`analysis.userfaults.FAULT_HINTS`). Asking every line in turn costs a pattern call per line
and per stage, half a million calls for a 50 MB log before anything is found. A `Prefilter`
asks the whole log once: the lines are joined with `\\n`, encoded to UTF-8 and searched by one
RE2 alternation of every literal (a DFA over the bytes: linear, no backtracking). From a hit, the
lines of the next few kilobytes are asked one by one with the same literals (`re`): a search
call costs microseconds, and a hostile log holding a literal on every line must not cost a call
a line. A line is reported once however many literals it holds.

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

__all__ = ["Prefilter", "literal_trie"]


def literal_trie(words: Sequence[str]) -> str:
    """An alternation of `words` (a `re` pattern) factored by common prefixes: the regex engine
    tries one branch per first character instead of every word at every candidate position
    (only presence is asked, so a word that extends another is dropped)."""
    by_first: dict[str, list[str]] = {}
    for word in words:
        by_first.setdefault(word[:1], []).append(word[1:])
    parts = []
    for first, rests in sorted(by_first.items()):
        if not first:
            continue
        if "" in rests:
            parts.append(re.escape(first))
        elif len(rests) == 1:
            parts.append(re.escape(first + rests[0]))
        else:
            parts.append(re.escape(first) + "(?:" + literal_trie(rests) + ")")
    return "|".join(parts)


def _escape(literal: str) -> bytes:
    """The literal as an RE2 pattern over UTF-8 bytes: every byte but [A-Za-z0-9_] and non-ASCII escaped."""
    out = bytearray()
    for byte in literal.encode("utf-8"):
        if not (byte >= 0x80 or chr(byte).isalnum() or byte == 0x5F):
            out += b"\\"
        out.append(byte)
    return bytes(out)


# After a hit, the lines that start within this many bytes of it are asked one by one (`re`,
# a fraction of a microsecond a line) rather than by a new RE2 search (a few microseconds a
# call): a log where every line holds a literal costs what the line-by-line walk cost.
_DENSE_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Prefilter:
    """The lines holding any of `literals` (case-sensitive, anywhere in the line)."""

    name: str
    literals: tuple[str, ...]
    pattern: re.Pattern[bytes] = field(init=False, repr=False, compare=False)  # RE2, over the whole log
    line_pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)  # over one line

    def __post_init__(self) -> None:
        words = sorted(set(self.literals))
        if not words or any(not w or "\n" in w for w in words):
            raise ValueError(f"prefilter {self.name}: literals must be non-empty and hold no line break")
        object.__setattr__(self, "pattern", compile_bytes(b"|".join(_escape(w) for w in words)))
        object.__setattr__(self, "line_pattern", re.compile(literal_trie(words)))

    def lines(self, lines: Sequence[str], source: bytes | None = None) -> list[int]:
        """Indexes of the lines holding a literal, ascending, each once.

        `source`, when given, is read instead of the lines joined: UTF-8 whose `\n`-separated
        line i holds all of `lines[i]` (the input a console log was split from, see
        analysis.logforms.KernelLines.source). It may hold more: a line is passed when its
        source line holds a literal, and the stages' own checks reject what the line lacks.
        """
        text = "\n".join(lines).encode("utf-8", errors="surrogatepass") if source is None else source
        search = self.pattern.search
        holds = self.line_pattern.search
        found: list[int] = []
        count = len(lines)
        line = 0  # the line `pos` starts
        pos = 0
        while (m := search(text, pos)) is not None:
            start = m.start()
            line += text.count(b"\n", pos, start)
            if line >= count:
                break
            found.append(line)
            end = text.find(b"\n", start + _DENSE_BYTES)  # the end of the last line asked one by one
            last = count - 1 if end < 0 else min(count - 1, line + text.count(b"\n", start, end))
            found.extend(i for i in range(line + 1, last + 1) if holds(lines[i]))
            if end < 0:
                break
            line = last + 1
            pos = end + 1
        return found
