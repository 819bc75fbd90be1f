"""Kernel log -> crash records: find each report, cut it out, read every field it shows.

`parse_log(data)` is pure, linear in the input and never raises: garbage gives `[]`, a report
that lost its substance gives a record with `corrupted=True` and the reason.

How records in one log relate (see also docs/log-parsing.md):

* A report starts at a line carrying one of the anchors of `analysis.title.OOPS_GROUPS`
  ("BUG:", "WARNING:", "general protection fault", "kernel BUG at", "INFO: task ... blocked",
  "Kernel panic - not syncing" ...). It runs until the next report start, a reboot, the
  `---[ end Kernel panic` marker, a fault-injection/allocation-failure dump, or a size cap.
* Some headers continue the report they appear in instead of starting one: the
  `invalid opcode: 0000` after `kernel BUG at`, the `Oops: 0000 [#1]` after
  `BUG: unable to handle`, and above all `Kernel panic - not syncing: ...`. A panic line sets
  `panic_message` on the record it follows (its `related` says `panic-attached`); only a panic
  with no report before it becomes a record of its own (kind `panic`).
* Register dumps repeated after `---[ end trace ...` belong to the same record; the first
  (kernel-mode) dump is the one kept in `registers`/`rip`/`code_line`.
* A later crash in the same log is its own record, in log order; `related` marks repeats
  (`repeat-of:N`, same title as record N) and reports interleaved into another one's lines
  by another CPU (`during:N`).
* With CONFIG_PRINTK_CALLER (`[T123]`/`[C3]`), a record keeps only lines of the caller that
  printed its header, so interleaved CPUs do not mix their frames into it.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from analysis.bounds import decimal, fit_record
from analysis.logforms import LogForm, kernel_lines
from analysis.logtext import MAX_LINE_CHARS, LogLine, normalize_line
from analysis.model import (
    CallFrame,
    CrashKind,
    CrashRecord,
    PageFaultCode,
    Rip,
    SourceLocation,
    StackContext,
)
from analysis.prefilter import Prefilter
from analysis.taint import decode_taint
from analysis.title import (
    ANCHOR_WORDS,
    ANCHORS,
    CONFIRM_LINES,
    STACK_STARTS,
    OopsGroup,
    describe,
    is_continuation,
    match_anchor,
    sanitize_title,
)
from analysis.userfaults import FAULT_HINTS, count_user_faults, user_fault

__all__ = [
    "ARCH_EVIDENCE",
    "ARCH_HARDWARE_HINTS",
    "MAX_EXCERPT_CHARS",
    "MAX_RECORDS",
    "MAX_RECORD_LINES",
    "SCAN",
    "ParsedLog",
    "parse_kernel_log",
    "parse_log",
]

log = logging.getLogger(__name__)

MAX_RECORD_LINES = 1500  # a report longer than this is a log, not a report
MAX_EXCERPT_CHARS = 16 * 1024
MAX_RECORDS = 2000  # a log with more reports than this is a crash loop; the first ones tell the story
MAX_FRAMES = 256
# The kernel prints a report in one burst: a line this long after the report's previous one
# (printk time, or the syslog/journal header's) belongs to something later.
QUIET_GAP_SECONDS = 60.0
_END_OF_TRACE = "---[ end trace"  # after it, only the panic it ends in continues the report
_TAIL_LINES = 300  # how far past its end a report's caller is read for its title and trace check
_MAX_FOREIGN_RUN = 400  # consecutive lines of other CPUs after which a report is over
_TITLE_PANIC_CUT = 22  # syzbot convention: a panic this deep into a report is its aftermath
_TITLE_PANIC_CUT_KMSAN = 16  # KMSAN reports are shorter (no register dump)

# Lines after which the current report is over even though no new report starts.
_TERMINATORS = re.compile(
    r"vmalloc: allocation failure:|FAULT_INJECTION: forcing a failure|FAULT_FLAG_ALLOW_RETRY missing"
    r"|^Linux version \d|^Command line: "
)
_END_OF_PANIC = "---[ end Kernel panic"  # the last line a panicking kernel prints
_QUESTIONABLE = re.compile(r"(?:\[<[0-9a-f]+>\])? \? +[a-zA-Z0-9_.]+\+0x[0-9a-f]+/[0-9a-f]+|\(unreliable\)")
_REPLAY = "** replaying previous printk message **"
_LOCKDEP_OFF = "Disabling lock debugging due to kernel taint"
# arm64's panic_bad_stack prints its registers and then panics "kernel stack overflow": the call
# trace comes only after that panic, so it is the report's own, never aftermath.
_TITLE_CUT = re.compile(
    r"Kernel panic - not syncing(?!: kernel stack overflow$)|WARNING: possible circular locking dependency detected"
)

# --- field patterns -------------------------------------------------------------------------
_SYM = r"(?P<func>[A-Za-z_.$][\w.$]*)\+0x(?P<off>[0-9a-f]+)(?:/0x(?P<size>[0-9a-f]+))?(?:\s+\[(?P<mod>[\w-]+)\])?"
# `file:line` after a symbol: traces run through a symbolizer (syzkaller, decode_stacktrace.sh).
_SRC = r"(?:\s+(?P<file>[\w./+-]+):(?P<line>\d{1,7})(?::\d{1,5})?)?(?:\s+\[(?P<mod2>[\w-]+)\])?"
_X86_RIP = re.compile(
    r"^\s*(?:R|E)?IP:\s+(?:(?P<cs>[0-9a-f]{4}):)?(?:\[<?(?P<addr>[0-9a-f]*)>?\]\s*){0,2}"
    r"(?:" + _SYM + _SRC + r"|0x(?P<uaddr>[0-9a-f]+))?"
)
_OTHER_RIP: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^\s*pc\s?:\s+(?:\[<?(?P<addr>[0-9a-f]+)>?\]\s*)?" + _SYM), "arm64"),
    (re.compile(r"^\s*epc\s?:\s+(?:\[<?(?P<addr>[0-9a-f]+)>?\]\s*)?" + _SYM), "riscv64"),
    (re.compile(r"PC is at " + _SYM), "arm"),
    (re.compile(r"EIP is at " + _SYM), "i386"),  # before 3.x
    (re.compile(r"^\s*NIP\s+\[(?P<addr>[0-9a-f]+)\]\s+" + _SYM), "ppc64"),
    (re.compile(r"Krnl PSW : [0-9a-f]+ (?P<addr>[0-9a-f]+) \(" + _SYM + r"\)"), "s390x"),
)
_USER_CS = {"0033", "0023", "002b", "0073"}

# Which architecture printed a report, from lines only that architecture prints; the first rule
# in this order that any line of the report matches decides (a `PC is at` line alone says arm,
# but arm64 kernels before 4.10 print it too, beside x0..x30). Evaluated on stripped lines.
ARCH_EVIDENCE: tuple[tuple[str, str, str], ...] = (
    ("arm64-x-registers", r"^x(?:[12]\d|30)\s?: [0-9a-f]{16}\b", "arm64"),
    ("arm64-pstate", r"^(?:pc : \[<[0-9a-f]{16}>\].*)?pstate: [0-9a-f]{8}\b", "arm64"),
    ("arm64-pc", r"^(?:pc|lr) : (?:\[<|0x)?[0-9a-f]{16}\b", "arm64"),
    ("arm64-abort-info", r"^(?:Mem abort info:|ESR = 0x[0-9a-f]+$)", "arm64"),
    ("arm64-internal-error", r"^Internal error: .*: [0-9a-f]{16} \[#\d+\]", "arm64"),
    ("arm-registers", r"^r10\s?: [0-9a-f]{8} ", "arm"),
    ("arm-psr", r"^pc : \[<[0-9a-f]{8}>\]\s+lr : \[<[0-9a-f]{8}>\]\s+psr: ", "arm"),
    ("arm-oops-flags", r"^Internal error: .*\[#\d+\].*\b(?:ARM|THUMB2)$", "arm"),
    ("arm-mode-flags", r"^Flags: [nN][zZ][cC][vV]\s+IRQs o", "arm"),
    ("x86_64-registers", r"^(?:RAX|RBX|R8 ?|R1[0-5]): [0-9a-f]{16}\b", "x86_64"),
    ("i386-registers", r"^(?:EAX|EBX): [0-9a-f]{8}\b", "i386"),
    ("ppc64-registers", r"^(?:GPR\d\d: |NIP:\s+[0-9a-f]+\s+LR:|NIP \[[0-9a-f]+\]|MSR:\s+[0-9a-f]+ <)", "ppc64"),
    ("s390x-psw", r"^Krnl (?:PSW|GPRS|Code)\s?:", "s390x"),
    ("riscv64-registers", r"^(?:epc\s?: |status: [0-9a-f]+ badaddr: )", "riscv64"),
)
# Weaker hints, used only when no line above and no RIP/PC line named the architecture.
ARCH_HARDWARE_HINTS: tuple[tuple[str, str], ...] = (
    (r"riscv|[Ss]i[Ff]ive|[Ss]tar[Ff]ive", "riscv64"),
    (r"\(DT\)$|QEMU KVM Virtual Machine", "arm64"),  # arm64 appends " (DT)" to the model name
    (r"ARM-|Generic DT based system", "arm"),  # arm32 machine descriptors
    (r"pSeries|PowerNV|POWER\d", "ppc64"),
    (r"^IBM \d{4}\b", "s390x"),
)
_ARCH_EVIDENCE_RE = re.compile("|".join(f"(?P<e{n}>{p})" for n, (_, p, _) in enumerate(ARCH_EVIDENCE)))
_ARCH_HINT_RES = tuple((re.compile(p), arch) for p, arch in ARCH_HARDWARE_HINTS)
_FRAME = re.compile(
    r"^\s*(?:\[\s*<?(?:0x)?(?P<pc>[0-9a-f]*)>?\]\s*){0,2}(?P<q>\?\s+)?\(?" + _SYM + _SRC
)
# A symbolizer's inlined call: no address or offset of its own, just where it sits in the source.
_INLINE_FRAME = re.compile(
    r"^\s*(?P<func>[A-Za-z_.$][\w.$]*)\s+(?P<file>[\w./+-]+):(?P<line>\d{1,7})(?::\d{1,5})?"
    r"\s+\[inline\]\s*$"
)
_ARM_FRAME = re.compile(
    r"^\s*\[<(?P<pc>[0-9a-f]+)>\]\s+\((?P<func>[A-Za-z_.$][\w.$]*)(?:\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+))?"
    r"(?:\s+\[(?P<mod>[\w-]+)\])?\)\s+from"
)
# arm's unwinder prints the registers each function saved under its frame: ` r6:00000004 r5:c2d5e900`.
_ARM_SAVED_REGS = re.compile(r"^r\d{1,2}:[0-9a-f]{8}(?:\s+r\d{1,2}:[0-9a-f]{8})*$")
# A trace survives this many consecutive lines that are not frames (another subsystem's printk
# landing between two frames, powerpc's `--- interrupt:` line) unless one of them ends it.
_TRACE_GAP = 2
_TRACE_END = re.compile(
    r"^(?:---\[ end|={10}|Modules linked in|Kernel panic|Kernel Offset|Rebooting|Dumping ftrace"
    r"|irq event stamp|Last Breaking-Event|Exception stack|Instruction dump|Stack:)"
)
_CONTEXT_MARK = re.compile(r"^\s*<(/?)(IRQ|NMI|TASK|SOFTIRQ|EOI|#[A-Z]{2})>\s*$")
_CONTEXTS = {"IRQ": StackContext.IRQ, "NMI": StackContext.NMI, "TASK": StackContext.TASK,
             "SOFTIRQ": StackContext.SOFTIRQ}  # fmt: skip
_X86_REG_LINE = re.compile(r"^\s*(?!REGS:)(?:R[A-Z0-9]{1,3}|E[A-Z]{2,5}|FS|GS|CS|DS|ES|SS|CR\d|DR\d|PKRU|ORIG_RAX):")
_X86_REG = re.compile(r"\b([A-Za-z][A-Za-z0-9_]{1,7}):\s{0,2}(?:([0-9a-f]{4}):)?([0-9a-f]{4,16})\b")
_R0X = re.compile(r"^r0(\d)$")
# arm64 x0-x30, riscv ABI names, arm r0-r10/ip/fp/psr: lower-case "name : value" pairs.
_LOWER_NAMES = r"x\d{1,2}|r\d{1,2}|sp|fp|ip|lr|pc|epc|psr|pstate|ra|gp|tp|t\d|s\d{1,2}|a\d|status|badaddr|cause"
_LOWER_REG_LINE = re.compile(r"^\s*(?:" + _LOWER_NAMES + r")\s?:\s")
# `pc : [<ffff..>]` (arm, arm64 < 4.10), `pc : 0xffff..` (arm64 %pS of an unknown address), `x9 : ffff..`.
_LOWER_REG = re.compile(r"\b(" + _LOWER_NAMES + r")\s?:\s+(?:\[<|0x)?([0-9a-f]{8,16})\b")
_CODE = re.compile(r"^\s*Code:\s*(.*)$")
# A bare byte/word may not be followed by another hex digit: else a long hex run splits into
# tokens in exponentially many ways before `$` fails (42 digits took 15 s).
_CODE_CONT = re.compile(r"^\s+(?:(?:[0-9a-f]{2,8}(?![0-9a-f])|<[0-9a-f]{2,8}>|\([0-9a-f]{2,8}\))\s*)+$")
# powerpc prints its code words under a header line, the NIP word marked `<..>`.
_PPC_CODE = re.compile(r"^\s*Instruction dump:\s*$")
_PPC_CODE_CONT = re.compile(r"^\s*(?:(?:[0-9a-f]{8}|<[0-9a-f]{8}>|X{8})\s*)+$")
# s390 disassembles it itself: `Krnl Code: 000003ff802a1c60: e31020080004  lg %r1,8(%r2)`, then
# one instruction a line, `>` at the PSW address and `#` before it.
_S390_CODE = re.compile(r"^\s*Krnl Code\s?:\s*([#>]?[0-9a-f]{8,16}: .*)$")
_S390_CODE_CONT = re.compile(r"^\s+[#>]?[0-9a-f]{8,16}: [0-9a-f]{4}")
# Registers that have no x86 counterpart: powerpc `GPR08: <4 or 8 values>` and its named
# registers, s390 `Krnl GPRS:` (r0..r15, four a line).
_PPC_GPR = re.compile(r"^\s*GPR(\d\d):((?:\s+[0-9a-f]{8,16}){1,8})\s*$")
_PPC_NAMED = re.compile(r"\b(NIP|LR|CTR|MSR|CR|XER|CFAR|DAR|DSISR|DEAR|ESR|SOFTE|IRQMASK|TRAP):\s+([0-9a-f]+)\b")
_S390_GPRS = re.compile(r"^\s*Krnl GPRS:((?:\s+[0-9a-f]{16}){4})\s*$")
_S390_GPRS_CONT = re.compile(r"^\s+((?:[0-9a-f]{16}\s+){3}[0-9a-f]{16})\s*$")
_TAINT = r"(?:Not tainted|Tainted: (?P<taint>[A-Z \-]{0,64}?))"  # RHEL pads its taint string with dashes
_CPU_LINE = re.compile(
    r"CPU: (?P<cpu>\d+) (?:UID: \d+ )?PID: (?P<pid>\d+) Comm: (?P<comm>\S(?:.*?\S)?)\s+(?:Kdump: loaded\s+)?" + _TAINT
    + r"\s{1,64}(?P<rel>\d\S*)(?:\s+(?P<build>.*))?$"
)
_PID_LINE = re.compile(
    r"^Pid: (?P<pid>\d+), comm: (?P<comm>\S+)\s+" + _TAINT
    + r"\s{0,64}(?=\(?\d|#\d)\(?(?:(?P<rel>\d[^\s)]*)\s*)?(?P<build>#\d+)?\)?\s*(?P<hw>.*)$"
)
_OLD_CPU = re.compile(r"^CPU (\d+)\s*$")
_PROCESS = re.compile(r"^Process (\S+) \(pid: (\d+),")
_HARDWARE = re.compile(r"Hardware name: (.*)$")
_MODULES = re.compile(r"Modules linked in:(.*)$")
_MODULE_TOKEN = re.compile(r"^([\w-]+)(?:\(([A-Z+\-]+)\))?$")
_LAST_UNLOADED = re.compile(r"\[last unloaded: ([^\]]+)\]")
_HEAD_LINES = 60  # the oops line and the fault address come within this many lines of the header
_OOPS_NUMBER = re.compile(r"\[#(\d{1,6})\](.*)$")
_OOPS_CODE = re.compile(r"(?<!sig): ([0-9a-f]{1,16}) \[#")  # not powerpc's "sig: 11 [#1]"
_X86_PF_OOPS = re.compile(r"Oops: [0-9a-f]{4} \[#")  # x86 page-fault oops: the code is the #PF error code
_PF_ERROR = re.compile(r"#PF: error_code\(0x([0-9a-f]+)\)")
_PANIC = re.compile(r"Kernel panic - not syncing: ?(.*)$")
_FAULT_ADDR = (
    re.compile(
        r"(?:NULL pointer dereference|paging request|page fault for address|data access|access to user memory)"
        r"(?: on (?:read|write|execute))?"  # powerpc 5.x
        r"(?: at virtual address| for data at address| at|,? address:?|:)\s*(?:0x)?([0-9a-f]{1,16})\b"
    ),
    re.compile(r"^Failing address: ([0-9a-f]+)"),  # s390
    re.compile(r"probably for non-canonical address 0x([0-9a-f]+)"),
    re.compile(r"(?:Read|Write) (?:of size \d+ )?at addr ([0-9a-f]+)"),
    re.compile(r"KASAN: null-ptr-deref in range \[0x([0-9a-f]+)"),
    re.compile(r"^FAR: 0x([0-9a-f]{1,16})$"),  # arm64 panic_bad_stack: the access below the stack
)
# arm64 panic_bad_stack's syndrome (`ESR: 0x0000000096000047 -- DABT (current EL)`): no `[#N]` oops line.
_ESR_LINE = re.compile(r"^ESR: 0x([0-9a-f]{1,16}) -- ")
_REASON_TAIL = re.compile(r"(?:,? (?:address|at|at virtual address):? ADDR| at ADDR)$")

# Every literal a line must hold for a stage after kernel_lines to look at it closer, found by
# one scan of the whole log (analysis.prefilter): a report's anchor (a header line, then judged
# by match_anchor) and a user-space fault's hint (then judged by the USER_FAULT_RULES). The
# stages run their own checks on the lines it passes, so it narrows and never decides.
SCAN = Prefilter("report-starts-and-user-faults", ANCHOR_WORDS + FAULT_HINTS)

_OTHER_SOURCE = "-"  # the caller id of a line another program wrote: never the same context as a report's


@dataclass(slots=True)
class _Lines:
    """Lazily normalized view of the raw lines: each line is normalized at most once.

    Lines the kernel did not write (`kernel[i]` False, see analysis.logforms) read as empty
    lines of a caller no report has, so a report steps over them like over another CPU's lines.
    """

    raw: list[str]
    cache: list[LogLine | None]
    kernel: list[bool]

    def get(self, i: int) -> LogLine:
        line = self.cache[i]
        if line is None:
            if self.kernel[i]:
                line = normalize_line(self.raw[i], i)
            else:
                line = LogLine(index=i, text="", caller=_OTHER_SOURCE)
            self.cache[i] = line
        return line


@dataclass(frozen=True, slots=True)
class ParsedLog:
    """A log's crash records and what was read to find them."""

    records: list[CrashRecord]
    form: LogForm  # the input form analysis.logforms detected
    skipped_lines: int  # lines other programs wrote, not read
    user_faults: dict[str, int]  # user-space faults the kernel reported, per program (analysis.userfaults)


@dataclass(slots=True)
class _Window:
    start: _Start
    members: list[int]  # line indexes of the record (its caller's lines only)
    end: int  # first line index after the record
    title_view: list[int]  # the lines the title is computed from
    check_view: list[int]  # the lines that tell whether a call trace ever arrived


@dataclass(slots=True)
class _Start:
    index: int
    group: OopsGroup
    continues: bool  # a header that continues an open report rather than starting one


def _context(line: LogLine) -> tuple[bool, str | None]:
    return (line.prefixed, line.caller)


def parse_log(data: bytes | str) -> list[CrashRecord]:
    """Every crash report in a kernel log, in log order. Never raises on any input."""
    return parse_kernel_log(data).records


def parse_kernel_log(data: bytes | str) -> ParsedLog:
    """`parse_log` with the log's form, the count of other programs' lines skipped and the
    user-space faults counted. Never raises on any input."""
    try:
        view = kernel_lines(data)
    except Exception:
        log.exception("event=parse_failed reason=internal-error stage=log-form")
        return ParsedLog([], LogForm.CONSOLE, 0, {})
    candidates: list[int] | None = None
    try:
        candidates = SCAN.lines(view.lines, view.source)  # one scan serves both the report starts and the user faults
        records = _parse_lines(view.lines, view.kernel, view.times, candidates)
    except Exception:  # a parser bug must not take the agent down; say so and carry on
        log.exception("event=parse_failed reason=internal-error")
        records = []
    return ParsedLog(records, view.form, view.skipped, count_user_faults(view.lines, candidates))


def _find_starts(lines: _Lines, candidates: list[int]) -> list[_Start]:
    """The report starts among `candidates` (ascending line indexes that may hold an anchor)."""
    starts: list[_Start] = []
    for i in candidates:
        if ANCHORS.search(lines.raw[i], 0, MAX_LINE_CHARS) is None:
            continue
        if i + 1 < len(lines.raw) and _REPLAY in lines.raw[i + 1]:
            continue  # printk cut this line short and prints it again next
        text = lines.get(i).text
        group = match_anchor(text)
        if group is None:
            continue
        if user_fault(text) is not None:
            continue  # the kernel reporting a user-space program's fault: not a kernel crash
        if group.confirm is not None and not _confirmed(lines, i, group.confirm):
            continue
        starts.append(_Start(i, group, is_continuation(text)))
    return starts


def _confirmed(lines: _Lines, i: int, pattern: re.Pattern[str]) -> bool:
    end = min(len(lines.raw), i + 1 + CONFIRM_LINES)
    return any(pattern.search(lines.get(j).text) for j in range(i + 1, end))


def _parse(data: bytes | str) -> list[CrashRecord]:
    """`parse_log` without its safety net (tests call this to see a parser bug's exception)."""
    view = kernel_lines(data)
    return _parse_lines(view.lines, view.kernel, view.times)


def _parse_lines(
    raw: list[str], kernel: list[bool], times: list[float | None] | None = None, candidates: list[int] | None = None
) -> list[CrashRecord]:
    """The records of kernel lines; `candidates` are SCAN's lines of `raw` when the caller has them."""
    lines = _Lines(raw, [None] * len(raw), kernel)
    starts = _find_starts(lines, SCAN.lines(raw) if candidates is None else candidates)
    if not starts:
        return []
    start_at = {s.index: s for s in starts}
    windows: list[_Window] = []
    consumed: set[int] = set()
    budget = 8 * len(raw) + 100_000  # total lines walked; keeps hostile logs linear
    for s in starts:
        if len(windows) >= MAX_RECORDS:
            log.warning("event=record_cap records=%d reason=more-reports-than-cap", MAX_RECORDS)
            break
        if s.index in consumed:
            continue
        if s.continues and any(w.members[0] <= s.index < w.end for w in windows[-4:]):
            continue  # e.g. a panic from another CPU inside an open report: it belongs there
        header = lines.get(s.index)
        ctx = _context(header)
        members = [s.index]
        end = s.index + 1
        foreign = 0
        limit = min(len(raw), s.index + MAX_RECORD_LINES)
        last_time = _time_of(header, times)
        traced_out = False  # the report printed its `---[ end trace` line
        while end < limit and budget > 0:
            budget -= 1
            line = lines.get(end)
            same = _context(line) == ctx
            nxt = start_at.get(end)
            if nxt is not None and same and (not nxt.continues or (traced_out and not _PANIC_START.search(line.text))):
                break  # a new report; a die() header after the end-of-trace line is one too (oops #2)
            if same:
                when = _time_of(line, times)
                if when is not None:
                    if last_time is not None and when - last_time > QUIET_GAP_SECONDS:
                        break
                    last_time = when
                if _TERMINATORS.search(line.text):
                    break
                traced_out = traced_out or _END_OF_TRACE in line.text
                members.append(end)
                if nxt is not None:
                    consumed.add(end)
                foreign = 0
                end += 1
                if _END_OF_PANIC in line.text:
                    break
            else:
                foreign += 1
                end += 1
                if foreign > _MAX_FOREIGN_RUN:
                    break
        # What follows the record in its caller's lines. With caller ids, the title reads on
        # through later reports of that task (syzbot does the same: a second crash of one task
        # is the first one's aftermath); without them, it only tells whether a call trace
        # arrived after an interleaved report, i.e. whether this one is really cut short.
        tail: list[int] = []
        j = end
        tail_limit = min(limit, end + _TAIL_LINES)
        while j < tail_limit and budget > 0:
            budget -= 1
            if _context(lines.get(j)) == ctx:
                tail.append(j)
            j += 1
        check = members + tail
        view = check if ctx[1] is not None else members
        windows.append(_Window(s, members, end, view, check))
    records = [_build(lines, w, n, windows) for n, w in enumerate(windows)]
    _relate(records)
    return records


_PANIC_START = re.compile(r"Kernel panic - not syncing")


def _time_of(line: LogLine, times: list[float | None] | None) -> float | None:
    """A line's time: its transport header's when the form has one, else its printk timestamp."""
    if times is not None:
        when = times[line.index]
        if when is not None:
            return when
    return line.timestamp


def _title_lines(lines: _Lines, members: list[int]) -> list[str]:
    """The report as syzbot reads it: no `? func` guesses, no panic aftermath deep in the report."""
    out: list[str] = []
    cut = _TITLE_PANIC_CUT_KMSAN if "BUG: KMSAN:" in lines.get(members[0]).text else _TITLE_PANIC_CUT
    for k, i in enumerate(members):
        line = lines.get(i)
        if k == 0:
            out.append(line.text)
            continue
        if line.prefixed and _QUESTIONABLE.search(line.text) and "<EOI>" not in line.text:
            continue
        if _LOCKDEP_OFF in line.text or _REPLAY in line.text:
            continue
        if len(out) > cut and _TITLE_CUT.search(line.text):
            break
        out.append(line.text)
    return out


def _build(lines: _Lines, w: _Window, n: int, windows: list[_Window]) -> CrashRecord:
    s, members, end = w.start, w.members, w.end
    texts = [lines.get(i).text for i in members]
    # With caller ids both views are one list: filter it once (describe's check_lines defaults to lines).
    check = None if w.check_view is w.title_view else _title_lines(lines, w.check_view)
    result = describe(s.group, _title_lines(lines, w.title_view), check)
    header = texts[0]
    at = header.find(s.group.anchor)
    reason = header[at:].strip() if at >= 0 else header.strip()
    rec = CrashRecord(
        kind=result.kind,
        reason=reason,
        normalized_reason=_normalize_reason(reason),
        title=result.title,
        guilty_frame=result.guilty_frame,
        corrupted=result.corrupted_reason is not None,
        corrupted_reason=result.corrupted_reason,
        first_line=members[0],
        last_line=members[-1],
    )
    _read_fields(rec, texts)
    # A panic printed by another CPU inside this report's span still ends this report.
    if rec.panic_message is None:
        for i in range(members[0] + 1, min(end, len(lines.raw))):
            if "Kernel panic - not syncing" in lines.raw[i]:
                m = _PANIC.search(lines.get(i).text)
                if m:
                    rec.panic_message = m.group(1).strip()
                    break
    if rec.panic_message is not None and rec.kind is not CrashKind.PANIC and rec.kind is not CrashKind.OUT_OF_MEMORY:
        rec.related = (*rec.related, "panic-attached")
    for k in range(max(0, n - 4), n):
        if windows[k].start.index < members[0] < windows[k].members[-1]:
            rec.related = (*rec.related, f"during:{k}")
    excerpt = "\n".join(texts)
    rec.excerpt = excerpt[:MAX_EXCERPT_CHARS]
    return fit_record(rec)  # a number past what its field holds is corruption: named, left out


def _normalize_reason(reason: str) -> str:
    """The reason with run-specific numbers replaced and a trailing fault address dropped."""
    text = sanitize_title(reason[:512])
    return _REASON_TAIL.sub("", text).rstrip(" ,:")


def _relate(records: list[CrashRecord]) -> None:
    first_by_title: dict[str, int] = {}
    for n, rec in enumerate(records):
        prior = first_by_title.get(rec.title)
        if prior is None:
            first_by_title[rec.title] = n
        else:
            rec.related = (*rec.related, f"repeat-of:{prior}")


def _int(text: str | None) -> int | None:
    return int(text, 16) if text else None


def _printed_source(m: re.Match[str]) -> tuple[SourceLocation, ...]:
    """The `file:line` a symbolizer printed after the symbol, as the one known source level."""
    groups = m.groupdict()
    if not groups.get("file"):
        return ()
    return (SourceLocation(function=m.group("func"), file=groups["file"], line=int(groups["line"])),)


def _module(m: re.Match[str]) -> str | None:
    groups = m.groupdict()
    return groups.get("mod") or groups.get("mod2")


def _rip_from(m: re.Match[str]) -> Rip:
    addr = m.groupdict().get("addr")
    return Rip(
        function=m.group("func"),
        offset=_int(m.group("off")),
        size=_int(m.group("size")),
        module=_module(m),
        address=_int(addr) if addr else None,
        source=_printed_source(m),
    )


def _read_fields(rec: CrashRecord, texts: list[str]) -> None:
    """One pass over the report lines filling every field the text shows (first value wins)."""
    reader = _FieldReader(rec)
    for k, text in enumerate(texts):
        reader.feed(k, text)
    reader.finish()


class _FieldReader:
    """The state of one pass over a report: open trace, wrapped Code: line, module list."""

    def __init__(self, rec: CrashRecord) -> None:
        self.rec = rec
        self.trace: list[CallFrame] = []
        self.trace_state = 0  # 0 before the first trace, 1 inside it, 2 after it
        self.trace_gap = 0  # consecutive non-frame lines inside the open trace
        self.context = StackContext.UNKNOWN
        self.code_parts: list[str] | None = None
        self.code_cont = _CODE_CONT  # what continues the open code block
        self.s390_gpr = -1  # the next s390 GPR number a continuation line holds, -1 when none is open
        self.modules: list[str] = []
        self.modules_seen = False
        self.modules_open = False
        self.prev_user_rip = False
        self.arch: str | None = None  # what the RIP/PC line's format implies
        self.evidence = len(ARCH_EVIDENCE)  # index of the strongest ARCH_EVIDENCE rule seen

    def feed(self, k: int, text: str) -> None:
        stripped = text.strip()
        if self.code_parts is not None:
            if self.code_cont.match(text):
                self.code_parts.append(stripped)
                return
            self._close_code()
        if self.s390_gpr >= 0:
            gm = _S390_GPRS_CONT.match(text) if self.s390_gpr < 16 else None
            self.s390_gpr = self._numbered_registers(self.s390_gpr, gm.group(1)) if gm else -1
            if gm:
                return
        if self.modules_open:
            if text[:1].isspace() and stripped and _add_modules(self.rec, self.modules, stripped):
                return
            self.modules_open = False
        if self.trace_state < 2 and self._trace_line(text, stripped):
            return
        if self.evidence:
            em = _ARCH_EVIDENCE_RE.match(stripped)
            if em and em.lastgroup:
                self.evidence = min(self.evidence, int(em.lastgroup[1:]))
        user_rip = self._rip_line(stripped)
        self._code_line(stripped)
        self.prev_user_rip = user_rip
        if self._identity_line(stripped):
            return
        self._other_line(k, stripped)

    def finish(self) -> None:
        rec = self.rec
        self._close_code()
        rec.modules = tuple(self.modules)
        rec.call_trace = tuple(self.trace)
        rec.arch = self._arch()
        rec.taint_flags = decode_taint(rec.tainted)
        if rec.fault_address is None and rec.kind in (CrashKind.NULL_DEREF, CrashKind.PAGING_REQUEST):
            rec.fault_address = rec.registers.get("cr2")

    def _arch(self) -> str:
        """ARCH_EVIDENCE first, then the RIP/PC line's format, then the hardware name, else x86_64."""
        if self.evidence < len(ARCH_EVIDENCE):
            return ARCH_EVIDENCE[self.evidence][2]
        if self.arch is not None:
            return self.arch
        hardware = self.rec.hardware or ""
        return next((arch for pattern, arch in _ARCH_HINT_RES if pattern.search(hardware)), "x86_64")

    def _close_code(self) -> None:
        if self.code_parts is not None:
            if self.code_parts:
                self.rec.code_line = " ".join(self.code_parts)
            self.code_parts = None

    def _trace_line(self, text: str, stripped: str) -> bool:
        """Collect frames of the first call trace; True when the line was consumed."""
        if any(p.search(stripped) for p in STACK_STARTS):
            if self.trace_state == 0:
                self.trace_state = 1
                self.context = StackContext.UNKNOWN
                return True
            if self.trace:
                self.trace_state = 2
                return False
        if self.trace_state != 1:
            return False
        mark = _CONTEXT_MARK.match(text)
        if mark:
            closing, name = mark.group(1), mark.group(2)
            if closing or name == "EOI":  # back on the stack that was interrupted
                self.context = StackContext.TASK if name in ("IRQ", "SOFTIRQ", "NMI", "EOI") else StackContext.UNKNOWN
            else:
                self.context = _CONTEXTS.get(name, StackContext.EXCEPTION)
            return True
        frame = _parse_frame(stripped, self.context)
        if frame is not None:
            if len(self.trace) < MAX_FRAMES:
                self.trace.append(frame)
            self.trace_gap = 0
            return True
        # Register dumps and Code: lines of nested exception frames sit inside a trace.
        if self.trace and stripped and not (
            _X86_REG_LINE.match(stripped) or _X86_RIP.match(stripped) or _CODE.match(stripped)
            or _LOWER_REG_LINE.match(stripped) or _ARM_SAVED_REGS.match(stripped) or _S390_CODE.match(stripped)
        ):
            self.trace_gap += 1
            if self.trace_gap > _TRACE_GAP or _TRACE_END.match(stripped):
                self.trace_state = 2
        return False

    def _rip_line(self, stripped: str) -> bool:
        """RIP/EIP/pc/PC is at/NIP/epc/PSW lines and their registers; True for a user-mode RIP."""
        rec = self.rec
        m = _X86_RIP.match(stripped)
        if m and (m.group("cs") or m.group("func") or m.group("addr") or m.group("uaddr")):
            eip = stripped.startswith("EIP")
            cs = m.group("cs")
            if cs in _USER_CS or (m.group("uaddr") and cs not in (None, "0010", "0060")):
                return True
            addr = m.group("addr") or ""
            if m.group("func") and rec.rip is None:
                rec.rip = _rip_from(m)
                self.arch = self.arch or ("i386" if eip or len(addr) == 8 else "x86_64")
            if addr:
                rec.registers.setdefault("eip" if eip else "rip", int(addr, 16))
            if eip:
                self.arch = self.arch or "i386"
                _x86_registers(rec, stripped, skip_first=True)
            return False
        if rec.rip is None:
            for pattern, rip_arch in _OTHER_RIP:
                om = pattern.search(stripped)
                if om:
                    rec.rip = _rip_from(om)
                    self.arch = self.arch or rip_arch
                    return False
        if _X86_REG_LINE.match(stripped):
            _x86_registers(rec, stripped, skip_first=False)
        elif _LOWER_REG_LINE.match(stripped):
            for name, value in _LOWER_REG.findall(stripped):
                rec.registers.setdefault(name, int(value, 16))
        elif stripped.startswith("GPR"):
            gm = _PPC_GPR.match(stripped)
            if gm:
                self._numbered_registers(int(gm.group(1)), gm.group(2))
        elif stripped.startswith("Krnl GPRS"):
            sm = _S390_GPRS.match(stripped)
            if sm:
                self.s390_gpr = self._numbered_registers(0, sm.group(1))
        if any(key in stripped for key in ("NIP:", "TRAP:", "MSR:", "DAR:", "CTR:", "XER:")):
            for name, value in _PPC_NAMED.findall(stripped):
                rec.registers.setdefault(name.lower(), int(value, 16))
        return False

    def _numbered_registers(self, first: int, values: str) -> int:
        """r<first>, r<first+1> ... from a run of hex values; the number after the last one."""
        for n, value in enumerate(values.split(), start=first):
            self.rec.registers.setdefault(f"r{n}", int(value, 16))
        return first + len(values.split())

    def _code_line(self, stripped: str) -> None:
        """The first kernel `Code:` line (the one after a user-mode RIP is user code)."""
        if self.rec.code_line is not None or self.prev_user_rip:
            return
        cm = _CODE.match(stripped)
        if cm and cm.group(1).strip():
            self.code_parts, self.code_cont = [cm.group(1).strip()], _CODE_CONT
        elif _PPC_CODE.match(stripped):
            self.code_parts, self.code_cont = [], _PPC_CODE_CONT
        elif stripped.startswith("Krnl Code"):
            sm = _S390_CODE.match(stripped)
            if sm:
                self.code_parts, self.code_cont = [sm.group(1).strip()], _S390_CODE_CONT

    def _identity_line(self, stripped: str) -> bool:
        """CPU/PID/comm/taint/release lines (all generations); True when the line was one."""
        rec = self.rec
        if rec.cpu is None or rec.kernel_release is None:
            im = _CPU_LINE.search(stripped)
            if im:
                _identity(rec, im)
                return True
            pm = _PID_LINE.match(stripped)
            if pm:
                _identity(rec, pm)
                hw = pm.group("hw").strip()
                if hw and rec.hardware is None:
                    rec.hardware = hw
                return True
        if rec.cpu is None:
            om = _OLD_CPU.match(stripped)
            if om:
                rec.cpu = decimal(om.group(1))
                return True
        if rec.comm is None:
            pr = _PROCESS.match(stripped)
            if pr:
                rec.comm, rec.pid = pr.group(1), decimal(pr.group(2))
        if rec.hardware is None and "Hardware name:" in stripped:
            hm = _HARDWARE.search(stripped)
            if hm:
                hardware, _, bios = hm.group(1).strip().partition(", BIOS ")
                rec.hardware = hardware or None
                rec.bios = bios or None
                return True
        return False

    def _other_line(self, k: int, stripped: str) -> None:
        rec = self.rec
        if not self.modules_seen and "Modules linked in:" in stripped:
            mm = _MODULES.search(stripped)
            if mm:
                self.modules_seen = self.modules_open = True
                _add_modules(rec, self.modules, mm.group(1).strip())
                return
        if rec.oops_number is None and k < _HEAD_LINES:
            om = _OOPS_NUMBER.search(stripped)
            if om:
                rec.oops_number = int(om.group(1))
                rec.oops_flags = tuple(om.group(2).split())
                cm = _OOPS_CODE.search(stripped)
                if cm:
                    rec.oops_code_raw = int(cm.group(1), 16)
                    if _X86_PF_OOPS.match(stripped):
                        rec.oops_code = PageFaultCode.decode(rec.oops_code_raw)
        if rec.oops_code_raw is None and k < _HEAD_LINES and stripped.startswith("ESR: 0x"):
            em = _ESR_LINE.match(stripped)
            if em:
                rec.oops_code_raw = int(em.group(1), 16)
        if rec.oops_code is None and "#PF: error_code" in stripped:
            pf = _PF_ERROR.search(stripped)
            if pf:
                rec.oops_code = PageFaultCode.decode(int(pf.group(1), 16))
                if rec.oops_code_raw is None:
                    rec.oops_code_raw = rec.oops_code.value
        if rec.panic_message is None and "Kernel panic - not syncing" in stripped:
            pm = _PANIC.search(stripped)
            if pm:
                rec.panic_message = pm.group(1).strip()
        if rec.fault_address is None and k < _HEAD_LINES:
            for pattern in _FAULT_ADDR:
                fm = pattern.search(stripped)
                if fm:
                    rec.fault_address = int(fm.group(1), 16)
                    return
            if k == 0 and "(null)" in stripped and rec.kind is CrashKind.NULL_DEREF:
                rec.fault_address = 0


def _identity(rec: CrashRecord, m: re.Match[str]) -> None:
    if rec.cpu is None and "cpu" in m.groupdict():
        rec.cpu = decimal(m.group("cpu"))
    if rec.pid is None:
        rec.pid = decimal(m.group("pid"))
    if rec.comm is None:
        rec.comm = m.group("comm")
    if rec.kernel_release is None:
        rec.kernel_release = m.group("rel")
        build = m.group("build")
        rec.kernel_build = build.strip() or None if build else None
    if rec.tainted is None:
        taint = m.group("taint")  # None when the line says `Not tainted`: "" records that it said so
        rec.tainted = "" if taint is None else taint.strip(" -") or None


def _x86_registers(rec: CrashRecord, line: str, skip_first: bool) -> None:
    for k, (name, _seg, value) in enumerate(_X86_REG.findall(line)):
        if skip_first and k == 0:
            continue
        key = _R0X.sub(r"r\1", name.lower())  # 2.6-era "R08" is r8
        if key in ("rip", "eip"):
            continue
        rec.registers.setdefault(key, int(value, 16))


def _add_modules(rec: CrashRecord, modules: list[str], text: str) -> bool:
    """Add the module tokens of `text`; False when the text is not a module list continuation."""
    lu = _LAST_UNLOADED.search(text)
    if lu:
        rec.last_unloaded = lu.group(1).strip()
        text = _LAST_UNLOADED.sub(" ", text)
    tokens = text.split()
    parsed: list[tuple[str, str | None]] = []
    for tok in tokens:
        tm = _MODULE_TOKEN.match(tok)
        if tm is None:
            return bool(lu) and not tokens
        parsed.append((tm.group(1), tm.group(2)))
    for name, taint in parsed:
        modules.append(name)
        if taint:
            rec.module_taints[name] = taint
    return True


def _parse_frame(text: str, context: StackContext) -> CallFrame | None:
    m = _FRAME.match(text)
    if m:
        pc = m.group("pc")
        return CallFrame(
            function=m.group("func"),
            offset=_int(m.group("off")),
            size=_int(m.group("size")),
            module=_module(m),
            reliable=m.group("q") is None and "(unreliable)" not in text,
            context=context,
            address=int(pc, 16) if pc else None,
            source=_printed_source(m),
        )
    m = _INLINE_FRAME.match(text)
    if m:  # offset and address stay None: that, with `source`, is what marks an inlined call
        return CallFrame(function=m.group("func"), context=context, source=_printed_source(m))
    m = _ARM_FRAME.match(text)
    if m:
        return CallFrame(
            function=m.group("func"),
            offset=_int(m.group("off")),
            size=_int(m.group("size")),
            module=m.group("mod"),
            context=context,
            address=int(m.group("pc"), 16),
        )
    return None
