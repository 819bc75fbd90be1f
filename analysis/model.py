"""Typed crash records: the one vocabulary the analyzer, agent, collector and CLI share.

Parsers fill these; `analysis.report` turns them into the JSON documented in
docs/report-schema.md; `wire.convert` is the only place that turns them into protobuf.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "CallFrame",
    "CodeDecode",
    "CrashKind",
    "CrashRecord",
    "Fingerprint",
    "PageFaultCode",
    "Rip",
    "SkippedFrame",
    "SourceLocation",
    "StackContext",
    "SystemFacts",
]


class CrashKind(enum.StrEnum):
    """What the kernel reported; one record has exactly one kind."""

    OOPS = "oops"  # "Oops: ..." with no more specific BUG: line before it
    NULL_DEREF = "null-deref"  # BUG: (unable to handle) kernel NULL pointer dereference
    PAGING_REQUEST = "paging-request"  # BUG: unable to handle (kernel) paging request / page fault
    BUG = "bug"  # other "BUG: ..." lines (sleeping in atomic, bad page state, scheduling while atomic ...)
    KERNEL_BUG = "kernel-bug"  # "kernel BUG at file:line!" (BUG()/BUG_ON())
    GPF = "general-protection-fault"
    WARNING = "warning"  # "WARNING: CPU: N PID: M at file:line func"
    PANIC = "panic"  # "Kernel panic - not syncing: ..." with no oops before it
    SOFT_LOCKUP = "soft-lockup"
    HARD_LOCKUP = "hard-lockup"
    HUNG_TASK = "hung-task"  # "INFO: task X blocked for more than N seconds"
    RCU_STALL = "rcu-stall"
    KASAN = "kasan"
    KFENCE = "kfence"
    UBSAN = "ubsan"
    KMSAN = "kmsan"
    KCSAN = "kcsan"
    LOCKDEP = "lockdep"  # possible deadlock / circular locking / lock held when returning ...
    LIST_CORRUPTION = "list-corruption"
    DIVIDE_ERROR = "divide-error"
    INVALID_OPCODE = "invalid-opcode"
    STACK_PROTECTOR = "stack-protector"
    STACK_GUARD_PAGE = "stack-guard-page"
    OUT_OF_MEMORY = "out-of-memory"  # OOM that panics (panic_on_oom / "Out of memory and no killable processes")
    MEMORY_LEAK = "memory-leak"  # kmemleak
    DOUBLE_FAULT = "double-fault"
    MACHINE_CHECK = "machine-check"
    UNKNOWN = "unknown"


class StackContext(enum.StrEnum):
    """Which stack a call-trace frame was on, from the <IRQ>/<NMI>/<TASK>/<SOFTIRQ>/<#DF> markers."""

    TASK = "task"
    IRQ = "irq"
    SOFTIRQ = "softirq"
    NMI = "nmi"
    EXCEPTION = "exception"  # <#DF>, <#MC>, <#DB>, <#VC> and other exception stacks
    UNKNOWN = ""  # the trace had no markers (older kernels, most architectures)


@dataclass(frozen=True, slots=True)
class SourceLocation:
    """One level of a symbolized address, as `addr2line -f -i` prints it (innermost level first).

    `file` is the path as DWARF names it; `line` 0 means unknown. Filled by `analysis.symbolize`
    only when debuginfo of the right build is at hand; it never enters a fingerprint.
    """

    function: str
    file: str
    line: int


@dataclass(frozen=True, slots=True)
class Rip:
    """The faulting instruction pointer as the kernel symbolized it (`func+off/size [module]`)."""

    function: str
    offset: int | None = None
    size: int | None = None
    module: str | None = None
    address: int | None = None  # raw address when printed (`[<ffffffff8142bb40>]`, arm64 `pc :` ...)
    source: tuple[SourceLocation, ...] = ()  # from debuginfo (analysis.symbolize), innermost first


@dataclass(frozen=True, slots=True)
class CallFrame:
    """One call-trace line. Entries are return addresses (look them up at offset - 1)."""

    function: str
    offset: int | None = None
    size: int | None = None
    module: str | None = None
    reliable: bool = True  # False for the kernel's `? func` guesses
    context: StackContext = StackContext.UNKNOWN
    address: int | None = None
    source: tuple[SourceLocation, ...] = ()  # from debuginfo (analysis.symbolize), looked up at offset - 1


@dataclass(frozen=True, slots=True)
class PageFaultCode:
    """The x86 #PF error code (`Oops: 0002` / `#PF: error_code(0x0002)`), bit by bit."""

    value: int
    write: bool  # bit 1: write access (else read)
    user: bool  # bit 2: user mode (else kernel/supervisor mode)
    protection: bool  # bit 0: protection violation (else not-present page)
    instruction_fetch: bool  # bit 4
    reserved_bit: bool = False  # bit 3
    protection_key: bool = False  # bit 5

    @classmethod
    def decode(cls, value: int) -> PageFaultCode:
        return cls(
            value=value,
            protection=bool(value & 0x1),
            write=bool(value & 0x2),
            user=bool(value & 0x4),
            reserved_bit=bool(value & 0x8),
            instruction_fetch=bool(value & 0x10),
            protection_key=bool(value & 0x20),
        )

    def describe(self) -> str:
        mode = "user" if self.user else "kernel"
        access = "instruction fetch" if self.instruction_fetch else ("write" if self.write else "read")
        page = "protection violation" if self.protection else "not-present page"
        return f"{mode}-mode {access}, {page}"


@dataclass(frozen=True, slots=True)
class CodeDecode:
    """The `Code:` line decoded: the faulting instruction and the register that held the bad pointer."""

    arch: str  # "x86_64", "arm64", ...
    code_bytes: bytes
    fault_offset: int  # index into code_bytes of the `<..>`/`(..)` byte
    instruction: str | None  # capstone text, e.g. "cmp qword ptr [r12 + 0x60], rax"
    base_register: str | None = None
    index_register: str | None = None
    displacement: int | None = None
    bad_register: str | None = None  # the register whose value explains the fault
    bad_register_value: int | None = None
    access: str | None = None  # verdict, e.g. "NULL pointer + 0x60 through r12"
    operation: str | None = None  # what the instruction did to its memory operand: "read", "write", "read-write"
    error: str | None = None  # why decoding failed (bytes cut, not decodable ...), never an exception


@dataclass(frozen=True, slots=True)
class SkippedFrame:
    """A call-trace frame the fingerprint left out, and the named rule that left it out."""

    function: str
    rule: str


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """The "same bug" key: a stable hash plus its provenance (what went in, what was skipped and why)."""

    value: str  # hex digest
    version: str  # ruleset version, e.g. "fp-1"
    kind: str
    reason: str  # normalized reason that went in
    frames: tuple[str, ...]  # normalized frames that went in, guilty first
    skipped: tuple[SkippedFrame, ...] = ()


@dataclass(slots=True)
class CrashRecord:
    """One crash found in a kernel log. Fields the log does not show stay None/empty."""

    kind: CrashKind
    reason: str  # the raw reason line, e.g. "BUG: kernel NULL pointer dereference, address: 0000000000000060"
    normalized_reason: str  # addresses, numbers, pids stripped: "BUG: kernel NULL pointer dereference"
    title: str  # syzbot-style: "BUG: unable to handle kernel NULL pointer dereference in crashme_napi_pending"
    guilty_frame: str | None = None
    arch: str = "x86_64"
    fault_address: int | None = None
    oops_code: PageFaultCode | None = None  # x86 #PF error code
    oops_code_raw: int | None = None  # "Oops: 0000" / arm64 ESR and others: the raw number
    oops_number: int | None = None  # the N of [#N]
    oops_flags: tuple[str, ...] = ()  # "SMP", "PREEMPT", "KASAN", "PTI", "NOPTI" ...
    tainted: str | None = None  # the taint string as printed, e.g. "G           OE"; "" for "Not tainted"
    taint_flags: tuple[str, ...] = ()  # decoded names, e.g. ("PROPRIETARY_MODULE"..)
    cpu: int | None = None
    pid: int | None = None
    comm: str | None = None
    kernel_release: str | None = None  # "6.1.0-56-amd64"
    kernel_build: str | None = None  # "#1  Debian 6.1.192-2" / "#1"
    hardware: str | None = None  # "Supermicro X8DTT-H/X8DTT-H", "QEMU Standard PC (i440FX + PIIX, 1996)"
    bios: str | None = None
    modules: tuple[str, ...] = ()  # bare names in printed order
    module_taints: dict[str, str] = field(default_factory=dict)  # name -> "OE"
    last_unloaded: str | None = None
    panic_message: str | None = None  # text after "Kernel panic - not syncing: "
    rip: Rip | None = None
    call_trace: tuple[CallFrame, ...] = ()
    registers: dict[str, int] = field(default_factory=dict)  # lower-case names: rax, r12, cr2, eflags, sp, pc, x0 ...
    code_line: str | None = None  # the raw `Code:` text as printed (wrapped lines joined)
    code: CodeDecode | None = None
    fingerprint: Fingerprint | None = None
    corrupted: bool = False
    corrupted_reason: str | None = None
    # Fields whose printed value no record can hold (past 64 bits, a PID past 32 ...), left out
    # by analysis.bounds: "pid", "call_trace[3].offset", "registers.rax". The rest is intact.
    corrupt_fields: tuple[str, ...] = ()
    related: tuple[str, ...] = ()  # how this record relates to others in the same log (see docs)
    first_line: int = 0  # 0-based line index in the normalized log where the report starts
    last_line: int = 0  # ... and ends (inclusive)
    excerpt: str = ""  # the normalized report text (capped), for storage and display


@dataclass(frozen=True, slots=True)
class SystemFacts:
    """What crash's `sys` header shows, read from a dump (None where unknown); the last three
    need the debug vmlinux of the dump's build."""

    format: str  # "elf", "kdump-zlib", "kdump-lzo", "kdump-snappy", "kdump-zstd", "kdump-raw", "flattened", "+gzip" ...
    release: str | None = None
    version: str | None = None  # "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (2026-...)"
    nodename: str | None = None
    machine: str | None = None
    cpus: int | None = None
    memory_bytes: int | None = None
    crash_time: int | None = None  # Unix seconds, from VMCOREINFO CRASHTIME when recorded
    build_id: str | None = None
    page_size: int | None = None
    kernel_offset: int | None = None  # KASLR slide
    panic_message: str | None = None
    panic_cpu: int | None = None
    panic_pid: int | None = None
    panic_comm: str | None = None
    # Only with the dump's debug vmlinux (analysis.symbolize.sysfacts): the task walk's count,
    # avenrun as crash shows it, and jiffies_64 over HZ.
    tasks: int | None = None
    load_average: tuple[float, float, float] | None = None
    uptime_seconds: float | None = None
