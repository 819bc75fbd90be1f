"""Adversarial inputs for regular expressions, built from each pattern's own syntax tree.

The classic way a backtracking matcher goes super-linear is a *pump*: a prefix that reaches a
repetition, the repeated body many times over, then a character that makes the rest fail, so the
matcher retries every way of splitting the pumped run. `attacks(pattern)` builds those strings for
every repetition in the pattern (prefix, each sample of the body, several failing suffixes), plus
long runs of each character of the pattern's own alphabet and of hex digits and spaces.
`growth(pattern, attack)` times `search` and `match` over a growing attack and reports the sizes
and times, for a test to judge that the time grows at most linearly.

Works on `re` patterns (str and bytes) through `re._parser`, the parser `re` itself uses; the
attacks are plain strings, so they run against `re2` patterns too.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from re import _constants as sre  # the parser's own opcodes
from re import _parser as sre_parse
from typing import Any

__all__ = ["Attack", "Growth", "attacks", "growth"]

# Characters a failing suffix is made of: none of them is what a kernel-log pattern expects next.
_SUFFIXES = ("\x01", " !")
_POOL = "a0 Z_9f.-:/x\t[]()<>#"  # candidates for a negated class
_CATEGORY_SAMPLES = {
    sre.CATEGORY_DIGIT: "09",
    sre.CATEGORY_NOT_DIGIT: "a ",
    sre.CATEGORY_SPACE: " \t",
    sre.CATEGORY_NOT_SPACE: "a0",
    sre.CATEGORY_WORD: "a0_",
    sre.CATEGORY_NOT_WORD: " -",
    sre.CATEGORY_LINEBREAK: "\n",
    sre.CATEGORY_NOT_LINEBREAK: "a ",
}
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)
MAX_ATTACKS = 64  # per pattern; the first ones are the pumps, the most telling


@dataclass(frozen=True, slots=True)
class Attack:
    """`prefix + pump * k + suffix`: the string a growth run makes longer by raising k."""

    prefix: str
    pump: str
    suffix: str

    def build(self, length: int) -> str:
        k = max(1, (length - len(self.prefix) - len(self.suffix)) // max(1, len(self.pump)))
        return self.prefix + self.pump * k + self.suffix


@dataclass(frozen=True, slots=True)
class Growth:
    """Seconds per (search + match) at each size a growth run reached."""

    sizes: tuple[int, ...]
    seconds: tuple[float, ...]


def _class_samples(items: list[tuple[Any, Any]]) -> str:
    """A few characters the character class `items` accepts."""
    negate = any(op is sre.NEGATE for op, _ in items)
    members: list[str] = []
    for op, av in items:
        if op is sre.LITERAL:
            members.append(chr(av))
        elif op is sre.RANGE:
            lo, hi = av
            members.extend({chr(lo), chr(hi), chr((lo + hi) // 2)})
        elif op is sre.CATEGORY:
            members.extend(_CATEGORY_SAMPLES.get(av, "a"))
    if not negate:
        return "".join(dict.fromkeys(members)) or "a"
    compiled = re.compile(f"[^{re.escape(''.join(members))}]") if members else None
    outside = [c for c in _POOL if compiled is None or compiled.match(c)]
    return "".join(outside[:3]) or "a"


def _samples(op: Any, av: Any) -> str:
    """Characters one single-character item accepts ('' for items that are not one)."""
    if op is sre.LITERAL:
        return chr(av)
    if op is sre.NOT_LITERAL:
        return "".join(c for c in _POOL if ord(c) != av)[:3]
    if op is sre.IN:
        return _class_samples(av)
    if op is sre.ANY:
        return "a 0"
    return ""


def _gen(sub: Any, pick: int = 0, fill: bool = True) -> str:
    """One string `sub` matches: repetitions at their minimum (at least once when `fill`), sample `pick`."""
    out: list[str] = []
    for op, av in sub:
        chars = _samples(op, av)
        if chars:
            out.append(chars[pick % len(chars)])
        elif op in _REPEATS:
            lo, hi, body = av
            count = (max(lo, 1) if fill else lo) if hi else 0
            out.append(_gen(body, pick, fill) * min(count, 64))
        elif op is sre.SUBPATTERN:
            out.append(_gen(av[3], pick, fill))
        elif op is sre.ATOMIC_GROUP:
            out.append(_gen(av, pick, fill))
        elif op is sre.BRANCH:
            branches = av[1]
            out.append(_gen(branches[pick % len(branches)], pick, fill))
        elif op is sre.GROUPREF_EXISTS:
            out.append(_gen(av[1], pick, fill))
        # AT, ASSERT, ASSERT_NOT, GROUPREF: consume nothing here
    return "".join(out)


def _alphabet(sub: Any, into: dict[str, None]) -> None:
    for op, av in sub:
        for c in _samples(op, av):
            into[c] = None
        if op in _REPEATS:
            _alphabet(av[2], into)
        elif op is sre.SUBPATTERN:
            _alphabet(av[3], into)
        elif op is sre.ATOMIC_GROUP:
            _alphabet(av, into)
        elif op is sre.BRANCH:
            for branch in av[1]:
                _alphabet(branch, into)
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            _alphabet(av[1], into)
        elif op is sre.GROUPREF_EXISTS:
            _alphabet(av[1], into)
            if av[2] is not None:
                _alphabet(av[2], into)


def _pumps(sub: Any, prefix: str) -> Iterator[tuple[str, str]]:
    """(prefix, pump) for every repetition inside `sub`, the prefix reaching that repetition."""
    done = prefix
    for op, av in sub:
        if op in _REPEATS:
            _, hi, body = av
            if hi is sre.MAXREPEAT or hi > 1:
                letters: dict[str, None] = {}
                _alphabet(body, letters)
                bodies = dict.fromkeys(
                    [_gen(body, 0, False), _gen(body, 0), _gen(body, 1, False), _gen(body, 2), *letters]
                )
                for pump in bodies:
                    if pump:
                        yield done, pump
            yield from _pumps(body, done)
        elif op is sre.SUBPATTERN:
            yield from _pumps(av[3], done)
        elif op is sre.ATOMIC_GROUP:
            yield from _pumps(av, done)
        elif op is sre.BRANCH:
            for branch in av[1]:
                yield from _pumps(branch, done)
        elif op is sre.GROUPREF_EXISTS:
            yield from _pumps(av[1], done)
        done += _gen([(op, av)])


def attacks(pattern: str, flags: int = 0) -> list[Attack]:
    """Adversarial inputs for `pattern`: pumps of each repetition in turn, then alphabet runs."""
    tree = sre_parse.parse(pattern, flags & ~re.DEBUG)
    per_repeat: dict[str, list[Attack]] = {}
    for prefix, pump in _pumps(tree, ""):
        row = per_repeat.setdefault(prefix, [])
        row.extend(Attack(prefix, pump, suffix) for suffix in _SUFFIXES)
    # Round robin over the repetitions, so a pattern with many of them has each one pumped.
    rows = list(per_repeat.values())
    pumps: list[Attack] = []
    for k in range(max((len(r) for r in rows), default=0)):
        pumps.extend(r[k] for r in rows if k < len(r))
    letters: dict[str, None] = {}
    _alphabet(tree, letters)
    runs = [
        Attack("", run, suffix)
        for run in [*letters, "0123456789abcdef", " ", "a "]
        for suffix in ("", "\x01")
    ]
    half = MAX_ATTACKS // 2
    return list(dict.fromkeys(pumps[: MAX_ATTACKS - min(half, len(runs))] + runs[:half]))


def _cost(call: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()  # CPU time: other processes on a busy machine do not count
        call()
        best = min(best, time.process_time() - started)
    return best


def growth(
    search: Callable[[Any], object],
    match: Callable[[Any], object],
    attack: Attack,
    *,
    as_bytes: bool = False,
    sizes: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
    stop_after: float = 0.02,
    repeat: int = 3,
) -> Growth:
    """Time search+match over `attack` at growing sizes; stops once one size costs `stop_after`.

    Doubling sizes keep an exponential pattern from hanging the run: it shows itself as a jump
    between two neighbouring sizes long before a size takes minutes.
    """
    reached: list[int] = []
    seconds: list[float] = []
    for size in sizes:
        text: Any = attack.build(size)
        if as_bytes:
            text = text.encode("latin-1", errors="replace")

        def both(text: Any = text) -> None:
            search(text)
            match(text)

        cost = _cost(both, repeat)
        reached.append(len(text))
        seconds.append(cost)
        if cost >= stop_after:
            break
    return Growth(tuple(reached), tuple(seconds))
