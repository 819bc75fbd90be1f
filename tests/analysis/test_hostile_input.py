"""Hostile kernel logs: lines crafted (or garbled) to stall the parser or overflow its numbers.

The timing side of this is tests/test_regex_linearity.py (every pattern, adversarial strings);
here are the concrete inputs users reported, as fixtures under tests/data/logs (their parse is
also pinned by the golden test), and property tests over generated hostile logs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.oops import parse_log

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"


@pytest.mark.timeout(
    60
)  # a hang guard, not a speed target: before the fix this took ~15 s, 84 digits for ever
@pytest.mark.parametrize("digits", [42, 84, 3000])
def test_code_line_then_a_long_hex_run(digits: int) -> None:
    """A `Code:` line followed by a run of hex digits that is not a byte list: not a continuation."""
    text = (LOGS / "hostile-code-hex-run.log").read_text()
    run = "c0ffee00deadbeef0123456789abcdef0123456789"
    text = text.replace(run, (run * (digits // len(run) + 1))[:digits])
    [rec] = parse_log(text)
    assert rec.code_line == "48 89 e5 53 48 89 fb 48 8b 47 58 48 85 c0 74 0a <48> 8b 40 60 5b 5d c3 cc cc cc"
    assert rec.title == "BUG: unable to handle kernel NULL pointer dereference in netx_poll"
    assert [f.function for f in rec.call_trace][:2] == ["netx_rx", "__napi_poll"]
