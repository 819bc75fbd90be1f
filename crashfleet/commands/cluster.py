"""`crashfleet cluster ID`: one cluster with its breakdowns and latest crashes."""

from __future__ import annotations

import argparse
import sys

from crashfleet.commands import _query

HELP = "show one crash cluster: counts, hosts, kernels, hardware, modules, recent crashes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cluster_id", metavar="ID", help="cluster id or a unique prefix of it (4+ hex digits)")
    _query.add_common(parser, filters=False)
    parser.add_argument("--crashes", type=int, default=10, metavar="N", help="recent crashes to list (10)")


def run(args: argparse.Namespace) -> int:
    import grpc

    from collector.api_json import cluster_detail_json, crash_json
    from wire import convert
    from wire.channel import client_config_from_args, open_channel
    from wire.v1 import query_service_pb2, query_service_pb2_grpc

    try:
        with open_channel(client_config_from_args(args)) as channel:
            stub = query_service_pb2_grpc.QueryServiceStub(channel)
            reply = stub.GetCluster(query_service_pb2.GetClusterRequest(cluster_id=args.cluster_id), timeout=args.timeout)
            detail = convert.cluster_detail_from_proto(reply.cluster)
            crashes = stub.ListCrashes(
                query_service_pb2.ListCrashesRequest(
                    filter=query_service_pb2.Filter(cluster_id=detail.summary.id), page_size=max(args.crashes, 1)
                ),
                timeout=args.timeout,
            )
            recent = [convert.crash_from_proto(c) for c in crashes.crashes][: args.crashes]
    except (grpc.RpcError, OSError, ValueError) as exc:
        return _query.rpc_error("cluster", exc)
    if args.json:
        doc = cluster_detail_json(detail)
        doc["crashes"] = [crash_json(c) for c in recent]
        _query.emit_json([doc])
        return 0
    s = detail.summary
    out = sys.stdout
    out.write(f"{s.id}  {s.title}\n")
    out.write(f"  kind {s.kind}, {s.count} crashes on {s.hosts} hosts, ")
    out.write(f"first {_query.seen(s.first_seen, s.first_received)}, last {_query.seen(s.last_seen, s.last_received)}\n")
    out.write(f"  fingerprint {s.fingerprint}  guilty {s.guilty_frame or '-'}\n")
    out.write(f"  common modules: {', '.join(s.common_modules) or '-'}\n")
    for label, items in (
        ("hosts", detail.by_host), ("kernel releases", detail.by_kernel_release),
        ("hardware", detail.by_hardware),
    ):  # fmt: skip
        out.write(f"  {label}: " + (", ".join(f"{b.value} ({b.count})" for b in items[:10]) or "-") + "\n")
    if len(detail.merges) > 1:  # one fingerprint: the cluster's own, nothing was merged
        out.write("  fingerprints (why each joined):\n")
        for m in detail.merges:
            why = f"{m.reason}: {m.detail}" if m.detail else m.reason
            out.write(f"    {m.fingerprint}  {m.fingerprint_version}  {why}\n")
    out.write("  recent crashes:\n")
    for c in recent:
        out.write(f"    {c.id}  {_query.when(c.received_at)}  {c.host}  {c.source}\n")
    return 0
