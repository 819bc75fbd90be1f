"""The named generic-frame lists: they load, they are documented, they classify what they claim."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from analysis.rules import generic_frame_rule, skip_rules

SKIP_DIR = Path(__file__).resolve().parents[2] / "analysis" / "rules" / "skip"

# function (as printed, suffixes included) -> rule that must claim it
GENERIC = [
    ("dump_stack_lvl", "reporting"),
    ("__warn", "reporting"),
    ("panic", "reporting"),
    ("check_panic_on_warn.cold", "reporting"),
    ("report_bug", "reporting"),
    ("vprintk_emit", "reporting"),
    ("memcpy", "string-mem"),
    ("__memcpy_fortify", "string-mem"),
    ("strscpy", "string-mem"),
    ("_copy_from_user", "string-mem"),
    ("__might_fault", "string-mem"),
    ("_raw_spin_lock_irqsave", "locking"),
    ("mutex_lock_nested", "locking"),
    ("down_write", "locking"),
    ("lock_acquire", "locking"),
    ("__kmalloc", "allocator"),
    ("kmem_cache_alloc_node", "allocator"),
    ("__alloc_pages_nodemask", "allocator"),
    ("vmalloc", "allocator"),
    ("__list_add_valid", "list-helpers"),
    ("__list_del_entry_valid", "list-helpers"),
    ("kasan_report", "sanitizers"),
    ("__asan_load8", "sanitizers"),
    ("kmsan_internal_check_memory", "sanitizers"),
    ("__ubsan_handle_shift_out_of_bounds", "sanitizers"),
    ("asm_exc_page_fault", "exception-entry"),
    ("exc_page_fault", "exception-entry"),
    ("do_error_trap", "exception-entry"),
    ("__do_kernel_fault", "exception-entry"),
    ("entry_SYSCALL_64_after_hwframe", "syscall-entry"),
    ("do_syscall_64", "syscall-entry"),
    ("ret_from_fork", "syscall-entry"),
    ("refcount_warn_saturate", "refcount-atomic"),
    ("kref_put", "refcount-atomic"),
    ("debug_object_activate", "debug-objects"),
    ("kobject_put", "device-model"),
    ("flush_workqueue", "workqueue-timers"),
    ("iput", "vfs-refs"),
    ("readl", "io-accessors"),
]

# Functions that are where bugs live: no rule may swallow them.
SPECIFIC = [
    "__netif_receive_skb", "crashme_napi_pending", "e1000e_down", "tcp_retransmit_timer", "ext4_mb_release_context",
    "spidev_ioctl", "process_backlog", "nfs4_proc_get_acl", "vfs_write", "process_one_work", "jbd2_journal_commit_transaction",
    "lookup_fast", "cake_dequeue", "usb_stor_control_thread", "dev_watchdog", "__do_softirq", "handle_softirqs",
]  # fmt: skip


def _normalized(name: str) -> str:
    return name.split(".", 1)[0]


@pytest.mark.parametrize(("function", "rule"), GENERIC)
def test_generic_frames_are_claimed_by_their_rule(function: str, rule: str) -> None:
    assert generic_frame_rule(_normalized(function)) == rule


@pytest.mark.parametrize("function", SPECIFIC)
def test_specific_frames_are_not_generic(function: str) -> None:
    assert generic_frame_rule(function) is None


def test_every_file_is_a_rule_and_documented() -> None:
    files = sorted(p.stem for p in SKIP_DIR.glob("*.txt"))
    names = [r.name for r in skip_rules()]
    assert names == files, "a list file without patterns, or a pattern file the loader skipped"
    readme = (SKIP_DIR / "README.md").read_text()
    undocumented = [n for n in names if f"`{n}`" not in readme]
    assert not undocumented, f"rules missing from skip/README.md: {undocumented}"


def test_every_pattern_compiles_on_its_own() -> None:
    for path in SKIP_DIR.glob("*.txt"):
        for raw in path.read_text().splitlines():
            pattern = raw.split("#", 1)[0].strip()
            if pattern:
                re.compile(pattern)  # a bad line names its file in the traceback


def test_match_is_whole_name_not_prefix() -> None:
    # "down" is a locking primitive; "shutdown_thing" is not.
    assert generic_frame_rule("down") == "locking"
    assert generic_frame_rule("inet_shutdown") is None
    # "complete" is; "completely_specific_function" is not.
    assert generic_frame_rule("complete") == "refcount-atomic"
    assert generic_frame_rule("completely_specific_function") is None
