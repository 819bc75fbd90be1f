"""Throughput and latency of the collector's HTTP port over a real SQLite store.

Usage: bench/http_bench.py [--clusters N] [--clients C] [--seconds S] [--rounds R]

Fills a temporary SQLite store with N clusters (two crashes each, three hosts), starts the
collector's HTTP port (aiohttp on an event loop of its own, handlers in 16 worker threads as the
collector's store executor has: `collector.http.serve_in_thread`), and has C client processes
issue GETs (one connection per request, like scrapers and scripts) for S seconds per route. The
reference is prometheus_client's own exporter (`prometheus_client.start_http_server`, a stdlib
threading server) serving the same registry, measured in the same run: `/metrics` on our port
should keep up with it (ratio goal >= 0.5; ours adds routing, auth, limits and the hop from the
event loop to a worker thread). The API and page routes have no reference; their numbers show
the cost of a store read plus rendering (Jinja2 for the pages).
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prometheus_client import start_http_server as prometheus_exporter  # noqa: E402

from collector.http import serve_in_thread  # noqa: E402
from collector.metrics import Metrics  # noqa: E402
from collector.store.base import NewCrash  # noqa: E402
from collector.store.sqlite import SqliteStore  # noqa: E402


def fill(store: SqliteStore, metrics: Metrics, clusters: int) -> str:
    """N distinct signatures, two occurrences each; returns one cluster id."""
    now = datetime.now(UTC)
    cluster_id = ""
    for i in range(clusters):
        for j in range(2):
            frames = (f"driver_fn_{i}", f"subsystem_{i % 17}_poll", "net_rx_action", "__do_softirq")
            result = store.ingest(
                NewCrash(
                    idempotency_key=f"bench-{i:08d}-{j}",
                    host=f"web-{(i + j) % 3}",
                    title=f"BUG: kernel NULL pointer dereference in driver_fn_{i}",
                    kind="null-deref",
                    normalized_reason="BUG: kernel NULL pointer dereference",
                    guilty_frame=frames[0],
                    fingerprint=f"{i:064x}",
                    fingerprint_version="bench",
                    frames=frames,
                    source=f"/var/crash/{i}/dmesg",
                    crash_time=now - timedelta(hours=i % 300),
                    received_at=now - timedelta(hours=i % 300, minutes=j),
                    kernel_release=f"6.1.0-{i % 5}-amd64",
                    hardware="QEMU Standard PC (i440FX + PIIX, 1996)",
                    modules=("e1000e", "ext4"),
                    signature_json="{}",
                    excerpt="BUG: kernel NULL pointer dereference\n",
                )
            )
            cluster_id = result.cluster_id
            metrics.report("new", "null-deref", f"6.1.0-{i % 5}-amd64")
    return cluster_id


def _client(port: int, path: str, seconds: float) -> tuple[list[float], int, float]:
    """One client process: GET `path` for `seconds`; (latencies, errors, elapsed)."""
    latencies: list[float] = []
    bad = 0
    began = time.perf_counter()
    deadline = began + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                bad += 1
        except OSError:
            bad += 1
        finally:
            conn.close()
        latencies.append(time.perf_counter() - start)
    return latencies, bad, time.perf_counter() - began


def drive(
    pool: ProcessPoolExecutor, port: int, path: str, clients: int, seconds: float
) -> tuple[float, float, float, int]:
    """(requests/s, p50 ms, p99 ms, errors) of `clients` client processes GETting `path` for
    `seconds`. Processes, not threads: client threads in the server's process would compete with
    it for the GIL, which penalizes a server by how often it releases the GIL (an event loop does
    on every socket call) rather than by its work; real clients are on other machines."""
    runs = list(pool.map(_client, [port] * clients, [path] * clients, [seconds] * clients))
    latencies = sorted(t for run, _, _ in runs for t in run)
    rate = sum(len(run) / elapsed for run, _, elapsed in runs)
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return rate, p50, p99, sum(bad for _, bad, _ in runs)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3, help="alternating /metrics rounds per server")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(str(Path(tmp) / "bench.db"))
        metrics = Metrics()
        t0 = time.perf_counter()
        cluster_id = fill(store, metrics, args.clusters)
        print(
            f"store: {args.clusters} clusters, {2 * args.clusters} crashes in {time.perf_counter() - t0:.1f} s"
        )
        ours = serve_in_thread(store, metrics.registry, ("127.0.0.1", 0), None, workers=16)
        reference_server, reference_thread = prometheus_exporter(
            0, addr="127.0.0.1", registry=metrics.registry
        )
        reference_port = reference_server.server_address[1]
        try:
            # The two /metrics servers alternate for --rounds rounds and each keeps its best, so a
            # burst of load from elsewhere on the machine cannot land on one side only.
            routes = [
                *[
                    pair
                    for _ in range(args.rounds)
                    for pair in (
                        ("reference /metrics", reference_port, "/metrics"),
                        ("/metrics", ours.port, "/metrics"),
                    )
                ],
                ("/healthz", ours.port, "/healthz"),
                ("/api/v1/clusters?page_size=50", ours.port, "/api/v1/clusters?page_size=50"),
                ("/api/v1/clusters/<id>", ours.port, f"/api/v1/clusters/{cluster_id}"),
                ("/ (50 clusters)", ours.port, "/"),
                ("/clusters/<id>", ours.port, f"/clusters/{cluster_id}"),
            ]
            results: dict[str, tuple[float, float, float, int]] = {}
            print(f"{'route':36} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
            with ProcessPoolExecutor(args.clients, mp_context=multiprocessing.get_context("spawn")) as pool:
                for name, port, path in routes:
                    rps, p50, p99, errs = drive(pool, port, path, args.clients, args.seconds)
                    print(f"{name:36} {rps:9.0f} {p50:8.2f} {p99:8.2f} {errs:7d}")
                    if name not in results or rps > results[name][0]:
                        results[name] = rps, p50, p99, errs
            ratio = results["/metrics"][0] / results["reference /metrics"][0]
            print(
                f"/metrics throughput vs prometheus_client exporter (best of {args.rounds} alternating rounds): "
                f"{ratio:.2f} (goal >= 0.5)"
            )
        finally:
            ours.close()
            reference_server.shutdown()
            reference_server.server_close()
            reference_thread.join()
            store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
