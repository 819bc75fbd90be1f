"""`crashfleet hosts --suspect`: hardware suspects (the bad-host rules, docs/analytics.md)."""

from __future__ import annotations

import argparse
from typing import Any

from crashfleet.commands import _analytics, _query


def run_suspect_hosts(args: argparse.Namespace) -> int:
    from wire.v1 import analytics_service_pb2 as pb

    limit = args.limit if args.limit > 0 else 1000
    request = pb.ListSuspectHostsRequest(limit=limit)

    def render(reply: Any) -> None:
        if args.json:
            _query.emit_json(_analytics.message_json(h) for h in reply.hosts)
            return
        _query.emit_table(
            ["HOST", "SCORE", "CRASHES", "CLUSTERS", "UNSHARED", "HW ERRORS", "REASON"],
            (
                [h.host, f"{h.score:.1f}", str(h.crashes), str(h.clusters), str(h.unshared_clusters),
                 str(h.hardware_errors), h.reason]
                for h in reply.hosts
            ),
        )  # fmt: skip

    return _analytics.call(
        args, "hosts", lambda stub: stub.ListSuspectHosts(request, timeout=args.timeout), render
    )
