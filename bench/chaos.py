"""Chaos run: what happens to crashes across the faults a fleet meets, measured end to end.

Two collector replicas on one PostgreSQL database, agents as real `crashfleet agent` processes
(each with its own state, crash and pstore directories), a generator that keeps placing crashes
into their crash directories (the project's own kernel-log fixtures, as SUSE's kdump leaves them:
dmesg.txt, then README.txt), and a fault schedule. Agents reach the replicas through a
fault-injecting TCP proxy (bench/faultproxy.py), as they would through a load balancer.

Every placed crash carries a unique token in its `Comm:` field, so the run can tell, by reading
the collector's database, which crashes were stored, stored twice or lost. For each recovery it
measures the time from the collector answering again to the last crash spooled during the outage
being stored, and whether each agent's spooled crashes arrived oldest first; in steady state, the
latency from placing a complete capture to the crash being stored (which bounds detect → stored
from above); and the agents' CPU and memory (PSS).

    .venv/bin/python bench/chaos.py             # the full run: 20 agents, every fault, ~12 minutes
    .venv/bin/python bench/chaos.py --short     # the variant `make test` runs (tests/test_chaos.py)
    make chaos                                  # the full run

Loopback only; every phase is bounded in time; it stops by itself and exits 1 when a crash was
lost or stored twice, or (full run) a recovery or the steady-state latency missed its goal. It
restarts the local PostgreSQL cluster only with --pg-restart (the full run sets it): never run
that while something else uses the server. Needs root for the full-disk fault (a small tmpfs).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from faultproxy import FaultProxy  # noqa: E402

from crashfleet.commands.demo import Host, write_suse  # noqa: E402

FIXTURES = REPO / "tests" / "data" / "deploy" / "demo"
PG_URL = os.environ.get("CRASHFLEET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
COMM = re.compile(rb"Comm: \S+")
STARTUP_TIMEOUT = 60.0
LOOKBACK_US = 120_000_000  # how far before the newest stored row a poll looks again (commit lag)

# Agent settings the run uses (written into each agent's TOML). The recovery goal is stated in
# terms of MAX_RETRY_SECONDS: the agent's longest wait between attempts.
MAX_RETRY_SECONDS = 20.0
RECOVERY_SLACK_SECONDS = 10.0
STEADY_P99_GOAL_SECONDS = 2.0
SPOOLED_PER_OUTAGE = 100


@dataclass(slots=True)
class Placed:
    token: str
    agent: int
    placed_at: float  # time.time() when the capture became complete (README.txt written)
    phase: str


@dataclass(slots=True)
class Stored:
    token: str
    host: str
    received_at: float
    copies: int = 1


@dataclass(slots=True)
class PhaseResult:
    name: str
    placed: int = 0
    spooled_at_recovery: int = 0
    recovery_seconds: float | None = None
    out_of_order: int = 0
    drained: bool = True
    note: str = ""


@dataclass(slots=True)
class Agent:
    index: int
    name: str
    root: Path
    config: Path
    process: subprocess.Popen[bytes] | None = None
    placed: int = 0
    cpu_seconds: float = 0.0
    max_pss_kb: int = 0
    tmpfs: bool = False
    accounted_pid: int | None = None  # the process whose CPU is already in cpu_seconds

    @property
    def host(self) -> Host:
        """The agent's directories as the demo's capture writers take them."""
        return Host(self.name, "suse", self.root / "crash", self.root / "pstore", self.root / "state")


@dataclass(slots=True)
class Replica:
    name: str
    grpc: str
    http: str
    log: Path
    process: subprocess.Popen[bytes] | None = None


@dataclass
class Run:
    """Everything one chaos run owns; `close()` tears it all down (idempotent)."""

    workdir: Path
    agents_count: int
    short: bool
    pg_restart: bool
    db_name: str = field(default_factory=lambda: f"crashfleet_chaos_{os.getpid()}")
    replicas: list[Replica] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    proxy: FaultProxy | None = None
    placed: dict[str, Placed] = field(default_factory=dict)
    stored: dict[str, Stored] = field(default_factory=dict)
    results: list[PhaseResult] = field(default_factory=list)
    phase: str = "start"
    seq: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(20261206))
    samples: list[bytes] = field(default_factory=list)
    _last_received: int = 0
    _seen_ids: set[str] = field(default_factory=set)
    _last_sample: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def db_url(self) -> str:
        return PG_URL.rsplit("/", 1)[0] + "/" + self.db_name

    # --- set-up ---------------------------------------------------------------------------

    def setup(self) -> None:
        import psycopg

        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}"')
            conn.execute(f'CREATE DATABASE "{self.db_name}"')
        self.samples = [p.read_bytes() for p in sorted(FIXTURES.glob("*.txt")) if COMM.search(p.read_bytes())]
        if not self.samples:
            raise SystemExit(f"{FIXTURES}: no kernel-log fixtures with a Comm: field")
        for name in ("a", "b"):
            self.replicas.append(Replica(name, f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}",
                                         self.workdir / f"collector-{name}.log"))  # fmt: skip
        # The first replica creates the schema; the second starts once it is there.
        for replica in self.replicas:
            self.start_replica(replica)
        self.proxy = FaultProxy([r.grpc for r in self.replicas]).start()
        for i in range(self.agents_count):
            self.agents.append(self._make_agent(i))
        for agent in self.agents:
            self.start_agent(agent)
        self._wait_for_heartbeats()

    def _make_agent(self, i: int) -> Agent:
        name = f"chaos-{i:02d}"
        root = self.workdir / name
        for sub in ("crash", "pstore", "state"):
            (root / sub).mkdir(parents=True)
        agent = Agent(i, name, root, root / "agent.toml")
        if i == 0 and not self.short and os.geteuid() == 0:
            # The full-disk fault's victim: its state directory is a small file system of its own.
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "chaos-state", str(root / "state")], check=True)
            agent.tmpfs = True
        assert self.proxy is not None
        agent.config.write_text(
            "[agent]\n"
            f'hostname = "{name}"\nstate_dir = "{root / "state"}"\nworker_timeout_seconds = 120.0\n'
            "[watch]\n"
            f'crash_dir = "{root / "crash"}"\npstore_dir = "{root / "pstore"}"\npstore_fs_dir = ""\n'
            "settle_seconds = 0.5\nsignalled_settle_seconds = 0.1\n"
            "[collector]\n"
            f'address = "{self.proxy.address}"\ndeadline_seconds = 5.0\n'
            "[spool]\n"
            f"backoff_initial_seconds = 0.5\nbackoff_max_seconds = {MAX_RETRY_SECONDS}\n"
            "[kmsg]\nenabled = false\n"
            "[heartbeat]\ninterval_seconds = 10.0\nmin_interval_seconds = 5.0\n"
            "[symbolize]\nenabled = false\n"
            '[metrics]\nlisten = ""\n'
        )
        return agent

    def start_replica(self, replica: Replica, wait: bool = True) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        with replica.log.open("ab") as log:
            replica.process = subprocess.Popen(
                [sys.executable, "-m", "crashfleet", "collector", "--db", self.db_url,
                 "--listen", replica.grpc, "--http", replica.http, "--log-level", "warning"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env,
                start_new_session=True,
            )  # fmt: skip
        if wait:
            self.wait_healthy([replica])

    def wait_healthy(self, replicas: list[Replica]) -> None:
        """Return once one of `replicas` answers /healthz (the collector answers again)."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            for replica in replicas:
                assert replica.process is not None
                if replica.process.poll() is not None:
                    raise SystemExit(f"replica {replica.name} exited with {replica.process.returncode}: {_tail(replica.log)}")
                with contextlib.suppress(OSError), urllib.request.urlopen(f"http://{replica.http}/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            time.sleep(0.1)
        raise SystemExit(f"no replica answered /healthz in {STARTUP_TIMEOUT:.0f}s: {_tail(replicas[0].log)}")

    def kill_replica(self, replica: Replica) -> None:
        if replica.process is not None and replica.process.poll() is None:
            os.killpg(replica.process.pid, signal.SIGKILL)
            replica.process.wait(10)
        replica.process = None

    def start_agent(self, agent: Agent) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        with (agent.root / "agent.log").open("ab") as log:
            agent.process = subprocess.Popen(
                [sys.executable, "-m", "crashfleet", "agent", "--config", str(agent.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip

    def kill_agent(self, agent: Agent) -> None:
        """kill -9 of the agent and of any worker it has running (its process group)."""
        if agent.process is not None and agent.process.poll() is None:
            self._account(agent)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(agent.process.pid, signal.SIGKILL)
            agent.process.wait(10)
        agent.process = None

    def _wait_for_heartbeats(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self._count("SELECT count(*) FROM hosts") >= len(self.agents):
                return
            time.sleep(0.5)
        raise SystemExit(f"not every agent heartbeated within {STARTUP_TIMEOUT:.0f}s (see {self.workdir}/chaos-*/agent.log)")

    # --- crashes in, crashes out -------------------------------------------------------------

    def place(self, agent: Agent | None = None) -> Placed:
        """One crash, complete at once (SUSE kdump: README.txt written last), with a unique Comm token."""
        with self._lock:
            self.seq += 1
            seq = self.seq
        if agent is None:
            agent = self.agents[seq % len(self.agents)]
        token = f"cf{seq:07d}"
        text = COMM.sub(b"Comm: " + token.encode(), self.samples[seq % len(self.samples)], count=1)
        when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=seq)
        write_suse(agent.host, when, text, None)  # the demo's writer: README.txt last means done
        placed = Placed(token, agent.index, time.time(), self.phase)
        with self._lock:
            self.placed[token] = placed
        agent.placed += 1
        return placed

    def poll_store(self) -> None:
        """Read crashes stored since the last poll; count copies per token.

        received_at is not in commit order (two replicas, concurrent transactions), so each poll
        looks back LOOKBACK_US before the newest row seen and skips the crash ids it already has."""
        import psycopg

        try:
            with psycopg.connect(self.db_url, connect_timeout=2) as conn:
                rows = conn.execute(
                    "SELECT id, received_at, host, signature_json FROM crashes WHERE received_at > %s",
                    (self._last_received - LOOKBACK_US,),
                ).fetchall()
        except psycopg.Error:
            return  # PostgreSQL restarting: the next poll catches up
        for crash_id, received_at, host, signature_json in rows:
            if crash_id in self._seen_ids:
                continue
            self._seen_ids.add(crash_id)
            self._last_received = max(self._last_received, int(received_at))
            comm = json.loads(signature_json).get("comm", "")
            if comm in self.stored:
                self.stored[comm].copies += 1
            else:
                self.stored[comm] = Stored(comm, host, int(received_at) / 1e6)

    def _count(self, sql: str) -> int:
        import psycopg

        try:
            with psycopg.connect(self.db_url, connect_timeout=2) as conn:
                row = conn.execute(sql).fetchone()
        except psycopg.Error:
            return 0
        return int(row[0]) if row else 0

    def missing(self, tokens: set[str] | None = None) -> set[str]:
        self.poll_store()
        wanted = set(self.placed) if tokens is None else tokens
        return wanted - set(self.stored)

    def sample_agents(self) -> None:
        """Peak memory of each agent's process tree (daemon, warm worker and the worker it forked):
        the sum of their PSS, so pages the forked worker shares with its warm parent count once.
        At most once a second (it reads all of /proc)."""
        now = time.monotonic()
        if now - self._last_sample < 1.0:
            return
        self._last_sample = now
        parents = _parents()
        for agent in self.agents:
            if agent.process is not None and agent.process.poll() is None:
                tree = _descendants(agent.process.pid, parents)
                agent.max_pss_kb = max(agent.max_pss_kb, sum(_pss_kb(p) for p in tree))

    def _account(self, agent: Agent) -> None:
        """Add the CPU of the agent's process tree once per agent process: the daemon with the
        workers it waited for, and its children (the warm worker with every worker it forked)."""
        if agent.process is not None and agent.process.pid != agent.accounted_pid:
            parents = _parents()
            pid = agent.process.pid
            agent.cpu_seconds += _cpu_seconds(pid) + sum(
                _cpu_seconds(child) for child, parent in parents.items() if parent == pid
            )
            agent.accounted_pid = pid

    def account_all(self) -> None:
        for agent in self.agents:
            if agent.process is not None and agent.process.poll() is None:
                self._account(agent)

    # --- tear-down ----------------------------------------------------------------------------

    def close(self) -> None:
        for agent in self.agents:
            if agent.process is not None and agent.process.poll() is None:
                self._account(agent)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(agent.process.pid, signal.SIGTERM)
        for agent in self.agents:
            if agent.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    agent.process.wait(15)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(agent.process.pid, signal.SIGKILL)
            if agent.tmpfs:
                subprocess.run(["umount", "-l", str(agent.root / "state")], check=False)
        for replica in self.replicas:
            if replica.process is not None and replica.process.poll() is None:
                os.killpg(replica.process.pid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    replica.process.wait(20)
            self.kill_replica(replica)
        if self.proxy is not None:
            self.proxy.stop()
        import psycopg

        with contextlib.suppress(psycopg.Error), psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')


# --- /proc accounting ----------------------------------------------------------------------------


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process, from one pass over /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    return parents


def _descendants(pid: int, parents: dict[int, int]) -> list[int]:
    tree = [pid]
    for node in tree:
        tree.extend(child for child, parent in parents.items() if parent == node)
    return tree


def _pss_kb(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def _cpu_seconds(pid: int) -> float:
    """CPU of the process and of its children it has waited for (its finished workers)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- the schedule -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fault:
    """A named fault: `inject` breaks something, `hold` seconds pass while crashes keep coming
    (`spool` of them, spread over the hold), then `repair` mends it and returns when the
    collector answers again; the drain after it is measured."""

    name: str
    inject: Callable[[Run], None]
    repair: Callable[[Run], None]
    hold: float
    spool: int
    target: int | None = None  # place the fault's crashes on this agent only (the victim)


def _kill_one_replica(run: Run) -> None:
    run.kill_replica(run.replicas[0])


def _restart_replicas(run: Run) -> None:
    """Start every dead replica at once; return when the first answers (the rest follow)."""
    dead = [r for r in run.replicas if r.process is None or r.process.poll() is not None]
    for replica in dead:
        run.start_replica(replica, wait=False)
    if dead:
        run.wait_healthy(dead)


def _kill_both_replicas(run: Run) -> None:
    for replica in run.replicas:
        run.kill_replica(replica)


def _stop_postgres(run: Run) -> None:
    cluster = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "stop", "-m", "fast"], check=True)


def _start_postgres(run: Run) -> None:
    cluster = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", cluster, "main", "start"], check=True)


def _kill_agents(run: Run) -> None:
    """kill -9 a quarter of the agents while they ship: place crashes on them first, then kill."""
    victims = run.agents[1 : 1 + max(1, len(run.agents) // 4)]
    for agent in victims:
        for _ in range(3):
            run.place(agent)
    time.sleep(0.8)  # long enough for their workers to be extracting or mid-call
    for agent in victims:
        run.kill_agent(agent)


def _restart_agents(run: Run) -> None:
    for agent in run.agents:
        if agent.process is None:
            run.start_agent(agent)


def _fill_disk(run: Run) -> None:
    state = run.agents[0].root / "state"
    with contextlib.suppress(OSError), (state / "filler").open("wb") as f:
        while True:
            f.write(b"\0" * (1 << 20))
            f.flush()


def _free_disk(run: Run) -> None:
    with contextlib.suppress(FileNotFoundError):
        (run.agents[0].root / "state" / "filler").unlink()


def _proxy(mode: str) -> Callable[[Run], None]:
    def apply(run: Run) -> None:
        assert run.proxy is not None
        run.proxy.set_mode(mode)

    return apply


def schedule(short: bool, pg_restart: bool, full_disk: bool) -> list[Fault]:
    heal = _proxy("pass")
    if short:
        return [
            Fault("kill -9 of one replica", _kill_one_replica, _restart_replicas, 3.0, 10),
            Fault("both replicas down 5 s", _kill_both_replicas, _restart_replicas, 5.0, 20),
            Fault("proxy resets every connection", _proxy("reset"), heal, 2.0, 5),
            Fault("kill -9 of agents while shipping", _kill_agents, _restart_agents, 2.0, 0),
        ]
    faults = [
        Fault("kill -9 of one replica", _kill_one_replica, _restart_replicas, 5.0, 20),
        Fault("both replicas down 10 s", _kill_both_replicas, _restart_replicas, 10.0, SPOOLED_PER_OUTAGE),
        Fault("both replicas down 2 min", _kill_both_replicas, _restart_replicas, 120.0, SPOOLED_PER_OUTAGE),
    ]
    if pg_restart:
        faults.append(Fault("PostgreSQL restarted mid-stream", _stop_postgres, _start_postgres, 5.0, 20))
    faults += [
        Fault("kill -9 of agents while shipping", _kill_agents, _restart_agents, 2.0, 10),
        Fault("proxy black hole 15 s", _proxy("blackhole"), heal, 15.0, 30),
        Fault("proxy half-open 15 s", _proxy("halfopen"), heal, 15.0, 30),
        Fault("proxy trickle 15 s", _proxy("trickle"), heal, 15.0, 30),
        Fault("proxy resets mid-stream", _proxy("reset"), heal, 2.0, 10),
    ]
    if full_disk:
        faults.append(Fault("agent state directory full 20 s", _fill_disk, _free_disk, 20.0, 10, target=0))
    return faults


# --- running it -------------------------------------------------------------------------------


def steady(run: Run, seconds: float, rate: float) -> list[float]:
    """Place crashes at `rate` per second for `seconds`; return placed → stored latencies."""
    run.phase = "steady"
    tokens: list[str] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tokens.append(run.place().token)
        run.sample_agents()
        run.poll_store()
        time.sleep(1.0 / rate)
    wait_stored(run, set(tokens), 30.0)
    return [run.stored[t].received_at - run.placed[t].placed_at for t in tokens if t in run.stored]


def wait_stored(run: Run, tokens: set[str], timeout: float) -> float | None:
    """Seconds until every token is stored, or None after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not run.missing(tokens):
            return time.monotonic() - start
        run.sample_agents()
        time.sleep(0.2)
    return None


def out_of_order(run: Run, tokens: set[str]) -> int:
    """Per agent, spooled crashes stored before an older one of the same agent (inversions)."""
    count = 0
    by_agent: dict[int, list[Placed]] = {}
    for t in tokens:
        by_agent.setdefault(run.placed[t].agent, []).append(run.placed[t])
    for placed in by_agent.values():
        placed.sort(key=lambda p: p.placed_at)
        times = [run.stored[p.token].received_at for p in placed if p.token in run.stored]
        count += sum(1 for a, b in itertools.pairwise(times) if b < a)
    return count


def inject(run: Run, fault: Fault) -> PhaseResult:
    run.phase = fault.name
    before = set(run.placed)
    fault.inject(run)
    start = time.monotonic()
    victim = None if fault.target is None else run.agents[fault.target]
    placed = 0
    while (elapsed := time.monotonic() - start) < fault.hold:
        due = min(fault.spool, int(fault.spool * elapsed / fault.hold) + 1) if fault.spool else 0
        while placed < due:  # on schedule even when placing lags behind a loaded machine
            run.place(victim)
            placed += 1
        run.sample_agents()
        time.sleep(0.05)
    placed_in_fault = set(run.placed) - before
    fault.repair(run)  # returns when the collector answers again (replicas wait for /healthz)
    waiting = run.missing()
    result = PhaseResult(fault.name, placed=len(placed_in_fault), spooled_at_recovery=len(waiting))
    bound = MAX_RETRY_SECONDS + RECOVERY_SLACK_SECONDS + len(waiting) / 2.0  # + the limiter's pace
    result.recovery_seconds = wait_stored(run, waiting, bound) if waiting else 0.0
    if result.recovery_seconds is None:
        result.drained = False
        wait_stored(run, waiting, 120.0)  # keep waiting, to tell slow from lost
        result.note = f"not drained within {bound:.0f} s"
    result.out_of_order = out_of_order(run, waiting)
    for replica in run.replicas:  # the next fault starts from a whole fleet
        run.wait_healthy([replica])
    return result


def report(run: Run, latencies: list[float], wall: float) -> bool:
    run.poll_store()
    run.account_all()
    lost = sorted(set(run.placed) - set(run.stored))
    twice = sorted(t for t, s in run.stored.items() if s.copies > 1 and t in run.placed)
    print()
    print(f"{'fault':<36} {'placed':>6} {'spooled':>7} {'recovery s':>10} {'order':>5} {'lost':>4} {'twice':>5}")
    for r in run.results:
        phase_tokens = {t for t, p in run.placed.items() if p.phase == r.name}
        lost_here = len(phase_tokens & set(lost))
        twice_here = len(phase_tokens & set(twice))
        rec = "-" if r.recovery_seconds is None else f"{r.recovery_seconds:.1f}"
        print(f"{r.name:<36} {r.placed:>6} {r.spooled_at_recovery:>7} {rec:>10} {r.out_of_order:>5} "
              f"{lost_here:>4} {twice_here:>5}  {r.note}")  # fmt: skip
    print(f"{'total':<36} {len(run.placed):>6} {'':>7} {'':>10} {'':>5} {len(lost):>4} {len(twice):>5}")
    ok = not lost and not twice
    if latencies:
        q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) >= 2 else [latencies[0]] * 99
        p50, p99, worst = statistics.median(latencies), q[98], max(latencies)
        goal = "" if run.short else f"  (goal p99 ≤ {STEADY_P99_GOAL_SECONDS:.0f} s)"
        print(f"\nsteady state, placed → stored over {len(latencies)} crashes: "
              f"p50 {p50:.2f} s, p99 {p99:.2f} s, max {worst:.2f} s{goal}")  # fmt: skip
        if not run.short and p99 > STEADY_P99_GOAL_SECONDS:
            ok = False
    cpu = sum(a.cpu_seconds for a in run.agents)
    rss = [a.max_pss_kb for a in run.agents if a.max_pss_kb]
    if rss:
        print(f"agents: {len(run.agents)}, CPU {cpu:.1f} s over {wall:.0f} s "
              f"({100 * cpu / wall / len(run.agents):.2f} % of a core each), "
              f"peak PSS (daemon + workers) median {statistics.median(rss) / 1024:.0f} MiB, max {max(rss) / 1024:.0f} MiB")  # fmt: skip
    if not run.short and not all(r.drained for r in run.results):
        ok = False
    if lost:
        print(f"LOST: {', '.join(lost[:20])}")
    if twice:
        print(f"STORED TWICE: {', '.join(twice[:20])}")
    print("\nresult:", "PASS" if ok else "FAIL")
    return ok


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="crashfleet-chaos-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--short", action="store_true", help="the small variant make test runs (about a minute)")
    parser.add_argument("--agents", type=int, default=None, help="agents (default 20, --short 4)")
    parser.add_argument("--steady-seconds", type=float, default=None, help="steady-state phase (default 60, --short 8)")
    parser.add_argument("--rate", type=float, default=2.0, help="crashes placed per second in steady state")
    parser.add_argument("--pg-restart", action="store_true", help="restart the local PostgreSQL cluster mid-stream")
    parser.add_argument("--no-faults", action="store_true", help="steady state only (measure latency at --rate)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs of every process)")
    args = parser.parse_args(argv)
    agents = args.agents or (4 if args.short else 20)
    steady_seconds = args.steady_seconds if args.steady_seconds is not None else (8.0 if args.short else 60.0)
    full_disk = not args.short and os.geteuid() == 0
    # SIGTERM (a timeout, a test runner giving up) tears the fleet down like Ctrl-C does: the
    # replicas and agents run in sessions of their own and would outlive the run.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.monotonic()
    with workdir(args.keep) as wd:
        run = Run(wd, agents, args.short, args.pg_restart)
        try:
            print(f"chaos: {agents} agents, 2 replicas on PostgreSQL, work directory {wd}", flush=True)
            run.setup()
            latencies = steady(run, steady_seconds, args.rate)
            print(f"steady state: {len(latencies)} crashes stored", flush=True)
            for fault in [] if args.no_faults else schedule(args.short, args.pg_restart, full_disk):
                print(f"fault: {fault.name} …", flush=True)
                run.results.append(inject(run, fault))
            run.phase = "final"
            wait_stored(run, set(run.placed), MAX_RETRY_SECONDS + RECOVERY_SLACK_SECONDS + 60.0)
            return 0 if report(run, latencies, time.monotonic() - started) else 1
        finally:
            run.close()


if __name__ == "__main__":
    sys.exit(main())
