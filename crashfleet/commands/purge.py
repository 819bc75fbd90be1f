"""`crashfleet purge --db URL --older-than DAYS`: retention for the collector's store.

Removes crashes received more than DAYS days ago, subtracts them from their clusters' counts
and breakdowns, removes the clusters left without crashes, and the module sets no host runs
any more. It works on the database directly, in batches of their own transactions, so a running
collector keeps ingesting meanwhile; `--dry-run` only counts what would go.
"""

from __future__ import annotations

import argparse
import sys

HELP = "remove crashes older than DAYS and the clusters they leave empty (--dry-run counts only)"


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 days: {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, help="sqlite:///RELATIVE, sqlite:////ABSOLUTE or postgresql://USER@HOST/DB")
    parser.add_argument("--older-than", type=_days, required=True, metavar="DAYS", help="received more than DAYS ago")
    parser.add_argument("--dry-run", action="store_true", help="count what would be removed, remove nothing")
    parser.add_argument("--json", action="store_true", help="the counts as one JSON object")


def run(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime, timedelta

    from collector.store import StoreError, open_store

    cutoff = datetime.now(UTC) - timedelta(days=args.older_than)
    try:
        store = open_store(args.db)
        try:
            report = store.purge(cutoff, dry_run=args.dry_run)
        finally:
            store.close()
    except StoreError as exc:
        print(f"crashfleet purge: {exc}", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(json.dumps({
            "dry_run": report.dry_run, "received_before": cutoff.isoformat().replace("+00:00", "Z"),
            "crashes": report.crashes, "clusters": report.clusters, "module_sets": report.module_sets,
        }) + "\n")  # fmt: skip
        return 0
    verb = "would remove" if report.dry_run else "removed"
    sys.stdout.write(
        f"{verb} {report.crashes} crashes received before {cutoff:%Y-%m-%d %H:%M} UTC, "
        f"{report.clusters} clusters left empty, {report.module_sets} unused module sets\n"
    )
    return 0
