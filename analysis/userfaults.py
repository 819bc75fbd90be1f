"""The kernel reporting a user-space program's fault: a signal about the host, not a kernel crash.

`segfault at`, `traps: ... trap invalid opcode`, a user-mode `general protection fault`, arm64's
`unhandled exception`, `potentially unexpected fatal signal` are the kernel telling us a
program died. None is a kernel crash record (analysis.oops skips them as report starts), but
random faults across many unrelated programs on one host are a classic sign of bad memory,
so they are counted per program (`count_user_faults`) and the agent ships the counts with its
heartbeat (`MAX_PROGRAMS` of them, the rest summed under `OTHER_PROGRAMS`).

`USER_FAULT_RULES` is the table, one row per printer; each pattern is matched at the start
of a normalized line (analysis.logtext), anchored and bounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from analysis.logtext import MAX_LINE_CHARS, normalize_line
from analysis.prefilter import Prefilter

__all__ = [
    "COMM_LOOKAHEAD",
    "FAULT_HINTS",
    "MAX_PROGRAMS",
    "OTHER_PROGRAMS",
    "USER_FAULT_RULES",
    "UserFault",
    "bound_counts",
    "count_user_faults",
    "register_dump_comm",
    "user_fault",
]

MAX_PROGRAMS = 64  # programs counted by name per host; a wider spread is the signal itself
OTHER_PROGRAMS = "(other)"  # where the programs past MAX_PROGRAMS are counted
_COMM = r"(?P<comm>[^\[\]/\n]{1,16}?)"  # task->comm: at most 15 characters, may hold spaces
_OBJECT = r"(?: in (?P<object>[^\s\[]{1,255})\[)?"  # print_vma_addr(" in ", ip): the mapped file

# (name, printer (file:function), pattern)
USER_FAULT_RULES: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    ("segfault", "arch/x86/mm/fault.c:show_signal_msg",
     re.compile(_COMM + r"\[(?P<pid>\d{1,10})\]: segfault at [0-9a-f]{1,16} ip [0-9a-fx]{1,18} sp [0-9a-fx]{1,18}"
                r" error -?[0-9a-f]{1,8}" + _OBJECT)),
    ("trap", "arch/x86/kernel/traps.c:show_signal",
     re.compile(r"(?:traps: )?" + _COMM + r"\[(?P<pid>\d{1,10})\] (?:trap )?[a-z][a-z0-9 ()]{2,48}? ip:[0-9a-f]{1,16}"
                r" sp:[0-9a-f]{1,16} error:[0-9a-f]{1,8}" + _OBJECT)),
    ("arm64-unhandled", "arch/arm64/kernel/traps.c:arm64_show_signal",
     re.compile(_COMM + r"\[(?P<pid>\d{1,10})\]: unhandled (?:exception: |[a-z0-9 ]{3,60} \(\d{1,3}\) at 0x)"
                r"(?:.{0,200}? in (?P<object>[^\s\[]{1,255})\[)?")),
    ("arm-unhandled", "arch/arm/mm/fault.c:__do_user_fault",
     re.compile(_COMM + r": unhandled page fault \(\d{1,3}\) at 0x[0-9a-f]{1,16}, code 0x")),
    ("riscv-unhandled", "arch/riscv/kernel/traps.c:do_trap",
     re.compile(_COMM + r"\[(?P<pid>\d{1,10})\]: unhandled signal \d{1,3} code 0x[0-9a-f]{1,8} at 0x")),
    ("powerpc-signal", "arch/powerpc/kernel/traps.c:show_signal_msg",
     re.compile(_COMM + r"\[(?P<pid>\d{1,10})\]: [a-z ]{3,40} \(\d{1,3}\) at [0-9a-f]{1,16} nip [0-9a-f]{1,16}"
                r" lr [0-9a-f]{1,16} code")),
    ("fatal-signal", "kernel/signal.c:print_fatal_signal",
     re.compile(r"(?:" + _COMM + r"/(?P<pid>\d{1,10}): )?potentially unexpected fatal signal \d{1,3}\.")),
)  # fmt: skip
# Cheap substrings one of which every rule's line holds: most lines never reach a regex.
FAULT_HINTS = ("segfault at", " ip:", "unhandled", "fatal signal", " nip ")
_HINT_LINES = Prefilter("user-fault-hints", FAULT_HINTS)
# print_fatal_signal names the program only on the show_regs() line after it (since 2.6.3x).
_CPU_COMM = re.compile(r"CPU: \d{1,5} (?:UID: \d{1,10} )?PID: (?P<pid>\d{1,10}) Comm: (?P<comm>.{1,16}?) (?:Not tainted|Tainted:)")
COMM_LOOKAHEAD = 4  # lines after a fault line that does not name its program where show_regs() names it


@dataclass(frozen=True, slots=True)
class UserFault:
    """One user-space fault line: which rule, which program (comm), its pid, the mapped file."""

    rule: str
    comm: str | None  # None when the line does not name it (print_fatal_signal since 2.6.3x)
    pid: int | None
    object: str | None  # the file the faulting address is in (`in libc.so.6[...]`), when printed


def user_fault(text: str) -> UserFault | None:
    """The user-space fault a normalized kernel line reports, None for any other line."""
    if not any(h in text for h in FAULT_HINTS):
        return None
    for name, _printer, pattern in USER_FAULT_RULES:
        m = pattern.match(text)
        if m:
            groups = m.groupdict()
            pid = groups.get("pid")
            comm = groups.get("comm")
            return UserFault(name, comm.strip() if comm else None, int(pid) if pid else None, groups.get("object"))
    return None


def register_dump_comm(text: str) -> str | None:
    """The program a register dump's `CPU: N PID: N Comm: NAME ...` line names, else None."""
    if "Comm: " not in text:
        return None
    m = _CPU_COMM.search(text)
    return m.group("comm").strip() if m else None


def count_user_faults(lines: Sequence[str], candidates: Iterable[int] | None = None) -> dict[str, int]:
    """User-space faults per program in raw kernel lines (prefixes are stripped here).

    Pure and linear: only the lines holding one of FAULT_HINTS are matched, found by one scan of
    the whole text (`candidates`, ascending: those lines or more, from a caller that scanned for
    more literals at once, see analysis.prefilter). A fault line that does not name its program
    takes the name from the `CPU: ... Comm:` line right after it, else counts under "?".
    """
    counts: dict[str, int] = {}
    resume = 0  # lines before this index were already read as the lines after a fault
    holds_hint = _HINT_LINES.line_pattern.search
    for i in _HINT_LINES.lines(lines) if candidates is None else candidates:
        if i < resume:
            continue
        line = lines[i][:MAX_LINE_CHARS]
        if candidates is not None and holds_hint(line) is None:
            continue  # a line passed for another literal (a report's anchor)
        fault = user_fault(normalize_line(line).text)
        if fault is None:
            continue
        if fault.comm is not None:
            _add(counts, fault.comm)
            continue
        comm = None
        for j in range(i + 1, min(len(lines), i + 1 + COMM_LOOKAHEAD)):
            comm = register_dump_comm(lines[j][:MAX_LINE_CHARS])
            if comm is not None:
                resume = j + 1
                break
        _add(counts, comm or "?")
    return counts


def _add(counts: dict[str, int], comm: str) -> None:
    counts[comm] = counts.get(comm, 0) + 1


def bound_counts(counts: dict[str, int], limit: int = MAX_PROGRAMS) -> dict[str, int]:
    """At most `limit` entries: the most frequent programs by name, the rest summed as OTHER_PROGRAMS."""
    if len(counts) <= limit:
        return dict(counts)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[: limit - 1])
    rest = sum(n for _, n in ranked[limit - 1 :])
    kept[OTHER_PROGRAMS] = kept.get(OTHER_PROGRAMS, 0) + rest
    return kept
