"""`crashfleet suspects CLUSTER`: what is different about the hosts a cluster hit, the releases
it was seen on and its regression window, and its triage state."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from crashfleet.commands import _analytics, _query

HELP = "what is different about the hosts a cluster hit; its releases and regression window"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _query.add_common(parser, filters=False)
    parser.add_argument("cluster", metavar="CLUSTER", help="cluster id")
    parser.add_argument(
        "--since", type=_query._time, metavar="TIME", help="window start (default: 30 days ago)"
    )
    parser.add_argument("--until", type=_query._time, metavar="TIME", help="window end (default: now)")


def run(args: argparse.Namespace) -> int:
    from wire.v1 import analytics_service_pb2 as pb

    request = pb.GetSuspectsRequest(cluster_id=args.cluster)
    _analytics.set_window(request, args)

    def render(reply: Any) -> None:
        if args.json:
            # One object per suspect (JSON Lines), each with its cluster's summary beside it.
            rows = []
            stratum = [{"dim": a.dim, "value": a.value} for a in reply.regression_stratum]
            for s in reply.suspects:
                row = _analytics.message_json(s)
                row["summary"] = reply.summary
                row["regression"], row["regression_stratum"] = reply.regression, stratum
                rows.append(row)
            _query.emit_json(rows)
            if not rows:  # nothing to list: say why where a person reads it
                print(f"crashfleet suspects: {reply.summary}", file=sys.stderr)
            return
        out = sys.stdout
        out.write(f"{reply.summary}\n")
        for line in finding_lines(reply.suspects):
            out.write(f"{line}\n")
        if reply.releases:
            out.write(f"\nreleases: {reply.regression}\n")
            _query.emit_table(
                ["RELEASE", "CRASHES", "HOST-DAYS", "PER 1000 HOST-DAYS", "95 % CI"],
                (
                    [r.release, str(r.crashes), f"{r.host_days:,.1f}", f"{r.rate_per_1000_host_days:.2f}",
                     f"{r.ci_low:.2f}–{_analytics.number(r.ci_high)}"]
                    for r in reply.releases
                ),
            )  # fmt: skip
        t = reply.triage
        fixed = f" in {t.fixed_in}" if t.fixed_in else ""
        regressed = f" (crashed again on {t.regressed_release})" if t.regressed_release else ""
        out.write(f"\ntriage: {t.state}{fixed}{regressed}{' — ' + t.note if t.note else ''}\n")

    return _analytics.call(
        args, "suspects", lambda stub: stub.GetSuspects(request, timeout=args.timeout), render
    )


def finding_lines(suspects: Sequence[Any], shown: int | None = None) -> list[str]:
    """The findings, ranked, each with at most `shown` (EXPLAINED_SHOWN) of the combinations it
    explains that are worth listing (collector.analytics.listing) and a count of the rest.
    `suspects`: Suspect messages, findings first."""
    from collector.analytics.listing import EXPLAINED_SHOWN, worth_listing

    def values(attributes: Any) -> tuple[tuple[str, str], ...]:
        return tuple((a.dim, a.value) for a in attributes)

    worth = worth_listing([(values(s.attributes), values(s.explained_by)) for s in suspects])
    lines = []
    findings = [s for s in suspects if not s.explained_by]
    for rank, f in enumerate(findings, 1):
        lines.append(f"  {rank}. {f.words}")
        under = [(e, w) for e, w in zip(suspects, worth, strict=True) if list(e.explained_by) == list(f.attributes)]
        listed = [e for e, w in under if w][: EXPLAINED_SHOWN if shown is None else shown]
        lines += [f"       · {e.words.split(' — ')[0]}" for e in listed]
        if len(under) > len(listed):
            name = f.words[: f.words.index(f": {f.cluster_hosts_with} of {f.cluster_hosts} crashing hosts")]
            lines.append(f"       … and {len(under) - len(listed)} more explained by {name} (--json lists all)")
    return lines
