"""Host inventory from a fake /proc and DMI tree, and the metrics' names and exposition."""

from __future__ import annotations

import urllib.request
from pathlib import Path

from agent.heartbeat import collect_inventory, dmi_hardware, parse_meminfo_total, parse_modules, read_boot_id
from agent.metrics import AgentMetrics


def test_inventory_from_a_fake_tree(tmp_path: Path) -> None:
    dmi, proc = tmp_path / "dmi", tmp_path / "proc"
    (proc / "sys" / "kernel").mkdir(parents=True)
    dmi.mkdir()
    (dmi / "sys_vendor").write_text("Supermicro\n")
    (dmi / "product_name").write_text("X8DTT-H\n")
    (dmi / "board_name").write_text("X8DTT-H\n")
    (proc / "modules").write_text("nvme 49152 2 - Live 0x0\nxfs 1 0 - Live 0x0\n")
    (proc / "meminfo").write_text("MemTotal:        8048576 kB\nMemFree: 1 kB\n")
    (proc / "sys" / "kernel" / "osrelease").write_text("6.1.0-56-amd64\n")
    (tmp_path / "boot_id").write_text("0b5c3c5e-1a2b-4c3d-8e9f-001122334455\n")
    inv = collect_inventory("h", dmi_dir=dmi, proc_dir=proc, boot_id_path=tmp_path / "boot_id")
    assert inv.hardware == "Supermicro X8DTT-H/X8DTT-H"  # as the kernel prints "Hardware name:"
    assert inv.modules == ("nvme", "xfs")
    assert inv.memory_bytes == 8048576 * 1024
    assert inv.kernel_release == "6.1.0-56-amd64"
    assert inv.boot_id == "0b5c3c5e-1a2b-4c3d-8e9f-001122334455"


def test_missing_files_leave_fields_empty(tmp_path: Path) -> None:
    inv = collect_inventory(
        "h", dmi_dir=tmp_path / "none", proc_dir=tmp_path / "none", boot_id_path=tmp_path / "x"
    )
    assert (inv.hardware, inv.modules, inv.memory_bytes, inv.boot_id) == ("", (), 0, "")
    assert inv.kernel_release  # falls back to uname


def test_parsers_on_odd_input(tmp_path: Path) -> None:
    assert parse_modules("\n\nfoo 1\n") == ("foo",)
    assert parse_meminfo_total("garbage") == 0
    (tmp_path / "b").write_text("not-a-uuid")
    assert read_boot_id(tmp_path / "b") == ""
    assert dmi_hardware(tmp_path) == ""


def test_metric_names_and_textfile_is_replaced_atomically(tmp_path: Path) -> None:
    metrics = AgentMetrics()
    metrics.crashes_detected.labels("debian").inc()
    metrics.spool_depth.set(3)
    metrics.spool_dropped.labels("spool_full").inc(2)
    metrics.write_textfile(tmp_path)
    text = (tmp_path / "crashfleet_agent.prom").read_text()
    for name in (
        'crashfleet_agent_crashes_detected_total{source="debian"} 1.0',
        "crashfleet_agent_crashes_shipped_total 0.0",
        "crashfleet_agent_spool_depth 3.0",
        "crashfleet_agent_spool_oldest_age_seconds 0.0",
        "# TYPE crashfleet_agent_ship_failures_total counter",
        "crashfleet_agent_parse_failures_total 0.0",
        'crashfleet_agent_spool_dropped_total{reason="spool_full"} 2.0',
        # The other closed reasons exist from the start, so increase() sees their first drop.
        'crashfleet_agent_spool_dropped_total{reason="too_old"} 0.0',
        'crashfleet_agent_spool_dropped_total{reason="rejected"} 0.0',
    ):
        assert name in text, name
    assert [p.name for p in tmp_path.iterdir()] == ["crashfleet_agent.prom"]  # no temp file left


def test_metrics_served_on_localhost() -> None:
    metrics = AgentMetrics()
    port = metrics.serve("127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert b"crashfleet_agent_spool_depth" in response.read()
    finally:
        metrics.stop()
