"""Crash kinds, syzbot-style titles and the guilty frame, as one ranked table of rules.

A report starts at a line containing one of the `OOPS_GROUPS` anchors ("BUG:", "WARNING:",
"general protection fault" ...). Inside the group, rules are tried in order against the
header line; the first whose `header` (and, when given, `follow` patterns on later lines)
matches decides the kind and the title format. The title names a function found by the
rule's `parts`: a sequence of steps over the report lines, each either "the next line that
matches this pattern" (capturing a function, e.g. the `RIP:` line) or `TRACE` (read call-trace
frames until the next stack header). Frames matched by a generic-frame rule
(`analysis/rules/skip/*.txt`) or by the rule's own `skip` list are passed over; the first one
left, or the one a stall/hang extractor picks, is the guilty frame.

The conventions (and most patterns) follow the titles kernel developers know from syzbot, so
that a title computed here can be compared with, and searched for in, the public reports.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from analysis.linear import compile_text
from analysis.model import CrashKind
from analysis.prefilter import literal_trie
from analysis.rules import generic_frame_rule
from analysis.rustsym import demangle_rust

__all__ = [
    "ANCHORS",
    "ANCHOR_WORDS",
    "CONFIRM_LINES",
    "OOPS_GROUPS",
    "REPORT_CONTINUATIONS",
    "STALL_ANCHORS",
    "STALL_RIP_RULE",
    "STRIP_FRAME_PREFIXES",
    "TRACE",
    "Extractor",
    "OopsGroup",
    "TitleResult",
    "TitleRule",
    "describe",
    "frame_name",
    "is_continuation",
    "match_anchor",
    "previous_rules",
    "sanitize_title",
]

_PC = r"\[<?(?:0x)?[0-9a-f]*>?\]"  # "[]": a console paste that lost the addresses
_FUNC = r"([a-zA-Z0-9_]+)(?:\.|\+)"
_SRC = r"(?<![a-zA-Z0-9_/.\-])([a-zA-Z0-9_/.\-]+\.[a-z]+:[0-9]+)"  # starts where its run starts: linear


def _re(pattern: str) -> re.Pattern[str]:
    """Compile with the {{PC}}/{{FUNC}}/{{SRC}} shorthands used throughout the table."""
    return re.compile(pattern.replace("{{PC}}", _PC).replace("{{FUNC}}", _FUNC).replace("{{SRC}}", _SRC))


class _Trace:
    """Marker step: read call-trace frames from here to the next stack header."""

    def __repr__(self) -> str:
        return "TRACE"


TRACE = _Trace()
Part = re.Pattern[str] | _Trace


class Extractor(enum.Enum):
    """How the guilty frame is chosen among the frames the parts collected."""

    FIRST = "first"  # the first frame not skipped
    STALL = "stall"  # the caller of the first dispatch anchor (syscall entry, workqueue ...), or STALL_RIP_RULE
    HUNG = "hung"  # rtnl_lock / synchronize_rcu buckets, else the first non-scheduler frame


@dataclass(frozen=True, slots=True)
class TitleRule:
    """One row of the table: header pattern -> kind, title format, how to find the guilty frame.

    `title` is a str.format template over the captured groups of `header` then `follow`, then
    the guilty frame (`{frame}`). `skip` holds extra regexes searched anywhere in a frame name.
    """

    name: str
    header: re.Pattern[str]
    kind: CrashKind
    title: str
    parts: tuple[Part, ...] = ()
    parts2: tuple[Part, ...] = ()  # tried when `parts` found no frame
    skip: tuple[str, ...] = ()
    extractor: Extractor = Extractor.FIRST
    follow: tuple[re.Pattern[str], ...] = ()  # must match later lines, in order
    corrupted: bool = False  # the header alone means the report lost its substance
    needs_stack: bool = True  # a report of this kind without a call trace is corrupted
    header_frame: re.Pattern[str] | None = None  # reports without a trace name the function in the header
    frame_arg: int | None = None  # the title names this captured group's function: it is the guilty frame
    parts3: tuple[Part, ...] = ()  # tried when `parts2` found no frame either
    skip_re: re.Pattern[str] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.skip:
            object.__setattr__(self, "skip_re", re.compile("|".join(self.skip)))


@dataclass(frozen=True, slots=True)
class OopsGroup:
    """Lines containing `anchor` start a report, unless a suppression matches the line."""

    anchor: str
    rules: tuple[TitleRule, ...]
    suppressions: tuple[re.Pattern[str], ...] = ()
    kind: CrashKind = CrashKind.UNKNOWN  # for a header no rule of the group recognizes
    # When set, a report starts only if one of the next CONFIRM_LINES lines matches it: for
    # anchors that ordinary messages also print ("ALSA: seq fatal error: ...").
    confirm: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class TitleResult:
    kind: CrashKind
    title: str
    guilty_frame: str | None
    corrupted_reason: str | None
    rule: str | None  # the TitleRule that matched, None for the fallback


_RIP_FRAME = _re(
    r"(?:IP|NIP|pc |PC is at):? (?:(?:[0-9]+:)?(?:{{PC}} +){0,2}{{FUNC}}|(?:[0-9]+:)?0x[0-9a-f]+"
    r"|(?:[0-9]+:)?{{PC}} +\[< *\(null\)>\] +\(null\)|[0-9]+: +\(null\))"
)
_CALL_TRACE = re.compile(r"Call (?:T|t)race:|Backtrace:")
_RISCV_STACK_START = re.compile(r"status: [0-9a-f]{16} badaddr: [0-9a-f]{16} cause: [0-9a-f]{16}")
# Lines that open a stack dump; a TRACE step stops at the next one.
STACK_STARTS: tuple[re.Pattern[str], ...] = (
    re.compile(r"Call (?:T|t)race"),
    re.compile(r"Allocated:"),
    re.compile(r"Allocated by task [0-9]+:"),
    re.compile(r"Freed:"),
    re.compile(r"Freed by task [0-9]+:"),
    re.compile(r"[^k] backtrace(?: \(crc [0-9a-fA-F]*\))?:"),  # kmemleak, not "stack backtrace:"
    re.compile(r"Backtrace:"),
    re.compile(r"Uninit was stored to memory at"),
    _RISCV_STACK_START,
)
_FRAME_RES: tuple[re.Pattern[str], ...] = (
    _re(r"^ *(?:{{PC}} ){0,2}{{FUNC}}"),
    # arm: "[<c0123>] (func) from [<c0456>] (caller+0x..)": both names, the top is only in LR.
    _re(r"^ *{{PC}} \(([a-zA-Z0-9_.]+)(?: \[[\w-]+\])?\) from {{PC}} \({{FUNC}}"),
)
# Fault-injection stacks interleave with real reports and make their frames untrustworthy.
_CORRUPTING_LINE = re.compile(r"^( \[<?(?:0x)?[0-9a-f]+>?\])? should_fail(slab)?(\.[a-z0-9.]+)?\+0x")
_STACK_NOT_AVAILABLE = "(stack is not available)"

# Syscall wrappers differ by architecture and kernel version; titles use the bare name.
STRIP_FRAME_PREFIXES: tuple[str, ...] = (
    "SYSC_", "SyS_", "sys_", "__x64_", "__ia32_", "__arm64_", "____sys_", "___sys_", "__sys_",
    "__se_", "__se_sys_", "__do_sys_", "compat_SYSC_", "compat_SyS_", "ksys_",
)  # fmt: skip

# Where a stall's loop was entered from: the frame *above* the first of these names the work.
STALL_ANCHORS = re.compile(
    "|".join(
        (
            r"process_one_work", r"do_syscall_", r"do_fast_syscall_", r"sysenter_dispatch",
            r"tracesys_phase2", r"el0_svc_handler", r"invoke_syscall", r"ret_fast_syscall",
            r"netif_receive_skb", r"do_softirq", r"call_timer_fn", r"_run_timers",
            r"run_timer_softirq", r"hrtimer_run", r"run_ksoftirqd", r"smpboot_thread_fn",
            r"^kthread$", r"start_secondary", r"cpu_startup_entry", r"ret_from_fork",
            r"vfs_write", r"vfs_read", r"vfs_iter_read", r"vfs_iter_write", r"do_iter_read",
            r"do_iter_write", r"call_read_iter", r"call_write_iter", r"new_sync_read",
            r"new_sync_write", r"vfs_ioctl", r"ksys_ioctl", r"compat_ioctl", r"compat_sys_ioctl",
            r"blkdev_driver_ioctl", r"blkdev_ioctl", r"do_iter_readv_writev", r"^call_mmap",
            r"mmap_region", r"do_mmap", r"do_dentry_open", r"vfs_open", r"^sock_sendmsg",
            r"^sock_recvmsg", r"^sock_release", r"^__sock_release", r"^setsockopt$",
            r"kernel_setsockopt", r"sock_common_setsockopt", r"^listen$", r"kernel_listen",
            r"sk_common_release", r"^sock_mmap", r"^accept$", r"kernel_accept", r"^sock_do_ioctl",
            r"^sock_ioctl", r"^compat_sock_ioctl", r"^nfnetlink_rcv_msg", r"^rtnetlink_rcv_msg",
            r"^netlink_dump", r"^(sys_)?(socketpair|connect|ioctl)", r"__do_fault", r"do_page_fault",
            r"^page_fault$", r"__fput", r"task_work_run", r"exit_to_usermode", r"smp_call_function",
            r"tasklet_action", r"tasklet_hi_action",
        )
    )
)  # fmt: skip

# Stalls and lockups: the frame that was running when the watchdog fired is the guilty frame when
# it is a module's code in task context and no skip list claims it: the loop is that module's
# own (a driver spinning on its hardware, `crashme_softlockup [crashme]`), and naming the generic
# file-operation dispatcher it was reached through (proc_reg_write, vfs_write ...) would put
# every module's lockup into one cluster. Core-kernel RIPs keep syzbot's rule (the caller of
# the dispatch anchor): a loop in d_walk or memcpy is spun by whoever called it, and syzbot's
# titles for those name the system call. An interrupt marker after the RIP line (`<IRQ>`
# opening the trace, or `</IRQ>` closing the block the RIP was printed in) before any `<TASK>`
# means the RIP is the interrupt's, not the stalled task's; kernels without markers (< 5.10,
# arm64) print the task's RIP after the watchdog's `</IRQ>`.
_STALL_RIP_MODULE = re.compile(r"(?:RIP: (?:[0-9a-f]{4}:)?|pc ?: )(?:\[<[0-9a-f]+>\] +)?([a-zA-Z0-9_.]+)\+0x[0-9a-f]+/0x[0-9a-f]+ \[[\w-]+\]")
_CONTEXT_MARK = re.compile(r"^\s*<(/?)(IRQ|NMI|SOFTIRQ|TASK)>")
STALL_RIP_RULE = "module code in task context at the RIP"
# Off only inside `previous_rules()`: the fingerprint edition before STALL_RIP_RULE, which the
# collector still computes as a secondary fingerprint during a rule transition (analysis.editions).
_STALL_RIP_ON: ContextVar[bool] = ContextVar("stall_rip_rule", default=True)


@contextmanager
def previous_rules() -> Iterator[None]:
    """Titles and guilty frames as the analyzer chose them before STALL_RIP_RULE (this thread or
    task only): a stall's guilty frame is the caller of its dispatch anchor, whatever the RIP."""
    token = _STALL_RIP_ON.set(False)
    try:
        yield
    finally:
        _STALL_RIP_ON.reset(token)


def _stall_rip_frame(lines: Sequence[str], rule: TitleRule) -> str | None:
    """The RIP function when STALL_RIP_RULE applies to this stall report, else None."""
    rip: str | None = None
    for line in lines:
        if rip is None:
            m = _STALL_RIP_MODULE.search(line)
            if m:
                rip = _strip_prefix(frame_name(m.group(1)))
                continue
        elif (c := _CONTEXT_MARK.match(line)) is not None and c.group(2) != "TASK":
            return None  # an interrupt's stack follows the RIP, or the RIP was inside one (`</IRQ>`)
        elif c is not None and not c.group(1):
            break  # `<TASK>`
    if rip is None or _skipped(rip, rule):
        return None
    return rip


# A hung task waits somewhere generic; these buckets group hangs by what they wait for.
_HUNG_ANCHORS: tuple[tuple[str, str], ...] = (
    ("rtnl_lock", ""),
    ("synchronize_rcu", "synchronize_rcu"),
    ("synchronize_srcu", "synchronize_rcu"),
    ("synchronize_net", "synchronize_rcu"),
    ("synchronize_sched", "synchronize_rcu"),
)
_HUNG_SKIP: tuple[str, ...] = (
    "sched", "_lock", "_slowlock", "down", "rwsem", "completion", "kthread", "wait",
    "synchronize", "context_switch", "__switch_to", "cancel_delayed_work", "rcu_barrier",
)  # fmt: skip

# Numbers, addresses and pids differ between two hits of one bug; titles must not.
_TITLE_REPLACEMENTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"syz-executor\.?[0-9]+((/|:)[0-9]+)?"), "syz-executor"),
    (re.compile(r"syzkaller[0-9]+((/|:)[0-9]+)?"), "syzkaller"),
    (re.compile(r"([^a-zA-Z0-9])(?:0x)?[0-9a-f]{6,}\b"), r"\1ADDR"),  # \b keeps "e1000e_down" intact
    (re.compile(r"([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})"), "IP"),
    (re.compile(r"(\.\w+)(:[0-9]+)+"), r"\1:LINE"),
    # RE2: in `re` a long word with no `+0x` after it is rescanned from each of its letters.
    (compile_text(r"([a-zA-Z][a-zA-Z0-9_.]+)\+0x[0-9a-z]+/0x[0-9a-z]+"), r"\1"),
    (re.compile(r"CPU#[0-9]+"), "CPU"),
    (re.compile(r"(\W)(\d+)(\W|$)"), r"\1NUM\3"),
    (re.compile(r"(\d+){7,}"), "NUM"),
)
_MAX_TITLE = 120
CONFIRM_LINES = 6
# Header patterns have `.*` pairs (syzbot's, written for a linear engine); a printk header is
# well under this, and the cap keeps Python's backtracking bounded on crafted lines.
MAX_HEADER_CHARS = 512
_CORRUPTED_TITLE = re.compile(r"\[ *[0-9]+\.[0-9]+\]")  # a timestamp glued into the header


def sanitize_title(text: str) -> str:
    """Replace run-specific numbers/addresses, drop control characters, squeeze spaces, cap length."""
    for pattern, repl in _TITLE_REPLACEMENTS:
        for _ in range(8):  # overlapping matches ("0,1,2") need repeated passes; bounded
            new = pattern.sub(repl, text)
            if new == text:
                break
            text = new
    out: list[str] = []
    prev = " "
    for ch in text[:_MAX_TITLE]:
        if ch == "\t":
            ch = " "
        elif ch < " " or ch == "\x7f":
            continue
        if ch == " " and prev == " ":
            continue
        out.append(ch)
        prev = ch
    return "".join(out).strip()


def frame_name(function: str) -> str:
    """The source-level name of a symbol: compiler clone suffixes (`.isra.0`, `.cold` ...) cut."""
    return function.split(".", 1)[0]


def _strip_prefix(frame: str) -> str:
    best = frame
    for prefix in STRIP_FRAME_PREFIXES:
        if frame.startswith(prefix) and len(frame) - len(prefix) < len(best):
            best = frame[len(prefix) :]
    return best


def _skipped(frame: str, rule: TitleRule) -> bool:
    if generic_frame_rule(frame) is not None:
        return True
    return rule.skip_re is not None and rule.skip_re.search(frame) is not None


def _frames_of(match: re.Match[str]) -> list[str]:
    return [frame_name(demangle_rust(g)) for g in match.groups() if g]


def _extract(frames: list[str], all_frames: list[str], rule: TitleRule) -> str | None:
    if rule.extractor is Extractor.STALL:
        prev: str | None = None
        kept = set(frames)
        for frame in all_frames:
            if STALL_ANCHORS.search(frame):
                if "smp_call_function" in frame:
                    return "smp_call_function"
                return prev if prev is not None else frame
            if frame in kept:
                prev = frame
        return None
    if rule.extractor is Extractor.HUNG:
        for frame in frames:
            for anchor, bucket in _HUNG_ANCHORS:
                if anchor in frame:
                    return bucket or frame
        for frame in frames:
            if not any(s in frame for s in _HUNG_SKIP):
                return frame
        return None
    return frames[0] if frames else None


def _run_parts(lines: Sequence[str], parts: tuple[Part, ...], rule: TitleRule) -> tuple[str | None, bool]:
    """Walk `parts` over `lines`; return (guilty frame or None, saw a fault-injection line)."""
    frames: list[str] = []
    everything: list[str] = []
    injected = False
    pos = 0
    n = len(lines)
    idx = 0
    traces = 0
    while idx < len(parts):
        part = parts[idx]
        if isinstance(part, _Trace):
            if traces:
                break  # the guilty frame comes from the first trace; later ones add nothing
            traces += 1
            nxt = parts[idx + 1] if idx + 1 < len(parts) else None
            while pos < n:
                line = lines[pos]
                pos += 1
                if _CORRUPTING_LINE.match(line):
                    injected = True
                    break
                if any(s.search(line) for s in STACK_STARTS):
                    break
                if isinstance(nxt, re.Pattern):
                    m = nxt.search(line)
                    if m:
                        for f in _frames_of(m):
                            everything.append(f)
                            if not _skipped(f, rule):
                                frames.append(f)
                        idx += 1
                        break
                for frame_re in _FRAME_RES:
                    m = frame_re.search(line)
                    if m:
                        for f in _frames_of(m):
                            everything.append(f)
                            if not _skipped(f, rule):
                                frames.append(f)
                        break
        else:
            while pos < n:
                line = lines[pos]
                pos += 1
                if _CORRUPTING_LINE.match(line):
                    injected = True
                    break
                m = part.search(line)
                if m:
                    for f in _frames_of(m):
                        everything.append(f)
                        if not _skipped(f, rule):
                            frames.append(f)
                    break
        idx += 1
    stripped = [_strip_prefix(f) for f in frames]
    stripped_all = [_strip_prefix(f) for f in everything]
    return _extract(stripped, stripped_all, rule), injected


def _stack_corruption(lines: Sequence[str]) -> str | None:
    """Why a report that should carry a call trace does not (None when it does)."""
    has_trace = False
    for key in STACK_STARTS:
        start = next((i for i, line in enumerate(lines) if key.search(line)), None)
        if start is None:
            continue
        rest = lines[start + 1 : start + 16]
        if len(lines) - start < 3:  # the header and fewer than two lines after it
            return "call trace is missed"
        found = False
        for line in rest:
            if any(k.search(line) for k in STACK_STARTS):
                break
            if _STACK_NOT_AVAILABLE in line or any(r.search(line) for r in _FRAME_RES):
                found = True
                break
        if found:
            has_trace = True
        elif key is not _RISCV_STACK_START:
            return "no frames in a stack trace"
    return None if has_trace else "no stack trace in report"


def describe(group: OopsGroup, lines: Sequence[str], check_lines: Sequence[str] | None = None) -> TitleResult:
    """Title, kind, guilty frame and corruption of a report whose first line holds `group.anchor`.

    `lines` are the report's normalized lines, header first, other CPUs' lines and `? func`
    guesses already removed. `check_lines` (default `lines`) are what the "has a call trace"
    check reads: the report plus what its caller printed after it, so that a trace printed
    after an interleaved report still counts.
    """
    header = lines[0][:MAX_HEADER_CHARS] if lines else ""
    if len(lines) > 1 and not any(rule.header.search(header) for rule in group.rules):
        # A raw newline inside a garbled comm/task name splits the header: rejoin it.
        joined = header + lines[1][:MAX_HEADER_CHARS]
        if any(rule.header.search(joined) for rule in group.rules):
            header = joined
    matched_header = False
    for rule in group.rules:
        m = rule.header.search(header)
        if m is None:
            continue
        matched_header = True
        args: list[str] = [g or "" for g in m.groups()]
        pos = 1
        followed = True
        for pattern in rule.follow:
            while pos < len(lines):
                fm = pattern.search(lines[pos])
                pos += 1
                if fm:
                    args.extend(g or "" for g in fm.groups())
                    break
            else:
                followed = False
                break
        if not followed:
            continue
        corrupted: str | None = None
        frame: str | None = None
        if rule.parts:
            frame, injected = _run_parts(lines, rule.parts, rule)
            for fallback in (rule.parts2, rule.parts3):
                if frame is None and fallback:
                    frame, injected2 = _run_parts(lines, fallback, rule)
                    injected = injected or injected2
            if rule.extractor is Extractor.STALL and frame is not None and _STALL_RIP_ON.get():
                frame = _stall_rip_frame(lines, rule) or frame
            if frame is None:
                corrupted = "no guilty frame found in the report"
            elif injected:
                corrupted = "fault-injection stack interleaved with the report"
        elif rule.frame_arg is not None and rule.frame_arg < len(args):
            frame = args[rule.frame_arg] or None
        elif rule.header_frame is not None:
            hm = rule.header_frame.search(header)
            frame = hm.group(1) if hm else None
        title = sanitize_title(rule.title.format(*args, frame=frame or "corrupted"))
        if corrupted is None and rule.corrupted:
            corrupted = "the report lost its substance (truncated header)"
        if corrupted is None and _CORRUPTED_TITLE.search(title):
            corrupted = "a timestamp is glued into the title line"
        if corrupted is None and rule.needs_stack:
            corrupted = _stack_corruption(lines if check_lines is None else check_lines)
        return TitleResult(rule.kind, title, frame, corrupted, rule.name)
    at = header.find(group.anchor)
    title = sanitize_title(header[at:] if at >= 0 else header)
    kind = title_kind(title)  # a header already in title form ("INFO: task hung in f") keeps its rule's kind
    corrupted = "header matched, report body did not" if matched_header else None
    if corrupted is None and _CORRUPTED_TITLE.search(title):
        corrupted = "a timestamp is glued into the title line"
    return TitleResult(kind if kind is not None else group.kind, title, None, corrupted, None)


# Headers that, printed inside a report, continue it instead of starting another one: the
# "invalid opcode" after "kernel BUG at", arm's "Internal error: Oops" after "Unable to handle
# kernel ...", the "Oops: 0000 [#1]" after "BUG: unable to handle", and the panic it ends in.
REPORT_CONTINUATIONS = re.compile(
    r"invalid opcode: 0000|Kernel panic - not syncing|unregister_netdevice: waiting for|PANIC: double fault"
    r"|Internal error:|^Oops(?::| -)|kernel BUG at rust/helpers/bug\.c"  # a Rust panic ends in BUG()
    # Reports that other reports print inside themselves: an allocation failing while a stall is
    # dumped, the kmemleak objects under syzkaller's own "BUG: memory leak" header.
    r"|: page allocation failure: order:|: vmalloc error: size|^unreferenced object 0x"
)


def is_continuation(text: str) -> bool:
    """True for a header line that belongs to the report it appears in (see REPORT_CONTINUATIONS)."""
    return REPORT_CONTINUATIONS.search(text) is not None


def match_anchor(text: str) -> OopsGroup | None:
    """The group whose anchor occurs in `text` (first in table order), unless suppressed."""
    m = ANCHORS.search(text)
    if m is None:
        return None
    for group in OOPS_GROUPS:
        if group.anchor in text:
            if any(s.search(text) for s in group.suppressions):
                continue
            return group
    return None


K = CrashKind
RIP_TRACE: tuple[Part, ...] = (_RIP_FRAME, _CALL_TRACE, TRACE)
TRACE_ONLY: tuple[Part, ...] = (_CALL_TRACE, TRACE)
RIP_ONLY: tuple[Part, ...] = (_RIP_FRAME,)
_WARN_PARTS: tuple[Part, ...] = (_re(r"(?:" + _RIP_FRAME.pattern + r"|--- interrupt: [0-9]+ at {{FUNC}})"), TRACE)


def _warning(name: str, header: str, title: str, *skip: str, kind: CrashKind = CrashKind.WARNING) -> TitleRule:
    return TitleRule(name, _re(header), kind, title, _WARN_PARTS, TRACE_ONLY, skip)


_AT_FUNC = _re(r"at: (?:{{PC}} +)?{{FUNC}}")
_AT_PC_FUNC = _re(r"at: {{PC}} +{{FUNC}}")  # the INFO: spelling (older kernels) always prints the address


def _lock_at(
    name: str, header: str, trigger: str, title: str = "possible deadlock in {0}", at: re.Pattern[str] = _AT_FUNC
) -> TitleRule:
    """A lockdep report titled by the function on the `at:` line after `trigger`: lockdep's own
    account of where the lock was taken, so that function is the guilty frame."""
    return TitleRule(name, _re(header), K.LOCKDEP, title, frame_arg=0, follow=(re.compile(trigger), at))

OOPS_GROUPS: tuple[OopsGroup, ...] = (
    OopsGroup(
        "BUG:",
        (
            TitleRule(
                "kasan-access", _re(r"BUG: KASAN: ([a-z\-]+) in {{FUNC}}"), K.KASAN,
                "KASAN: {0} {2} in {frame}",
                (_re(r"BUG: KASAN: (?:[a-z\-]+) in {{FUNC}}"), _CALL_TRACE, TRACE),
                skip=("kernel_fault", "tag_check", "mem_abort", "^el1_", "^el1h_"),
                follow=(re.compile(r"(Read|Write) (?:of size|at addr) (?:[0-9a-f]+)"),),
            ),
            TitleRule(
                "kasan-invalid-free",
                _re(r"BUG: KASAN: (?:double-free or invalid-free|double-free|invalid-free) in {{FUNC}}"),
                K.KASAN, "KASAN: invalid-free in {frame}",
                (_re(r"BUG: KASAN: (?:double-free or invalid-free|double-free|invalid-free) in {{FUNC}}"),
                 _CALL_TRACE, TRACE),
                skip=("slab_", "kfree", "vunmap", "vfree"),
            ),
            TitleRule(
                "kasan-address", _re(r"BUG: KASAN: ([a-z\-]+) on address"), K.KASAN, "KASAN: {0} {1}",
                follow=(re.compile(r"(Read|Write) of size (?:[0-9]+)"),),
            ),
            TitleRule("kasan-other", _re(r"BUG: KASAN: (.*)"), K.KASAN, "KASAN: {0}", corrupted=True),
            TitleRule(
                "kmsan-usb-infoleak", _re(r"BUG: KMSAN: kernel-usb-infoleak in {{FUNC}}"), K.KMSAN,
                "KMSAN: kernel-usb-infoleak in {frame}",
                (TRACE, _re(r"(Local variable .* created at:|Uninit was created at:)"), TRACE),
                skip=("alloc_skb", "usb_submit_urb", "usb_start_wait_urb", "usb_bulk_msg",
                      "usb_interrupt_msg", "usb_control_msg"),
                needs_stack=False,
            ),
            TitleRule(
                "kmsan", _re(r"BUG: KMSAN: ([a-z\-]+) in {{FUNC}}"), K.KMSAN, "KMSAN: {0} in {frame}",
                (TRACE, _re(r"(Local variable .* created at:|Uninit was created at:)"), TRACE),
                skip=("alloc_skb", "netlink_ack", "netlink_rcv_skb", "_encrypt$",
                      "^(?:crypto|cipher|drbg|rng)_"),
                needs_stack=False,
            ),
            TitleRule("kcsan", _re(r"BUG: KCSAN: (.*)"), K.KCSAN, "KCSAN: {0}", needs_stack=False,
                      header_frame=re.compile(r"KCSAN: [a-z\-]+(?:: [a-z\-]+)? in ([A-Za-z0-9_]+)")),
            TitleRule(
                "kfence-access", _re(r"BUG: KFENCE: (use-after-free|out-of-bounds) (read|write) in {{FUNC}}"),
                K.KFENCE, "KFENCE: {0} {1} in {frame}", (_re(r"BUG: KFENCE: (?:[a-z\- ]+) in {{FUNC}}"), TRACE),
            ),
            TitleRule(
                "kfence-invalid-free", _re(r"BUG: KFENCE: invalid free in {{FUNC}}"), K.KFENCE,
                "KFENCE: invalid free in {frame}", (_re(r"BUG: KFENCE: (?:[a-z\- ]+) in {{FUNC}}"), TRACE),
                needs_stack=False,
            ),
            TitleRule(
                "kfence-invalid-access", _re(r"BUG: KFENCE: invalid (read|write) in {{FUNC}}"), K.KFENCE,
                "KFENCE: invalid {0} in {frame}", (_re(r"BUG: KFENCE: (?:[a-z\- ]+) in {{FUNC}}"), TRACE),
            ),
            TitleRule(
                "kfence-corruption", _re(r"BUG: KFENCE: memory corruption in {{FUNC}}"), K.KFENCE,
                "KFENCE: memory corruption in {frame}", (_re(r"BUG: KFENCE: (?:[a-z\- ]+) in {{FUNC}}"), TRACE),
                needs_stack=False,
            ),
            TitleRule(
                "paging-request",
                _re(r"BUG: (?:unable to handle kernel paging request|unable to handle page fault for address"
                    r"|Unable to handle kernel data access)"),
                K.PAGING_REQUEST, "BUG: unable to handle kernel paging request in {frame}", RIP_TRACE,
            ),
            TitleRule(
                "null-deref",
                _re(r"BUG: (?:unable to handle kernel NULL pointer dereference|kernel NULL pointer dereference"
                    r"|Kernel NULL pointer dereference)"),
                K.NULL_DEREF, "BUG: unable to handle kernel NULL pointer dereference in {frame}", RIP_TRACE,
            ),
            TitleRule(
                "unable-to-handle-truncated", _re(r"BUG: (?:unable to handle kernel|Unable to handle kernel)"),
                K.PAGING_REQUEST, "BUG: unable to handle kernel", corrupted=True,
            ),
            TitleRule(
                "spinlock",
                _re(r"BUG: (spinlock|rwlock) (lockup suspected|already unlocked|recursion|cpu recursion"
                    r"|bad magic|wrong owner|wrong CPU|trylock failure on UP)"),
                K.BUG, "BUG: {0} {1} in {frame}", TRACE_ONLY, skip=("spin_", "_lock", "_unlock"),
            ),
            TitleRule(
                "soft-lockup", _re(r"BUG: soft lockup"), K.SOFT_LOCKUP, "BUG: soft lockup in {frame}",
                RIP_TRACE, extractor=Extractor.STALL,
            ),
            TitleRule(
                "locks-held", _re(r"BUG: .*still has locks held!"), K.LOCKDEP,
                "BUG: still has locks held in {0}", frame_arg=0, follow=(_re(r"{{PC}} +{{FUNC}}"),),
            ),
            TitleRule(
                "scheduling-while-atomic", _re(r"BUG: scheduling while atomic"), K.BUG,
                "BUG: scheduling while atomic in {frame}", TRACE_ONLY, skip=("schedule",),
            ),
            TitleRule(
                "lock-held-returning", _re(r"BUG: lock held when returning to user space"), K.LOCKDEP,
                "BUG: lock held when returning to user space in {0}", frame_arg=0,
                follow=(re.compile(r"leaving the kernel with locks still held"), _AT_FUNC), needs_stack=False,
            ),
            TitleRule(
                "bad-unlock-balance", _re(r"BUG: bad unlock balance detected!"), K.LOCKDEP,
                "BUG: bad unlock balance in {frame}", (_re(r"{{PC}} +{{FUNC}}"), _CALL_TRACE, TRACE),
            ),
            TitleRule(
                "held-lock-freed", _re(r"BUG: held lock freed!"), K.LOCKDEP, "BUG: held lock freed in {0}", frame_arg=0,
                follow=(_re(r"{{PC}} +{{FUNC}}"),),
            ),
            TitleRule("bad-rss", _re(r"BUG: Bad rss-counter state"), K.BUG, "BUG: Bad rss-counter state",
                      needs_stack=False),
            TitleRule("nr-ptes", _re(r"BUG: non-zero nr_ptes on freeing mm"), K.BUG,
                      "BUG: non-zero nr_ptes on freeing mm", needs_stack=False),
            TitleRule("nr-pmds", _re(r"BUG: non-zero nr_pmds on freeing mm"), K.BUG,
                      "BUG: non-zero nr_pmds on freeing mm", needs_stack=False),
            TitleRule(
                "dentry-in-use", _re(r"BUG: Dentry .* still in use \([0-9]+\) \[(unmount) of ([^\]]+)\]"),
                K.BUG, "BUG: Dentry still in use in {0}",
            ),
            TitleRule(
                "bad-page", _re(r"BUG: Bad page (state|cache)"), K.BUG, "BUG: Bad page {0} in {frame}",
                (re.compile(r"page last allocated"), TRACE),
                skip=("(free|put|get|update|release)_page", "free_unref", "^_*folio", "truncate_inode_pages",
                      "page_frag_free", "alloc", "vmap", "page_owner"),
            ),
            TitleRule("bad-page-map", _re(r"BUG: Bad page map"), K.BUG, "BUG: Bad page map"),
            TitleRule("workqueue-lockup", _re(r"BUG: workqueue lockup"), K.BUG, "BUG: workqueue lockup",
                      needs_stack=False),
            TitleRule(
                "sleeping-in-atomic", _re(r"BUG: sleeping function called from invalid context at (.*)"), K.BUG,
                "BUG: sleeping function called from invalid context in {frame}", TRACE_ONLY,
            ),
            TitleRule(
                "preemptible", _re(r"BUG: using ([a-z_]+)\(\) in preemptible"), K.BUG,
                "BUG: using {0}() in preemptible code in {frame}", TRACE_ONLY,
                skip=("dump_stack", "preemption", "preempt", "debug_", "processor_id", "this_cpu"),
            ),
            TitleRule(
                "workqueue-leak", _re(r"BUG: workqueue leaked lock or atomic"), K.BUG,
                "BUG: workqueue leaked lock or atomic in {0}", frame_arg=0,
                follow=(re.compile(r"last function: ([a-zA-Z0-9_]+)$"),), needs_stack=False,
            ),
            TitleRule(
                "memory-leak", _re(r"BUG: memory leak"), K.MEMORY_LEAK, "memory leak in {frame}",
                (re.compile(r"backtrace(?: \(crc [0-9a-fA-F]*\))?:"), TRACE),
                skip=("kmemleak", "mmap", "kmem", "slab", "alloc", "create_object", "idr_get", "list_lru_init",
                      "kasprintf", "kvasprintf", "pcpu_create", "strdup", "strndup", "memdup"),
            ),
            TitleRule(
                "stack-guard-page", _re(r"BUG: .*stack guard page was hit at"), K.STACK_GUARD_PAGE,
                "BUG: stack guard page was hit in {frame}", RIP_TRACE, extractor=Extractor.STALL,
            ),
            TitleRule(
                "invalid-wait-context", _re(r"BUG: Invalid wait context"), K.LOCKDEP,
                "WARNING: locking bug in {frame}", TRACE_ONLY, skip=("lock_sock", "release_sock"),
            ),
            TitleRule("nr-pgtables", _re(r"BUG: non-zero pgtables_bytes on freeing mm"), K.BUG,
                      "BUG: non-zero pgtables_bytes on freeing mm", needs_stack=False),  # kernel/fork.c:check_mm
            TitleRule("lockdep-limit", _re(r"BUG: (MAX_[A-Z_]+) too low!"), K.LOCKDEP, "BUG: {0} too low!",
                      needs_stack=False),  # kernel/locking/lockdep.c: a lockdep table ran full
            TitleRule("bug-empty", _re(r"BUG:\s*$"), K.BUG, "BUG: corrupted", corrupted=True),
        ),
        suppressions=(
            re.compile(r"ODEBUG:"), re.compile(r"Boot_DEBUG:"), re.compile(r"xlog_status:"),
            re.compile(r"DEBUG:"), re.compile(r"BUG: no syscalls can create resource"),
        ),
        kind=K.BUG,
    ),
    OopsGroup(
        "WARNING:",
        (
            _warning("odebug", r"WARNING: .*lib/debugobjects\.c.* (?:debug_print|debug_check|at)",
                     "WARNING: ODEBUG bug in {frame}", "debug_", "rcu", "hrtimer_", "timer_", "work_",
                     "percpu_", "vunmap", "vfree", "__free_", "debug_check", "kobject_"),
            _warning("usercopy-warn", r"WARNING: .*mm/usercopy\.c.* (?:usercopy_warn|at)",
                     "WARNING: bad usercopy in {frame}", "usercopy", "__check"),
            _warning("kobject", r"WARNING: .*lib/kobject\.c.* (?:kobject_|at)", "WARNING: kobject bug in {frame}",
                     "kobject_"),
            _warning("proc-register", r"WARNING: .*fs/proc/generic\.c.* (?:proc_register|at)",
                     "WARNING: proc registration bug in {frame}", "proc_"),
            _warning("refcount", r"WARNING: .*lib/refcount\.c.* (?:refcount_|at)", "WARNING: refcount bug in {frame}",
                     "refcount", "kobject_"),
            _warning("lockdep-warn", r"WARNING: .*kernel/locking/lockdep\.c.*lock_", "WARNING: locking bug in {frame}",
                     "lock_sock", "release_sock", kind=K.LOCKDEP),  # lockdep's own warning, as invalid-wait-context
            TitleRule(
                "warn-locks-held", _re(r"WARNING: .*still has locks held!"), K.LOCKDEP,
                "WARNING: still has locks held in {0}", frame_arg=0, follow=(_re(r"at: {{FUNC}}"),),
            ),
            _warning("nested-lock", r"WARNING: Nested lock was not taken", "WARNING: nested lock was not taken in {frame}"),
            TitleRule(
                "warn-lock-held-returning", _re(r"WARNING: lock held when returning to user space"), K.LOCKDEP,
                "WARNING: lock held when returning to user space in {0}", frame_arg=0,
                follow=(re.compile(r"leaving the kernel with locks still held"), _AT_FUNC), needs_stack=False,
            ),
            _warning("kmalloc", r"WARNING: .*mm/.*\.c.* k?.?malloc", "WARNING: kmalloc bug in {frame}",
                     "kmalloc", "krealloc", "slab", "kmem"),
            _warning("zero-vmalloc", r"WARNING: .*mm/vmalloc.c.*__vmalloc_node", "WARNING: zero-size vmalloc in {frame}"),
            _warning("usb-submit-urb", r"WARNING: .* usb_submit_urb", "WARNING in {frame}/usb_submit_urb",
                     "usb_submit_urb", "usb_start_wait_urb", "usb_bulk_msg", "usb_interrupt_msg", "usb_control_msg"),
            TitleRule(  # lib/list_debug.c without CONFIG_BUG_ON_DATA_CORRUPTION: a WARN, not a BUG
                "list-corruption-warn", _re(r"WARNING: .*lib/list_debug\.c"), K.LIST_CORRUPTION,
                "BUG: corrupted list in {frame}", _WARN_PARTS, TRACE_ONLY, ("list_", "__list"),
            ),
            _warning("warn-src-cpu", r"WARNING: {{SRC}} at 0x\d+, CPU#\d+", "WARNING in {frame}"),
            _warning("warn-at", r"WARNING: .* at {{SRC}} {{FUNC}}", "WARNING in {frame}"),
            _warning("warn-src-at", r"WARNING: {{SRC}} at {{FUNC}}", "WARNING in {frame}"),
            _warning("warn-bracket-src-at", r"WARNING: \[.*\] {{SRC}} at {{FUNC}}.*", "WARNING in {frame}"),
            TitleRule(
                "circular-locking", _re(r"WARNING: possible circular locking dependency detected"), K.LOCKDEP,
                "possible deadlock in {frame}", (_AT_FUNC, _AT_FUNC, TRACE),
                skip=("process_one_work", "flush_workqueue", "drain_workqueue", "destroy_workqueue"),
                follow=(re.compile(r"is trying to acquire lock"),),
            ),
            _lock_at(
                "irq-lock-inversion", r"WARNING: possible irq lock inversion dependency detected",
                r"just changed the state of lock",
            ),
            TitleRule(
                "lock-order", _re(r"WARNING: .*-safe -> .*-unsafe lock order detected"), K.LOCKDEP,
                "possible deadlock in {frame}", (re.compile(r"which became (?:.*) at:"), TRACE),
            ),
            _lock_at("recursive-locking", r"WARNING: possible recursive locking detected", r"is trying to acquire lock"),
            TitleRule(
                "inconsistent-lock", _re(r"WARNING: inconsistent lock state"), K.LOCKDEP,
                "inconsistent lock state in {frame}", TRACE_ONLY, follow=(re.compile(r"takes"), _AT_FUNC),
            ),
            TitleRule(
                "suspicious-rcu", _re(r"WARNING: suspicious RCU usage"), K.LOCKDEP,
                "WARNING: suspicious RCU usage in {frame}", TRACE_ONLY, skip=("rcu", "kmem", "slab"),
                follow=(_re(r"{{SRC}}"),),
            ),
            TitleRule(
                "stack-regs-bad", _re(r"WARNING: kernel stack regs at [0-9a-f]+ in [^ ]* has bad '([^']+)' value"),
                K.WARNING, "WARNING: kernel stack regs has bad '{0}' value", needs_stack=False,
            ),
            TitleRule(
                "stack-fp-bad", _re(r"WARNING: kernel stack frame pointer at [0-9a-f]+ in [^ ]* has bad value"),
                K.WARNING, "WARNING: kernel stack frame pointer has bad value", needs_stack=False,
            ),
            TitleRule(
                "warn-bad-unlock-balance", _re(r"WARNING: bad unlock balance detected!"), K.LOCKDEP,
                "WARNING: bad unlock balance in {frame}", (_re(r"{{PC}} +{{FUNC}}"), _CALL_TRACE, TRACE),
            ),
            TitleRule(
                "warn-held-lock-freed", _re(r"WARNING: held lock freed!"), K.LOCKDEP,
                "WARNING: held lock freed in {0}", frame_arg=0, follow=(_re(r"at:(?: {{PC}})? +{{FUNC}}"),),
            ),
            TitleRule("stack-regs-bp", _re(r"WARNING: kernel stack regs .* has bad 'bp' value"), K.WARNING,
                      "WARNING: kernel stack regs has bad value", needs_stack=False),
            TitleRule("stack-fp-value", _re(r"WARNING: kernel stack frame pointer .* has bad value"), K.WARNING,
                      "WARNING: kernel stack regs has bad value", needs_stack=False),
            TitleRule("warning-empty", _re(r"WARNING:\s*$"), K.WARNING, "WARNING: corrupted", corrupted=True),
        ),
        suppressions=(
            re.compile(r"WARNING: /etc/ssh/moduli does not exist, using fixed modulus"),
            re.compile(r"WARNING: workqueue cpumask: online intersect > possible intersect"),
            re.compile(r"WARNING: [Tt]he mand mount option"),
            re.compile(r"WARNING: Unsupported flag value\(s\) of 0x%x in DT_FLAGS_1"),
            re.compile(r"WARNING: Unprivileged eBPF is enabled with eIBRS"),
            re.compile(r"WARNING: fbcon: Driver '(.*)' missed to adjust virtual screen size"),
            re.compile(r"WARNING: See https.* for mitigation options."),
            re.compile(r"WARNING: kernel not compiled with CPU_SRSO"),
            re.compile(r"EXT4-[Ff][Ss](?: \(.*\))?:"),
            re.compile(r"(?i)warning: .* uses (deprecated v2 capabilities|wireless extensions)"),
            re.compile(r"XFS \(\w+\): WARNING"),
        ),
        kind=K.WARNING,
    ),
    OopsGroup(
        "INFO:",
        (
            _lock_at(
                "info-circular-locking", r"INFO: possible circular locking dependency detected",
                r"is trying to acquire lock", at=_AT_PC_FUNC,
            ),
            _lock_at(
                "info-irq-inversion", r"INFO: possible irq lock inversion dependency detected",
                r"just changed the state of lock", at=_AT_PC_FUNC,
            ),
            _lock_at(
                "info-lock-order", r"INFO: SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected",
                r"is trying to acquire", at=_AT_PC_FUNC,
            ),
            _lock_at(
                "info-recursive-locking", r"INFO: possible recursive locking detected",
                r"is trying to acquire lock", at=_AT_PC_FUNC,
            ),
            _lock_at(
                "info-inconsistent-lock", r"INFO: inconsistent lock state", r"takes",
                "inconsistent lock state in {0}", at=_AT_PC_FUNC,
            ),
            TitleRule(
                # The detecting CPU is the stalled one, so a `RIP:` right after the header is the
                # stall's own: x86 6.12 prints the interrupted registers (dump_cpu_task -> show_regs)
                # with no interrupt frame. Not for "detected stalls on CPUs/tasks", whose RIP lines
                # belong to other dumps (the RCU kthread's "Stack dump where ... last ran").
                "rcu-self-stall",
                _re(r"INFO: rcu_(?:preempt|sched|bh|tasks(?:_trace|_rude)?) self-detected(?: expedited)? stall"),
                K.RCU_STALL, "INFO: rcu detected stall in {frame}",
                (re.compile(r"apic_timer_interrupt"), _RIP_FRAME, TRACE),
                (re.compile(r"(?:apic_timer_interrupt|Exception stack|el1h_64_irq)"), TRACE),
                skip=("apic_timer_interrupt", "rcu"), extractor=Extractor.STALL,
                parts3=(_re(r"^(?:pc ?: |RIP: (?:[0-9a-f]{4}:)?){{FUNC}}"), _CALL_TRACE, TRACE),
            ),
            TitleRule(
                "rcu-stall", _re(r"INFO: rcu_(?:preempt|sched|bh|tasks(?:_trace|_rude)?) (?:self-)?detected(?: expedited)? stall"),
                K.RCU_STALL, "INFO: rcu detected stall in {frame}",
                (re.compile(r"apic_timer_interrupt"), _RIP_FRAME, TRACE),
                (re.compile(r"(?:apic_timer_interrupt|Exception stack|el1h_64_irq)"), TRACE),
                skip=("apic_timer_interrupt", "rcu"), extractor=Extractor.STALL,
                # Another CPU detected the stall and had the stalled one print its own registers
                # (`NMI backtrace for cpu N`: 5.10's nmi_cpu_backtrace -> show_regs, no interrupt
                # frame): that CPU's `RIP:` / arm64 `pc :` and trace.
                parts3=(re.compile(r"NMI backtrace for cpu \d+$"), _re(r"^(?:pc ?: |RIP: (?:[0-9a-f]{4}:)?){{FUNC}}"),
                        _CALL_TRACE, TRACE),
            ),
            TitleRule(
                "non-static-key", _re(r"INFO: trying to register non-static key"), K.LOCKDEP,
                "INFO: trying to register non-static key in {frame}", TRACE_ONLY, skip=("stack", "lock", "IRQ"),
            ),
            TitleRule(
                "info-suspicious-rcu", _re(r"INFO: suspicious RCU usage"), K.LOCKDEP,
                "INFO: suspicious RCU usage in {frame}", TRACE_ONLY, skip=("rcu", "kmem", "slab"),
                follow=(_re(r"{{SRC}}"),),
            ),
            TitleRule(
                "hung-task", _re(r"INFO: task .* blocked (?:in I/O wait )?for more than [0-9]+ seconds"), K.HUNG_TASK,
                "INFO: task hung in {frame}", TRACE_ONLY, extractor=Extractor.HUNG,
            ),
            TitleRule(
                "task-cant-die", _re(r"INFO: task .* can't die for more than .* seconds"), K.HUNG_TASK,
                "INFO: task can't die in {frame}", TRACE_ONLY, skip=("schedule",),
            ),
            TitleRule("kasan-legacy", _re(r"INFO: (Freed|Allocated) in (.*)"), K.KASAN, "INFO: {0} in {1}",
                      corrupted=True),
            TitleRule("info-empty", _re(r"INFO:\s*$"), K.UNKNOWN, "INFO: corrupted", corrupted=True),
        ),
        suppressions=(
            re.compile(r"INFO: lockdep is turned off"), re.compile(r"INFO: Stall ended before state dump start"),
            re.compile(r"INFO: NMI handler"), re.compile(r"INFO: recovery required on readonly filesystem"),
            re.compile(r"(handler|interrupt).*took too long"), re.compile(r"INFO: sys_.* is not present in /proc/kallsyms"),
            re.compile(r"INFO: no syscalls can create resource"), re.compile(r"rmt_storage:INFO:"), re.compile(r"_INFO:"),
        ),
    ),
    OopsGroup(
        "Unable to handle kernel",
        (
            TitleRule(
                "arm-null-deref", _re(r"Unable to handle kernel NULL pointer dereference"), K.NULL_DEREF,
                "BUG: unable to handle kernel NULL pointer dereference in {frame}", RIP_TRACE,
            ),
            TitleRule(
                "arm-unable-to-handle", _re(r"Unable to handle kernel (paging request|access to user memory)"),
                K.PAGING_REQUEST, "BUG: unable to handle kernel {0} in {frame}", RIP_TRACE,
            ),
            TitleRule(  # arch/arm64/mm/fault.c:die_kernel_fault, the other messages of __do_kernel_fault
                "arm-unable-to-handle-perm",
                _re(r"Unable to handle kernel (execute from non-executable memory|write to read-only memory"
                    r"|execution of user memory)"),
                K.PAGING_REQUEST, "BUG: unable to handle kernel {0} in {frame}", RIP_TRACE,
            ),
        ),
        kind=K.OOPS,
    ),
    OopsGroup(
        "general protection fault",
        (TitleRule("gpf", _re(r"general protection fault.*:"), K.GPF, "general protection fault in {frame}", RIP_TRACE),),
        suppressions=(re.compile(r"general protection fault .* error:\d+ in "),),  # user-space segfault log
        kind=K.GPF,
    ),
    OopsGroup(
        "stack segment: ",
        (TitleRule("stack-segment", _re(r"stack segment: "), K.GPF, "stack segment fault in {frame}", RIP_TRACE),),
    ),
    OopsGroup(
        "Kernel panic",
        (
            TitleRule(
                "stack-protector-func",
                _re(r"Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: {{FUNC}}"),
                K.STACK_PROTECTOR, "kernel panic: stack is corrupted in {0}", frame_arg=0, needs_stack=False,
            ),
            TitleRule(
                "stack-protector",
                _re(r"Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: [a-f0-9]+"),
                K.STACK_PROTECTOR, "kernel panic: stack is corrupted in {frame}", TRACE_ONLY, skip=("stack_chk",),
            ),
            TitleRule(
                "corrupted-stack-end", _re(r"Kernel panic - not syncing: corrupted stack end detected inside scheduler"),
                K.STACK_PROTECTOR, "kernel panic: corrupted stack end in {frame}", TRACE_ONLY,
                skip=("schedule", "retint_kernel"), extractor=Extractor.STALL,
            ),
            TitleRule(
                "stack-overflow", _re(r"Kernel panic - not syncing: kernel stack overflow"), K.STACK_GUARD_PAGE,
                "kernel stack overflow in {frame}", TRACE_ONLY, skip=("bad_stack",), extractor=Extractor.STALL,
            ),
            TitleRule("kill-init", _re(r"Kernel panic - not syncing: Attempted to kill init!"), K.PANIC,
                      "kernel panic: Attempted to kill init!"),
            TitleRule("n-tty", _re(r"Kernel panic - not syncing: Couldn't open N_TTY ldisc for [^ ]+ --- error -[0-9]+"),
                      K.PANIC, "kernel panic: Couldn't open N_TTY ldisc"),
            # These follow an oops/WARNING/hung-task report; seen alone, the report was lost.
            TitleRule("fatal-exception", _re(r"Kernel panic - not syncing: Fatal exception"), K.PANIC,
                      "kernel panic: Fatal exception", corrupted=True),
            TitleRule("panic-on-warn", _re(r"Kernel panic - not syncing: panic_on_warn set"), K.PANIC,
                      "kernel panic: panic_on_warn set", corrupted=True),
            TitleRule("hung-task-panic", _re(r"Kernel panic - not syncing: hung_task: blocked tasks"), K.PANIC,
                      "kernel panic: hung_task: blocked tasks", corrupted=True),
            TitleRule(  # arch/x86/kernel/cpu/mce/core.c:mce_panic, arm64_serror_panic: the hardware said so
                "mce-panic",
                _re(r"Kernel panic - not syncing: (Fatal (?:local )?machine check|Machine check.*"
                    r"|Timeout: Not all CPUs entered broadcast exception handler|Some CPUs didn't answer in synchronization"
                    r"|.*[Hh]ardware memory error.*|Memory error not recovered|Asynchronous SError Interrupt"
                    r"|NMI IOCK error: Not continuing|NMI: Not continuing)"),
                # Not "kernel panic: {0}": the title alone must tell its kind (TITLE_KINDS), and a
                # generic panic's title has that form.
                K.MACHINE_CHECK, "kernel panic: hardware error: {0}", needs_stack=False,
            ),
            TitleRule("oom-panic", _re(r"Kernel panic - not syncing: Out of memory(.*)"),
                      K.OUT_OF_MEMORY, "kernel panic: Out of memory{0}"),
            TitleRule("oom-deadlock", _re(r"Kernel panic - not syncing: System is deadlocked on memory"),
                      K.OUT_OF_MEMORY, "kernel panic: System is deadlocked on memory"),
            TitleRule("panic", _re(r"Kernel panic - not syncing: (.*)"), K.PANIC, "kernel panic: {0}"),
        ),
        kind=K.PANIC,
    ),
    OopsGroup(
        "PANIC: double fault",
        (TitleRule("double-fault", _re(r"PANIC: double fault"), K.DOUBLE_FAULT, "PANIC: double fault in {frame}",
                   RIP_ONLY),),
    ),
    OopsGroup(
        "kernel BUG",
        (
            TitleRule("usercopy", _re(r"kernel BUG at mm/usercopy.c"), K.KERNEL_BUG, "BUG: bad usercopy in {frame}",
                      TRACE_ONLY, skip=("usercopy", "__check")),
            TitleRule("list-corruption", _re(r"kernel BUG at lib/list_debug.c"), K.LIST_CORRUPTION,
                      "BUG: corrupted list in {frame}", TRACE_ONLY),
            TitleRule("kernel-bug", _re(r"kernel BUG at (.*)"), K.KERNEL_BUG, "kernel BUG in {frame}", RIP_TRACE,
                      skip=("^skb_",)),
        ),
        kind=K.KERNEL_BUG,
    ),
    OopsGroup("Kernel BUG", (TitleRule("ppc-kernel-bug", _re(r"Kernel BUG (.*)"), K.KERNEL_BUG, "kernel BUG {0}"),),
              kind=K.KERNEL_BUG),
    OopsGroup(
        "BUG kmalloc-",
        (TitleRule("slub-double-free", _re(r"BUG kmalloc-.*: Object already free"), K.BUG,
                   "BUG: Object already free"),),
    ),
    OopsGroup(
        "divide error:",
        (TitleRule("divide-error", _re(r"divide error: "), K.DIVIDE_ERROR, "divide error in {frame}", RIP_ONLY),),
    ),
    OopsGroup(
        "divide_error:",  # the 5.8-5.9 spelling
        (TitleRule("divide-error-5.8", _re(r"divide_error: "), K.DIVIDE_ERROR, "divide error in {frame}", RIP_ONLY),),
    ),
    OopsGroup(
        "invalid opcode:",
        (TitleRule("invalid-opcode", _re(r"invalid opcode: "), K.INVALID_OPCODE, "invalid opcode in {frame}",
                   RIP_ONLY),),
    ),
    OopsGroup(
        "UBSAN:",
        (
            TitleRule("ubsan-legacy", _re(r"UBSAN: Undefined behaviour in"), K.UBSAN,
                      "UBSAN: undefined-behaviour in {frame}", TRACE_ONLY, skip=("ubsan", "overflow")),
            TitleRule("ubsan-array-index", _re(r"UBSAN: array-index-out-of-bounds in"), K.UBSAN,
                      "UBSAN: array-index-out-of-bounds in {frame}", TRACE_ONLY, skip=("ubsan", "overflow")),
            TitleRule("ubsan", _re(r"UBSAN: (.*?) in"), K.UBSAN, "UBSAN: {0} in {frame}", TRACE_ONLY,
                      skip=("ubsan", "overflow")),
        ),
    ),
    OopsGroup(
        "Booting the kernel.",
        (TitleRule("reboot", _re(r"^Booting the kernel"), K.UNKNOWN, "unexpected kernel reboot", needs_stack=False),),
        suppressions=(re.compile(r"Parsing ELF|Decompressing Linux|Unknown parameter '"),),
    ),
    OopsGroup(
        "unregister_netdevice: waiting for",
        (TitleRule("netdev-refcount", _re(r"unregister_netdevice: waiting for (?:.*) to become free"), K.BUG,
                   "unregister_netdevice: waiting for DEV to become free", needs_stack=False),),
    ),
    OopsGroup(
        "VFS: Close: file count is 0",
        (TitleRule("vfs-file-count", _re(r"VFS: Close: file count is 0"), K.BUG,
                   "VFS: Close: file count is zero (use-after-free)", needs_stack=False),),
    ),
    OopsGroup(
        "VFS: Busy inodes after unmount",
        (TitleRule("vfs-busy-inodes", _re(r"VFS: Busy inodes after unmount"), K.BUG,
                   "VFS: Busy inodes after unmount (use-after-free)", needs_stack=False),),
    ),
    OopsGroup(
        "Internal error:",
        (TitleRule("arm-internal-error", _re(r"Internal error:"), K.OOPS, "Internal error in {frame}", RIP_TRACE),),
    ),
    OopsGroup(
        "Unhandled fault:",
        (TitleRule("arm-unhandled-fault", _re(r"Unhandled fault:"), K.OOPS, "Unhandled fault in {frame}", RIP_TRACE),),
    ),
    OopsGroup(
        "Alignment trap:",
        (TitleRule("arm-alignment-trap", _re(r"Alignment trap:"), K.OOPS, "Alignment trap in {frame}", RIP_TRACE),),
    ),
    OopsGroup(
        "trusty: panic",
        (
            TitleRule("trusty-assert", _re(r"trusty: panic \(.*?\):(?: DEBUG)? ASSERT FAILED at \(.*?\): (.+)"),
                      K.PANIC, "trusty: ASSERT FAILED: {0}", needs_stack=False),
            TitleRule("trusty-assert-cut", _re(r"trusty: panic.* ASSERT FAILED.*: *(.*)"), K.PANIC,
                      "trusty: ASSERT FAILED: {0}", corrupted=True),
            TitleRule("trusty-panic", _re(r"trusty: panic \(.*?\): (.+)"), K.PANIC, "trusty: panic: {0}",
                      needs_stack=False),
        ),
    ),
    # A Rust panic: the message is on the next line, the frame below the unwinding machinery.
    OopsGroup(
        "rust_kernel: panicked",
        (
            TitleRule(
                "rust-panic", re.compile(r"rust_kernel: panicked"), K.KERNEL_BUG, "{0} in {frame}", TRACE_ONLY,
                skip=(r"__rustc::rust_begin_unwind",), follow=(re.compile(r"^(\S.*)$"),),
            ),
        ),
        kind=K.KERNEL_BUG,
    ),
    # The fuzzer's own executor failures, printed into the same console stream.
    OopsGroup(
        "SYZFAIL:",
        (TitleRule("syzfail", re.compile(r"SYZFAIL: (.*)$"), K.UNKNOWN, "SYZFAIL: {0}", needs_stack=False),),
    ),
    OopsGroup(
        "SYZFATAL:",
        (TitleRule("syzfatal", re.compile(r"SYZFATAL: (.*)$"), K.UNKNOWN, "SYZFATAL: {0}", needs_stack=False),),
    ),
    # A Go program (a fuzzer, an agent) dying on the console: not the kernel, but a crash of
    # the machine's workload that the console shows, and syzbot files it as such.
    OopsGroup(
        "fatal error: ",
        (TitleRule("go-runtime", re.compile(r"^fatal error: "), K.UNKNOWN, "go runtime error", needs_stack=False),),
        suppressions=(re.compile(r"^(?!fatal error: )"),),
        confirm=re.compile(r"^(?:goroutine \d+ \[|runtime stack:)"),
    ),
    # Reports found by reading the kernel's printers (docs/log-parsing.md, "Every report the
    # kernel prints"); analysis.printers lists each printer with its fixture.
    OopsGroup(
        "Watchdog detected hard LOCKUP on cpu",  # kernel/watchdog_hld.c (6.1), kernel/watchdog.c (6.12)
        (TitleRule("hard-lockup", _re(r"Watchdog detected hard LOCKUP on cpu"), K.HARD_LOCKUP,
                   "BUG: hard lockup in {frame}", RIP_TRACE, extractor=Extractor.STALL),),
        kind=K.HARD_LOCKUP,
    ),
    OopsGroup(
        ": page allocation failure: order:",  # mm/page_alloc.c:warn_alloc
        (TitleRule("page-alloc-failure", _re(r": page allocation failure: order:"), K.WARNING,
                   "page allocation failure in {frame}", TRACE_ONLY,
                   skip=("^warn_alloc", "alloc_pages", "^_*kv?malloc", "^kmem_cache", "^__kmem", "slab_alloc",
                         "^(?:new|allocate|alloc)_slab", "^dump_stack", "__get_free_pages", "get_zeroed_page")),),
        kind=K.WARNING,
    ),
    OopsGroup(
        ": vmalloc error: size",  # mm/vmalloc.c:__vmalloc_area_node -> warn_alloc
        (TitleRule("vmalloc-failure", _re(r": vmalloc error: size"), K.WARNING, "vmalloc failure in {frame}",
                   TRACE_ONLY, skip=("^warn_alloc", "vmalloc", "^_*kvmalloc", "alloc_pages", "^dump_stack")),),
        kind=K.WARNING,
    ),
    OopsGroup(
        ": nobody cared",  # kernel/irq/spurious.c:__report_bad_irq
        (TitleRule("irq-nobody-cared", _re(r"irq \d+: nobody cared"), K.BUG, "irq: nobody cared in {0}", frame_arg=0,
                   follow=(re.compile(r"^handlers:"), _re(r"{{PC}} +([A-Za-z0-9_.]+)")), needs_stack=False),),
        suppressions=(re.compile(r"^(?!irq \d+: nobody cared \(try booting)"),),  # only the kernel's own sentence
        kind=K.BUG,
    ),
    OopsGroup(
        "NMI: IOCK error",  # arch/x86/kernel/nmi.c:io_check_error
        (TitleRule("nmi-iock", _re(r"NMI: IOCK error"), K.MACHINE_CHECK, "NMI: IOCK error", needs_stack=False),),
        kind=K.MACHINE_CHECK,
    ),
    OopsGroup(
        "NMI: PCI system error",  # arch/x86/kernel/nmi.c:pci_serr_error
        (TitleRule("nmi-serr", _re(r"NMI: PCI system error"), K.MACHINE_CHECK, "NMI: PCI system error (SERR)",
                   needs_stack=False),),
        kind=K.MACHINE_CHECK,
    ),
    OopsGroup(
        "NMI received for unknown reason",  # arch/x86/kernel/nmi.c:unknown_nmi_error
        (TitleRule("nmi-unknown", _re(r"NMI received for unknown reason"), K.MACHINE_CHECK,
                   "NMI received for unknown reason", needs_stack=False),),
        kind=K.MACHINE_CHECK,
    ),
    OopsGroup(
        "SError Interrupt on CPU",  # arch/arm64/kernel/traps.c:arm64_serror_panic
        (TitleRule("arm64-serror", _re(r"SError Interrupt on CPU"), K.MACHINE_CHECK, "SError Interrupt",
                   needs_stack=False),),
        kind=K.MACHINE_CHECK,
    ),
    OopsGroup(
        # arch/arm64/kernel/traps.c:panic_bad_stack (VMAP_STACK): ESR, FAR, the stacks, the registers
        # (`pc :` is where the stack ran out), then panic("kernel stack overflow") and its call
        # trace. Starting the report here keeps the registers in it: the RIP, its module, and
        # STALL_RIP_RULE's guilty frame when a module recursed (x86's "BUG: stack guard page").
        "Insufficient stack space to handle exception!",
        (TitleRule("arm64-bad-stack", _re(r"Insufficient stack space to handle exception!"), K.STACK_GUARD_PAGE,
                   "kernel stack overflow in {frame}", TRACE_ONLY, skip=("bad_stack",), extractor=Extractor.STALL),),
        kind=K.STACK_GUARD_PAGE,
    ),
    OopsGroup(
        "unreferenced object 0x",  # mm/kmemleak.c:print_unreferenced (debugfs, or the console when verbose)
        (TitleRule("kmemleak-object", _re(r"unreferenced object 0x"), K.MEMORY_LEAK, "memory leak in {frame}",
                   (re.compile(r"backtrace(?: \(crc [0-9a-fA-F]*\))?:"), TRACE),
                   skip=("kmemleak", "mmap", "kmem", "slab", "alloc", "create_object", "idr_get", "list_lru_init",
                         "kasprintf", "kvasprintf", "pcpu_create", "strdup", "strndup", "memdup"),
                   needs_stack=False),),
        kind=K.MEMORY_LEAK,
    ),
    # A bare "Oops:" (no BUG:/Unable to handle line before it: powerpc, old i386, truncated
    # logs). Inside a report it is that report's own oops line, never a new one.
    OopsGroup(
        "Oops",
        (
            TitleRule("int3", re.compile(r"Oops: int3: "), K.OOPS, "int3 in {frame}", RIP_TRACE),
            TitleRule("oops", re.compile(r"Oops(?::| -)"), K.OOPS, "Oops in {frame}", RIP_TRACE),
        ),
        suppressions=(re.compile(r"^(?!Oops(?::| -))"),),
    ),
)  # fmt: skip

ANCHOR_WORDS: tuple[str, ...] = tuple(g.anchor for g in OOPS_GROUPS)  # a line holding none starts no report
ANCHORS = re.compile(literal_trie(ANCHOR_WORDS))  # any group's anchor, one pass


_LITERAL_START = re.compile(r"^[^{]{3}")


_TEMPLATE_FIELD = re.compile(r"\{[^{}]*\}")


@dataclass(frozen=True, slots=True)
class TitleTemplate:
    """A rule's title template as a matcher over finished titles: each `{...}` field is any text.

    No regex: the literal pieces are looked up in order with str.find (the leftmost place of each
    is always a valid one), so a match is linear in the title whatever the template."""

    parts: tuple[str, ...]

    @classmethod
    def of(cls, template: str) -> TitleTemplate:
        return cls(tuple(_TEMPLATE_FIELD.split(template)))

    def matches(self, title: str) -> bool:
        if len(self.parts) == 1:
            return title == self.parts[0]
        first, *middle, last = self.parts
        if not title.startswith(first):
            return False
        pos = len(first)
        for piece in middle:
            found = title.find(piece, pos)
            if found < 0:
                return False
            pos = found + len(piece)
        return len(title) - len(last) >= pos and title.endswith(last)


# Title -> kind, one table for the whole parser: a row per rule title template, the most
# literal template first (`BUG: bad unlock balance in {frame}` before `BUG: {0} {1} in {frame}`).
# Templates that start with a field (`{0} in {frame}`: a Rust panic's message) say nothing about
# a title's kind and are left out.
# A rule's own report always gets the rule's kind; a report no rule recognises (the group's
# fallback: the header line itself as the title) is looked up here, so that a title written in
# a rule's form gets that rule's kind whoever produced it (tests/analysis/test_title_kinds.py
# checks every title the rules can produce and every title of the corpora).
TITLE_KINDS: tuple[tuple[TitleTemplate, CrashKind, str], ...] = tuple(
    (TitleTemplate.of(rule.title), rule.kind, rule.name)
    for rule in sorted(
        (rule for group in OOPS_GROUPS for rule in group.rules if _LITERAL_START.match(rule.title)),
        key=lambda rule: -len(_TEMPLATE_FIELD.sub("", rule.title)),
    )
)


def title_kind(title: str) -> CrashKind | None:
    """The kind TITLE_KINDS gives `title` (first row whose template matches), or None."""
    for template, kind, _name in TITLE_KINDS:
        if template.matches(title):
            return kind
    return None
