"""Which cluster a crash belongs to: exact fingerprint first, then the same bug by syzbot's rule.

The fingerprint (analysis.fingerprint) already says "same bug" for identical signatures. The
same bug on another kernel build, reached through another caller, or caught by another checker
differs in frames, in the reason line, even in the kind: a helper inlined in one build, a
KASAN report on a debug kernel where production kernels take a general protection fault, an
RCU stall on one machine and a soft lockup on the next. Kernel developers (and syzbot, whose
titles are the corpus' ground truth) call two reports one bug when their *bug class* and their
*guilty function* agree: "bad-access in ip6_fragment", "stall in ipv6_rcv", "possible deadlock
in rtnl_lock". Rules cl-2:

- The bug class of a signature is the first entry of BUG_CLASSES (data, below) whose kinds
  contain its kind and whose reason pattern, if any, matches its normalized reason — syzbot's
  alternative titles: `bad-access` (KASAN, KFENCE, KMSAN, general protection faults, page
  faults, NULL dereferences, list corruption ...), `invalid-free`, `stall` (RCU stalls and soft
  lockups), `hang` (hung tasks), `stack-overflow`, `possible-deadlock` (lockdep's circular,
  recursive and irq-order reports). Any other signature's class is its kind plus normalized
  reason, as in cl-1 (a WARNING at one file never joins a WARNING at another).
- A crash whose fingerprint is new joins an existing cluster of the same class whose guilty
  frame (the first fingerprint frame) is its own; when several qualify (clusters made under
  older rules, or two replicas racing) the one whose frames are most similar, by normalized
  Levenshtein distance over the fingerprint frames as ABRT's FAF compares backtraces:

      similarity(a, b) = 1 - levenshtein(a, b) / max(len(a), len(b))

  ties going to the smaller cluster id. A crash without frames (no guilty function) only ever
  matches by exact fingerprint.

Measured on the syzkaller report corpus (bench/cluster_eval.py; files whose expected titles
agree are the same bug), against fingerprints of the same analyzer release: cl-1 (same kind,
reason and guilty frame, similarity >= 0.5 over at least 3 frames) added nothing to exact
fingerprints (precision 1.000, recall 0.759); cl-2 reaches recall 0.977 at precision 1.000
(docs/collector.md has the table). What it still splits: reports without a guilty frame, and
classes syzbot merges by hand (a lockdep "Invalid wait context" and a WARNING in lockdep.c).

Candidates come from an index, not a scan, so the cost per report stays flat as clusters grow:
every cluster is filed under the bucket (bug class, guilty frame) of the signature that created
it, and a report reads only its own bucket, at most MAX_CANDIDATES_PER_BUCKET deep.

Changing anything here changes which crashes share a cluster: bump CLUSTER_RULES_VERSION and
run `crashfleet recluster`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "BUG_CLASSES",
    "CLUSTER_RULES_VERSION",
    "MAX_CANDIDATES_PER_BUCKET",
    "BugClass",
    "Candidate",
    "Match",
    "best_match",
    "bucket_keys",
    "bug_class",
    "cluster_id_for",
    "levenshtein",
    "similarity",
]

CLUSTER_RULES_VERSION = "cl-2"
MAX_CANDIDATES_PER_BUCKET = 256


@dataclass(frozen=True, slots=True)
class BugClass:
    """Signatures of these kinds (and, when `reason` is set, with a matching normalized reason)
    are one class of bug for clustering: syzbot's alternative title prefix."""

    name: str
    kinds: frozenset[str]
    reason: re.Pattern[str] | None = None


# First match wins; kinds are analysis.model.CrashKind values.
BUG_CLASSES: tuple[BugClass, ...] = (
    BugClass("invalid-free", frozenset({"kasan", "kfence"}), re.compile(r"invalid[- ]free|double-free")),
    BugClass(
        "bad-access",
        frozenset(
            {"kasan", "kfence", "kmsan", "general-protection-fault", "paging-request", "null-deref", "list-corruption"}
        ),
    ),
    BugClass("bad-access", frozenset({"ubsan"}), re.compile(r"array-index-out-of-bounds")),
    BugClass(
        "bad-access",
        frozenset({"oops"}),
        re.compile(r"Unhandled fault|synchronous external abort|alignment exception|page domain fault"),
    ),
    BugClass("stall", frozenset({"rcu-stall", "soft-lockup"})),
    BugClass("hang", frozenset({"hung-task"})),
    BugClass("stack-overflow", frozenset({"stack-guard-page"})),
    BugClass("stack-overflow", frozenset({"stack-protector"}), re.compile(r"corrupted stack end")),
    BugClass(
        "possible-deadlock",
        frozenset({"lockdep"}),
        re.compile(r"circular locking|recursive locking|lock order detected|irq lock inversion"),
    ),
)


def bug_class(kind: str, reason: str) -> str:
    """The class a (kind, normalized reason) belongs to: a BUG_CLASSES name, else kind + reason."""
    for entry in BUG_CLASSES:
        if kind in entry.kinds and (entry.reason is None or entry.reason.search(reason)):
            return entry.name
    return f"{kind}\x1f{reason}"


@dataclass(frozen=True, slots=True)
class Candidate:
    """An existing cluster as the index returns it: its id and the frames it was created from."""

    cluster_id: str
    frames: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Match:
    cluster_id: str
    similarity: float


def levenshtein(a: Sequence[str], b: Sequence[str]) -> int:
    """Edit distance over frame names (insert, delete, substitute one frame each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, frame_a in enumerate(a, start=1):
        current = [i]
        for j, frame_b in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (frame_a != frame_b))
            )
        previous = current
    return previous[-1]


def similarity(a: Sequence[str], b: Sequence[str]) -> float:
    """1 - normalized Levenshtein distance; two empty lists are identical (1.0)."""
    longest = max(len(a), len(b))
    if longest == 0:
        return 1.0
    return 1.0 - levenshtein(a, b) / longest


def bucket_keys(kind: str, reason: str, frames: Sequence[str]) -> tuple[str, ...]:
    """The index buckets of a signature: (bug class, guilty frame), or none for a signature
    without frames (only its exact fingerprint can match it)."""
    if not frames:
        return ()
    return (hashlib.sha256(f"{bug_class(kind, reason)}\x1e{frames[0]}".encode()).hexdigest()[:24],)


def best_match(frames: Sequence[str], candidates: Iterable[Candidate]) -> Match | None:
    """The candidate (of the same bug class: the caller's index lookup) with the same guilty
    frame and the most similar frames; ties go to the smaller cluster id so that every replica
    (and every recluster run) picks the same one."""
    if not frames:
        return None
    best: Match | None = None
    for candidate in candidates:
        if not candidate.frames or candidate.frames[0] != frames[0]:
            continue
        score = similarity(frames, candidate.frames)
        if (
            best is None
            or score > best.similarity
            or (score == best.similarity and candidate.cluster_id < best.cluster_id)
        ):
            best = Match(candidate.cluster_id, score)
    return best


def cluster_id_for(fingerprint: str) -> str:
    """A cluster's id derives from the fingerprint that created it, so replicas racing on one new
    signature compute the same id and a recluster with unchanged rules keeps every id."""
    return hashlib.sha256(f"cluster:{fingerprint}".encode()).hexdigest()[:16]
