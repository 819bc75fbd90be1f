"""Domain knowledge as data: which call-trace frames are generic plumbing.

`skip/*.txt` are the named rules: each file's stem is the rule name that a fingerprint's
provenance cites ("skipped `_raw_spin_lock_irqsave` by rule `locking`"), its lines are
regular expressions matched against the whole normalized function name, `#` starts a comment.
See `skip/README.md` for what belongs in which list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

__all__ = ["SKIP_RULES", "SkipRule", "generic_frame_rule", "skip_rules"]


@dataclass(frozen=True, slots=True)
class SkipRule:
    name: str
    pattern: re.Pattern[str]


def _read_rule(text: str) -> list[str]:
    patterns = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            patterns.append(line)
    return patterns


def _load_skip_rules() -> tuple[SkipRule, ...]:
    rules = []
    folder = resources.files(__package__).joinpath("skip")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".txt"):
            continue
        patterns = _read_rule(entry.read_text(encoding="utf-8"))
        if patterns:
            combined = re.compile(r"\A(?:" + "|".join(f"(?:{p})" for p in patterns) + r")\Z")
            rules.append(SkipRule(name=entry.name.removesuffix(".txt"), pattern=combined))
    return tuple(rules)


# Loaded once, at import: a module-level table, where tests/test_regex_linearity.py finds them.
SKIP_RULES = _load_skip_rules()


def skip_rules() -> tuple[SkipRule, ...]:
    """The skip rules in file-name order; a frame is attributed to the first rule that matches."""
    return SKIP_RULES


@lru_cache(maxsize=16384)
def generic_frame_rule(function: str) -> str | None:
    """The name of the rule that marks `function` (already normalized) as generic, or None.

    Remembered: a fleet's traces repeat the same few thousand functions and the skip lists are
    fixed for the life of the process."""
    for rule in skip_rules():
        if rule.pattern.match(function):
            return rule.name
    return None
