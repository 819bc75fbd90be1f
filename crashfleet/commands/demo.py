"""`crashfleet demo`: the whole system on one machine, fed real crashes, in under a minute.

It starts a collector process on a temporary SQLite store and a fleet of agents (buildtest01…16,
in-process `AgentService` instances, each with its own crash and pstore directories and a
different distribution's layout: RHEL, Debian, SUSE, systemd-pstore, ramoops). It then drops
crashes into those directories over time the way each distribution's tools write them (an
incomplete dump renamed when done, SUSE's README.txt last, pstore files appearing atomically):
the real vmcores and kernel logs of ../shared when present, else the project's own fixtures under
tests/data/deploy/demo. The agents find, extract and ship them; the collector stores, dedupes and
clusters. Progress is printed as it happens; at the end, the clusters table (`crashfleet
clusters`). On a terminal the collector then keeps serving its web page, whose URL is printed,
until Ctrl-C; otherwise it stops and no URL is printed (it would be dead). The collector listens
on fixed ports (DEMO_GRPC_PORT, DEMO_HTTP_PORT; `--grpc-port`/`--http-port` change them, 0 picks
free ones), so the URL stays the same from one run to the next.

In-process agents keep the demo light on two cores (one Python process for sixteen agents); the
collector is a separate process, exactly as `crashfleet collector` runs in production.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.service import AgentService

HELP = "run a collector and a fleet of agents on this machine, feed them real crashes, show the clusters"

log = logging.getLogger("crashfleet.demo")

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SHARED = REPO.parent / "shared"
FIXTURES = REPO / "tests" / "data" / "deploy" / "demo"

MAX_HOSTS = 16
# Host i (1-based) uses LAYOUTS[(i - 1) % len(LAYOUTS)] (`host_layout`): every layout appears in a fleet of 5+.
LAYOUTS: tuple[str, ...] = ("rhel", "debian", "suse", "systemd-pstore", "ramoops")
DUMP_LAYOUTS = frozenset({"rhel", "debian", "suse"})  # kdump layouts: a vmcore beside the log

# Real crashes in ../shared: (name, kernel log, the dump used once, the layout that dump goes
# to). Each dump is a different crash type of the same kernel, placed where its format is the
# distribution's default: LZO pages on RHEL, zlib on Debian (kdump-tools) and SUSE.
SHARED_CRASHES: tuple[tuple[str, str, str, str], ...] = (
    ("null-deref", "vmcores/null/dmesg.txt", "vmcores/null/vmcore.kdump-lzo", "rhel"),
    ("kernel-bug", "vmcores/bug/dmesg.txt", "vmcores/bug/vmcore.kdump-zlib", "debian"),
    ("warning", "vmcores/warn/dmesg.txt", "vmcores/warn/vmcore.kdump-zlib", "suse"),
    ("soft-lockup", "vmcores/softlockup/dmesg.txt", "vmcores/softlockup/vmcore.kdump-zlib", "debian"),
)
SEED = ("buildtest07 seed oops", "corpora/seed/buildtest07-console.restored.txt")
SEED_HOST = "buildtest07"  # the article's host gets the article's panic

# Pacing: with --duration, drops happen in the first DROP_SHARE of it and the rest is left for
# extraction and shipping; without, one drop every OPEN_ENDED_SPACING seconds.
DROP_SHARE = 0.6
OPEN_ENDED_SPACING = 1.5
DROPS_PER_HOST = 2
STATUS_EVERY = 5.0
SETTLE_SECONDS = 1.0
HEARTBEAT_SECONDS = 10.0
# The collector's ports (docs/operations.md "Try it"): beside, not on, a real collector's defaults
# (50051, 8080), so the demo runs on a machine that has one.
DEMO_GRPC_PORT = 50052
DEMO_HTTP_PORT = 8082
STARTUP_TIMEOUT = 60.0
DRAIN_TIMEOUT = 20.0

# A printk timestamp at the start of a line: "[ 4356.486012] ".
_STAMP = re.compile(rb"^\[\s*(\d+)\.(\d{6})\]", re.MULTILINE)


class DemoError(Exception):
    """The demo cannot run (no crash data, a part missing, a process that would not start)."""


@dataclass(frozen=True, slots=True)
class CrashSample:
    """One crash the demo can drop: its kernel log, and a real dump of it when there is one."""

    name: str
    log: bytes
    dump: Path | None = None
    dump_layout: str = "rhel"  # where the dump goes (a kdump layout)
    varies: bool = True  # the log has printk timestamps, so copies can be made distinct
    only_host: str | None = None


@dataclass(frozen=True, slots=True)
class Drop:
    """One crash landing on one host at `at` seconds into the demo."""

    at: float
    host: int  # 1-based
    sample: CrashSample
    seq: int  # distinct per drop: names the capture and shifts the log's timestamps
    with_dump: bool


@dataclass(slots=True)
class Host:
    name: str
    layout: str
    crash_dir: Path
    pstore_dir: Path
    state_dir: Path
    service: AgentService | None = None
    thread: threading.Thread | None = None
    error: BaseException | None = None
    dropped: int = 0


@dataclass(slots=True)
class Collector:
    process: subprocess.Popen[bytes]
    grpc: str
    web: str
    log_path: Path
    log_file: IO[bytes] | None = field(repr=False, default=None)


# --- crash data (pure) ------------------------------------------------------------------------


def vary_log(text: bytes, seq: int) -> bytes:
    """The same log `seq` hours and a bit later: a distinct capture (de-duplication keys on content)
    with the same crash, so the collector counts another occurrence of the same cluster."""
    if seq == 0:
        return text
    offset = seq * 3_600_000_000 + seq * 1_237

    def shift(match: re.Match[bytes]) -> bytes:
        seconds, micros = divmod(int(match[1]) * 1_000_000 + int(match[2]) + offset, 1_000_000)
        return b"[%5d.%06d]" % (seconds, micros)

    return _STAMP.sub(shift, text)


def load_samples(shared: Path | None, fixtures: Path = FIXTURES) -> list[CrashSample]:
    """The real crashes of ../shared when present, then the project's fixtures; never empty."""
    samples: list[CrashSample] = []
    if shared is not None and (shared / "README.md").is_file():
        for name, log_rel, dump_rel, layout in SHARED_CRASHES:
            log_path, dump_path = shared / log_rel, shared / dump_rel
            if log_path.is_file():
                dump = dump_path if dump_path.is_file() else None
                samples.append(CrashSample(name, log_path.read_bytes(), dump, dump_layout=layout))
        seed = shared / SEED[1]
        if seed.is_file():
            text = seed.read_bytes()
            samples.append(CrashSample(SEED[0], text, varies=bool(_STAMP.search(text)), only_host=SEED_HOST))
    if fixtures.is_dir():
        for path in sorted(fixtures.glob("*.txt")):
            text = path.read_bytes()
            samples.append(CrashSample(path.stem, text, varies=bool(_STAMP.search(text))))
    if not samples:
        raise DemoError(f"no crash data: neither {shared} nor {fixtures} holds any")
    return samples


def host_walk(hosts: int) -> list[int]:
    """Hosts 1..N in an order that jumps across the fleet: a step coprime with N visits each once."""
    step = next(s for s in (5, 7, 3, 1) if math.gcd(s, hosts) == 1)
    return [(k * step) % hosts + 1 for k in range(hosts)]


def host_layout(host: int) -> str:
    """The distribution layout of host `host` (1-based)."""
    return LAYOUTS[(host - 1) % len(LAYOUTS)]


def _host_number(name: str) -> int | None:
    digits = name.removeprefix("buildtest")
    return int(digits) if digits.isdigit() else None


def plan_drops(samples: Sequence[CrashSample], hosts: int, window: float | None) -> list[Drop]:
    """Which crash lands on which host when. Earlier samples are the more common bugs, and each bug
    reaches new hosts as it recurs (hosts are taken in `host_walk` order, each once per round).
    Real dumps are used once each, on a host of their `dump_layout` when the fleet has one; a
    log without timestamps is used once; a sample bound to a host lands there."""
    count = DROPS_PER_HOST * hosts
    weights = [max(1, len(samples) - i) for i in range(len(samples))]
    current = [0] * len(samples)
    used: set[str] = set()
    picks: list[CrashSample] = []
    # Smooth weighted round robin: deterministic and interleaved (no bug arrives all at once).
    while len(picks) < count:
        for i, w in enumerate(weights):
            current[i] += w
        best = max(range(len(samples)), key=lambda i: current[i])
        current[best] -= sum(weights)
        sample = samples[best]
        if not sample.varies or sample.only_host is not None:
            if sample.name in used:
                weights[best] = 0
                if not any(weights):
                    break
                continue
            used.add(sample.name)
        picks.append(sample)
    spacing = (window / max(1, len(picks))) if window is not None else OPEN_ENDED_SPACING
    order: list[int] = []
    dumps_used: set[Path] = set()
    drops = []
    for seq, sample in enumerate(picks):
        if not order:
            order = host_walk(hosts)
        wants_dump = sample.dump is not None and sample.dump not in dumps_used
        bound = _host_number(sample.only_host) if sample.only_host is not None else None
        if bound is not None and bound <= hosts:
            host = bound
        else:
            # The first host of this round with the dump's layout, else simply the next one.
            host = next(
                (h for h in order if host_layout(h) == sample.dump_layout), order[0]
            ) if wants_dump else order[0]  # fmt: skip
        # Taking the host out keeps each round a permutation: every host gets a crash per round.
        if host in order:
            order.remove(host)
        with_dump = wants_dump and host_layout(host) in DUMP_LAYOUTS
        if with_dump:
            assert sample.dump is not None
            dumps_used.add(sample.dump)
        drops.append(Drop(round(seq * spacing, 2), host, sample, seq, with_dump))
    return drops


# --- writing captures the way each distribution's tools do -----------------------------------


def _publish(tmp: Path, final: Path) -> Path:
    """Make a file or directory appear at once (pstore entries have no "incomplete" marker)."""
    os.replace(tmp, final)
    return final


def _copy_then_rename(source: Path, directory: Path, incomplete: str, final: str) -> None:
    """kdump's protocol: write the dump under an "incomplete" name, rename it when done."""
    shutil.copyfile(source, directory / incomplete)
    os.replace(directory / incomplete, directory / final)


def write_rhel(host: Host, when: datetime, log_text: bytes, dump: Path | None) -> Path:
    """kexec-tools: 127.0.0.1-YYYY-MM-DD-HH:MM:SS/ with vmcore-dmesg.txt and vmcore."""
    d = host.crash_dir / f"127.0.0.1-{when:%Y-%m-%d-%H:%M:%S}"
    d.mkdir()
    (d / "vmcore-dmesg-incomplete.txt").write_bytes(log_text)
    os.replace(d / "vmcore-dmesg-incomplete.txt", d / "vmcore-dmesg.txt")
    if dump is not None:
        _copy_then_rename(dump, d, "vmcore-incomplete", "vmcore")
    return d


def write_debian(host: Host, when: datetime, log_text: bytes, dump: Path | None) -> Path:
    """kdump-tools: YYYYMMDDHHMM/ with dmesg.<stamp> and dump.<stamp> (dump-incomplete first)."""
    stamp = f"{when:%Y%m%d%H%M}"
    d = host.crash_dir / stamp
    d.mkdir()
    (d / f"dmesg.{stamp}").write_bytes(log_text)
    if dump is not None:
        _copy_then_rename(dump, d, "dump-incomplete", f"dump.{stamp}")
    return d


def write_suse(host: Host, when: datetime, log_text: bytes, dump: Path | None) -> Path:
    """kdumptool: YYYY-MM-DD-HH:MM/ with vmcore and dmesg.txt; README.txt written last means done."""
    d = host.crash_dir / f"{when:%Y-%m-%d-%H:%M}"
    d.mkdir()
    if dump is not None:
        shutil.copyfile(dump, d / "vmcore")
    (d / "dmesg.txt").write_bytes(log_text)
    (d / "README.txt").write_text(f"Kernel crashed at {when:%Y-%m-%d %H:%M}\nSaved by kdump.\n")
    return d


def write_systemd_pstore(host: Host, when: datetime, log_text: bytes, dump: Path | None) -> Path:
    """systemd-pstore: one folder per crash under /var/lib/systemd/pstore with dmesg.txt."""
    tmp = host.pstore_dir / f".{int(when.timestamp())}.tmp"
    tmp.mkdir()
    (tmp / "dmesg.txt").write_bytes(log_text)
    return _publish(tmp, host.pstore_dir / f"{int(when.timestamp()) * 100_000 + 1:d}")


def write_ramoops(host: Host, when: datetime, log_text: bytes, dump: Path | None) -> Path:
    """ramoops: a dmesg-ramoops-N record with pstore's "Panic#1 Part1" header line."""
    index = host.dropped
    tmp = host.pstore_dir / f".dmesg-ramoops-{index}.tmp"
    tmp.write_bytes(b"Panic#1 Part1\n" + log_text)
    return _publish(tmp, host.pstore_dir / f"dmesg-ramoops-{index}")


WRITERS: dict[str, Callable[[Host, datetime, bytes, Path | None], Path]] = {
    "rhel": write_rhel,
    "debian": write_debian,
    "suse": write_suse,
    "systemd-pstore": write_systemd_pstore,
    "ramoops": write_ramoops,
}


# --- processes and agents ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http_json(url: str) -> Any | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _check_free(port: int, flag: str) -> None:
    """A clear error instead of a collector dying on a port some other process holds."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise DemoError(
                f"127.0.0.1:{port} is in use ({exc.strerror}): another demo or collector? "
                f"Pick another port with {flag} PORT (0: any free port)"
            ) from None


def start_collector(workdir: Path, grpc_port: int, http_port: int, verbose: bool) -> Collector:
    """`crashfleet collector` on SQLite in `workdir`, as a child process; waits for /healthz."""
    for port, flag in ((grpc_port, "--grpc-port"), (http_port, "--http-port")):
        if port:
            _check_free(port, flag)
    grpc_port = grpc_port or _free_port()
    http_port = http_port or _free_port()
    log_path = workdir / "collector.log"
    log_file = log_path.open("wb")
    cmd = [
        sys.executable, "-m", "crashfleet", "collector",
        "--db", f"sqlite:///{workdir / 'collector.db'}",
        "--listen", f"127.0.0.1:{grpc_port}",
        "--http", f"127.0.0.1:{http_port}",
        "--log-level", "info" if verbose else "warning",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    process = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir, env=env,
        start_new_session=True,  # Ctrl-C goes to the demo, which stops the collector in order
    )  # fmt: skip
    collector = Collector(process, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", log_path, log_file)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            stop_collector(collector)
            raise DemoError(f"the collector exited with {process.returncode}: {_tail(log_path)}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(f"{collector.web}/healthz", timeout=2) as response,
        ):
            if response.status == 200:
                return collector
        time.sleep(0.2)
    stop_collector(collector)
    raise DemoError(f"the collector did not answer /healthz within {STARTUP_TIMEOUT:.0f}s: {_tail(log_path)}")


def stop_collector(collector: Collector) -> None:
    """SIGTERM (it drains in-flight RPCs), bounded wait, SIGKILL; idempotent."""
    process = collector.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    if collector.log_file is not None:
        collector.log_file.close()
        collector.log_file = None


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def make_hosts(workdir: Path, count: int) -> list[Host]:
    hosts = []
    for i in range(1, count + 1):
        name = f"buildtest{i:02d}"
        root = workdir / name
        host = Host(name, host_layout(i), root / "crash", root / "pstore", root / "state")
        for d in (host.crash_dir, host.pstore_dir, host.state_dir):
            d.mkdir(parents=True)
        hosts.append(host)
    return hosts


def start_agents(hosts: Sequence[Host], collector_addr: str) -> None:
    """One AgentService per host, each on its own thread, with the host's directories and name."""
    from agent.config import load_config
    from agent.config import replace as replace_config
    from agent.service import AgentService
    from agent.ship import GrpcShipper
    from agent.worker import ThreadWorker
    from wire.sdnotify import Notifier

    # The agent's worker (extract, spool, ship, heartbeat) runs as a thread of this process rather
    # than a `python -m agent.worker` process per run: sixteen hosts on two cores stay light.
    launcher = ThreadWorker(GrpcShipper)

    for host in hosts:
        config = load_config(
            None,
            {
                "hostname": host.name,
                "state_dir": host.state_dir,
                "crash_dir": host.crash_dir,
                "pstore_dir": host.pstore_dir,
                "collector": collector_addr,
                "settle_seconds": SETTLE_SECONDS,
                "heartbeat_interval_seconds": HEARTBEAT_SECONDS,
                "backoff_initial_seconds": 0.2,
                # The demo's crashes are files: this machine's own kernel log and pstore are not the
                # fleet's, and building symbol indexes from its debuginfo would take minutes.
                "kmsg_enabled": False,
                "symbolize_enabled": False,
                "metrics_listen": "",
            },
        )
        config = replace_config(config, pstore_fs_dir=None)
        service = AgentService(config, launcher=launcher, notifier=Notifier({}), environ={})
        host.service = service
        host.thread = threading.Thread(target=_run_agent, args=(host,), name=f"agent-{host.name}", daemon=True)
        host.thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT
    for host in hosts:
        assert host.service is not None
        while not host.service.started.wait(0.05) and host.error is None:
            if time.monotonic() > deadline:
                raise DemoError(f"agent {host.name} did not start within {STARTUP_TIMEOUT:.0f}s")
        if host.error is not None:
            raise DemoError(f"agent {host.name} failed to start: {host.error}")


def _run_agent(host: Host) -> None:
    assert host.service is not None
    try:
        host.service.run(install_signals=False)
    except Exception as exc:  # reported by start_agents / the summary, never a thread traceback
        host.error = exc
        log.error("agent failed host=%s error=%s", host.name, exc)


def stop_agents(hosts: Sequence[Host]) -> None:
    """Stop every agent (each drains: one last shipping pass) and wait, bounded."""
    for host in hosts:
        if host.service is not None:
            host.service.stop()
    deadline = time.monotonic() + DRAIN_TIMEOUT
    for host in hosts:
        if host.thread is not None:
            host.thread.join(timeout=max(0.1, deadline - time.monotonic()))


# --- the run -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Progress:
    """What the collector reports: crashes, clusters and hosts (from its JSON API)."""

    crashes: int = 0
    clusters: int = 0
    hosts: int = 0

    @classmethod
    def read(cls, web: str) -> Progress | None:
        clusters = _http_json(f"{web}/api/v1/clusters?page_size=1000")
        hosts = _http_json(f"{web}/api/v1/hosts?page_size=1000")
        if clusters is None or hosts is None:
            return None
        rows = clusters.get("clusters", [])
        return cls(sum(int(c.get("count", 0)) for c in rows), len(rows), len(hosts.get("hosts", [])))


def _print(line: str = "") -> None:
    print(line, flush=True)


def _spooled(hosts: Sequence[Host]) -> int:
    """Reports still waiting in the agents' spools (0 once everything was acknowledged)."""
    total = 0
    for host in hosts:
        if host.service is not None:
            total += int(host.service.metrics.registry.get_sample_value("crashfleet_agent_spool_depth") or 0)
    return total


def _drop(drop: Drop, hosts: Sequence[Host], started_wall: datetime) -> str:
    host = hosts[drop.host - 1]
    when = started_wall - timedelta(days=1) + timedelta(minutes=7 * drop.seq, seconds=drop.seq)
    text = vary_log(drop.sample.log, drop.seq) if drop.sample.varies else drop.sample.log
    dump = drop.sample.dump if drop.with_dump else None
    path = WRITERS[host.layout](host, when, text, dump)
    host.dropped += 1
    what = f"vmcore + log ({dump.name})" if dump is not None else "kernel log"
    return f"{host.name}  {host.layout:<14} {drop.sample.name:<22} {what}  -> {path.name}"


def _sigterm_to_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration", type=_positive, default=None, metavar="SECONDS",
        help="stop by itself after this long and exit 0 (default: run until Ctrl-C)",
    )  # fmt: skip
    parser.add_argument(
        "--hosts", type=_host_count, default=MAX_HOSTS, metavar="N", help=f"fleet size, 1-{MAX_HOSTS} (16)"
    )
    parser.add_argument(
        "--shared", type=Path, default=DEFAULT_SHARED, metavar="DIR",
        help="the shared data directory with vmcores/ and corpora/ (default: ../shared beside the checkout)",
    )  # fmt: skip
    parser.add_argument(
        "--grpc-port", type=_port, default=DEMO_GRPC_PORT, metavar="PORT",
        help=f"collector gRPC port on 127.0.0.1 (default {DEMO_GRPC_PORT}; 0: any free port)",
    )  # fmt: skip
    parser.add_argument(
        "--http-port", type=_port, default=DEMO_HTTP_PORT, metavar="PORT",
        help=f"web page port on 127.0.0.1 (default {DEMO_HTTP_PORT}; 0: any free port)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (store, logs, dumps)")
    parser.add_argument("--verbose", action="store_true", help="agent and collector log lines too")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, not {text!r}")
    return int(text)


def _host_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_HOSTS:
        raise argparse.ArgumentTypeError(f"must be 1-{MAX_HOSTS}, not {text!r}")
    return int(text)


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="crashfleet-demo-"))
    try:
        yield path
    finally:
        if keep:
            _print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        import agent.service  # noqa: F401  (fail early and plainly if the agent is not installed)
        import collector.server  # noqa: F401
    except ImportError as exc:
        print(f"crashfleet demo: a part is missing: {exc}", file=sys.stderr)
        return 1
    try:
        samples = load_samples(args.shared)
    except DemoError as exc:
        print(f"crashfleet demo: {exc}", file=sys.stderr)
        return 1
    previous_term = signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
    previous_int = signal.getsignal(signal.SIGINT)
    try:
        with _workdir(args.keep) as workdir:
            return _run(args, samples, workdir)
    except DemoError as exc:
        print(f"crashfleet demo: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


def _run(args: argparse.Namespace, samples: list[CrashSample], workdir: Path) -> int:
    started = time.monotonic()
    started_wall = datetime.now(UTC)
    window = args.duration * DROP_SHARE if args.duration is not None else None
    drops = plan_drops(samples, args.hosts, window)
    real = sum(1 for s in samples if s.dump is not None)
    source = args.shared if real else FIXTURES
    _print(f"crashfleet demo: a collector and {args.hosts} agents on this machine (in {workdir})")
    _print(f"  crash data: {source} ({real} real vmcores, {len(samples)} kernel logs)")
    hosts = make_hosts(workdir, args.hosts)
    collector = start_collector(workdir, args.grpc_port, args.http_port, args.verbose)
    interrupted = False
    try:
        _print(f"  collector:  gRPC {collector.grpc}, web page {collector.web}/ (SQLite store)")
        start_agents(hosts, collector.grpc)
        _print("  fleet:      " + ", ".join(f"{h.name} ({h.layout})" for h in hosts))
        span = f"over {drops[-1].at:.0f}s" if drops else ""
        _print(f"dropping {len(drops)} crashes {span}; Ctrl-C stops")
        try:
            _feed(args, drops, hosts, collector, started, started_wall)
        except KeyboardInterrupt:
            interrupted = True
            # Shutdown is bounded (agents drain, the collector stops); a second Ctrl-C must not
            # cut it short and leave the summary unprinted or the collector running.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _print("\ninterrupted: stopping the fleet")
        stop_agents(hosts)
        _summary(collector, hosts, drops, started)
        if not interrupted:
            serve_until_interrupted(collector, interactive=sys.stdout.isatty())
    finally:
        stop_agents(hosts)
        stop_collector(collector)
    return 130 if interrupted else 0


def serve_until_interrupted(collector: Collector, interactive: bool, poll: float = 0.5) -> None:
    """On a terminal: print the web page's URL and keep the collector up until Ctrl-C (or until
    it exits). Otherwise (a pipe, CI) say it stops: a URL printed now would be dead when read."""
    if not interactive:
        _print("the collector stops with the demo (run it on a terminal to keep its web page up)")
        return
    _print(f"web page: {collector.web}/  (the collector keeps serving; Ctrl-C stops it)")
    try:
        while collector.process.poll() is None:
            time.sleep(poll)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown
        _print("\nstopping the collector")
        return
    _print(f"the collector exited with {collector.process.returncode}: {_tail(collector.log_path)}")


def _feed(
    args: argparse.Namespace,
    drops: list[Drop],
    hosts: list[Host],
    collector: Collector,
    started: float,
    started_wall: datetime,
) -> None:
    """Drop crashes on schedule, print progress; return at --duration (or run until Ctrl-C)."""
    pending = list(drops)
    next_status = STATUS_EVERY
    while True:
        elapsed = time.monotonic() - started
        while pending and pending[0].at <= elapsed:
            drop = pending.pop(0)
            _print(f"  {elapsed:5.1f}s  {_drop(drop, hosts, started_wall)}")
        if elapsed >= next_status:
            next_status += STATUS_EVERY if args.duration is not None or pending else 6 * STATUS_EVERY
            progress = Progress.read(collector.web)
            if progress is not None:
                _print(
                    f"  {elapsed:5.1f}s  collector: {progress.crashes} crashes in {progress.clusters} clusters, "
                    f"{progress.hosts} hosts; spooled: {_spooled(hosts)}"
                )
        for host in hosts:
            if host.error is not None:
                raise DemoError(f"agent {host.name} stopped: {host.error}")
        if collector.process.poll() is not None:
            raise DemoError(f"the collector exited with {collector.process.returncode}: {_tail(collector.log_path)}")
        if args.duration is not None and elapsed >= args.duration:
            return
        time.sleep(0.1)


def _summary(collector: Collector, hosts: Sequence[Host], drops: Sequence[Drop], started: float) -> None:
    from crashfleet import cli

    elapsed = time.monotonic() - started
    progress = Progress.read(collector.web) or Progress()
    dropped = sum(h.dropped for h in hosts)
    _print()
    _print(
        f"after {elapsed:.0f}s: {dropped} of {len(drops)} crashes placed in crash directories, {progress.crashes} stored in "
        f"{progress.clusters} clusters, {progress.hosts} hosts reporting, {_spooled(hosts)} still spooled"
    )
    _print()
    _print(f"$ crashfleet clusters --collector {collector.grpc}")
    cli.main(["clusters", "--collector", collector.grpc])
    _print()
