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

The fleet tells a story (STORY, docs/operations.md "Try it"), so that the fleet analytics have
something to find: an old group of servers (one QEMU machine model) and a new group (another
model, veth and bridge loaded for containers) on the same kernel, only the new group crashing in
the NULL-pointer cluster; one old host with EDAC memory errors crashing alone in unrelated places;
a kernel update (OLD_RELEASE -> NEW_RELEASE) that brings a new cluster. Each agent reads its
inventory from a small /proc and DMI tree of its own (the agent's `[host] proc_dir`/`dmi_dir`).

Exposure needs time: crash rates are over host-days. No API can backdate a heartbeat (HeartbeatRequest
carries no time; the collector stamps its own), so before the collector starts, `seed_history`
replays four weeks of the fleet's heartbeats, one per host every HISTORY_INTERVAL_S (two hours),
through the collector's own ingest path
(`Ingestor.heartbeat_async`: the same validation, store write and exposure accounting as the gRPC
Heartbeat) with a replayed clock, into the store the collector then opens. That cadence is
accounted with a cap of HISTORY_CAP_S (three intervals, as the collector's 180 s cap is three of
its 60 s intervals). The live agents then heartbeat on top of that history. The crashes are all
dropped live and go the whole way: capture on disk, agent, gRPC, collector.

The dumps come from one QEMU guest: a crash landing on a host is written as that host's kernel
would have printed it — `Hardware name:` names the host's machine and `Modules linked in:` lists
the modules it had loaded first (`rehost_log`); on the EDAC host, the memory errors its kernel
logged before the crash precede the oops. The crash itself (oops, RIP, trace, Code: bytes) is
untouched, and a real dump is placed as it is.
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

# Pacing: with --duration, drops happen in the first DROP_SHARE of it and the rest is left for
# extraction and shipping; without, one drop every OPEN_ENDED_SPACING seconds.
DROP_SHARE = 0.6
OPEN_ENDED_SPACING = 1.5
STATUS_EVERY = 5.0
SETTLE_SECONDS = 1.0
HEARTBEAT_SECONDS = 10.0
# The collector's ports (docs/operations.md "Try it"): beside, not on, a real collector's defaults
# (50051, 8080), so the demo runs on a machine that has one.
DEMO_GRPC_PORT = 50052
DEMO_HTTP_PORT = 8082
STARTUP_TIMEOUT = 60.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # both stop the demo (SIGTERM is turned into Ctrl-C)
DRAIN_TIMEOUT = 20.0

# --- the fleet's story -----------------------------------------------------------------------
OLD_RELEASE = "6.1.0-55-amd64"
NEW_RELEASE = "6.1.0-56-amd64"  # the release of the real dumps and of most fixtures
BASE_MODULES = ("crashme", "qemu_fw_cfg", "ext4", "virtio_net")  # crashme: the dumps' test module
CONTAINER_MODULES = ("veth", "bridge")  # loaded for containers on the new group


@dataclass(frozen=True, slots=True)
class Group:
    """A group of hosts installed alike: DMI vendor and product, and the modules they load."""

    name: str
    vendor: str
    product: str
    modules: tuple[str, ...]

    @property
    def hardware(self) -> str:
        """As the kernel prints it in an oops, and as the agent reads it from DMI."""
        return f"{self.vendor} {self.product}"


OLD_GROUP = Group("old", "QEMU", "Standard PC (Q35 + ICH9, 2009)", BASE_MODULES)
# The real dumps' machine: the new group's crashes are the dumps' own.
NEW_GROUP = Group("new", "QEMU", "Standard PC (i440FX + PIIX, 1996)", CONTAINER_MODULES + BASE_MODULES)
BAD_HOST = 2  # an old-group host with a debian (kdump-tools) layout: the real dumps fit it

# History (days before the demo): the old group runs OLD_RELEASE from HISTORY_DAYS ago until the
# kernel update UPDATE_DAYS ago, NEW_RELEASE since; the new group was installed at the update.
HISTORY_DAYS = 28
UPDATE_DAYS = 7
HISTORY_INTERVAL_S = 2 * 3600  # the replay's resolution: 4 weeks of 16 hosts in a few seconds
HISTORY_CAP_S = 3 * HISTORY_INTERVAL_S

# Which sample plays which part, first the real crash of ../shared, else the project's fixture.
# (role, drops, sample names in order of preference)
STORY: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    ("null", 12, ("null-deref", "e1000e-null-deref")),  # the new group's NULL-pointer cluster
    ("update", 6, ("warning", "nf-tables-warning")),  # the cluster the kernel update brought
    ("bad", 2, ("kernel-bug", "ext4-kernel-bug")),  # the EDAC host, alone in these two
    ("bad", 2, ("soft-lockup", "xfs-soft-lockup")),
)
# What the EDAC host's kernel logged before each crash (drivers/edac/edac_mc.c's format).
EDAC_LINES = (
    "EDAC MC0: 2 CE memory read error on CPU_SrcID#0_MC#0_Chan#1_DIMM#0 (channel:1 slot:0 page:0x4a2b1"
    " offset:0x340 grain:32 syndrome:0x0)",
    "EDAC MC0: 1 UE memory read error on CPU_SrcID#0_MC#0_Chan#1_DIMM#0 (channel:1 slot:0 page:0x4a2b3"
    " offset:0x0 grain:32)",
)

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


@dataclass(frozen=True, slots=True)
class Drop:
    """One crash landing on one host at `at` seconds into the demo."""

    at: float
    host: int  # 1-based
    sample: CrashSample
    seq: int  # distinct per drop: names the capture and shifts the log's timestamps
    with_dump: bool
    role: str = ""  # the sample's part in STORY


@dataclass(slots=True)
class Host:
    name: str
    layout: str
    crash_dir: Path
    pstore_dir: Path
    state_dir: Path
    group: Group = OLD_GROUP
    release: str = NEW_RELEASE
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
    if fixtures.is_dir():
        for path in sorted(fixtures.glob("*.txt")):
            text = path.read_bytes()
            samples.append(CrashSample(path.stem, text, varies=bool(_STAMP.search(text))))
    if not samples:
        raise DemoError(f"no crash data: neither {shared} nor {fixtures} holds any")
    return samples


def host_layout(host: int) -> str:
    """The distribution layout of host `host` (1-based)."""
    return LAYOUTS[(host - 1) % len(LAYOUTS)]


def host_group(host: int, hosts: int) -> Group:
    """The first half of the fleet is the old group, the rest the new one."""
    return OLD_GROUP if host <= hosts // 2 else NEW_GROUP


def bad_host(hosts: int) -> int | None:
    """The EDAC host: BAD_HOST when the fleet's old group has it."""
    return BAD_HOST if hosts // 2 >= BAD_HOST else None


def _pick(samples: Sequence[CrashSample], names: Sequence[str]) -> CrashSample | None:
    by_name = {s.name: s for s in samples}
    return next((by_name[n] for n in names if n in by_name), None)


def _dump_first(targets: list[int], sample: CrashSample) -> list[int]:
    """Rotate `targets` so the first host has the layout the sample's dump goes to (if any does)."""
    if sample.dump is None:
        return targets
    for i, h in enumerate(targets):
        if host_layout(h) == sample.dump_layout:
            return targets[i:] + targets[:i]
    return targets


def story_parts(samples: Sequence[CrashSample], hosts: int) -> list[tuple[str, CrashSample, list[int]]]:
    """Each STORY part whose sample is there: (role, sample, the host of each of its drops)."""
    old = [h for h in range(1, hosts + 1) if host_group(h, hosts) is OLD_GROUP]
    new = [h for h in range(1, hosts + 1) if host_group(h, hosts) is NEW_GROUP]
    bad = bad_host(hosts)
    healthy_old = [h for h in old if h != bad]
    parts = []
    for role, count, names in STORY:
        sample = _pick(samples, names)
        if sample is None:
            continue
        if role == "null":
            # Every new-group host, some twice: the most common bug.
            targets = _dump_first(new, sample)
            slots = (
                [targets[i % len(targets)] for i in range(max(count * len(new) // 8, len(new)))]
                if new
                else []
            )
        elif role == "update":
            # Both groups alike, different hosts each: the kernel's bug, not the machines'.
            mixed = [h for pair in zip(healthy_old, reversed(new), strict=False) for h in pair]
            mixed += [h for h in [*healthy_old, *new] if h not in mixed]
            slots = _dump_first(mixed, sample)[:count]
        else:
            slots = [bad] * count if bad is not None else []
        if not sample.varies:
            slots = slots[:1]  # identical copies would be one crash to the collector
        if slots:
            parts.append((role, sample, slots))
    return parts


def plan_story(samples: Sequence[CrashSample], hosts: int, window: float | None) -> list[Drop]:
    """Which crash lands on which host when (STORY). The parts are interleaved evenly over the
    window (no bug arrives all at once); each real dump is placed once, with the first drop of its
    sample, when that host's layout is a kdump one."""
    parts = story_parts(samples, hosts)
    slots = sorted(
        ((i + 0.5) / len(part_hosts), p, i)
        for p, (_r, _s, part_hosts) in enumerate(parts)
        for i in range(len(part_hosts))
    )
    spacing = (window / max(1, len(slots))) if window is not None else OPEN_ENDED_SPACING
    dumps_used: set[Path] = set()
    drops = []
    for seq, (_key, p, i) in enumerate(slots):
        role, sample, part_hosts = parts[p]
        host = part_hosts[i]
        with_dump = (
            sample.dump is not None and sample.dump not in dumps_used and host_layout(host) in DUMP_LAYOUTS
        )
        if with_dump:
            assert sample.dump is not None
            dumps_used.add(sample.dump)
        drops.append(Drop(round(seq * spacing, 2), host, sample, seq, with_dump, role))
    return drops


_HARDWARE_LINE = re.compile(rb"(Hardware name: )(.*?)((?:, BIOS .*)?)$", re.MULTILINE)
_MODULES_LINE = re.compile(rb"(Modules linked in:)(.*)$", re.MULTILINE)
# The first line of the crash: the "cut here" line before a BUG/WARNING, else the report's own.
_CRASH_LINE = re.compile(
    rb"^(\[\s*\d+\.\d+\] )?(?:-+\[ cut here \]-+|.*(?:BUG:|WARNING:|kernel BUG|Oops:))", re.MULTILINE
)


def rehost_log(text: bytes, group: Group, edac: bool = False) -> bytes:
    """The crash's log as a host of `group` would have printed it: its machine on the
    `Hardware name:` line (the BIOS part kept), the modules it loads that the line lacks first on
    `Modules linked in:` (the kernel prints the newest first), and with `edac` the EDAC_LINES
    just before the crash, stamped as its first line. Nothing else changes."""
    text = _HARDWARE_LINE.sub(lambda m: m[1] + group.hardware.encode() + m[3], text)

    def modules(m: re.Match[bytes]) -> bytes:
        listed = {t.split(b"(")[0] for t in m[2].split()}
        extra = [n.encode() for n in group.modules if n.encode() not in listed]
        return m[1] + b"".join(b" " + n for n in extra) + m[2]

    text = _MODULES_LINE.sub(modules, text)
    if edac:
        crash = _CRASH_LINE.search(text)
        if crash is not None:
            stamp = crash[1] or b""
            lines = b"".join(stamp + line.encode() + b"\n" for line in EDAC_LINES)
            text = text[: crash.start()] + lines + text[crash.start() :]
    return text


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


def history_steps(now: datetime) -> Iterator[tuple[datetime, bool, bool]]:
    """(when, old group heartbeats on which release: True = OLD_RELEASE, new group heartbeats)
    every HISTORY_INTERVAL_S from HISTORY_DAYS ago until `now`."""
    start = now - timedelta(days=HISTORY_DAYS)
    update = now - timedelta(days=UPDATE_DAYS)
    step = timedelta(seconds=HISTORY_INTERVAL_S)
    when = start
    while when < now:
        yield when, when < update, when >= update
        when += step


def seed_history(db_path: Path, hosts: Sequence[Host], now: datetime) -> int:
    """Four weeks of the fleet's heartbeats (one per host every HISTORY_INTERVAL_S), through the collector's own heartbeat ingest
    (`Ingestor.heartbeat_async`, what the gRPC Heartbeat calls) with a replayed clock, into the
    store the collector will open; returns how many. Each host sends what its agent reads from its
    inventory files (`collect_inventory`); the old group's release before the update is OLD_RELEASE.
    Accounted with a cap of HISTORY_CAP_S: three of the history's intervals."""
    import asyncio
    import dataclasses

    from agent.heartbeat import collect_inventory
    from collector.ingest import Ingestor
    from collector.metrics import Metrics
    from collector.store import open_store
    from wire import convert
    from wire.v1 import ingest_service_pb2

    requests: dict[tuple[str, bool], ingest_service_pb2.HeartbeatRequest] = {}
    for host in hosts:
        root = host.crash_dir.parent
        inventory = collect_inventory(host.name, dmi_dir=root / "dmi", proc_dir=root / "proc")
        for before_update in (False, True):
            release = OLD_RELEASE if before_update else host.release
            facts = convert.host_facts_to_proto(dataclasses.replace(inventory, kernel_release=release))
            requests[(host.name, before_update)] = ingest_service_pb2.HeartbeatRequest(host=facts)
    store = open_store(f"sqlite:///{db_path}")
    store.exposure_cap_s = HISTORY_CAP_S  # type: ignore[attr-defined]
    clock = [now]
    ingestor = Ingestor(store, Metrics(), clock=lambda: clock[0])

    async def replay() -> int:
        sent = 0
        steps = [*history_steps(now), (now, False, True)]  # the last one at `now`: the live agents go on
        for when, old_on_old_release, new_group_up in steps:
            clock[0] = when
            batch = [
                requests[(h.name, old_on_old_release)]
                for h in hosts
                if (h.group is OLD_GROUP or new_group_up)
            ]
            await asyncio.gather(*(ingestor.heartbeat_async(r, r.host.hostname) for r in batch))
            sent += len(batch)
        return sent

    try:
        return asyncio.run(replay())
    finally:
        store.close()


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
    # A Ctrl-C raised inside Popen (after the fork) would leave a child no one holds, in a session
    # of its own: while the collector starts, a stop request is only noted, and acted on here.
    stop_requested: list[int] = []
    deferred = {sig: signal.signal(sig, lambda signum, _frame: stop_requested.append(signum)) for sig in STOP_SIGNALS}
    collector: Collector | None = None
    try:
        process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir, env=env,
            start_new_session=True,  # Ctrl-C goes to the demo, which stops the collector in order
        )  # fmt: skip
        collector = Collector(
            process, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}", log_path, log_file
        )
        _wait_healthy(collector, stop_requested)
    except BaseException:  # a failed start, or a Ctrl-C while waiting: never leave it running
        if collector is not None:
            stop_collector(collector)
        raise
    finally:
        for sig, handler in deferred.items():
            signal.signal(sig, handler)
    if stop_requested:  # noted after the last check
        stop_collector(collector)
        raise KeyboardInterrupt
    return collector


def _wait_healthy(collector: Collector, stop_requested: list[int]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if stop_requested:
            raise KeyboardInterrupt
        if collector.process.poll() is not None:
            raise DemoError(f"the collector exited with {collector.process.returncode}: {_tail(collector.log_path)}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(f"{collector.web}/healthz", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.2)
    raise DemoError(f"the collector did not answer /healthz within {STARTUP_TIMEOUT:.0f}s: {_tail(collector.log_path)}")


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
    """The fleet's hosts, each with its crash, pstore and state directories and the /proc and DMI
    files its agent reads its inventory from (`write_inventory`)."""
    hosts = []
    for i in range(1, count + 1):
        name = f"buildtest{i:02d}"
        root = workdir / name
        host = Host(
            name, host_layout(i), root / "crash", root / "pstore", root / "state", host_group(i, count)
        )
        for d in (host.crash_dir, host.pstore_dir, host.state_dir):
            d.mkdir(parents=True)
        write_inventory(host, root)
        hosts.append(host)
    return hosts


def write_inventory(host: Host, root: Path) -> None:
    """`root/proc` and `root/dmi` as the kernel shows them: the release, the loaded modules
    (/proc/modules, newest first), the memory; the DMI vendor and product."""
    proc, dmi = root / "proc", root / "dmi"
    (proc / "sys" / "kernel").mkdir(parents=True)
    dmi.mkdir()
    (proc / "sys" / "kernel" / "osrelease").write_text(host.release + "\n")
    (proc / "modules").write_text(
        "".join(f"{name} 16384 0 - Live 0x0000000000000000\n" for name in host.group.modules)
    )
    (proc / "meminfo").write_text("MemTotal:        8138532 kB\n")
    (dmi / "sys_vendor").write_text(host.group.vendor + "\n")
    (dmi / "product_name").write_text(host.group.product + "\n")


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
                # Whatever the collector suggests (60 s): the counts a capture brought must reach it
                # within the demo.
                "heartbeat_min_interval_seconds": HEARTBEAT_SECONDS,
                "heartbeat_max_interval_seconds": HEARTBEAT_SECONDS,
                "backoff_initial_seconds": 0.2,
                # The demo's crashes are files: this machine's own kernel log and pstore are not the
                # fleet's, and building symbol indexes from its debuginfo would take minutes.
                "kmsg_enabled": False,
                "symbolize_enabled": False,
                "metrics_listen": "",
                # The host's own inventory (write_inventory), not this machine's.
                "proc_dir": host.crash_dir.parent / "proc",
                "dmi_dir": host.crash_dir.parent / "dmi",
            },
        )
        config = replace_config(config, pstore_fs_dir=None)
        service = AgentService(config, launcher=launcher, notifier=Notifier({}), environ={})
        host.service = service
        host.thread = threading.Thread(
            target=_run_agent, args=(host,), name=f"agent-{host.name}", daemon=True
        )
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
    text = rehost_log(text, host.group, edac=drop.role == "bad")
    dump = drop.sample.dump if drop.with_dump else None
    path = WRITERS[host.layout](host, when, text, dump)
    host.dropped += 1
    what = f"vmcore + log ({dump.name})" if dump is not None else "kernel log"
    return f"{host.name}  {host.layout:<14} {drop.sample.name:<22} {what}  -> {path.name}  ({drop.role})"


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
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (store, logs, dumps)"
    )
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
    except KeyboardInterrupt:
        # Before the fleet runs (the history replay, the collector starting): nothing to drain.
        _print("\ninterrupted before the fleet started")
        return 130
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
    drops = plan_story(samples, args.hosts, window)
    real = sum(1 for s in samples if s.dump is not None)
    source = args.shared if real else FIXTURES
    _print(f"crashfleet demo: a collector and {args.hosts} agents on this machine (in {workdir})")
    _print(f"  crash data: {source} ({real} real vmcores, {len(samples)} kernel logs)")
    if not real:
        _print(
            f"  (no real dumps: {args.shared} is absent or holds none; the project's own kernel logs"
            " play the parts, without vmcores)"
        )
    hosts = make_hosts(workdir, args.hosts)
    _print_story(hosts, drops)
    seeding = time.monotonic()
    sent = seed_history(workdir / "collector.db", hosts, datetime.now(UTC))
    _print(
        f"  history:    {sent} heartbeats replayed in {time.monotonic() - seeding:.1f}s: {HISTORY_DAYS} days, one per host"
        f" every {HISTORY_INTERVAL_S // 3600} h, through the collector's heartbeat ingest with a replayed clock"
        f" (no API backdates a heartbeat: the collector stamps its own); exposure capped at"
        f" {HISTORY_CAP_S // 3600} h, three intervals"
    )
    collector = start_collector(workdir, args.grpc_port, args.http_port, args.verbose)
    interrupted = False
    try:
        _print(f"  collector:  gRPC {collector.grpc}, web page {collector.web}/ (SQLite store)")
        try:  # a Ctrl-C while the agents start is the same as one while crashes drop
            start_agents(hosts, collector.grpc)
            _print("  fleet:      " + ", ".join(f"{h.name} ({h.layout})" for h in hosts))
            started = time.monotonic()  # the drops' schedule and --duration count from here
            span = f"over {drops[-1].at:.0f}s" if drops else ""
            _print(f"dropping {len(drops)} crashes {span}; Ctrl-C stops")
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


def _print_story(hosts: Sequence[Host], drops: Sequence[Drop]) -> None:
    """Who is who in the fleet, and what will crash where (the answers the analytics must find)."""
    old = [h.name for h in hosts if h.group is OLD_GROUP]
    new = [h.name for h in hosts if h.group is NEW_GROUP]
    bad = bad_host(len(hosts))
    if old:
        _print(
            f"  old group:  {_span(old)}: {OLD_GROUP.hardware}; {OLD_RELEASE} until {UPDATE_DAYS} days ago, then {NEW_RELEASE}"
        )
    if new:
        _print(
            f"  new group:  {_span(new)}: {NEW_GROUP.hardware}, {' '.join(CONTAINER_MODULES)} loaded;"
            f" installed {UPDATE_DAYS} days ago on {NEW_RELEASE}"
        )
    by_role: dict[str, list[Drop]] = {}
    for d in drops:
        by_role.setdefault(d.role, []).append(d)
    for role, what in (
        ("null", "the new group's bug"),
        ("update", f"came with {NEW_RELEASE}, on both groups"),
        ("bad", "EDAC memory errors logged before each crash"),
    ):
        found = by_role.get(role, [])
        if found:
            names = sorted({d.sample.name for d in found})
            where = sorted({hosts[d.host - 1].name.removeprefix("buildtest") for d in found})
            _print(
                f"  {role + ':':<11} {', '.join(names)}: {len(found)} crashes on buildtest{','.join(where)} ({what})"
            )
    if bad is None:
        _print("  (no EDAC host: the fleet is too small for one in its old group)")


def _span(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{names[0]}…{names[-1]}" if len(names) > 3 else ", ".join(names)


def serve_until_interrupted(collector: Collector, interactive: bool, poll: float = 0.5) -> None:
    """On a terminal: print the web page's URL and keep the collector up until Ctrl-C (or until
    it exits). Otherwise (a pipe, CI) say it stops: a URL printed now would be dead when read."""
    if not interactive:
        _print("the collector stops with the demo (run it on a terminal to keep its web page up)")
        return
    try:
        # Inside the try: a Ctrl-C read off the line just printed may land before the loop starts.
        _print(f"web page: {collector.web}/  (the collector keeps serving; Ctrl-C stops it)")
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
            raise DemoError(
                f"the collector exited with {collector.process.returncode}: {_tail(collector.log_path)}"
            )
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
    _answers(collector, drops)


def story_clusters(web: str, drops: Sequence[Drop]) -> tuple[str | None, str | None]:
    """The top cluster (most crashes) and the cluster of the update's crash (by its title), as
    the collector stores them; None when it has none."""
    from analysis.signature import analyze

    listed = _http_json(f"{web}/api/v1/clusters?page_size=1000")
    rows = listed.get("clusters", []) if isinstance(listed, dict) else []
    if not rows:
        return None, None
    top = max(rows, key=lambda c: (int(c.get("count", 0)), str(c.get("id"))))
    update = next((d.sample for d in drops if d.role == "update"), None)
    titles = {r.title for r in analyze(update.log)} if update is not None else set()
    new = next((str(c["id"]) for c in rows if c.get("title") in titles), None)
    return str(top["id"]), new


def _answers(collector: Collector, drops: Sequence[Drop]) -> None:
    """The fleet's answers, by the real commands: what is different about the top cluster's
    hosts, which host is a hardware suspect, and on which release the update's cluster appeared."""
    from crashfleet import cli

    top, new = story_clusters(collector.web, drops)
    if top is None:
        _print("no clusters: nothing to analyze")
        return
    _print(
        "What is different about the hosts of the top cluster (mind: the new group was installed with the"
        f" update, none of its hosts ever ran {OLD_RELEASE}):"
    )
    _print(f"$ crashfleet suspects --collector {collector.grpc} {top[:12]}")
    cli.main(["suspects", "--collector", collector.grpc, top])
    _print()
    _print("Is it the kernel or the machine:")
    _print(f"$ crashfleet hosts --suspect --collector {collector.grpc}")
    cli.main(["hosts", "--suspect", "--collector", collector.grpc])
    _print()
    if new is None:
        _print("(the update's cluster is not among the stored clusters: no regression window to show)")
        return
    _print(f"On which release did the update's cluster appear ({NEW_RELEASE} is the update):")
    _print(f"$ crashfleet suspects --collector {collector.grpc} {new[:12]}")
    cli.main(["suspects", "--collector", collector.grpc, new])
    _print()
