"""The `crashfleet` command: parses arguments and hands each subcommand to its module.

Subcommands are data: `COMMANDS` maps a name to a module under `crashfleet.commands` that
defines `HELP`, `add_arguments(parser)` and `run(args) -> int`. Command modules keep heavy
imports (grpc, the store) inside `run`, so `crashfleet inspect` and `dmesg` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

COMMANDS: tuple[tuple[str, str], ...] = (
    ("inspect", "crashfleet.commands.inspect"),
)


def _load(module_name: str) -> ModuleType:
    return importlib.import_module(module_name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crashfleet",
        description="Fleet-wide Linux kernel crash collector: analyze, ship, cluster.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS:
        module = _load(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `crashfleet clusters | head`: the reader went away; not an error worth a traceback.
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
