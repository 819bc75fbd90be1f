"""`crashfleet clusters`: the collector's clusters, most recent activity first."""

from __future__ import annotations

import argparse

from crashfleet.commands import _query

HELP = "list crash clusters on a collector (most recent activity first)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _query.add_common(parser)


def run(args: argparse.Namespace) -> int:
    return _query.run_listing(args, "clusters")
