"""`crashfleet triage CLUSTER --ack | --fixed-in R [--note TEXT] [--link URL]`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from crashfleet.commands import _analytics, _query

HELP = "set a cluster's triage state: acknowledged, or fixed in a kernel release"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _query.add_common(parser, filters=False)
    parser.add_argument("cluster", metavar="CLUSTER", help="cluster id")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--ack", action="store_true", help="acknowledged: someone is on it")
    action.add_argument("--fixed-in", metavar="RELEASE", help="fixed in this kernel release (and later ones)")
    parser.add_argument("--note", metavar="TEXT", help="a note kept with the state")
    parser.add_argument("--link", metavar="URL", help="a bug or patch link (http/https)")


def run(args: argparse.Namespace) -> int:
    from wire.v1 import analytics_service_pb2 as pb

    request = pb.SetTriageRequest(
        cluster_id=args.cluster, action="ack" if args.ack else "fixed", fixed_in=args.fixed_in or ""
    )
    if args.note is not None:
        request.note = args.note
    if args.link is not None:
        request.link = args.link

    def render(reply: Any) -> None:
        t = reply.triage
        if args.json:
            _query.emit_json([_analytics.message_json(t)])
        else:
            sys.stdout.write(f"{t.cluster_id}: {t.state}{' in ' + t.fixed_in if t.fixed_in else ''}\n")

    return _analytics.call(args, "triage", lambda stub: stub.SetTriage(request, timeout=args.timeout), render)
