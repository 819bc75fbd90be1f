"""`crashfleet crashes [--cluster ID]`: stored crashes, most recently received first."""

from __future__ import annotations

import argparse

from crashfleet.commands import _query

HELP = "list crashes on a collector (newest first), optionally of one cluster"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cluster", metavar="ID", help="only crashes of this cluster")
    _query.add_common(parser)


def run(args: argparse.Namespace) -> int:
    return _query.run_listing(args, "crashes", cluster_id=args.cluster)
