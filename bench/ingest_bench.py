"""Collector ingest throughput next to a bare grpc.aio echo server, and clustering cost vs store size.

Usage: bench/ingest_bench.py [--clients N] [--seconds S] [--rounds R] [--sizes 1000,10000,100000] [--pg URL]
       [--skip-throughput] [--skip-clustering]

Part 1 (throughput): the real collector (`crashfleet collector`, SQLite in a temp dir) and a bare
grpc.aio server implementing the same IngestService with constant answers each run in their own
process; N concurrent grpc.aio clients on loopback call ReportCrash (a fresh idempotency key and
one of 50 signatures each time, so the path includes dedupe, clustering and the commit) and then
Heartbeat, S seconds per round, R rounds alternating between the two servers so that load from
other processes on the machine hits both alike. Printed: median calls/s, p50, p99 for both
servers and the ratio collector/echo (goal >= 0.5), and each server's CPU time per call (from
/proc; steadier than calls/s when other jobs share the machine).

Part 2 (clustering cost): a store preloaded by bulk SQL with 10^3, 10^4, 10^5 clusters (5 frames
each, drawn from a 20 000-name vocabulary, all the same kind and reason so every cluster competes
for the candidate buckets), then the time per report for 600 reports through Store.ingest — a
third exact matches, a third one frame off an existing cluster (similarity join), a third new.
Goal: flat across sizes. SQLite by default; --pg runs it on PostgreSQL too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402
from grpc import aio  # noqa: E402

from wire.v1 import crash_pb2, ingest_service_pb2, ingest_service_pb2_grpc  # noqa: E402

KIND = "null-deref"
REPORTS = 600  # measured per store size (after WARMUP unmeasured ones)
WARMUP = 30
REASON = "BUG: kernel NULL pointer dereference"


# Echo server ------------------------------------------------------------------------------------


class _Echo(ingest_service_pb2_grpc.IngestServiceServicer):
    async def ReportCrash(self, request: Any, context: Any) -> ingest_service_pb2.ReportCrashResponse:
        return ingest_service_pb2.ReportCrashResponse(crash_id="echo", cluster_id="echo", duplicate=False)

    async def Heartbeat(self, request: Any, context: Any) -> ingest_service_pb2.HeartbeatResponse:
        return ingest_service_pb2.HeartbeatResponse(interval_seconds=60)


async def _serve_echo(port: int) -> None:
    from wire.grpc_options import server_options

    server = aio.server(options=server_options())
    ingest_service_pb2_grpc.add_IngestServiceServicer_to_server(_Echo(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


# Load generation --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _requests() -> list[ingest_service_pb2.ReportCrashRequest]:
    """50 distinct realistic signatures (records built by hand, signed by the real analyzer)."""
    from analysis.fingerprint import compute
    from analysis.model import CallFrame, CrashKind, CrashRecord
    from wire import convert

    out = []
    for i in range(50):
        frames = (f"driver{i}_xmit", "dev_hard_start_xmit", "sch_direct_xmit", "__dev_queue_xmit", "ip_finish_output2")
        record = CrashRecord(
            kind=CrashKind.NULL_DEREF, reason=REASON + ", address: 0000000000000060", normalized_reason=REASON,
            title=f"{REASON} in {frames[0]}", guilty_frame=frames[0], kernel_release="6.1.0-26-amd64",
            hardware="QEMU Standard PC (i440FX + PIIX, 1996)", modules=("e1000e", "nvme", f"driver{i}"),
            call_trace=tuple(CallFrame(f, 0x10, 0x100) for f in frames), registers={"rax": 0, "cr2": 0x60},
            excerpt="BUG: kernel NULL pointer dereference, address: 0000000000000060\n" * 20,
        )  # fmt: skip
        record.fingerprint = compute(record)
        host = crash_pb2.HostFacts(hostname="bench-0", kernel_release="6.1.0-26-amd64", machine="x86_64")
        out.append(convert.report_request(record, key="x" * 16, host=host, source_path="/var/crash/bench/dmesg"))
    return out


async def _drive(target: str, clients: int, seconds: float, method: str) -> tuple[float, list[float], int]:
    """`clients` concurrent callers for `seconds`: (calls/s, latencies in s, errors)."""
    templates = _requests()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client(index: int, channel: aio.Channel) -> None:
        nonlocal errors
        stub = ingest_service_pb2_grpc.IngestServiceStub(channel)
        n = 0
        while time.perf_counter() < deadline:
            pending: Awaitable[Any]
            if method == "ReportCrash":
                request = ingest_service_pb2.ReportCrashRequest()
                request.CopyFrom(templates[(index + n) % len(templates)])
                request.idempotency_key = uuid.uuid4().hex
                request.host.hostname = f"bench-{index}"
                start = time.perf_counter()
                pending = stub.ReportCrash(request, timeout=30)
            else:
                hb = ingest_service_pb2.HeartbeatRequest(host=crash_pb2.HostFacts(
                    hostname=f"bench-{index}", kernel_release="6.1.0-26-amd64", machine="x86_64",
                    modules=["e1000e", "nvme"], cpus=2, memory_bytes=1 << 30, agent_version="bench"))  # fmt: skip
                start = time.perf_counter()
                pending = stub.Heartbeat(hb, timeout=30)
            try:
                await pending
            except grpc.RpcError:
                errors += 1
            latencies.append(time.perf_counter() - start)
            n += 1

    channels = [aio.insecure_channel(target) for _ in range(min(clients, 8))]
    for ch in channels:
        await ch.channel_ready()
    began = time.perf_counter()
    await asyncio.gather(*(client(i, channels[i % len(channels)]) for i in range(clients)))
    elapsed = time.perf_counter() - began
    for ch in channels:
        await ch.close(None)
    return len(latencies) / elapsed, latencies, errors


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else float("nan")


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU a server process has used so far (Linux /proc): the cost per call that
    other load on the machine does not distort the way it distorts calls/s."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(clients: int, seconds: float, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        echo_port, coll_port = _free_port(), _free_port()
        config = Path(tmp, "collector.toml")
        config.write_text(
            f'db = "sqlite:///{tmp}/bench.db"\nlisten = "127.0.0.1:{coll_port}"\nhttp = ""\nlog_level = "warning"\n'
            "[limits]\nreports_per_second = 1000000.0\nreport_burst = 1000000\n"
            "peer_reports_per_second = 1000000.0\npeer_report_burst = 1000000\n"
        )
        env = dict(os.environ, PYTHONPATH=str(REPO))
        echo = subprocess.Popen([sys.executable, __file__, "--echo-server", str(echo_port)], env=env)
        coll = subprocess.Popen([sys.executable, "-m", "crashfleet", "collector", "--config", str(config)], env=env)
        try:
            _wait_port(echo_port, echo)
            _wait_port(coll_port, coll)
            print(f"throughput: {clients} concurrent clients, {rounds} alternating rounds of {seconds:.0f} s "
                  "per server, loopback; medians")  # fmt: skip
            print(f"{'method':<12} {'server':<10} {'calls/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}"
                  f" {'cpu ms/call':>12}")  # fmt: skip
            pids = {"echo": echo.pid, "collector": coll.pid}
            for method in ("ReportCrash", "Heartbeat"):
                runs: dict[str, list[tuple[float, float, float, int, float]]] = {"echo": [], "collector": []}
                for _ in range(rounds):
                    for name, port in (("echo", echo_port), ("collector", coll_port)):
                        cpu_before = _cpu_seconds(pids[name])
                        began = time.perf_counter()
                        rate, lat, errors = asyncio.run(_drive(f"127.0.0.1:{port}", clients, seconds, method))
                        calls = rate * (time.perf_counter() - began)
                        cpu = (_cpu_seconds(pids[name]) - cpu_before) / max(1.0, calls)
                        runs[name].append((rate, _pct(lat, 50), _pct(lat, 99), errors, cpu))
                rates = {}
                for name, results in runs.items():
                    rates[name] = statistics.median(r[0] for r in results)
                    p50 = statistics.median(r[1] for r in results)
                    p99 = statistics.median(r[2] for r in results)
                    errors = sum(r[3] for r in results)
                    cpu_ms = statistics.median(r[4] for r in results) * 1e3
                    print(f"{method:<12} {name:<10} {rates[name]:>9.0f} {p50 * 1e3:>8.2f} {p99 * 1e3:>8.2f} {errors:>7}"
                          f" {cpu_ms:>12.3f}")  # fmt: skip
                ratios = sorted(c[0] / e[0] for c, e in zip(runs["collector"], runs["echo"], strict=True))
                print(f"{method:<12} ratio collector/echo = {rates['collector'] / rates['echo']:.2f} "
                      f"(per round {', '.join(f'{r:.2f}' for r in ratios)}; goal >= 0.5)")  # fmt: skip
        finally:
            for proc in (echo, coll):
                proc.terminate()
                proc.wait(timeout=30)


# Clustering cost ----------------------------------------------------------------------------------


def _preload(store: Any, n: int, vocab: list[str], rng: random.Random) -> list[tuple[str, ...]]:
    """Bulk-insert n clusters (and their fingerprints and index buckets) straight into the schema."""
    from collector.clustering import CLUSTER_RULES_VERSION, bucket_keys, cluster_id_for

    now = int(datetime.now(UTC).timestamp() * 1e6)
    frames_of: list[tuple[str, ...]] = []
    clusters, fps, buckets = [], [], []
    for i in range(n):
        frames = tuple(rng.sample(vocab, 5))
        fp = f"pre-{i}"
        cid = cluster_id_for(fp)
        frames_of.append(frames)
        clusters.append((cid, fp, CLUSTER_RULES_VERSION, f"pre {i}", KIND, REASON, frames[0], json.dumps(frames),
                         1, 1, now, now, ""))  # fmt: skip
        fps.append((fp, cid, "fp-1", 1.0, now))
        buckets += [(b, cid) for b in bucket_keys(KIND, REASON, frames)]
    with store._write_tx() as tx:
        tx.many("INSERT INTO clusters (id, fingerprint, rules_version, title, kind, normalized_reason, guilty_frame,"
                " frames, count, hosts, first_seen, last_seen, representative_crash_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", clusters)  # fmt: skip
        tx.many("INSERT INTO cluster_fingerprints (fingerprint, cluster_id, fingerprint_version, similarity,"
                " created_at) VALUES (?, ?, ?, ?, ?)", fps)  # fmt: skip
        tx.many("INSERT INTO cluster_buckets (bucket, cluster_id) VALUES (?, ?) ON CONFLICT DO NOTHING", buckets)
    return frames_of


def clustering_cost(sizes: list[int], pg: str | None) -> None:
    from collector.store import NewCrash
    from collector.store.postgres import PostgresStore
    from collector.store.sqlite import SqliteStore

    print(f"\nclustering cost per report (Store.ingest, {REPORTS} reports: 1/3 exact, 1/3 similar, 1/3 new)")
    print(f"{'backend':<10} {'clusters':>9} {'preload s':>10} {'mean ms':>8} {'p99 ms':>8} {'similar joined':>15}")
    backends = ["sqlite"] + (["postgres"] if pg else [])
    for backend in backends:
        for n in sizes:
            rng = random.Random(n)
            vocab = [f"fn_{i}" for i in range(20_000)]
            with tempfile.TemporaryDirectory() as tmp:
                schema = f"cf_bench_{uuid.uuid4().hex[:8]}"
                store: Any = (SqliteStore(f"{tmp}/c.db") if backend == "sqlite"
                              else PostgresStore(pg or "", schema=schema))  # fmt: skip
                try:
                    t0 = time.perf_counter()
                    existing = _preload(store, n, vocab, rng)
                    preload = time.perf_counter() - t0
                    times, joined = [], 0
                    for i in range(-WARMUP, REPORTS):
                        j = rng.randrange(n)
                        pick = existing[j]
                        if i % 3 == 0:
                            frames, fp = pick, f"pre-{j}"
                        elif i % 3 == 1:
                            frames, fp = (pick[0], rng.choice(vocab), *pick[2:]), f"sim-{i}"
                        else:
                            frames, fp = tuple(rng.sample(vocab, 5)), f"new-{i}"
                        crash = NewCrash(
                            idempotency_key=f"bench-{i + WARMUP:06d}", host=f"h{i % 50}", title="t", kind=KIND,
                            normalized_reason=REASON, guilty_frame=frames[0], fingerprint=fp,
                            fingerprint_version="fp-1", frames=frames, source="/var/crash/x", crash_time=None,
                            received_at=datetime.now(UTC), kernel_release="6.1.0-26-amd64", hardware="QEMU",
                            modules=("e1000e", "nvme"), signature_json="{}", excerpt="",
                        )  # fmt: skip
                        start = time.perf_counter()
                        result = store.ingest(crash)
                        if i < 0:
                            continue
                        times.append(time.perf_counter() - start)
                        if i % 3 == 1 and not result.cluster_created:
                            joined += 1
                    print(f"{backend:<10} {n:>9} {preload:>10.1f} {statistics.mean(times) * 1e3:>8.2f} "
                          f"{_pct(times, 99) * 1e3:>8.2f} {joined:>11}/{REPORTS // 3}")  # fmt: skip
                finally:
                    if backend == "postgres":
                        store.drop_schema()
                    store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0, help="per round and server")
    parser.add_argument("--rounds", type=int, default=3, help="alternating echo/collector rounds (median)")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--pg", metavar="URL", help="also measure clustering cost on this PostgreSQL")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-clustering", action="store_true")
    parser.add_argument("--echo-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        asyncio.run(_serve_echo(args.echo_server))
        return 0
    if not args.skip_throughput:
        throughput(args.clients, args.seconds, args.rounds)
    if not args.skip_clustering:
        clustering_cost([int(s) for s in args.sizes.split(",")], args.pg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
