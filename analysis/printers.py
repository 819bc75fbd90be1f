"""Every report the kernel prints, from its printers: the catalogue the rules are checked against.

Each row names a place in the kernel sources (6.1 and 6.12; 5.10 where it differs) that prints
a report header followed by registers or a call trace, the kind and title the parser gives it
(syzkaller's title where syzkaller has one), the rule of `analysis.title.OOPS_GROUPS` that
decides it, and the fixture under tests/data/printers/ the project wrote from the printer's
format string. tests/analysis/test_printers.py parses every fixture and holds it to its row,
and checks that docs/log-parsing.md shows this table.
"""

from __future__ import annotations

from typing import NamedTuple

from analysis.model import CrashKind

__all__ = ["PRINTERS", "Printer"]


class Printer(NamedTuple):
    """One kernel printer and what a report it prints becomes."""

    printer: str  # file:function in the kernel sources
    kind: CrashKind
    title: str  # the title of the fixture's record ("{frame}" is the fixture's guilty frame)
    rule: str  # the TitleRule name in analysis.title
    fixture: str  # tests/data/printers/<fixture>.log
    syzkaller: bool  # the title follows a syzkaller title format (False: ours, syzkaller has none)


K = CrashKind
PRINTERS: tuple[Printer, ...] = (
    # x86 traps and stack dumps
    Printer("arch/x86/mm/fault.c:show_fault_oops", K.NULL_DEREF,
            "BUG: unable to handle kernel NULL pointer dereference in crashme_write", "null-deref",
            "x86-6.1-null-deref", True),
    Printer("arch/x86/mm/fault.c:show_fault_oops (6.12 `Oops: Oops:`)", K.PAGING_REQUEST,
            "BUG: unable to handle kernel paging request in crashme_write", "paging-request", "x86-6.12-page-fault", True),
    Printer("arch/x86/mm/fault.c:show_fault_oops (NX)", K.PAGING_REQUEST,
            "BUG: unable to handle kernel paging request in crashme_write", "paging-request", "x86-6.1-nx-exec", True),
    Printer("arch/x86/kernel/traps.c:exc_general_protection", K.GPF, "general protection fault in crashme_release",
            "gpf", "x86-6.1-gpf", True),
    Printer("arch/x86/kernel/dumpstack.c:__die_header (6.12 `Oops: ` prefix)", K.GPF,
            "general protection fault in crashme_release", "gpf", "x86-6.12-gpf", True),
    Printer("arch/x86/kernel/traps.c:exc_divide_error", K.DIVIDE_ERROR, "divide error in crashme_ratio",
            "divide-error", "x86-6.1-divide-error", True),
    Printer("arch/x86/kernel/traps.c:exc_divide_error (6.12)", K.DIVIDE_ERROR, "divide error in crashme_ratio",
            "divide-error", "x86-6.12-divide-error", True),
    Printer("arch/x86/kernel/traps.c:handle_invalid_op (6.12)", K.INVALID_OPCODE, "invalid opcode in crashme_ud2",
            "invalid-opcode", "x86-6.12-invalid-opcode", True),
    Printer("lib/bug.c:report_bug + arch/x86/kernel/traps.c:handle_bug", K.KERNEL_BUG, "kernel BUG in crashme_bug",
            "kernel-bug", "x86-6.1-kernel-bug", True),
    Printer("arch/x86/kernel/traps.c:exc_double_fault", K.DOUBLE_FAULT, "PANIC: double fault in crashme_recurse",
            "double-fault", "x86-6.1-double-fault", True),
    Printer("arch/x86/kernel/traps.c:handle_stack_overflow", K.STACK_GUARD_PAGE,
            "BUG: stack guard page was hit in crashme_recurse", "stack-guard-page", "x86-6.1-stack-guard", True),
    # arm64 traps and stack dumps
    Printer("arch/arm64/mm/fault.c:die_kernel_fault", K.NULL_DEREF,
            "BUG: unable to handle kernel NULL pointer dereference in crashme_write", "arm-null-deref",
            "arm64-6.1-null-deref", True),
    Printer("arch/arm64/mm/fault.c:die_kernel_fault (exec)", K.PAGING_REQUEST,
            "BUG: unable to handle kernel execute from non-executable memory in crashme_write",
            "arm-unable-to-handle-perm", "arm64-6.1-exec-nx", False),
    Printer("arch/arm64/mm/fault.c:die_kernel_fault (read-only)", K.PAGING_REQUEST,
            "BUG: unable to handle kernel write to read-only memory in crashme_write", "arm-unable-to-handle-perm",
            "arm64-6.1-write-ro", False),
    Printer("arch/arm64/kernel/traps.c:bug_handler + die", K.KERNEL_BUG, "kernel BUG in crashme_write", "kernel-bug",
            "arm64-6.1-kernel-bug", True),
    Printer("arch/arm64/kernel/traps.c:do_undefinstr + die", K.OOPS, "Internal error in crashme_write",
            "arm-internal-error", "arm64-6.1-undef", False),
    Printer("arch/arm64/kernel/traps.c:arm64_serror_panic", K.MACHINE_CHECK, "SError Interrupt", "arm64-serror",
            "arm64-6.1-serror", False),
    Printer("arch/arm64/kernel/traps.c:panic_bad_stack", K.STACK_GUARD_PAGE, "kernel stack overflow in crashme_recurse",
            "arm64-bad-stack", "arm64-6.1-bad-stack", True),
    # page allocator, interrupts
    Printer("mm/page_alloc.c:warn_alloc", K.WARNING, "page allocation failure in crashme_grow_ring",
            "page-alloc-failure", "mm-6.1-page-alloc-failure", False),
    Printer("mm/vmalloc.c:__vmalloc_area_node -> warn_alloc (6.12)", K.WARNING, "vmalloc failure in crashme_table_alloc",
            "vmalloc-failure", "mm-6.12-vmalloc-error", False),
    Printer("kernel/irq/spurious.c:__report_bad_irq", K.BUG, "irq: nobody cared in e1000_intr", "irq-nobody-cared",
            "irq-6.1-nobody-cared", False),
    # assertion macros, lockdep
    Printer("include/linux/rtnetlink.h:ASSERT_RTNL (WARN_ONCE)", K.WARNING, "WARNING in __dev_set_promiscuity",
            "warn-at", "net-6.1-assert-rtnl", True),
    Printer("include/linux/lockdep.h:lockdep_assert_held (WARN_ON)", K.WARNING, "WARNING in crashme_update_stats",
            "warn-at", "lockdep-6.1-assert-held", True),
    Printer("kernel/locking/lockdep.c:print_circular_bug", K.LOCKDEP, "possible deadlock in crashme_update_stats",
            "circular-locking", "lockdep-6.1-circular", True),
    Printer("kernel/locking/lockdep.c:print_lock_invalid_wait_context", K.LOCKDEP,
            "WARNING: locking bug in crashme_timer_fn", "invalid-wait-context", "lockdep-6.1-invalid-wait-context", True),
    Printer("kernel/locking/lockdep.c:register_lock_class (print_lockdep_off)", K.LOCKDEP,
            "BUG: MAX_LOCKDEP_KEYS too low!", "lockdep-limit", "lockdep-6.1-keys-too-low", True),
    # stalls, hangs, lockups, NMI
    Printer("kernel/rcu/tree_stall.h:print_cpu_stall", K.RCU_STALL, "INFO: rcu detected stall in crashme_spin",
            "rcu-self-stall", "rcu-6.1-self-detected-stall", True),
    Printer("kernel/hung_task.c:check_hung_task", K.HUNG_TASK, "INFO: task hung in crashme_flush", "hung-task",
            "hung-6.1-task-blocked", True),
    Printer("kernel/watchdog.c:watchdog_timer_fn", K.SOFT_LOCKUP, "BUG: soft lockup in crashme_spin", "soft-lockup",
            "watchdog-6.1-soft-lockup", True),
    Printer("kernel/watchdog_hld.c:watchdog_overflow_callback (6.1)", K.HARD_LOCKUP,
            "BUG: hard lockup in crashme_spin_irqoff", "hard-lockup", "watchdog-6.1-hard-lockup", False),
    Printer("kernel/watchdog.c:watchdog_hardlockup_check (6.12)", K.HARD_LOCKUP, "BUG: hard lockup in crashme_spin_irqoff",
            "hard-lockup", "watchdog-6.12-hard-lockup", False),
    Printer("arch/x86/kernel/nmi.c:io_check_error", K.MACHINE_CHECK, "NMI: IOCK error", "nmi-iock", "nmi-6.1-iock",
            False),
    Printer("arch/x86/kernel/nmi.c:unknown_nmi_error", K.MACHINE_CHECK, "NMI received for unknown reason",
            "nmi-unknown", "nmi-6.1-unknown-reason", False),
    # sanitizers, kmemleak
    Printer("mm/kasan/report.c:print_report", K.KASAN, "KASAN: use-after-free Read in crashme_read_stats",
            "kasan-access", "kasan-6.1-slab-use-after-free", True),
    Printer("mm/kfence/report.c:kfence_report_error", K.KFENCE, "KFENCE: out-of-bounds read in crashme_peek",
            "kfence-access", "kfence-6.1-out-of-bounds", True),
    Printer("lib/ubsan.c:ubsan_prologue", K.UBSAN, "UBSAN: shift-out-of-bounds in crashme_mask", "ubsan",
            "ubsan-6.1-shift", True),
    Printer("mm/kmemleak.c:print_unreferenced", K.MEMORY_LEAK, "memory leak in crashme_open", "kmemleak-object",
            "kmemleak-6.1-unreferenced", True),
    # list and refcount debugging, page state, mm
    Printer("lib/list_debug.c:__list_add_valid (BUG_ON_DATA_CORRUPTION)", K.LIST_CORRUPTION,
            "BUG: corrupted list in crashme_queue", "list-corruption", "list-6.1-add-corruption-bug", True),
    Printer("lib/list_debug.c:__list_del_entry_valid (WARN)", K.LIST_CORRUPTION, "BUG: corrupted list in crashme_dequeue",
            "list-corruption-warn", "list-6.1-del-corruption-warn", True),
    Printer("lib/refcount.c:refcount_warn_saturate", K.WARNING, "WARNING: refcount bug in crashme_put", "refcount",
            "refcount-6.1-underflow", True),
    Printer("mm/page_alloc.c:bad_page", K.BUG, "BUG: Bad page state in crashme_fill_ring", "bad-page",
            "mm-6.1-bad-page-state", True),
    Printer("kernel/fork.c:check_mm (rss)", K.BUG, "BUG: Bad rss-counter state", "bad-rss", "mm-6.1-bad-rss-counter",
            True),
    Printer("kernel/fork.c:check_mm (page tables, 6.12)", K.BUG, "BUG: non-zero pgtables_bytes on freeing mm",
            "nr-pgtables", "mm-6.12-pgtables-bytes", True),
    # machine checks
    Printer("arch/x86/kernel/cpu/mce/core.c:mce_panic", K.MACHINE_CHECK, "kernel panic: hardware error: Fatal machine check",
            "mce-panic", "mce-6.1-fatal", False),
)  # fmt: skip
