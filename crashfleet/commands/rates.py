"""`crashfleet rates`: crashes per 1,000 host-days, overall or by a dimension, with 95 % intervals."""

from __future__ import annotations

import argparse
from typing import Any

from crashfleet.commands import _analytics, _query

HELP = "crash rates per 1,000 host-days with exact 95 % intervals (fleet, or --by a dimension)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _query.add_common(parser, filters=False)
    parser.add_argument(
        "--by", metavar="DIM", help="kernel_release, machine, hardware, module, agent_version or label:KEY"
    )
    parser.add_argument("--cluster", metavar="ID", help="rates of one cluster's crashes")
    parser.add_argument(
        "--since", type=_query._time, metavar="TIME", help="window start (default: 30 days ago)"
    )
    parser.add_argument("--until", type=_query._time, metavar="TIME", help="window end (default: now)")


def run(args: argparse.Namespace) -> int:
    from wire.v1 import analytics_service_pb2 as pb

    request = pb.GetRatesRequest(dim=args.by or "", cluster_id=args.cluster or "")
    _analytics.set_window(request, args)

    def render(reply: Any) -> None:
        if args.json:
            _query.emit_json(_analytics.message_json(r) for r in reply.rows)
            return
        _query.emit_table(
            ["DIM", "VALUE", "CRASHES", "HOSTS", "HOST-DAYS", "PER 1000 HOST-DAYS", "95 % CI"],
            (
                [r.dim or "fleet", r.value or "-", str(r.crashes), str(r.hosts), f"{r.host_days:,.1f}",
                 f"{r.rate_per_1000_host_days:.2f}", f"{r.ci_low:.2f}–{_analytics.number(r.ci_high)}"]
                for r in reply.rows
            ),
        )  # fmt: skip

    return _analytics.call(args, "rates", lambda stub: stub.GetRates(request, timeout=args.timeout), render)
