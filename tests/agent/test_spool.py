"""The spool: durable across reopen, deletes only on ack, backs off with jitter, stays bounded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agent.spool import Backoff, DropReason, NewReport, Spool, SpoolError


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def report(key: str, size: int = 10) -> NewReport:
    return NewReport(key=key, kind="crash", payload=b"x" * size)


def test_enqueued_reports_survive_reopen_until_acked(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    assert spool.enqueue([report("a"), report("b")], capture=("crash:1", "id-1", "ok")) == 2
    spool.close()
    spool = Spool(tmp_path / "s.db")
    assert [i.key for i in spool.due()] == ["a", "b"]
    assert spool.capture_identity("crash:1") == "id-1"
    spool.ack("a")
    spool.close()
    spool = Spool(tmp_path / "s.db")
    assert [i.key for i in spool.due()] == ["b"]
    assert spool.stats().depth == 1


def test_wal_and_full_sync_are_on(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.enqueue([report("a")])
    db = sqlite3.connect(tmp_path / "s.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    spool.close()


def test_same_key_twice_is_one_report(tmp_path: Path) -> None:
    """A restart that re-extracts a capture inserts nothing new: keys come from content."""
    spool = Spool(tmp_path / "s.db")
    assert spool.enqueue([report("k")]) == 1
    assert spool.enqueue([report("k")]) == 0
    assert spool.stats().depth == 1


def test_backoff_doubles_with_jitter_and_caps() -> None:
    backoff = Backoff(initial=1.0, maximum=8.0)
    assert [backoff.delay(n, lambda: 0.0) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert [backoff.delay(n, lambda: 1.0) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff.delay(10_000, lambda: 0.5) == 6.0  # huge attempt counts do not overflow


def test_retry_later_schedules_and_counts(tmp_path: Path) -> None:
    clock = Clock()
    spool = Spool(tmp_path / "s.db", backoff=Backoff(2.0, 60.0), clock=clock, rand=lambda: 0.0)
    spool.enqueue([report("a")])
    assert spool.retry_later("a", "UNAVAILABLE") == 1.0
    assert spool.due() == []
    assert spool.next_due() == 1001.0
    clock.now = 1001.0
    (item,) = spool.due()
    assert item.attempts == 1 and item.last_error == "UNAVAILABLE"
    assert spool.retry_later("a", "UNAVAILABLE") == 2.0
    assert spool.retry_later("missing", "x") == 0.0


def test_size_bound_drops_oldest_with_count(tmp_path: Path) -> None:
    clock = Clock()
    dropped: list[tuple[int, str]] = []
    spool = Spool(
        tmp_path / "s.db", max_bytes=65536, clock=clock, on_drop=lambda n, why: dropped.append((n, why))
    )
    for i in range(5):
        clock.now += 1
        spool.enqueue([report(f"r{i}", size=20000)])
    assert [i.key for i in spool.due()] == ["r2", "r3", "r4"]
    assert sum(n for n, _ in dropped) == 2 and {why for _, why in dropped} == {"spool_full"}


def test_age_bound_drops_expired(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    dropped: list[tuple[int, str]] = []
    spool = Spool(
        tmp_path / "s.db", max_age_seconds=100, clock=clock, on_drop=lambda n, w: dropped.append((n, w))
    )
    spool.enqueue([report("old")])
    clock.now += 101
    spool.enqueue([report("new")])
    assert [i.key for i in spool.due()] == ["new"]
    assert dropped == [(1, "too_old")]
    assert "spool full: dropped oldest reports count=1 reason=too_old" in caplog.text


def test_drop_of_refused_report(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    dropped: list[tuple[int, str]] = []
    spool = Spool(tmp_path / "s.db", on_drop=lambda n, w: dropped.append((n, w)))
    spool.enqueue([report("a")])
    detail = "report 7f3a: title too long (4097 > 4096 bytes)\nsecond line"
    spool.drop("a", "INVALID_ARGUMENT", detail)
    spool.drop("a", "INVALID_ARGUMENT", detail)  # idempotent: nothing counted twice
    # The label is the closed value; the collector's own words are in the log, quoted on one line.
    assert spool.stats().depth == 0 and dropped == [(1, "rejected")]
    assert (
        "spool dropped report key=a reason=rejected code=INVALID_ARGUMENT "
        f"detail={detail!r}" in caplog.text
    )


def test_every_drop_reason_is_a_closed_label_value(tmp_path: Path) -> None:
    """Whatever the collector says, the reasons reported are only the DropReason values."""
    clock = Clock()
    reasons: set[str] = set()
    spool = Spool(
        tmp_path / "s.db",
        max_bytes=65536,
        max_age_seconds=100,
        clock=clock,
        on_drop=lambda _n, why: reasons.add(why),
    )
    spool.enqueue([report("old")])
    clock.now += 101
    for i in range(5):
        spool.enqueue([report(f"r{i}", size=20000)])
    spool.drop("r4", "OUT_OF_RANGE", "x" * 10_000)
    assert reasons == {"too_old", "spool_full", "rejected"} == {str(r) for r in DropReason}


def test_boot_reports_are_remembered(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.enqueue([report("k")], boot_keys=[("boot-1", "fp", "[    1.000000] WARNING: x", "k")])
    assert spool.boot_report_key("boot-1", "fp") == "k"
    assert spool.boot_report_key("boot-2", "fp") is None
    assert spool.boot_reports("fp") == [("[    1.000000] WARNING: x", "k")]


def test_forget_captures_that_vanished(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.db")
    spool.enqueue([], capture=("crash:a", "1", "ok"))
    spool.enqueue([], capture=("crash:b", "1", "ok"))
    assert spool.forget_captures(["crash:a"]) == 1
    assert spool.handled_captures() == {"crash:a": "1"}


def test_corrupt_database_is_a_spool_error(tmp_path: Path) -> None:
    (tmp_path / "s.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SpoolError, match="cannot open spool"):
        Spool(tmp_path / "s.db")


def test_unwritable_state_dir_is_a_spool_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(SpoolError, match="cannot create state directory"):
        Spool(tmp_path / "file" / "sub" / "s.db")


def test_a_job_that_cost_a_worker_is_taken_alone(tmp_path: Path) -> None:
    """A worker killed by one capture of a batch counted an attempt against all of them; the next
    workers take each such job alone, so only the capture that kills workers reaches the limit."""
    clock = Clock()
    spool = Spool(tmp_path / "s.db", clock=clock)
    for key in ("hostile", "good-1", "good-2"):
        spool.add_job(key, "capture", "{}")
        clock.now += 1.0
    assert [(j.key, j.attempts) for j in spool.take_jobs(64)] == [("hostile", 0), ("good-1", 0), ("good-2", 0)]
    # That worker died: the oldest suspect goes alone; fresh jobs are never batched behind it.
    spool.add_job("fresh", "capture", "{}")
    assert [(j.key, j.attempts) for j in spool.take_jobs(64)] == [("hostile", 1)]
    assert [(j.key, j.attempts) for j in spool.take_jobs(64)] == [("hostile", 2)]
    spool.enqueue_captures([([], None)], done_jobs=["hostile"])  # the third worker gave up on it
    assert [(j.key, j.attempts) for j in spool.take_jobs(64)] == [("good-1", 1)]
    spool.enqueue_captures([([], None)], done_jobs=["good-1"])
    assert [(j.key, j.attempts) for j in spool.take_jobs(64)] == [("good-2", 1)]
    spool.enqueue_captures([([], None)], done_jobs=["good-2"])
    assert [(j.key, j.attempts) for j in spool.take_jobs(64)] == [("fresh", 0)]
    spool.close()
