"""Hand-built crash records shared by the fingerprint, report and decode tests."""

from __future__ import annotations

import dataclasses

from analysis.model import CallFrame, CrashKind, CrashRecord, Rip


def seed_record(**changes: object) -> CrashRecord:
    """The buildtest07 oops as a record (what parse_log gives for the restored seed)."""
    trace = (
        CallFrame("process_backlog", 0x9A, 0x100, address=0xFFFFFFFF8142C25A),
        CallFrame("net_rx_action", 0x103, 0x2F0, address=0xFFFFFFFF81431E13),
        CallFrame("__do_softirq", 0xC1, 0x1D0, address=0xFFFFFFFF81073EC1),
        CallFrame("handle_IRQ_event", 0x60, 0x170, reliable=False),
        CallFrame("call_softirq", 0x1C, 0x30),
        CallFrame("do_softirq", 0x65, 0xA0),
        CallFrame("irq_exit", 0x85, 0x90),
        CallFrame("do_IRQ", 0x75, 0xF0),
        CallFrame("ret_from_intr", 0x0, 0x11),
        CallFrame("intel_idle", 0xDE, 0x170, reliable=False),
        CallFrame("cpuidle_idle_call", 0xA7, 0x140),
        CallFrame("cpu_idle", 0xB6, 0x110),
        CallFrame("start_secondary", 0x202, 0x245),
    )
    record = CrashRecord(
        kind=CrashKind.NULL_DEREF,
        reason="BUG: unable to handle kernel NULL pointer dereference at 0000000000000060",
        normalized_reason="BUG: unable to handle kernel NULL pointer dereference",
        title="BUG: unable to handle kernel NULL pointer dereference in __netif_receive_skb",
        guilty_frame="__netif_receive_skb",
        fault_address=0x60,
        cpu=12,
        pid=0,
        comm="swapper",
        kernel_release="2.6.32-220.7.1.el6.x86_64",
        kernel_build="#1",
        hardware="Supermicro X8DTT-H/X8DTT-H",
        rip=Rip("__netif_receive_skb", 0x60, 0x6E0, address=0xFFFFFFFF8142BB40),
        call_trace=trace,
        registers={"r12": 0, "rax": 0x60},
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]
