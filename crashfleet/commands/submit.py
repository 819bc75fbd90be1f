"""`crashfleet submit --collector HOST:PORT PATH...`: send crash files straight to a collector.

For backfill and hosts without an agent. Each PATH is a kernel log, a crash dump or a kdump
directory (analysis.sources.open_capture); every crash found in it is reported with the
idempotency key sha256(capture bytes) + crash index, so submitting the same file again is
answered as a duplicate and counted once.
"""

from __future__ import annotations

import argparse
import hashlib
import socket
import sys
from datetime import UTC, datetime

HELP = "analyze crash files (logs, dumps, kdump dirs) and report them to a collector"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from wire.channel import add_client_arguments

    add_client_arguments(parser)
    parser.add_argument("--hostname", help="host the crashes happened on (default: the dump's nodename, else this host)")
    parser.add_argument("--json", action="store_true", help="JSON Lines: one object per crash reported")
    parser.add_argument("paths", nargs="+", metavar="PATH")


def run(args: argparse.Namespace) -> int:
    import json
    import os

    import grpc

    from analysis.errors import CrashfleetInputError
    from analysis.signature import analyze
    from analysis.sources import open_capture
    from wire import convert
    from wire.channel import client_config_from_args, open_channel
    from wire.v1 import crash_pb2, ingest_service_pb2_grpc

    status = 0
    with open_channel(client_config_from_args(args)) as channel:
        stub = ingest_service_pb2_grpc.IngestServiceStub(channel)
        for path in args.paths:
            try:
                capture = open_capture(path)
                records = analyze(capture.log)
            except CrashfleetInputError as exc:
                print(f"crashfleet submit: {exc.path}: {exc.reason}", file=sys.stderr)
                status = 1
                continue
            if not records:
                print(f"crashfleet submit: {path}: no kernel crash found", file=sys.stderr)
                continue
            digest = hashlib.sha256(capture.log).hexdigest()
            system = capture.system
            hostname = args.hostname or (system.nodename if system and system.nodename else None) or socket.gethostname()
            crash_time = (
                datetime.fromtimestamp(system.crash_time, tz=UTC)
                if system is not None and system.crash_time is not None
                else datetime.fromtimestamp(os.stat(capture.source).st_mtime, tz=UTC)
            )
            for index, record in enumerate(records):
                host = crash_pb2.HostFacts(
                    hostname=hostname,
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
                    reply = stub.ReportCrash(request, timeout=args.timeout)
                except convert.WireError as exc:
                    print(f"crashfleet submit: {path}: crash {index}: {exc}", file=sys.stderr)
                    status = 1
                    continue
                except grpc.RpcError as exc:
                    print(f"crashfleet submit: {path}: crash {index}: {exc.code().name}: {exc.details()}",
                          file=sys.stderr)  # fmt: skip
                    status = 1
                    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED):
                        return status
                    continue
                if args.json:
                    print(json.dumps({"path": path, "index": index, "crash_id": reply.crash_id,
                                      "cluster_id": reply.cluster_id, "duplicate": reply.duplicate,
                                      "title": record.title}))  # fmt: skip
                else:
                    state = "duplicate" if reply.duplicate else "new"
                    print(f"{path}#{index}: {state} crash {reply.crash_id} cluster {reply.cluster_id}  {record.title}")
    return status
