"""`crashfleet hosts`: the fleet as heartbeats and crash reports describe it."""

from __future__ import annotations

import argparse

from crashfleet.commands import _query

HELP = "list hosts known to a collector (inventory from heartbeats, crash counts)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _query.add_common(parser)
    parser.add_argument(
        "--suspect",
        action="store_true",
        help="hardware suspects: hosts the bad-host rules flag, with the reason",
    )


def run(args: argparse.Namespace) -> int:
    if args.suspect:
        from crashfleet.commands.suspect_hosts import run_suspect_hosts

        return run_suspect_hosts(args)
    return _query.run_listing(args, "hosts")
