"""The "same bug" key of a crash record: a stable hash plus the provenance of what went into it.

Two reports of one bug differ in everything that depends on the machine and the build: addresses,
`+off/size`, compiler clone suffixes (`.isra.0`, `.constprop.0`, `.cold`), timestamps, CPU, PID,
comm, host, taint and kernel build. The fingerprint hashes only what survives that:

    kind | normalized reason | guilty function | top FRAME_DEPTH signature frames

Like Socorro's signature generation, it is a pipeline of named, ordered steps rather than a
nest of ifs, and every step is data a reader can audit:

1. `REASON_STEPS` rewrite the reason line (regex -> replacement, in order).
2. `FUNCTION_STEPS` rewrite each function name (clone suffixes, per-arch syscall wrappers).
3. `FRAME_RULES` walk the frame list — the RIP function, then the call trace — and the first
   rule that matches a frame skips it and is recorded as `SkippedFrame(function, rule)`:
   `reason-only` (every frame, for the REASON_ONLY reports and REASON_ONLY_KINDS — stalls,
   lockups, hung tasks, stack overflows — whose stack is their watchdog's), `unreliable`
   (`? func` guesses), `inline` (an inlined call only a symbolized trace shows: the same
   crash's raw trace has no such line), `interrupted` (the task frames under an
   `<IRQ>`/`<SOFTIRQ>`/`<NMI>` part of the trace: whatever the interrupt happened to land on),
   `unsymbolized` (a bare address), the skip lists of `analysis.rules` under their own names
   (`locking`, `irq-entry`, `idle` ...), `repeat` (the same function again: recursion, or the
   RIP function repeated as the first trace line), and `depth` for frames after the first
   FRAME_DEPTH kept ones.
4. A reason ending in ` in <guilty function>` drops that suffix: the guilty function is hashed
   on its own, and a copy whose reason line named a helper instead is the same bug. In a
   stackless report, frames of the guilty function's name are not listed as skipped
   (`reason-only`): the provenance names each input once.

The hash covers FINGERPRINT_ALGORITHM (bumped by hand when what is hashed changes);
FINGERPRINT_VERSION adds a digest of every rule above and of the skip lists, so any rule edit
shows in the version of the fingerprints made afterwards, while the hash of a crash the edit
does not touch stays the same. `crashfleet recluster` re-signs stored crashes after an upgrade.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from analysis.model import CallFrame, CrashKind, CrashRecord, Fingerprint, SkippedFrame, StackContext
from analysis.rules import generic_frame_rule, skip_rules
from analysis.symbols import COMPILER_SUFFIX, normalize_function
from analysis.title import STALL_RIP_RULE

__all__ = [
    "DIGEST_HEX_CHARS",
    "FINGERPRINT_ALGORITHM",
    "FINGERPRINT_VERSION",
    "FRAME_DEPTH",
    "FRAME_RULES",
    "FUNCTION_STEPS",
    "GUILTY_FRAME_RULES",
    "PREVIOUS_FINGERPRINT_VERSION",
    "REASON_ONLY",
    "REASON_ONLY_KINDS",
    "REASON_STEPS",
    "FrameRule",
    "FrameView",
    "SignatureFrame",
    "compute",
    "is_inline",
    "normalize_reason",
    "ruleset_text",
    "signature_function",
]

# The algorithm generation: what is hashed and how (field order, separator, digest). It enters
# the hash, so bumping it changes every fingerprint; bump it only when the algorithm changes.
FINGERPRINT_ALGORITHM = "fp-1"

# How many signature frames (after skipping) go into the hash. Five is what crash triage tools
# settle on: enough to separate two bugs in one function reached by different callers, few
# enough that a refactor three callers up does not split one bug into many.
FRAME_DEPTH = 5

# 128 bits of sha256: collision-free at fleet scale, short enough to read out in a ticket.
DIGEST_HEX_CHARS = 32

_FIELD_SEPARATOR = "\x1f"  # cannot occur in a normalized name or reason
MAX_REASON_CHARS = 512  # a reason line is one printk line (< 1024 bytes); cap what the regexes see


@dataclass(frozen=True, slots=True)
class RewriteStep:
    """A named regex rewrite; steps run in order over the text."""

    name: str
    pattern: re.Pattern[str]
    replacement: str | Callable[[re.Match[str]], str]

    def apply(self, text: str) -> str:
        return self.pattern.sub(self.replacement, text)

    def describe(self) -> str:
        """The step as stable text (a callable replacement by its name), for the ruleset digest."""
        replacement = getattr(self.replacement, "__name__", self.replacement)
        return f"{self.name} {self.pattern.pattern!r} {replacement!r}"


# A number as the kernel prints it, or as the parser's normalization already replaced it.
_N = r"(?:0x[0-9a-fA-F]+|[0-9a-fA-F]{8,}|\d+|NUM|ADDR|LINE)"
_CODE = r"(?:[0-9a-fA-F]+|NUM)"  # an exception's error code, `0000` or the parser's NUM


def _step(name: str, pattern: str, replacement: str | Callable[[re.Match[str]], str]) -> RewriteStep:
    return RewriteStep(name, re.compile(pattern), replacement)


def _drop_generic_function(match: re.Match[str]) -> str:
    """` in memcpy` says where a checker caught the access, not whose bug it is: the generic
    helper differs between kernel versions (memcpy, __lock_acquire ...), the guilty frame does not."""
    return "" if generic_frame_rule(normalize_function(match.group(1))) else match.group(0)


def _drop_generic_warning_function(match: re.Match[str]) -> str:
    """The WARNING's file without its line and function when the function is a generic helper."""
    return match.group(1) if generic_frame_rule(normalize_function(match.group(2))) else match.group(0)


# Reason steps: the reason line with everything per-machine and per-kernel-version taken out.
# Applied on top of the parser's `normalized_reason` (which may use NUM/ADDR/LINE placeholders)
# or the raw reason, so they accept both and must be idempotent. The `wording-*` steps map the
# phrasings of different kernel versions for one kind of report onto one text.
REASON_STEPS: tuple[RewriteStep, ...] = (
    _step("symbol-offset", rf"\+{_N}(?:/{_N})?", ""),
    _step("module-marker", r"\s\[[\w-]+\]", ""),
    # `in f+0x2b1/0x300 drivers/x/y.c:214`: a symbolized log adds the source line; a raw one does not.
    _step("symbolizer-source", rf"( in [A-Za-z_][\w.]*)\s+[\w./+-]+\.(?:c|h|S|rs):{_N}(?::{_N})?(?=[\s,]|$)", r"\1"),
    _step("call-parens", r"(?<=\w)\(\)", ""),
    _step(
        "clone-suffix",
        r"(?<=[A-Za-z_])(?:\.(?:isra|constprop|part|cold|llvm|lto_priv|\d+|NUM))+(?![\w.])",
        "",
    ),
    # Each wording step removes only the per-instance part, so that a reason reduced to a title
    # ("general protection fault in foo", from a damaged report) keeps what identifies it.
    _step("wording-null-deref", r"^BUG: unable to handle kernel NULL pointer", "BUG: kernel NULL pointer"),
    _step("wording-null-deref-address", rf"(NULL pointer dereference)(?:, address:| at) {_N}", r"\1"),
    _step(
        "wording-page-fault",
        r"^BUG: unable to handle kernel paging request",
        "BUG: unable to handle page fault",
    ),
    _step("wording-page-fault-address", rf"(unable to handle page fault)(?: for address:| at) {_N}", r"\1"),
    _step(
        "wording-gpf",
        rf"^(general protection fault)(?:,? (?:probably )?for non-canonical address {_N})?: {_CODE}(?= \[#|$)",
        r"\1",
    ),
    _step("wording-divide-error", rf"^divide[ _]error(?:: {_CODE}(?= \[#|$))?", "divide error"),
    _step("wording-kasan-address", rf" at addr {_N}$", ""),
    _step(
        "wording-kasan-free",
        r"KASAN: (?:double-free or invalid-free|double-free|invalid-free)\b",
        "KASAN: invalid-free",
    ),
    _step("wording-kasan-slab-uaf", r"KASAN: slab-use-after-free\b", "KASAN: use-after-free"),
    # WARNING: CPU: 0 PID: 1 at fs/x.c:12 func [...]  (3.x-6.x)
    _step("wording-warning-cpu-pid", r"^WARNING: CPU: \S+ PID: \S+ at (\S+) (\S+).*$", r"WARNING: at \1 \2"),
    # WARNING: fs/x.c:12 at func, CPU: comm/123  (6.x)
    _step("wording-warning-at-cpu", r"^WARNING: (\S+:\S+) at ([^,\s]+), CPU: .*$", r"WARNING: at \1 \2"),
    # WARNING: at fs/x.c:12 func() (Not tainted)  (2.6)
    _step("wording-warning-2-6", r"^WARNING: at (\S+:\S+) (\S+).*$", r"WARNING: at \1 \2"),
    # rcu_sched / rcu_preempt / rcu_bh, "self-detected stall on CPU" / "detected stalls on CPUs/tasks":
    # which flavour and which CPU noticed first is timing, not the bug (syzbot titles agree).
    _step("wording-rcu-stall", r"^INFO: rcu_\w+ (?:self-)?detected stalls? on CPUs?(?:/tasks)?\b.*$", "INFO: rcu detected stall"),
    _step("wording-stack-guard", r"^BUG: (?:TASK|IRQ) stack guard page", "BUG: stack guard page"),
    _step("generic-function", r" in ([A-Za-z_][\w.]*)$", _drop_generic_function),
    # `WARNING: at lib/debugobjects.c:N debug_print_object`: the reporting helper (and the line
    # in it) moves between kernel versions; the warning's file still says which checker fired.
    _step("generic-warning-function", r"^(WARNING: at [^:\s]+):\S+ ([A-Za-z_][\w.]*)$", _drop_generic_warning_function),
    _step("task-comm", r"\btask \S+ (blocked|can't die|hung)\b", r"task \1"),
    _step("preemptible-comm", r"(preemptible code): \S+", r"\1"),
    # One `/N` at the end: the middle repetition takes any other numbers (two would backtrack quadratically).
    _step("comm-pid", rf"(?<!\S)[^\s/]+(?:/[^\s/]+)*/{_N}(?=[\s,)\]]|$)", "COMM"),
    _step("bracketed-comm", rf"(?<!\s)\s*\[[^\[\]\s]+:{_N}\]", ""),
    _step("oops-counter-and-flags", rf"(?<!\s)\s*\[#{_N}\].*$", ""),
    _step("duration", r"\b(?:\d+|NUM)s\b", "Ns"),
    _step("comm-field", r"\b(?:comm|Comm):\s*\S+", ""),
    _step("cpu-field", rf"\bCPU(?:#|:\s*|\s+){_N}(?!\w)", "CPU"),
    _step("pid-field", rf"\b(?:PID|pid):\s*-?{_N}(?!\w)", "PID"),
    _step("hex-number", r"\b0x[0-9a-fA-F]+\b", "N"),
    _step("bare-address", r"\b[0-9a-fA-F]{8,}\b", "N"),
    _step("decimal", r"(?<![\w.])\d+(?!\w)", "N"),
    _step("placeholder", r"\b(?:NUM|ADDR|LINE)\b", "N"),
    _step("whitespace", r"\s+", " "),
)

# __x64_sys_read, __ia32_sys_read, __arm64_sys_read, __se_sys_read, __do_sys_read, SyS_read: one
# system call, spelled per architecture and kernel version.
_SYSCALL_WRAPPER = re.compile(r"^(?:__(?:x64|ia32|x32|arm64|riscv|s390x?|se|do)_sys_|[Ss]y[Ss]_)")


def _syscall_name(name: str) -> str:
    return _SYSCALL_WRAPPER.sub("sys_", name)


# Function steps: one source function, one name, on every build and architecture.
FUNCTION_STEPS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("compiler-suffix", normalize_function),
    ("syscall-wrapper", _syscall_name),
)


# One pass of REASON_STEPS can leave work for the next: `0.0` loses its first number to
# `decimal`, and the `N.0` left over is a clone suffix only then. Passes repeat until nothing
# changes, so normalizing a normalized reason changes nothing; two passes settle every reason
# seen so far, the bound only guards against a rule that never settles.
MAX_REASON_PASSES = 4


def normalize_reason(reason: str) -> str:
    """The reason with addresses, numbers, CPU/PID/comm and line numbers taken out (idempotent)."""
    text = reason[:MAX_REASON_CHARS]
    for _ in range(MAX_REASON_PASSES):
        before = text
        for step in REASON_STEPS:
            text = step.apply(text)
        text = text.strip()
        if text == before:
            break
    return text


def signature_function(name: str) -> str:
    """A function name as it enters the fingerprint: every FUNCTION_STEPS rewrite applied."""
    for _, step in FUNCTION_STEPS:
        name = step(name)
    return name


@dataclass(frozen=True, slots=True)
class FrameView:
    """What the frame rules see: one frame, already normalized, and the walk so far."""

    function: str  # after FUNCTION_STEPS
    printed: str  # as the kernel printed it, for the provenance
    reliable: bool
    kept: tuple[str, ...]  # signature frames accepted before this one
    stackless: bool = False  # the report's stack is its detector's, not the bug's (REASON_ONLY)
    inline: bool = False  # a symbolizer's `func file:line [inline]` line, not a stack entry
    interrupted: bool = False  # on the task stack below an interrupt's frames


@dataclass(frozen=True, slots=True)
class FrameRule:
    """A named frame-selection rule: `applies` returns the rule name to cite, or None."""

    name: str
    applies: Callable[[FrameView], str | None]


# Reports whose call trace shows where a checker ran, not where the bug is: the stack differs
# on every occurrence, so only kind, reason and guilty function identify the bug.
REASON_ONLY: tuple[re.Pattern[str], ...] = (
    re.compile(r"corrupted stack end detected inside scheduler"),  # the victim task's function is the title
    # A stack overflow is noticed wherever the recursion happened to be deepest.
    re.compile(r"stack guard page was hit|kernel stack overflow"),
    # init exited: the panic is always on init's exit path; what killed it is not on the stack.
    re.compile(r"Attempted to kill init"),
    # lockdep ran out of a table: the stack is whoever needed the last entry.
    re.compile(r"MAX_(?:STACK_TRACE_ENTRIES|LOCKDEP_(?:KEYS|ENTRIES|CHAINS|CHAIN_HLOCKS)|LOCK_DEPTH) too low"),
)

# Kinds whose stack shows where a watchdog found the CPU or task, not a fault: the title's
# function (analysis.title's STALL/HUNG extractors: the frame above the dispatcher, or the lock
# waited on) identifies them; the callers below differ on every occurrence. Only with a guilty
# frame: without one the stack is all there is.
REASON_ONLY_KINDS: frozenset[CrashKind] = frozenset(
    {CrashKind.SOFT_LOCKUP, CrashKind.HARD_LOCKUP, CrashKind.RCU_STALL, CrashKind.HUNG_TASK}
)

_UNSYMBOLIZED = re.compile(r"\A(?:(?:0x)?[0-9a-fA-F]{6,}|\?+)\Z")


def _rule(name: str, predicate: Callable[[FrameView], bool]) -> FrameRule:
    return FrameRule(name, lambda frame: name if predicate(frame) else None)


# Frame selection, first match wins. `generic` cites the skip list that matched (analysis.rules).
FRAME_RULES: tuple[FrameRule, ...] = (
    _rule("reason-only", lambda f: f.stackless),
    _rule("unreliable", lambda f: not f.reliable),
    _rule("inline", lambda f: f.inline),
    _rule("interrupted", lambda f: f.interrupted),
    _rule("unsymbolized", lambda f: not f.function or bool(_UNSYMBOLIZED.match(f.function))),
    FrameRule("generic", lambda f: generic_frame_rule(f.function)),
    _rule("repeat", lambda f: bool(f.kept) and f.kept[-1] == f.function),
    _rule("depth", lambda f: len(f.kept) >= FRAME_DEPTH),
)


class SignatureFrame(NamedTuple):
    """A frame as the rules take it; a plain `(function, reliable)` pair is one too."""

    function: str
    reliable: bool
    inline: bool = False
    interrupted: bool = False


def is_inline(frame: CallFrame) -> bool:
    """An inlined call as a symbolized trace prints it: no offset, no address, a source line.

    (docs/report-schema.md documents this shape; debuginfo lookups only ever add `source` to
    frames that have an offset or an address.)
    """
    return frame.offset is None and frame.address is None and bool(frame.source)


_INTERRUPT_CONTEXTS = frozenset({StackContext.IRQ, StackContext.SOFTIRQ, StackContext.NMI})


def _frames(record: CrashRecord) -> list[SignatureFrame]:
    """The RIP function (where the CPU was) followed by the call trace in printed order."""
    frames = []
    if record.rip is not None and record.rip.function:
        frames.append(SignatureFrame(record.rip.function, True))
    in_interrupt = False
    for f in record.call_trace:
        in_interrupt = in_interrupt or f.context in _INTERRUPT_CONTEXTS
        interrupted = in_interrupt and f.context is StackContext.TASK
        frames.append(SignatureFrame(f.function, f.reliable, is_inline(f), interrupted))
    return frames


def select_frames(
    frames: Sequence[tuple[str, bool] | SignatureFrame],
    rules: Sequence[FrameRule] = FRAME_RULES,
    *,
    stackless: bool = False,
) -> tuple[tuple[str, ...], tuple[SkippedFrame, ...]]:
    """Run the frame rules over (function, reliable[, inline, interrupted]) frames: kept and skipped."""
    kept: list[str] = []
    skipped: list[SkippedFrame] = []
    for frame in frames:
        printed, reliable, inline, interrupted = SignatureFrame(*frame)
        view = FrameView(
            signature_function(printed.strip()), printed, reliable, tuple(kept), stackless, inline, interrupted
        )
        cited = next((name for rule in rules if (name := rule.applies(view)) is not None), None)
        if cited is None:
            kept.append(view.function)
        else:
            skipped.append(SkippedFrame(function=printed, rule=cited))
    return tuple(kept), tuple(skipped)


def compute(record: CrashRecord) -> Fingerprint:
    """The record's fingerprint; pure, and a function only of the fields the module doc names."""
    reason = normalize_reason(record.normalized_reason or record.reason)
    stackless = any(pattern.search(reason) for pattern in REASON_ONLY) or (
        record.kind in REASON_ONLY_KINDS and bool(record.guilty_frame)
    )
    kept, skipped = select_frames(_frames(record), stackless=stackless)
    if record.guilty_frame:
        guilty = signature_function(record.guilty_frame.strip())
        # `KASAN: ... in f` with f the guilty function says it twice; a copy whose reason
        # line lost the ` in f` (or named a generic helper instead) is the same bug.
        reason = reason.removesuffix(f" in {guilty}")
        if stackless:  # the guilty function went in: it is not also "skipped" as reason-only
            skipped = tuple(s for s in skipped if signature_function(s.function.strip()) != guilty)
    else:
        guilty = kept[0] if kept else ""
    kind = str(record.kind)
    fields = (FINGERPRINT_ALGORITHM, kind, reason, guilty, *kept)
    digest = hashlib.sha256(_FIELD_SEPARATOR.join(fields).encode("utf-8", "surrogatepass")).hexdigest()
    # Provenance lists the guilty function first, then the signature frames (without repeating it).
    shown = kept[1:] if kept and guilty and kept[0] == guilty else kept
    frames = (guilty, *shown) if guilty else shown
    return Fingerprint(
        value=digest[:DIGEST_HEX_CHARS],
        version=FINGERPRINT_VERSION,
        kind=kind,
        reason=reason,
        frames=frames,
        skipped=skipped,
    )


# The parser's guilty-frame rules that entered after fp-1's first edition: the guilty function is
# hashed, so a change to how it is chosen changes fingerprints too (analysis.title). Each one
# listed here enters the version; the edition without them is PREVIOUS_FINGERPRINT_VERSION.
GUILTY_FRAME_RULES: tuple[str, ...] = (f"stall: {STALL_RIP_RULE}",)


def ruleset_text(guilty_rules: bool = True) -> str:
    """Every rule the fingerprint applies, as text: the steps and patterns above, the skip lists
    and (unless `guilty_rules` is off: the previous edition) GUILTY_FRAME_RULES."""
    lines = [f"algorithm {FINGERPRINT_ALGORITHM}", f"depth {FRAME_DEPTH}", f"digest {DIGEST_HEX_CHARS}"]
    lines += [f"reason-step {step.describe()}" for step in REASON_STEPS]
    lines += [f"function-step {name}" for name, _ in FUNCTION_STEPS]
    lines += [f"compiler-suffix {COMPILER_SUFFIX.pattern!r}", f"syscall-wrapper {_SYSCALL_WRAPPER.pattern!r}"]
    lines += [f"reason-only {p.pattern!r}" for p in REASON_ONLY]
    lines += [f"reason-only-kind {kind}" for kind in sorted(REASON_ONLY_KINDS)]
    lines += ["reason-guilty-suffix dropped"]
    lines += [f"frame-rule {r.name}" for r in FRAME_RULES]
    lines += [f"skip-list {r.name} {r.pattern.pattern!r}" for r in skip_rules()]
    if guilty_rules:
        lines += [f"guilty-frame {rule}" for rule in GUILTY_FRAME_RULES]
    return "\n".join(lines)


# The version a fingerprint carries: the algorithm plus a digest of the rules in force, so that
# editing a skip list or a step is visible in every fingerprint made afterwards (and
# `crashfleet recluster` knows stored ones are stale) without anyone remembering to bump a
# number. Only the algorithm enters the hash: a crash the edited rule does not touch keeps its
# fingerprint.
FINGERPRINT_VERSION = f"{FINGERPRINT_ALGORITHM}+{hashlib.sha256(ruleset_text().encode()).hexdigest()[:8]}"
# The edition before GUILTY_FRAME_RULES: the version every fingerprint made before them carries,
# and the one analysis.editions computes secondary fingerprints with during a transition.
PREVIOUS_FINGERPRINT_VERSION = (
    f"{FINGERPRINT_ALGORITHM}+{hashlib.sha256(ruleset_text(guilty_rules=False).encode()).hexdigest()[:8]}"
)
