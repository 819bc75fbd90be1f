"""`crashfleet collector`: run the collector (gRPC ingest + queries, HTTP page/API/metrics)."""

from __future__ import annotations

import argparse
import sys

HELP = "run the crash collector (gRPC on --listen, web page, JSON API and /metrics on --http)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from collector.config import add_arguments as add_config_arguments

    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from analysis.errors import CrashfleetInputError
    from collector.config import config_from_args
    from collector.server import configure_logging, run_collector
    from collector.store import StoreError

    try:
        config = config_from_args(args)
    except CrashfleetInputError as exc:
        print(f"crashfleet collector: {exc.path}: {exc.reason}", file=sys.stderr)
        return 2
    configure_logging(config.log_level)
    try:
        return run_collector(config)
    except (StoreError, CrashfleetInputError, RuntimeError, OSError) as exc:
        # RuntimeError: grpc could not bind the address.
        print(f"crashfleet collector: {exc}", file=sys.stderr)
        return 1
