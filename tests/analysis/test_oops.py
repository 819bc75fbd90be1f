"""`parse_log` on the real data in ../shared: the seed oops (both versions) and Debian 6.1 crashes."""

from __future__ import annotations

import pytest

from analysis.model import CrashKind, PageFaultCode, StackContext
from analysis.oops import parse_log
from tests.conftest import shared_path

SEED_MODULES = (
    "veth", "bridge", "stp", "llc", "e1000e", "serio_raw", "i2c_i801", "i2c_core", "sg", "iTCO_wdt",
    "iTCO_vendor_support", "ioatdma", "dca", "i7core_edac", "edac_core", "shpchp", "ext3", "jbd", "mbcache",
    "sd_mod", "crc_t10dif", "ahci", "dm_mirror", "dm_region_hash", "dm_log", "dm_mod",
)  # fmt: skip


@pytest.mark.parametrize("name", ["buildtest07-console.txt", "buildtest07-console.restored.txt"])
def test_seed_oops(name: str) -> None:
    records = parse_log(shared_path("corpora", "seed", name).read_bytes())
    assert len(records) == 1
    rec = records[0]
    assert rec.kind is CrashKind.NULL_DEREF
    assert rec.title == "BUG: unable to handle kernel NULL pointer dereference in __netif_receive_skb"
    assert rec.guilty_frame == "__netif_receive_skb"
    assert not rec.corrupted
    assert rec.rip is not None
    assert (rec.rip.function, rec.rip.offset, rec.rip.size) == ("__netif_receive_skb", 0x60, 0x6E0)
    assert rec.fault_address == 0x60
    assert rec.oops_code == PageFaultCode.decode(0)
    assert rec.oops_code.describe() == "kernel-mode read, not-present page"
    assert (rec.oops_number, rec.oops_flags) == (1, ("SMP",))
    assert (rec.cpu, rec.pid, rec.comm) == (12, 0, "swapper")
    assert rec.hardware == "Supermicro X8DTT-H/X8DTT-H"
    assert rec.tainted == "" and rec.taint_flags == ()  # "Not tainted", said explicitly
    assert rec.modules == SEED_MODULES
    assert rec.last_unloaded == "scsi_wait_scan"
    assert rec.registers["r12"] == 0 and rec.registers["rax"] == 0x60 and rec.registers["cr2"] == 0x60
    assert rec.registers["r8"] == 0xC3  # printed as R08
    assert rec.code_line is not None
    assert "<49> 39 44 24 60" in rec.code_line and rec.code_line.endswith("85 ed 74 37 49")  # wrapped lines rejoined
    assert [f.function for f in rec.call_trace][:3] == ["process_backlog", "net_rx_action", "__do_softirq"]
    assert [f.reliable for f in rec.call_trace].count(False) == 3  # the "? func" guesses
    assert rec.arch == "x86_64"


def test_seed_versions_agree_except_where_the_page_lost_text() -> None:
    published, restored = (
        parse_log(shared_path("corpora", "seed", name).read_bytes())[0]
        for name in ("buildtest07-console.txt", "buildtest07-console.restored.txt")
    )
    assert restored.kernel_release == "2.6.32-220.7.1.el6.x86_64" and restored.kernel_build == "#1"
    assert published.kernel_release is None  # the article dropped it
    assert restored.rip is not None and restored.rip.address == 0xFFFFFFFF8142BB40
    assert published.rip is not None and published.rip.address is None
    for field in ("title", "guilty_frame", "fault_address", "cpu", "pid", "comm", "hardware", "modules", "code_line"):
        assert getattr(published, field) == getattr(restored, field), field
    assert [f.function for f in published.call_trace] == [f.function for f in restored.call_trace]


# crash type -> (kind, title, guilty frame, panic message)
VMCORES = {
    "null": (CrashKind.NULL_DEREF, "BUG: unable to handle kernel NULL pointer dereference in crashme_napi_pending",
             "crashme_napi_pending", "Fatal exception"),
    "bug": (CrashKind.KERNEL_BUG, "kernel BUG in crashme_bug", "crashme_bug", "Fatal exception"),
    "warn": (CrashKind.WARNING, "WARNING in crashme_warn", "crashme_warn", "kernel: panic_on_warn set ..."),
    # the module function spinning at the RIP, not the procfs dispatcher it was reached through
    "softlockup": (CrashKind.SOFT_LOCKUP, "BUG: soft lockup in crashme_softlockup", "crashme_softlockup",
                   "softlockup: hung tasks"),
}  # fmt: skip


@pytest.mark.parametrize("source", ["serial.log", "dmesg.txt"])
@pytest.mark.parametrize("crash", sorted(VMCORES))
def test_debian_61_crashes(crash: str, source: str) -> None:
    kind, title, guilty, panic = VMCORES[crash]
    records = parse_log(shared_path("vmcores", crash, source).read_bytes())
    assert len(records) == 1, [r.title for r in records]  # the panic attaches, it is no second record
    rec = records[0]
    assert (rec.kind, rec.title, rec.guilty_frame, rec.panic_message) == (kind, title, guilty, panic)
    assert "panic-attached" in rec.related
    assert not rec.corrupted
    assert rec.kernel_release == "6.1.0-56-amd64"
    assert rec.kernel_build == "#1  Debian 6.1.192-2"
    assert rec.hardware == "QEMU Standard PC (i440FX + PIIX, 1996)"
    assert rec.bios == "1.16.2-debian-1.16.2-1 04/01/2014"
    assert rec.comm == "sh" and rec.pid in (99, 100)
    assert rec.modules == ("crashme", "qemu_fw_cfg") and rec.module_taints == {"crashme": "OE"}
    assert rec.taint_flags[:2] == ("OOT_MODULE", "UNSIGNED_MODULE")
    assert rec.rip is not None and rec.rip.module == "crashme"
    assert rec.code_line is not None and "<" in rec.code_line
    assert rec.call_trace[0].function == "crashme_write" or rec.call_trace[0].function == "crashme_null"
    assert {f.context for f in rec.call_trace} == {StackContext.TASK}
    assert not any(f.function.startswith("0x") for f in rec.call_trace)


def test_null_deref_facts() -> None:
    rec = parse_log(shared_path("vmcores", "null", "serial.log").read_bytes())[0]
    assert rec.fault_address == 0x60
    assert rec.oops_code is not None and rec.oops_code.describe() == "kernel-mode read, not-present page"
    assert (rec.oops_number, rec.oops_flags) == (1, ("PREEMPT", "SMP", "NOPTI"))
    assert rec.rip is not None and rec.rip.function == "crashme_napi_pending.constprop.0.isra.0"
    assert (rec.rip.offset, rec.rip.size) == (5, 0x20)
    # The kernel-mode register dump is kept, not the user-mode one printed after entry_SYSCALL_64.
    assert rec.registers["rdi"] == 0 and rec.registers["rsp"] == 0xFFFFD0AFC07C7A38
    assert rec.code_line is not None and rec.code_line.startswith("de 5b 48 89 05")
    assert (rec.cpu, rec.pid) == (1, 100)


def test_a_die_header_after_the_end_of_trace_is_a_new_oops() -> None:
    """6.12 prefixes every die() header with `Oops: `, which inside a report continues it; after
    the report's `---[ end trace` line it is the next oops (`[#2]`), only a panic still attaches."""
    first = [
        "[  100.000000] WARNING: CPU: 0 PID: 1 at drivers/misc/crashme.c:10 crashme_warn+0x5/0x10 [crashme]",
        "[  100.000001] CPU: 0 UID: 0 PID: 1 Comm: sh Not tainted 6.12.43+deb13-amd64 #1  Debian 6.12.43-1",
        "[  100.000002] RIP: 0010:crashme_warn+0x5/0x10 [crashme]",
        "[  100.000003] Call Trace:",
        "[  100.000004]  crashme_write+0x3f/0x60 [crashme]",
        "[  100.000005]  vfs_write+0xd1/0x3e0",
        "[  100.000006] ---[ end trace 0000000000000000 ]---",
    ]
    second = [
        "[  100.500000] Oops: general protection fault, probably for non-canonical address 0xdead000000000122: 0000 [#2] PREEMPT SMP NOPTI",
        "[  100.500001] CPU: 0 UID: 0 PID: 1 Comm: sh Not tainted 6.12.43+deb13-amd64 #1  Debian 6.12.43-1",
        "[  100.500002] RIP: 0010:crashme_release+0x1b/0x60 [crashme]",
        "[  100.500003] Call Trace:",
        "[  100.500004]  __fput+0x91/0x280",
        "[  100.500005]  task_work_run+0x56/0x90",
        "[  100.500006] ---[ end trace 0000000000000000 ]---",
        "[  100.500007] Kernel panic - not syncing: Fatal exception",
    ]
    records = parse_log("\n".join(first + second) + "\n")
    assert [(r.kind, r.title) for r in records] == [
        (CrashKind.WARNING, "WARNING in crashme_warn"),
        (CrashKind.GPF, "general protection fault in crashme_release"),
    ]
    assert records[0].panic_message is None and records[1].panic_message == "Fatal exception"
