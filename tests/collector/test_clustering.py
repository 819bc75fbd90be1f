"""collector.clustering (rules cl-2): bug classes, the similarity measure, the candidate index
keys and the tie rules."""

from __future__ import annotations

import pytest

from collector.clustering import (
    CLUSTER_RULES_VERSION,
    Candidate,
    best_match,
    bucket_keys,
    bug_class,
    cluster_id_for,
    levenshtein,
    similarity,
)

BASE = ("crashme_write", "proc_reg_write", "vfs_write", "ksys_write", "do_syscall_64")


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ((), (), 0),
        (("a",), (), 1),
        (BASE, BASE, 0),
        (BASE, BASE[:2] + BASE[3:], 1),  # a frame inlined in one build
        (BASE, ("x", *BASE[1:]), 1),  # another guilty frame
        (("a", "b", "c"), ("c", "b", "a"), 2),
        (("kitten",) * 3, ("sitting",) * 4, 4),
    ],
)
def test_levenshtein(a: tuple[str, ...], b: tuple[str, ...], distance: int) -> None:
    assert levenshtein(a, b) == distance == levenshtein(b, a)


def test_similarity_is_normalized() -> None:
    assert similarity((), ()) == 1.0
    assert similarity(BASE, BASE[:2] + BASE[3:]) == pytest.approx(0.8)
    assert similarity(("a",), ("b",)) == 0.0


def test_same_guilty_frame_joins_however_the_callers_differ() -> None:
    """syzbot's rule: one bug class in one function is one bug, whichever path led there."""
    far = (BASE[0], "x", "y", "z", "w", "v")
    match = best_match(far, [Candidate("c1", BASE)])
    assert match is not None and match.cluster_id == "c1"
    assert match.similarity == pytest.approx(similarity(far, BASE))
    assert best_match((BASE[0],), [Candidate("c1", BASE)]) is not None  # a trace of one frame too


def test_another_guilty_frame_never_joins() -> None:
    assert best_match(("other", *BASE[1:]), [Candidate("c1", BASE)]) is None


def test_frameless_signatures_never_join_fuzzily() -> None:
    assert best_match((), [Candidate("c1", BASE), Candidate("c2", ())]) is None
    assert best_match(BASE, [Candidate("c2", ())]) is None


def test_best_match_prefers_higher_score_then_smaller_id() -> None:
    near = Candidate("zzz", BASE)
    farther = Candidate("aaa", (*BASE[:1], "x", *BASE[2:]))
    assert best_match(BASE, [farther, near]) == best_match(BASE, [near, farther])
    assert best_match(BASE, [farther, near]).cluster_id == "zzz"  # type: ignore[union-attr]
    tie = best_match(BASE, [Candidate("b", BASE), Candidate("a", BASE)])
    assert tie is not None and tie.cluster_id == "a"


@pytest.mark.parametrize(
    ("kind", "reason", "klass"),
    [
        ("kasan", "BUG: KASAN: use-after-free", "bad-access"),
        ("kasan", "BUG: KASAN: slab-out-of-bounds", "bad-access"),
        ("general-protection-fault", "general protection fault", "bad-access"),
        ("paging-request", "BUG: unable to handle page fault", "bad-access"),
        ("null-deref", "BUG: kernel NULL pointer dereference", "bad-access"),
        ("list-corruption", "kernel BUG at lib/list_debug.c:N!", "bad-access"),
        ("kmsan", "BUG: KMSAN: uninit-value", "bad-access"),
        ("ubsan", "UBSAN: array-index-out-of-bounds in x.c", "bad-access"),
        ("oops", "Unhandled fault: page domain fault (N)", "bad-access"),
        ("kasan", "BUG: KASAN: invalid-free", "invalid-free"),
        ("kasan", "BUG: KASAN: double-free or invalid-free", "invalid-free"),
        ("kfence", "BUG: KFENCE: invalid free", "invalid-free"),
        ("rcu-stall", "INFO: rcu detected stall", "stall"),
        ("soft-lockup", "BUG: soft lockup - CPU stuck for Ns!", "stall"),
        ("hung-task", "INFO: task blocked for more than N seconds.", "hang"),
        ("stack-guard-page", "Kernel panic - not syncing: kernel stack overflow", "stack-overflow"),
        ("stack-protector", "Kernel panic - not syncing: corrupted stack end detected inside scheduler", "stack-overflow"),
        ("lockdep", "WARNING: possible circular locking dependency detected", "possible-deadlock"),
        ("lockdep", "WARNING: possible recursive locking detected", "possible-deadlock"),
        ("lockdep", "WARNING: HARDIRQ-safe -> HARDIRQ-unsafe lock order detected", "possible-deadlock"),
        # Everything else keeps kind + reason apart, as cl-1 did.
        ("lockdep", "WARNING: inconsistent lock state", "lockdep\x1fWARNING: inconsistent lock state"),
        ("ubsan", "UBSAN: shift-out-of-bounds in x.c", "ubsan\x1fUBSAN: shift-out-of-bounds in x.c"),
        ("oops", "Internal error: Oops - BUG: N", "oops\x1fInternal error: Oops - BUG: N"),
        ("warning", "WARNING: at fs/ext4/inode.c", "warning\x1fWARNING: at fs/ext4/inode.c"),
        ("hard-lockup", "watchdog: Watchdog detected hard LOCKUP on cpu N", "hard-lockup\x1fwatchdog: Watchdog detected hard LOCKUP on cpu N"),
    ],
)  # fmt: skip
def test_bug_classes(kind: str, reason: str, klass: str) -> None:
    assert bug_class(kind, reason) == klass


def test_buckets_separate_class_and_guilty_frame() -> None:
    keys = bucket_keys("null-deref", "BUG: kernel NULL pointer dereference", ("f", "g", "f"))
    assert len(keys) == 1
    # One class: a KASAN report and a general protection fault in f share the bucket ...
    assert keys == bucket_keys("kasan", "BUG: KASAN: use-after-free", ("f", "x"))
    assert keys == bucket_keys("general-protection-fault", "general protection fault", ("f",))
    # ... another class, another guilty frame, or warnings at other places do not.
    assert keys != bucket_keys("warning", "WARNING: at a.c", ("f", "g"))
    assert keys != bucket_keys("null-deref", "BUG: kernel NULL pointer dereference", ("g", "f"))
    assert bucket_keys("warning", "WARNING: at a.c", ("f",)) != bucket_keys("warning", "WARNING: at b.c", ("f",))
    assert bucket_keys("k", "r", ()) == ()


def test_whatever_best_match_accepts_shares_a_bucket() -> None:
    """The index is complete: a cluster best_match would pick is in the report's bucket."""
    other = (BASE[0], "x", "y")
    assert best_match(other, [Candidate("c", BASE)]) is not None
    assert set(bucket_keys("kasan", "BUG: KASAN: use-after-free", BASE)) == set(
        bucket_keys("general-protection-fault", "general protection fault", other)
    )


def test_rules_are_versioned() -> None:
    assert CLUSTER_RULES_VERSION == "cl-2"


def test_cluster_ids_are_stable() -> None:
    assert cluster_id_for("abc") == cluster_id_for("abc") != cluster_id_for("abd")
    assert len(cluster_id_for("abc")) == 16
