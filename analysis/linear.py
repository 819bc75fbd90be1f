"""RE2 patterns for text from crashed machines: linear time by construction, typed like `re`.

Python's `re` backtracks; a pattern whose repetitions can split one run of characters several
ways takes exponential or quadratic time on a crafted line. Most of the project's patterns are
written so that they cannot (tests/test_regex_linearity.py times every one of them); the few
whose natural form is ambiguous run on RE2 instead, which never backtracks. RE2 has no
lookaround and no backreferences, and its `\\d`, `\\w`, `\\s`, `\\b` are ASCII: use it where the
pattern needs none of that. The objects answer `search`, `match`, `fullmatch`, `sub`, `pattern`
like `re.Pattern`, so callers and their types do not change.
"""

from __future__ import annotations

import re
from typing import cast

import re2

__all__ = ["compile_bytes", "compile_text"]


def compile_text(pattern: str) -> re.Pattern[str]:
    """An RE2 pattern over str (inline flags such as `(?m)` instead of `re` flag arguments)."""
    return cast("re.Pattern[str]", re2.compile(pattern))


def compile_bytes(pattern: bytes) -> re.Pattern[bytes]:
    """An RE2 pattern over bytes."""
    return cast("re.Pattern[bytes]", re2.compile(pattern))
