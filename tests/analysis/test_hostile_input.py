"""Hostile kernel logs: lines crafted (or garbled) to stall the parser or overflow its numbers.

The timing side of this is tests/test_regex_linearity.py (every pattern, adversarial strings);
here are the concrete inputs users reported, as fixtures under tests/data/logs (their parse is
also pinned by the golden test), and property tests over generated hostile logs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analysis.bounds import decimal
from analysis.oops import _parse, parse_log
from analysis.report import record_to_json

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


# --- numbers past what a field holds -------------------------------------------------------------

HUGE = (LOGS / "hostile-huge-numbers.log").read_text()


def test_numbers_past_their_field_are_left_out_and_named() -> None:
    """An 8,000-digit offset, a 30-digit PID, a 20-digit RIP: named, left out, the rest intact."""
    [rec] = parse_log(HUGE)
    assert rec.corrupt_fields == ("pid", "registers.rip", "rip.address", "call_trace[0].offset")
    assert (rec.pid, rec.rip and rec.rip.address, rec.call_trace[0].offset) == (None, None, None)
    assert rec.title == "BUG: unable to handle kernel NULL pointer dereference in netx_poll"
    assert rec.rip is not None and (rec.rip.function, rec.rip.offset) == ("netx_poll", 0x20)
    assert [f.function for f in rec.call_trace] == ["netx_rx", "__napi_poll", "net_rx_action", "__do_softirq"]
    assert rec.comm == "sh" and rec.cpu == 1


def test_a_record_with_huge_numbers_survives_json_and_the_wire() -> None:
    from analysis.report import record_from_json
    from analysis.signature import analyze
    from wire import convert

    [rec] = analyze(HUGE)
    assert rec.fingerprint is not None
    back = convert.record_from_proto(convert.record_to_proto(rec), excerpt=rec.excerpt)
    assert back == rec
    assert record_from_json(json.loads(json.dumps(record_to_json(rec)))) == rec


def test_decimal_never_raises() -> None:
    assert decimal("0" * 5000 + "42") == 42
    assert decimal("9" * 5000) == 2**64  # out of every field's range: fit_record names it
    assert decimal("18446744073709551615") == 2**64 - 1


# --- property tests over generated hostile logs ----------------------------------------------------

_BASE = (LOGS / "hostile-code-hex-run.log").read_text().splitlines()
_NUMBER_SPOTS = [
    "212",
    "0x20",
    "0x80",
    "0x51",
    "0x120",
    "0000000000000060",
    "1",
    "ffff9a1b7a6d8300",
    "00010246",
]


@st.composite
def hostile_logs(draw: st.DrawFn) -> str:
    """A real-looking report, then damaged: numbers swapped for huge or odd digit runs, lines cut,
    dropped, duplicated or replaced by noise, the whole log truncated anywhere (or emptied)."""
    lines = list(_BASE)
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(lines) - 1))
        spot = draw(st.sampled_from(_NUMBER_SPOTS))
        digits = draw(
            st.one_of(
                st.integers(17, 9000).map(lambda n: "f" * n),
                st.integers(11, 5000).map(lambda n: "9" * n),
                st.sampled_from(["", "-1", "0x", "ffffffffffffffffff", "1" + "0" * 40]),
            )
        )
        lines[i] = lines[i].replace(spot, digits, 1)
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["cut", "drop", "dup", "noise"]))
        if action == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        elif action == "drop":
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        else:
            lines[i] = draw(st.text(alphabet="0123456789abcdef<>() :+/x[]#-", max_size=200))
        if not lines:
            break
    text = "\n".join(lines)
    return text[: draw(st.integers(0, len(text)))] if draw(st.booleans()) else text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_logs())
def test_hostile_logs_always_give_records_the_wire_and_json_can_carry(text: str) -> None:
    from analysis.bounds import fit_record
    from analysis.signature import analyze
    from wire import convert

    _parse(text)  # the unguarded parser: an exception here is a bug, not a lost log
    for rec in analyze(text):
        assert fit_record(rec) is rec  # every number already fits its field
        convert.record_from_proto(convert.record_to_proto(rec))
        json.dumps(record_to_json(rec))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_after_a_header_parse_without_error(noise: bytes) -> None:
    for rec in _parse(b"BUG: kernel NULL pointer dereference, address: 0000000000000060\n" + noise):
        json.dumps(record_to_json(rec))
