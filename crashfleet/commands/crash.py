"""`crashfleet crash ID`: one stored crash — where it came from, its signature, its log excerpt.

ID is a crash id or a unique prefix of one (at least 4 hex digits), as `crashfleet crashes`
prints it; an ambiguous prefix is refused with the candidates.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from crashfleet.commands import _query

HELP = "show one crash: host, cluster, kernel, signature and log excerpt (ID or unique prefix)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("crash_id", metavar="ID", help="crash id or a unique prefix of it (4+ hex digits)")
    _query.add_common(parser, filters=False)


def _embedded(text: str) -> Any:
    """A stored JSON document as a value (the raw text where it is not JSON)."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def run(args: argparse.Namespace) -> int:
    import grpc

    from collector.api_json import crash_json
    from wire import convert
    from wire.channel import client_config_from_args, open_channel
    from wire.v1 import query_service_pb2, query_service_pb2_grpc

    try:
        with open_channel(client_config_from_args(args)) as channel:
            stub = query_service_pb2_grpc.QueryServiceStub(channel)
            reply = stub.GetCrash(query_service_pb2.GetCrashRequest(crash_id=args.crash_id), timeout=args.timeout)
            detail = convert.crash_detail_from_proto(reply.crash)
    except (grpc.RpcError, OSError, ValueError) as exc:
        return _query.rpc_error("crash", exc)
    if args.json:
        doc = crash_json(detail.summary)
        doc.update(
            signature=_embedded(detail.signature_json),
            excerpt=detail.excerpt,
            modules=list(detail.modules),
            host_facts=dict(detail.host_facts),
            symbolized=_embedded(detail.symbolized_json),
        )
        _query.emit_json([doc])
        return 0
    s = detail.summary
    out = sys.stdout
    out.write(f"{s.id}  {s.title}\n")
    out.write(f"  host {s.host}, kernel {s.kernel_release or '-'}, hardware {s.hardware or '-'}\n")
    out.write(f"  crashed {_query.when(s.crash_time)}, received {_query.when(s.received_at)}, from {s.source}\n")
    out.write(f"  cluster {s.cluster_id}  kind {s.kind}  guilty {s.guilty_frame or '-'}\n")
    out.write(f"  fingerprint {s.fingerprint}\n")
    out.write(f"  modules: {', '.join(detail.modules) or '-'}\n")
    if detail.excerpt:
        out.write("  log:\n")
        for line in detail.excerpt.rstrip("\n").splitlines():
            out.write(f"    {line}\n")
    return 0
