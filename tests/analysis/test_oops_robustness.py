"""`parse_log` on hostile input: it returns, it never raises, and it says when a report is broken."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import analysis.oops
from analysis.oops import MAX_RECORDS, _parse, parse_log

LOGS = Path(__file__).resolve().parents[1] / "data" / "logs"
GPF = (LOGS / "x86_64-3.10-gpf-panic.log").read_bytes()


@pytest.mark.parametrize(
    "data",
    [b"", b"\n\n\n", b"\x00" * 4096, bytes(range(256)) * 64, b"\xff\xfe" * 1000, "plain text", "DEBUG: BUG:"],
)
def test_garbage_gives_no_records(data: bytes | str) -> None:
    assert _parse(data) == []


@pytest.mark.parametrize("cut", range(1, GPF.count(b"\n") + 1))
def test_truncated_at_every_line(cut: int) -> None:
    """Each prefix of a real report parses; before the trace arrives the record says it is corrupted."""
    data = b"\n".join(GPF.split(b"\n")[:cut])
    records = _parse(data)
    assert len(records) == 1
    rec = records[0]
    assert rec.title.startswith("general protection fault")
    if b"Call Trace:" not in data:
        assert rec.corrupted and rec.corrupted_reason


def test_truncated_mid_line_and_mid_code() -> None:
    cut = GPF.index(b"<44> 39 73") + len(b"<44>")
    rec = parse_log(GPF[:cut])[0]
    assert rec.code_line is not None and rec.code_line.endswith("<44>")


def test_header_flood_is_capped() -> None:
    records = parse_log(b"BUG: soft lockup - CPU#0 stuck for 22s! [a:1]\n" * (MAX_RECORDS + 50))
    assert len(records) == MAX_RECORDS
    assert all(r.corrupted for r in records)


def test_one_enormous_line() -> None:
    assert parse_log(b"BUG: kernel NULL pointer dereference " + b"A" * 5_000_000) != []


def test_binary_noise_between_report_lines() -> None:
    noisy = GPF.replace(b"\n", b"\n\x1b[0m\x07\xff\n")
    rec = parse_log(noisy)[0]
    assert rec.title == "general protection fault in __d_lookup_rcu"


_LINES = [ln for ln in GPF.split(b"\n") if ln]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_LINES) | st.binary(max_size=80), max_size=60))
def test_shuffled_and_mixed_lines_never_raise(lines: list[bytes]) -> None:
    # _parse, not parse_log: the property must hold without parse_log's last-resort net.
    for rec in _parse(b"\n".join(lines)):
        assert rec.title
        assert rec.first_line <= rec.last_line
        assert len(rec.excerpt) <= 16 * 1024


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("BUG:WARNING[]<>0x+/ \n?RIP:Call Trace:fe\t#-")), max_size=400))
def test_report_alphabet_soup_never_raises(text: str) -> None:
    _parse(text)


def test_an_internal_error_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def broken(raw: list[str], kernel: list[bool]) -> list[object]:
        raise ValueError("parser bug")

    monkeypatch.setattr(analysis.oops, "_parse_lines", broken)
    assert parse_log(b"BUG: kernel NULL pointer dereference") == []
    assert "event=parse_failed" in caplog.text
