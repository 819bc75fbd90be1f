"""`crashfleet hosts`: the fleet as heartbeats and crash reports describe it."""

from __future__ import annotations

import argparse

from crashfleet.commands import _query

HELP = "list hosts known to a collector (inventory from heartbeats, crash counts)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _query.add_common(parser)


def run(args: argparse.Namespace) -> int:
    return _query.run_listing(args, "hosts")
