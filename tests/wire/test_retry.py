"""The retry hint both clients read: parsed strictly, capped, jittered upward only."""

from __future__ import annotations

import pytest

from wire.retry import (
    MAX_RETRY_AFTER_S,
    RETRY_AFTER_KEY,
    backoff_delay,
    call_retry_after,
    retry_after_metadata,
    retry_after_seconds,
    throttle_delay,
)

CASES = [
    ("whole milliseconds", [(RETRY_AFTER_KEY, "1500")], 1.5),
    ("bytes value", [(RETRY_AFTER_KEY, b"250")], 0.25),
    ("key case", [("Retry-After-Ms", "10")], 0.01),
    ("among other keys", [("x-other", "1"), (RETRY_AFTER_KEY, "2000")], 2.0),
    ("absent", [("x-other", "1")], None),
    ("no metadata", None, None),
    ("negative", [(RETRY_AFTER_KEY, "-5")], None),
    ("fraction", [(RETRY_AFTER_KEY, "1.5")], None),
    ("garbage", [(RETRY_AFTER_KEY, "soon")], None),
    ("a day is capped", [(RETRY_AFTER_KEY, str(86_400_000))], MAX_RETRY_AFTER_S),
]


@pytest.mark.parametrize(("case", "metadata", "seconds"), CASES, ids=[c[0] for c in CASES])
def test_retry_after_seconds(case: str, metadata: list[tuple[str, str | bytes]] | None, seconds: float | None) -> None:
    assert retry_after_seconds(metadata) == seconds


def test_the_collectors_metadata_round_trips_rounded_up_to_a_millisecond() -> None:
    assert retry_after_seconds(retry_after_metadata(1.2345)) == 1.235
    assert retry_after_metadata(0.0) == ((RETRY_AFTER_KEY, "1"),)


def test_throttle_delay_waits_at_least_the_hint_and_at_most_a_quarter_more() -> None:
    assert throttle_delay(2.0, rand=lambda: 0.0) == 2.0
    assert throttle_delay(2.0, rand=lambda: 0.999) == pytest.approx(2.4995)


def test_backoff_is_equal_jitter_and_capped() -> None:
    assert backoff_delay(0, 1.0, 300.0, rand=lambda: 0.0) == 0.5
    assert backoff_delay(3, 1.0, 300.0, rand=lambda: 1.0) == 8.0
    assert backoff_delay(1000, 1.0, 300.0, rand=lambda: 1.0) == 300.0


def test_call_retry_after_tolerates_errors_without_call_state() -> None:
    class NoCall(Exception):
        pass

    class Broken(Exception):
        def trailing_metadata(self) -> object:
            raise RuntimeError("no call")

    assert call_retry_after(NoCall()) is None
    assert call_retry_after(Broken()) is None
