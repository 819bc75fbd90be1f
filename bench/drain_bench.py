"""Drain on recovery: how soon a spool that waited out an outage reaches the collector, and in what order.

A real agent process spools --crashes old text dumps while no collector listens on its address,
waits --outage-seconds, then a real collector (its default rate limit unless given) starts on that
address. Printed, beside their goals and references measured in the same run:

- detection: collector up -> first report stored; goal: within the agent's maximum retry
  interval, min(heartbeat interval, [spool] backoff_max_seconds) = 60 s with the defaults
  (docs/agent.md, "Drain on recovery");
- drain: first -> last report stored; reference: the limiter's own pace for N reports,
  max(0, N - burst) / rate (the collector decides it, the agent must not add to it);
- order: whether the reports were stored oldest first (the order the dumps were found).

Usage: .venv/bin/python bench/drain_bench.py [--crashes 100] [--outage-seconds 60]
       [--reports-per-second 2] [--report-burst 60]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402

from bench.agent_bench import WARNING_LOG, Agent, env, free_port, wait_for  # noqa: E402
from wire.v1 import query_service_pb2, query_service_pb2_grpc  # noqa: E402

HEARTBEAT_S, BACKOFF_MAX_S = 60.0, 300.0  # the agent's defaults (deploy/config/agent.toml)


class Collector:
    """`crashfleet collector` on SQLite at a fixed port with the given per-host limit."""

    def __init__(self, work: Path, port: int, rate: float, burst: int) -> None:
        self.port = port
        (work / "collector.toml").write_text(f"[limits]\nreports_per_second = {rate}\nreport_burst = {burst}\n")
        with open(work / "collector.log", "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "crashfleet", "collector", "--db", f"sqlite:///{work}/collector.db",
                 "--config", str(work / "collector.toml"), "--listen", f"127.0.0.1:{port}", "--http", "",
                 "--log-level", "warning"],
                stdout=subprocess.DEVNULL, stderr=log, env=env(), cwd=work,
            )  # fmt: skip
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = query_service_pb2_grpc.QueryServiceStub(self.channel)  # type: ignore[no-untyped-call]
        wait_for(self._up, "the collector", 30, 0.05)

    def _up(self) -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def crashes(self) -> list[query_service_pb2.CrashSummary]:
        rows: list[query_service_pb2.CrashSummary] = []
        token = ""
        while True:
            reply = self.stub.ListCrashes(query_service_pb2.ListCrashesRequest(page_size=1000, page_token=token),
                                          timeout=30)  # fmt: skip
            rows.extend(reply.crashes)
            token = reply.next_page_token
            if not token:
                return rows

    def stop(self) -> None:
        self.channel.close()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def place(agent: Agent, count: int) -> list[str]:
    """`count` old text dumps, one per kdump-tools directory; their stamps, oldest first."""
    stamps = []
    old = time.time() - 3600
    for i in range(count):
        stamp = f"{202001010000 + i:012d}"
        directory = agent.crash / stamp
        directory.mkdir()
        path = directory / f"dmesg.{stamp}"
        path.write_bytes(WARNING_LOG.replace(b"PID: 242", f"PID: {10_000 + i}".encode()))
        for p in (path, directory):
            os.utime(p, (old, old))
        stamps.append(stamp)
    return stamps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crashes", type=int, default=100)
    parser.add_argument("--outage-seconds", type=float, default=60.0)
    parser.add_argument("--reports-per-second", type=float, default=2.0)
    parser.add_argument("--report-burst", type=int, default=60)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="crashfleet-drain-bench-"))
    port = free_port()
    agent = Agent(work / "agent", port)
    collector: Collector | None = None
    try:
        stamps = place(agent, args.crashes)
        agent.start()
        wait_for(lambda: agent.spool_depth() == args.crashes, f"{args.crashes} reports spooled", 300, 0.1)
        spooled = time.monotonic()
        print(f"outage: {args.crashes} reports spooled, collector down for {args.outage_seconds:.0f} s")
        time.sleep(max(0.0, args.outage_seconds - (time.monotonic() - spooled)))
        (work / "collector").mkdir()
        collector = Collector(work / "collector", port, args.reports_per_second, args.report_burst)
        up = time.monotonic()
        first = wait_for(lambda: agent.spool_depth() < args.crashes, "the first report stored", 900, 0.02)
        last = wait_for(lambda: agent.spool_depth() == 0, "the spool to drain", 900, 0.02)
        rows = collector.crashes()
        order = [r.source.rsplit(".", 1)[-1] for r in sorted(rows, key=lambda r: (r.received_at.ToNanoseconds(), r.id))]
        bound = min(HEARTBEAT_S, BACKOFF_MAX_S)
        pace = max(0, args.crashes - args.report_burst) / args.reports_per_second
        print(f"detection: collector up -> first stored {first - up:6.1f} s  (goal <= {bound:.0f} s, the agent's "
              "maximum retry interval)")  # fmt: skip
        print(f"drain:     first -> last stored      {last - first:6.1f} s  (reference: the limiter's pace "
              f"{pace:.1f} s for {args.crashes} reports at {args.reports_per_second:g}/s after a burst of "
              f"{args.report_burst}; agent/limiter = {(last - first) / pace if pace else 0:.2f}x)")  # fmt: skip
        print(f"total:     collector up -> last stored {last - up:6.1f} s  (goal <= {bound + 10 + pace:.0f} s: the "
              "maximum retry interval + 10 s + the limiter's pace)")  # fmt: skip
        print(f"stored {len(rows)} of {args.crashes}; oldest first: {'yes' if order == stamps else 'NO'}")
    finally:
        agent.stop()
        if collector is not None:
            collector.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
