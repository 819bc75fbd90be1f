"""`crashfleet submit --collector HOST:PORT PATH...`: send crash files straight to a collector.

For backfill and hosts without an agent. Each PATH is a kernel log, a crash dump or a kdump
directory (analysis.sources.open_capture); every crash found in it is reported with the
idempotency key sha256(capture bytes) + crash index, so submitting the same file again is
answered as a duplicate and counted once (and costs the collector's rate limit nothing).

A backfill finishes: a throttled report waits the time the collector's limiter names
(`retry-after-ms`, wire.retry) plus jitter and is sent again; an unreachable collector is retried
with backoff for `--give-up-after` seconds, then the run stops. On a terminal, progress goes to
stderr; every run ends with a summary (stored / duplicate / failed) and exit status 1 when any
crash or file failed.

Which host a crash is filed under is decided by `HOST_RULES`, first match wins, and printed
with each crash: a machine running `submit` is not the crashed host unless the files are in its
own crash directories.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from analysis.model import SystemFacts

HELP = "analyze crash files (logs, dumps, kdump dirs) and report them to a collector"

# The agent's default crash directories: a file under one of them is this host's own crash.
OWN_CRASH_DIRS = ("/var/crash", "/var/lib/systemd/pstore", "/sys/fs/pstore")
# Node names that name no host: the kernel's default before userspace sets one (an initramfs, a
# kdump kernel), and loopback names every unconfigured machine shares.
NO_HOSTNAME = frozenset({"", "(none)", "localhost", "localhost.localdomain"})
GIVE_UP_AFTER_S = 300.0  # per report: how long an unreachable collector is retried before the run stops
BACKOFF_INITIAL_S, BACKOFF_MAX_S = 0.5, 30.0
PROGRESS_EVERY_S = 0.2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from wire.channel import add_client_arguments

    add_client_arguments(parser)
    parser.add_argument(
        "--hostname",
        help="host the crashes happened on (default: the dump's nodename; this host only for files in its "
        "own crash directories)",
    )
    parser.add_argument(
        "--crash-dir", action="append", metavar="DIR", dest="crash_dirs",
        help=f"this host's own crash directory (repeatable; default {', '.join(OWN_CRASH_DIRS)})",
    )  # fmt: skip
    parser.add_argument(
        "--give-up-after", type=float, default=GIVE_UP_AFTER_S, metavar="SECONDS",
        help=f"stop when the collector stays unreachable this long ({GIVE_UP_AFTER_S:.0f})",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true", help="JSON Lines: one object per crash reported")
    parser.add_argument("paths", nargs="+", metavar="PATH")


@dataclass(frozen=True, slots=True)
class Filing:
    """The host a capture's crashes are filed under (None: no host known) and why."""

    host: str | None
    reason: str


def _usable(name: str | None) -> str | None:
    name = (name or "").strip()
    return None if name in NO_HOSTNAME or " " in name or not name.isprintable() else name


def _own(path: str, crash_dirs: Sequence[str]) -> str | None:
    """The crash directory `path` lies in, if it is one of this host's."""
    resolved = Path(path).resolve()
    for directory in crash_dirs:
        if resolved.is_relative_to(Path(directory).resolve()):
            return directory
    return None


# (rule name, how it decides) in order; the first that returns a Filing wins.
HostRule = Callable[[str | None, "SystemFacts | None", str, Sequence[str], str], Filing | None]
HOST_RULES: tuple[tuple[str, HostRule], ...] = (
    ("explicit", lambda given, _s, _p, _d, _me: Filing(given, "--hostname") if given else None),
    (
        "nodename",
        lambda _g, system, _p, _d, _me: (
            Filing(name, "the dump's nodename") if (name := _usable(system.nodename if system else None)) else None
        ),
    ),
    (
        "own-crash-dir",
        lambda _g, _s, path, dirs, me: (
            Filing(me, f"in this host's crash directory {where}") if (where := _own(path, dirs)) else None
        ),
    ),
)


def file_under(given: str | None, system: SystemFacts | None, path: str, crash_dirs: Sequence[str],
               this_host: str) -> Filing:  # fmt: skip
    """Which host a capture's crashes belong to, by HOST_RULES; never an invented one."""
    for _name, rule in HOST_RULES:
        filing = rule(given, system, path, crash_dirs, this_host)
        if filing is not None:
            return filing
    if system is not None and system.nodename is not None:
        why = f"the dump's nodename is {system.nodename.strip() or 'empty'!r}"
    elif system is not None:
        why = "the dump records no nodename"
    else:
        why = "a kernel log names no host"
    return Filing(None, f"no host: {why} and the file is not in this host's crash directories; pass --hostname")


@dataclass
class Tally:
    stored: int = 0
    duplicate: int = 0
    failed: int = 0
    files_failed: int = 0
    files_without_crash: int = 0
    files_done: int = 0
    lines: list[str] = field(default_factory=list)

    def summary(self, files: int) -> str:
        crashes = self.stored + self.duplicate + self.failed
        text = (
            f"submitted {crashes} crash{'es' if crashes != 1 else ''} from {files} file{'s' if files != 1 else ''}:"
            f" {self.stored} stored, {self.duplicate} duplicate, {self.failed} failed"
        )
        extras = []
        if self.files_failed:
            extras.append(f"{self.files_failed} unreadable")
        if self.files_without_crash:
            extras.append(f"{self.files_without_crash} without a crash")
        return text + (f" ({', '.join(extras)})" if extras else "")


class Progress:
    """One self-overwriting line on stderr, only when stderr is a terminal."""

    def __init__(self, stream: TextIO, total_files: int) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.total = total_files
        self._last = 0.0
        self._width = 0

    def show(self, tally: Tally, note: str = "", force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        text = (
            f"submit: file {tally.files_done}/{self.total}: {tally.stored} stored, {tally.duplicate} duplicate,"
            f" {tally.failed} failed{'; ' + note if note else ''}"
        )
        self.stream.write("\r" + text.ljust(self._width))
        self._width = len(text)
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()


class Unreachable(Exception):
    """The collector stayed unreachable (or refuses our credentials): the run stops."""


def _send(stub: Any, request: Any, args: argparse.Namespace, progress: Progress, tally: Tally,
          sleep: Callable[[float], None] = time.sleep) -> Any:  # fmt: skip
    """ReportCrash until it is answered: the limiter's hint is honoured, an outage retried with
    backoff for `--give-up-after` seconds; returns the reply or raises RpcError / Unreachable."""
    import grpc

    from wire.retry import backoff_delay, call_retry_after, throttle_delay

    waited = 0.0
    attempt = 0
    while True:
        try:
            return stub.ReportCrash(request, timeout=args.timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            hint = call_retry_after(exc)
            if code == grpc.StatusCode.RESOURCE_EXHAUSTED and hint is not None:
                delay = throttle_delay(hint)
                note = f"the collector's rate limit asks to wait {delay:.1f}s"
            elif code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                if waited >= args.give_up_after:
                    raise Unreachable(f"{code.name}: {exc.details()}") from None
                if attempt == 0 and not progress.enabled:
                    print(f"crashfleet submit: collector {code.name}; retrying for up to {args.give_up_after:.0f}s",
                          file=sys.stderr)  # fmt: skip
                delay = backoff_delay(attempt, BACKOFF_INITIAL_S, BACKOFF_MAX_S)
                attempt += 1
                note = f"collector {code.name}, retrying in {delay:.1f}s"
            elif code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                raise Unreachable(f"{code.name}: {exc.details()}") from None
            else:
                raise
            progress.show(tally, note, force=True)
            sleep(delay)
            waited += delay


def run(args: argparse.Namespace) -> int:
    import json

    import grpc

    from analysis.errors import CrashfleetInputError
    from analysis.signature import analyze
    from analysis.sources import open_capture
    from wire import convert
    from wire.channel import client_config_from_args, open_channel
    from wire.v1 import crash_pb2, ingest_service_pb2_grpc

    crash_dirs = args.crash_dirs or OWN_CRASH_DIRS
    this_host = socket.gethostname()
    tally = Tally()
    progress = Progress(sys.stderr, len(args.paths))
    summary_out = sys.stderr if args.json else sys.stdout

    def fail(message: str) -> None:
        progress.clear()
        print(f"crashfleet submit: {message}", file=sys.stderr)

    with open_channel(client_config_from_args(args)) as channel:
        stub = ingest_service_pb2_grpc.IngestServiceStub(channel)
        try:
            for path in args.paths:
                tally.files_done += 1
                progress.show(tally)
                try:
                    capture = open_capture(path)
                    records = analyze(capture.log)
                except CrashfleetInputError as exc:
                    fail(f"{exc.path}: {exc.reason}")
                    tally.files_failed += 1
                    continue
                if not records:
                    fail(f"{path}: no kernel crash found")
                    tally.files_without_crash += 1
                    continue
                system = capture.system
                filing = file_under(args.hostname, system, path, crash_dirs, this_host)
                if filing.host is None:
                    fail(f"{path}: {len(records)} crash(es) not sent: {filing.reason}")
                    tally.failed += len(records)
                    continue
                digest = hashlib.sha256(capture.log).hexdigest()
                crash_time = (
                    datetime.fromtimestamp(system.crash_time, tz=UTC)
                    if system is not None and system.crash_time is not None
                    else datetime.fromtimestamp(os.stat(capture.source).st_mtime, tz=UTC)
                )
                for index, record in enumerate(records):
                    host = crash_pb2.HostFacts(
                        hostname=filing.host,
                        kernel_release=record.kernel_release or (system.release if system and system.release else ""),
                        machine=(system.machine if system and system.machine else "") or record.arch,
                        hardware=record.hardware or "",
                        modules=list(record.modules),
                    )
                    try:
                        request = convert.report_request(
                            record, key=convert.idempotency_key(digest, index), host=host,
                            source_path=os.path.abspath(capture.source), crash_time=crash_time, system=system,
                        )  # fmt: skip
                        reply = _send(stub, request, args, progress, tally)
                    except convert.WireError as exc:
                        fail(f"{path}: crash {index}: {exc}")
                        tally.failed += 1
                        continue
                    except grpc.RpcError as exc:
                        fail(f"{path}: crash {index}: {exc.code().name}: {exc.details()}")
                        tally.failed += 1
                        continue
                    if reply.duplicate:
                        tally.duplicate += 1
                    else:
                        tally.stored += 1
                    progress.clear()
                    if args.json:
                        print(json.dumps({"path": path, "index": index, "crash_id": reply.crash_id,
                                          "cluster_id": reply.cluster_id, "duplicate": reply.duplicate,
                                          "host": filing.host, "host_reason": filing.reason,
                                          "title": record.title}))  # fmt: skip
                    else:
                        state = "duplicate" if reply.duplicate else "stored"
                        print(f"{path}#{index}: {state} crash {reply.crash_id} cluster {reply.cluster_id}"
                              f" host {filing.host} ({filing.reason})  {record.title}")  # fmt: skip
                    progress.show(tally, force=True)
        except Unreachable as exc:
            fail(f"collector {args.collector} unreachable, stopping: {exc}")
            tally.failed += 1
            progress.clear()
            print(tally.summary(tally.files_done) + f"; {len(args.paths) - tally.files_done} file(s) not sent",
                  file=summary_out)  # fmt: skip
            return 1
    progress.clear()
    print(tally.summary(len(args.paths)), file=summary_out)
    return 1 if tally.failed or tally.files_failed else 0
