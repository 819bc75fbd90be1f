"""End to end: real collector and agent processes on loopback, real dumps in every layout.

The Done-when of the agent issue: each crash arrives once with the right signature; a collector
outage across two agent restarts loses and duplicates nothing; `kill -9` mid-ship neither; a
truncated dump becomes a failed-capture report and the agent keeps going. The expected signature
of each dump is what the analyzer reads from makedumpfile's own `--dump-dmesg` text of that dump.
"""

from __future__ import annotations

import collections
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from analysis.signature import analyze
from tests.agent import builders
from tests.agent.e2e import Agent, Collector, free_port, wait_for
from tests.conftest import shared_path

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[1] / "data" / "agent"


def expected_title(crash: str) -> str:
    (record,) = analyze(shared_path("vmcores", crash, "dmesg.txt").read_bytes())
    return record.title


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Collector, Agent]]:
    port = free_port()
    collector = Collector(tmp_path, port)
    agent = Agent(tmp_path, port)
    try:
        yield collector, agent
    finally:
        if agent.alive():
            agent.kill9()
        collector.stop()


def settled(collector: Collector, agent: Agent, count: int, what: str, timeout: float = 60) -> None:
    wait_for(lambda: len(collector.crashes()) >= count, f"{count} crashes at the collector ({what})", timeout)
    wait_for(lambda: agent.spool_depth() == 0, f"the agent's spool to empty ({what})", timeout)


def test_every_layout_arrives_once_with_the_right_signature(
    world: tuple[Collector, Agent], tmp_path: Path
) -> None:
    collector, agent = world
    vmcores = shared_path("vmcores")
    crash, pstore = agent.crash_dir, agent.pstore_dir
    # Written before the agent runs (the capture kernel did it before the reboot): the start-up scan.
    builders.rhel(crash, vmcores / "null" / "vmcore.kdump-lzo", (vmcores / "null" / "dmesg.txt").read_bytes())
    builders.debian(
        crash, vmcores / "bug" / "vmcore.kdump-zlib", (vmcores / "bug" / "dmesg.txt").read_bytes()
    )
    builders.suse(crash, vmcores / "warn" / "vmcore.kdump-zlib", None)
    (crash / "kdump_lock").write_text("")
    (crash / "kexec_cmd").write_text("kexec -p ...\n")
    collector.start()
    agent.start()
    settled(collector, agent, 3, "start-up scan")
    # Landing while it runs: inotify.
    truncated = tmp_path / "truncated"
    with open(vmcores / "softlockup" / "vmcore.kdump-zlib", "rb") as f:
        truncated.write_bytes(f.read(2_000_000))
    builders.rhel(crash, truncated, None, name="127.0.0.1-2026-11-25-13:00:00")
    builders.debian(crash, vmcores / "null" / "vmcore.flat", None, stamp="202611251300")
    apport_dump = (vmcores / "softlockup" / "vmcore.kdump-zlib").read_bytes()
    builders.write_apport(crash / "linux-image-6.1.0-56-amd64-202611251310.crash", vmcore=apport_dump)
    # pstore keeps only the tail of the log (the kmsg_dump buffer), so its text is not the dump's.
    tail = b"".join((vmcores / "softlockup" / "dmesg.txt").read_bytes().splitlines(keepends=True)[-150:])
    builders.pstore_folder(pstore, tail)
    settled(collector, agent, 6, "captures landing while running")
    time.sleep(1.0)  # anything shipped twice would show up now
    crashes = collector.crashes()
    titles = collections.Counter(c.title for c in crashes)
    assert len(crashes) == 6, [(c.source, c.title) for c in crashes]
    assert titles == collections.Counter(
        {
            # The RHEL lzo dump and the Debian flattened dump are one crash (same kernel log, same
            # key): a dump found twice counts once.
            expected_title("null"): 1,
            expected_title("bug"): 1,
            expected_title("warn"): 1,
            expected_title("softlockup"): 2,  # the pstore text and the apport VmCore
            "failed capture (rhel)": 1,
        }
    ), titles
    failed = next(c for c in crashes if c.title.startswith("failed capture"))
    assert failed.source.endswith("127.0.0.1-2026-11-25-13:00:00")
    assert all(c.host == "e2e-host" for c in crashes)
    assert {c.kernel_release for c in crashes if not c.title.startswith("failed")} == {"6.1.0-56-amd64"}
    assert all(c.source.startswith(str(agent.workdir)) for c in crashes)  # absolute paths on the host
    assert agent.alive(), "the truncated dump stopped the agent"
    # SIGHUP re-reads the file; a running agent keeps going with the new values.
    agent.config.write_text(agent.config.read_text().replace("settle_seconds = 0.2", "settle_seconds = 0.3"))
    assert agent.process is not None
    agent.process.send_signal(signal.SIGHUP)
    wait_for(lambda: b"configuration reloaded" in agent.log.read_bytes(), "the SIGHUP reload")
    assert agent.alive()
    assert agent.stop() == 0
    assert b"agent stopped" in agent.log.read_bytes()


def test_outage_and_two_restarts_then_every_crash_exactly_once(world: tuple[Collector, Agent]) -> None:
    collector, agent = world
    log = (DATA / "logs" / "warning.log").read_bytes()
    landed = 0

    def land(n: int) -> None:
        nonlocal landed
        for _ in range(n):
            landed += 1
            text = log.replace(b"PID: 242", f"PID: {1000 + landed}".encode())
            builders.debian(agent.crash_dir, None, text, stamp=f"2026112512{landed:02d}")

    agent.start()  # the collector is down
    land(2)
    wait_for(lambda: agent.spool_depth() == 2, "two reports spooled during the outage")
    assert agent.stop() == 0
    land(2)  # while no agent runs
    agent.start()
    wait_for(lambda: agent.spool_depth() == 4, "four reports spooled")
    land(1)
    wait_for(lambda: agent.spool_depth() == 5, "five reports spooled")
    assert agent.stop() == 0
    agent.start()
    land(1)
    wait_for(lambda: agent.spool_depth() == 6, "six reports spooled")
    collector.start()
    settled(collector, agent, 6, "after the collector came back", timeout=120)
    time.sleep(1.0)
    crashes = collector.crashes()
    assert len(crashes) == landed == 6
    assert len({c.source for c in crashes}) == 6
    assert agent.stop() == 0


def test_kill_9_mid_ship_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    collector = Collector(tmp_path, free_port(), unlimited=True)
    agent = Agent(tmp_path, collector.port)
    log = (DATA / "logs" / "warning.log").read_bytes()
    total = 120
    for i in range(total):
        text = log.replace(b"PID: 242", f"PID: {2000 + i}".encode())
        builders.debian(agent.crash_dir, None, text, stamp=f"20261125{i:04d}")
    try:
        collector.start()
        agent.start()
        wait_for(lambda: len(collector.crashes()) >= 1, "the first report", interval=0.01)
        agent.kill9()
        at_kill = len(collector.crashes())
        assert at_kill < total, "the agent finished before kill -9: nothing was in flight"
        agent.start()
        settled(collector, agent, total, "after the restart", timeout=120)
        time.sleep(1.0)
        crashes = collector.crashes()
        assert len(crashes) == total, f"{len(crashes)} stored, {total} landed ({at_kill} before kill -9)"
        assert len({c.source for c in crashes}) == total
        assert agent.stop() == 0
    finally:
        if agent.alive():
            agent.kill9()
        collector.stop()
