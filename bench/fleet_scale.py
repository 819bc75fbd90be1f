"""Fleet scale: onboarding, steady heartbeats, a crash storm and every query, at 10^5-10^6 hosts.

Usage: bench/fleet_scale.py [--backends sqlite,postgres] [--hosts-sqlite 100000] [--hosts-pg 1000000]
       [--pg URL] [--clients 32] [--crashes 20000] [--module-sets 40] [--echo-calls 20000]
       [--steady-fraction 1.0]

Everything goes through the real gRPC API of a real collector process (`crashfleet collector`,
SQLite in a temp dir or PostgreSQL in a schema of its own, dropped afterwards):

1. onboarding: every host's first heartbeat (distinct hostnames, one of --module-sets realistic
   module lists of ~51 modules, kernel releases and hardware spread over the fleet), in 10 slices
   of 10 % of the fleet each; printed per slice: heartbeats/s. Goal: flat (max/min <= 1.2).
2. steady state: one more heartbeat round of the whole fleet, same slices. Goal: onboarding
   >= 0.5x steady.
3. a crash storm: --crashes ReportCrash calls from hosts spread over the fleet (50 signatures).
4. bytes per host of the host inventory (hosts + module sets, their indexes), and of the whole
   database per host.
5. the latency of each list and detail query at the final size (median of 5, milliseconds).

On a PostgreSQL server with autovacuum off (this lab's), the schema is VACUUM (ANALYZE)d after
onboarding and after the storm, timed, in autovacuum's place. Per slice the server's CPU per call
is split into the collector's and PostgreSQL's, with WAL bytes per call and checkpoints.

Heartbeat rates are set against a bare grpc.aio echo server (bench/ingest_bench.py's, started
the same way) measured in the same run with the same client code, before and after the fleet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import grpc  # noqa: E402
import ingest_bench  # noqa: E402  -- the echo server, ports, percentiles and signatures of the ingest bench
from grpc import aio  # noqa: E402

from wire.v1 import (  # noqa: E402
    crash_pb2,
    ingest_service_pb2,
    ingest_service_pb2_grpc,
    query_service_pb2,
    query_service_pb2_grpc,
)

SLICES = 10
RELEASES = ("6.1.0-26-amd64", "6.1.0-27-amd64", "6.1.0-28-amd64", "5.10.0-32-amd64", "6.12.9-amd64")
HARDWARE = ("Dell Inc. PowerEdge R640", "HPE ProLiant DL360 Gen10", "Supermicro SYS-1029P", "QEMU Standard PC (Q35)")
# A pool a distribution's fleet draws its loaded modules from; each module set is 51 of them.
MODULE_POOL = tuple(
    [f"{name}" for name in ("ext4", "xfs", "btrfs", "nvme", "nvme_core", "e1000e", "ixgbe", "i40e", "mlx5_core",
                            "mlx5_ib", "bonding", "bridge", "stp", "llc", "overlay", "nf_tables", "nf_conntrack",
                            "nf_nat", "iptable_filter", "ip_tables", "x_tables", "dm_mod", "dm_crypt", "raid1",
                            "md_mod", "ahci", "libahci", "sd_mod", "sg", "scsi_mod", "usb_storage", "xhci_pci",
                            "xhci_hcd", "ipmi_si", "ipmi_devintf", "ipmi_msghandler", "kvm", "kvm_intel",
                            "irqbypass", "crc32c_intel", "ghash_clmulni_intel", "aesni_intel", "sha256_ssse3",
                            "tcp_bbr", "sch_fq", "vxlan", "ip6_udp_tunnel", "udp_tunnel", "tls", "fuse")]
    + [f"vendor_mod_{i:03d}" for i in range(150)]
)  # fmt: skip


def module_set(i: int) -> list[str]:
    """The i-th module set of the fleet: 51 names, sets differing in a dozen members."""
    rng = random.Random(i)
    return sorted(set(MODULE_POOL[:39]) | set(rng.sample(MODULE_POOL[39:], 12)))


def hostname(i: int) -> str:
    return f"node-{i:07d}.rack{i % 97:02d}.dc{i % 5}.example.net"


def heartbeat(i: int, sets: list[list[str]]) -> ingest_service_pb2.HeartbeatRequest:
    host = crash_pb2.HostFacts(
        hostname=hostname(i), kernel_release=RELEASES[i % len(RELEASES)], machine="x86_64",
        hardware=HARDWARE[i % len(HARDWARE)], modules=sets[i % len(sets)], cpus=32 + (i % 4) * 16,
        memory_bytes=(64 + (i % 3) * 64) << 30, agent_version="0.3.0",
    )  # fmt: skip
    return ingest_service_pb2.HeartbeatRequest(host=host)


async def drive(target: str, clients: int, calls: Iterator[Callable[[Any], Any]]) -> tuple[float, list[float], int]:
    """`clients` concurrent callers taking calls from one iterator until it is empty:
    (calls/s, latencies in s, errors)."""
    latencies: list[float] = []
    errors = 0

    async def client(stub: Any) -> None:
        nonlocal errors
        for call in calls:
            start = time.perf_counter()
            try:
                await call(stub)
            except grpc.RpcError:
                errors += 1
            latencies.append(time.perf_counter() - start)

    channels = [aio.insecure_channel(target) for _ in range(min(clients, 8))]
    for ch in channels:
        await ch.channel_ready()
    stubs = [ingest_service_pb2_grpc.IngestServiceStub(ch) for ch in channels]
    began = time.perf_counter()
    await asyncio.gather(*(client(stubs[i % len(stubs)]) for i in range(clients)))
    elapsed = time.perf_counter() - began
    for ch in channels:
        await ch.close(None)
    return len(latencies) / elapsed, latencies, errors


def beats(indexes: range, sets: list[list[str]]) -> Iterator[Callable[[Any], Any]]:
    for i in indexes:
        request = heartbeat(i, sets)
        yield lambda stub, request=request: stub.Heartbeat(request, timeout=60)


def reports(n: int, hosts: int, seed: int) -> Iterator[Callable[[Any], Any]]:
    templates = ingest_bench._requests()
    rng = random.Random(seed)
    for k in range(n):
        request = ingest_service_pb2.ReportCrashRequest()
        request.CopyFrom(templates[k % len(templates)])
        request.idempotency_key = uuid.uuid4().hex
        request.host.hostname = hostname(rng.randrange(hosts))
        yield lambda stub, request=request: stub.ReportCrash(request, timeout=60)


def slices(hosts: int) -> list[range]:
    edges = [hosts * k // SLICES for k in range(SLICES + 1)]
    return [range(edges[k], edges[k + 1]) for k in range(SLICES)]


def echo_rate(target: str, clients: int, calls: int, sets: list[list[str]]) -> float:
    rate, _, errors = asyncio.run(drive(target, clients, beats(range(calls), sets)))
    if errors:
        print(f"  echo: {errors} errors")
    return rate


def fleet_rounds(
    target: str,
    clients: int,
    hosts: int,
    sets: list[list[str]],
    label: str,
    server: ServerProbe,
    fraction: float = 1.0,
) -> tuple[list[float], list[float]]:
    """One heartbeat per host, slice by slice: (calls/s, server CPU ms per call) per slice. The
    CPU of the collector (and of PostgreSQL's backends) per call is what other load on a
    shared machine does not distort; calls/s is what an operator sees. Split per process, with
    PostgreSQL's WAL bytes and checkpoints per slice, it says where a slow slice spent its time.
    `fraction` < 1 takes only the first part of each slice (a steady round sampled across the
    whole fleet)."""
    rates, cpus = [], []
    for k, whole in enumerate(slices(hosts)):
        part = range(whole.start, whole.start + max(1, int(len(whole) * fraction)))
        before = server.sample()
        rate, lat, errors = asyncio.run(drive(target, clients, beats(part, sets)))
        cost = server.sample().minus(before, max(1, len(part)))
        rates.append(rate)
        cpus.append(cost.cpu_ms)
        print(f"  {label:<10} slice {k + 1:>2} hosts {part.start:>8}-{part.stop - 1:<8} {rate:>8.0f}/s"
              f"  p50 {ingest_bench._pct(lat, 50) * 1e3:6.2f} ms  p99 {ingest_bench._pct(lat, 99) * 1e3:7.2f} ms"
              f"  server cpu {cost.cpu_ms:6.3f} ms/call{cost.detail}  errors {errors}")  # fmt: skip
    return rates, cpus


@dataclass(frozen=True)
class Cost:
    """A slice's server cost per call."""

    cpu_ms: float
    detail: str


@dataclass(frozen=True)
class ServerSample:
    collector_s: float
    backends_s: float
    wal_bytes: int
    checkpoints: int

    def minus(self, before: ServerSample, calls: int) -> Cost:
        collector = (self.collector_s - before.collector_s) / calls * 1e3
        backends = (self.backends_s - before.backends_s) / calls * 1e3
        detail = ""
        if self.wal_bytes or before.wal_bytes:
            detail = (f" (collector {collector:.3f}, postgres {backends:.3f}; WAL {(self.wal_bytes - before.wal_bytes) / calls:.0f}"
                      f" B/call, checkpoints {self.checkpoints - before.checkpoints})")  # fmt: skip
        return Cost(collector + backends, detail)


@dataclass
class ServerProbe:
    """The collector process and, on PostgreSQL, its backends and the server's WAL position."""

    collector: int
    backends: list[int]
    pg: str | None = None

    def sample(self) -> ServerSample:
        wal = checkpoints = 0
        if self.pg is not None:
            import psycopg

            with psycopg.connect(self.pg, autocommit=True) as conn:
                row = conn.execute(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint,"
                    " checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
                ).fetchone()
            wal, checkpoints = int(row[0]), int(row[1])
        return ServerSample(_cpu([self.collector]), _cpu(self.backends), wal, checkpoints)


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # a backend that went away
            total += ingest_bench._cpu_seconds(pid)
    return total


# The server settings a reader of the rates needs: whether the tables fit in the buffer cache,
# how often checkpoints come (each makes the next writes of every page log it whole), commits.
POSTGRES_SETTINGS = ("server_version", "shared_buffers", "max_wal_size", "checkpoint_timeout", "synchronous_commit", "autovacuum")


def postgres_settings(pg: str | None) -> str:
    import psycopg

    with psycopg.connect(pg or "", autocommit=True) as conn:
        return ", ".join(f"{name} {conn.execute(f'SHOW {name}').fetchone()[0]}" for name in POSTGRES_SETTINGS)


def _postgres_pids(pg: str | None, name: str) -> list[int]:
    """The PostgreSQL backends serving the collector: its connections carry application_name `name`."""
    import psycopg

    with psycopg.connect(pg or "", autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", (name,)).fetchall()
    return [int(r[0]) for r in rows]


def inventory_bytes(backend: str, db: str, schema: str, pg: str | None) -> tuple[int, int]:
    """(bytes of hosts + module sets with their indexes, bytes of the whole database)."""
    tables = ("hosts", "module_sets", "module_set_members")
    if backend == "sqlite":
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            names = [r[0] for r in conn.execute(
                f"SELECT name FROM sqlite_master WHERE tbl_name IN ({', '.join('?' * len(tables))})", tables)]  # fmt: skip
            inv = conn.execute(
                f"SELECT SUM(pgsize) FROM dbstat WHERE name IN ({', '.join('?' * len(names))})", names
            ).fetchone()[0]
            total = conn.execute("SELECT SUM(pgsize) FROM dbstat").fetchone()[0]
        return int(inv), int(total)
    import psycopg

    with psycopg.connect(pg or "", autocommit=True) as conn:
        inv = sum(
            conn.execute("SELECT pg_total_relation_size(%s)", (f'"{schema}".{t}',)).fetchone()[0] for t in tables
        )
        total = conn.execute(
            "SELECT SUM(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind = 'r'",
            (schema,),
        ).fetchone()[0]
    return int(inv), int(total)


def stand_in_for_autovacuum(backend: str, schema: str, pg: str | None) -> None:
    """On a PostgreSQL server with autovacuum off (this lab's), VACUUM (ANALYZE) the schema's
    tables, as autovacuum would have done on a production server after a phase that wrote this
    much: without it the planner has no statistics and index-only scans (the counts of a
    listing) visit every heap page. Timed and printed; nothing is done where autovacuum is on."""
    if backend != "postgres":
        return
    import psycopg

    with psycopg.connect(pg or "", autocommit=True) as conn:
        if conn.execute("SHOW autovacuum").fetchone()[0] == "on":
            return
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,))]  # fmt: skip
        start = time.perf_counter()
        for table in tables:
            conn.execute(f'VACUUM (ANALYZE) "{schema}"."{table}"')
    print(f"  autovacuum is off on this server: VACUUM (ANALYZE) of {len(tables)} tables in its place,"
          f" {time.perf_counter() - start:.1f} s")  # fmt: skip


def query_latencies(target: str, fleet: int, repeat: int = 5) -> None:
    """Each list and detail query of the QueryService at the final size."""
    channel = grpc.insecure_channel(target)
    stub = query_service_pb2_grpc.QueryServiceStub(channel)
    q = query_service_pb2
    clusters = stub.ListClusters(q.ListClustersRequest(page_size=100), timeout=600)
    crashes = stub.ListCrashes(q.ListCrashesRequest(page_size=100), timeout=600)
    hosts = stub.ListHosts(q.ListHostsRequest(page_size=100), timeout=600)
    top = max(clusters.clusters, key=lambda c: c.count)
    crash = crashes.crashes[0]
    some_host = crash.host
    middle = hostname(fleet // 2)
    print(f"  totals: clusters {clusters.total_count}, crashes {crashes.total_count}, hosts {hosts.total_count}")
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("ListClusters first page (100, with total)", lambda: stub.ListClusters(q.ListClustersRequest(page_size=100))),
        ("ListClusters next page", lambda: stub.ListClusters(
            q.ListClustersRequest(page_size=100, page_token=clusters.next_page_token or ""))),
        ("ListClusters host filter", lambda: stub.ListClusters(
            q.ListClustersRequest(filter=q.Filter(host=some_host), page_size=100))),
        ("GetCluster (largest)", lambda: stub.GetCluster(q.GetClusterRequest(cluster_id=top.id))),
        ("GetCluster by 6-digit prefix", lambda: stub.GetCluster(q.GetClusterRequest(cluster_id=top.id[:6]))),
        ("ListCrashes first page (100, with total)", lambda: stub.ListCrashes(q.ListCrashesRequest(page_size=100))),
        ("ListCrashes next page", lambda: stub.ListCrashes(
            q.ListCrashesRequest(page_size=100, page_token=crashes.next_page_token))),
        ("ListCrashes of largest cluster", lambda: stub.ListCrashes(
            q.ListCrashesRequest(filter=q.Filter(cluster_id=top.id), page_size=100))),
        ("ListCrashes of one host", lambda: stub.ListCrashes(
            q.ListCrashesRequest(filter=q.Filter(host=some_host), page_size=100))),
        ("GetCrash", lambda: stub.GetCrash(q.GetCrashRequest(crash_id=crash.id))),
        ("GetCrash by 14-digit prefix", lambda: stub.GetCrash(q.GetCrashRequest(crash_id=crash.id[:14]))),
        ("ListHosts first page (100, with total)", lambda: stub.ListHosts(q.ListHostsRequest(page_size=100))),
        ("ListHosts next page", lambda: stub.ListHosts(
            q.ListHostsRequest(page_size=100, page_token=hosts.next_page_token))),
        ("ListHosts one host", lambda: stub.ListHosts(q.ListHostsRequest(filter=q.Filter(host=middle)))),
        ("ListHosts module filter", lambda: stub.ListHosts(
            q.ListHostsRequest(filter=q.Filter(module="vendor_mod_007"), page_size=100))),
    ]  # fmt: skip
    for name, call in cases:
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        print(f"  {name:<42} {statistics.median(times) * 1e3:>9.2f} ms")
    channel.close()


def run_backend(backend: str, hosts: int, args: argparse.Namespace, echo_target: str) -> None:
    sets = [module_set(i) for i in range(args.module_sets)]
    with tempfile.TemporaryDirectory() as tmp:
        port = ingest_bench._free_port()
        schema = f"cf_bench_{uuid.uuid4().hex[:8]}"
        db_path = f"{tmp}/fleet.db"
        db = f"sqlite:///{db_path}" if backend == "sqlite" else f"{args.pg}?schema={schema}&application_name={schema}"
        config = Path(tmp, "collector.toml")
        config.write_text(
            f'db = "{db}"\nlisten = "127.0.0.1:{port}"\nhttp = ""\nlog_level = "warning"\n'
            "[limits]\nreports_per_second = 1000000.0\nreport_burst = 1000000\n"
            "peer_reports_per_second = 1000000.0\npeer_report_burst = 1000000\n"
        )
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen([sys.executable, "-m", "crashfleet", "collector", "--config", str(config)], env=env)
        target = f"127.0.0.1:{port}"
        try:
            ingest_bench._wait_port(port, proc)
            print(f"\n== {backend}: {hosts} hosts, {args.module_sets} module sets of 51 modules, "
                  f"{args.clients} clients, loopback ==")  # fmt: skip
            echo_before = echo_rate(echo_target, args.clients, args.echo_calls, sets)
            print(f"  echo before: {echo_before:.0f}/s")
            server = ServerProbe(proc.pid, [])
            if backend == "postgres":
                print(f"  postgresql: {postgres_settings(args.pg)}")
                # a first heartbeat opens the collector's connections; their backends count too
                asyncio.run(drive(target, args.clients, beats(range(hosts, hosts + args.clients * 4), sets)))
                server = ServerProbe(proc.pid, _postgres_pids(args.pg, schema), args.pg)
            t0 = time.perf_counter()
            onboarding, onboard_cpu = fleet_rounds(target, args.clients, hosts, sets, "onboarding", server)
            onboard_s = time.perf_counter() - t0
            stand_in_for_autovacuum(backend, schema, args.pg)
            inv, total = inventory_bytes(backend, db_path, schema, args.pg)
            print(f"  onboarding took {onboard_s:.0f} s")
            print(f"  bytes per host: inventory (hosts + module sets, with indexes) {inv / hosts:.0f},"
                  f" whole database {total / hosts:.0f}  (before: ~3900 per host with 51 modules)")
            steady, steady_cpu = fleet_rounds(target, args.clients, hosts, sets, "steady", server, args.steady_fraction)
            echo_after = echo_rate(echo_target, args.clients, args.echo_calls, sets)
            echo = statistics.median([echo_before, echo_after])
            o, s = statistics.median(onboarding), statistics.median(steady)
            oc, sc = statistics.median(onboard_cpu), statistics.median(steady_cpu)
            print(f"  echo after: {echo_after:.0f}/s")
            print(f"  onboarding: median {o:.0f}/s, slices max/min {max(onboarding) / min(onboarding):.2f}"
                  f" (goal <= 1.2); first 10 % {onboarding[0]:.0f}/s, last 10 % {onboarding[-1]:.0f}/s;"
                  f" server cpu per call first {onboard_cpu[0]:.3f} ms, last {onboard_cpu[-1]:.3f} ms,"
                  f" max/min {max(onboard_cpu) / min(onboard_cpu):.2f}")  # fmt: skip
            print(f"  steady:     median {s:.0f}/s, slices max/min {max(steady) / min(steady):.2f};"
                  f" server cpu per call max/min {max(steady_cpu) / min(steady_cpu):.2f}")  # fmt: skip
            print(f"  onboarding / steady = {o / s:.2f} by rate, {sc / oc:.2f} by server cpu per call (goal >= 0.5)")
            print(f"  heartbeat / echo: onboarding {o / echo:.2f}, steady {s / echo:.2f} (echo {echo:.0f}/s)")
            t0 = time.perf_counter()
            rate, lat, errors = asyncio.run(drive(target, args.clients, reports(args.crashes, hosts, 7)))
            print(f"  crash storm: {args.crashes} reports over {hosts} hosts in {time.perf_counter() - t0:.0f} s,"
                  f" {rate:.0f}/s, p50 {ingest_bench._pct(lat, 50) * 1e3:.2f} ms,"
                  f" p99 {ingest_bench._pct(lat, 99) * 1e3:.2f} ms, errors {errors}")  # fmt: skip
            stand_in_for_autovacuum(backend, schema, args.pg)
            _inv, total = inventory_bytes(backend, db_path, schema, args.pg)
            print(f"  database after the storm: {total / 1e6:.0f} MB")
            print("  query latency at the final size (median of 5):")
            query_latencies(target, hosts)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
            if backend == "postgres":
                import psycopg

                with psycopg.connect(args.pg or "", autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--hosts-sqlite", type=int, default=100_000)
    parser.add_argument("--hosts-pg", type=int, default=1_000_000)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test", metavar="URL")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--crashes", type=int, default=20_000)
    parser.add_argument("--module-sets", type=int, default=40)
    parser.add_argument("--echo-calls", type=int, default=20_000, help="heartbeats per echo measurement")
    parser.add_argument(
        "--steady-fraction", type=float, default=1.0, metavar="F",
        help="steady round over this fraction of each slice (1: the whole fleet)",
    )  # fmt: skip
    args = parser.parse_args()
    echo_port = ingest_bench._free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO))
    echo = subprocess.Popen(
        [sys.executable, str(REPO / "bench" / "ingest_bench.py"), "--echo-server", str(echo_port)], env=env
    )
    try:
        ingest_bench._wait_port(echo_port, echo)
        for backend in args.backends.split(","):
            hosts = args.hosts_sqlite if backend == "sqlite" else args.hosts_pg
            run_backend(backend, hosts, args, f"127.0.0.1:{echo_port}")
    finally:
        echo.terminate()
        echo.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
