"""The `crashfleet` command: parses arguments and hands each subcommand to its module.

Subcommands are data: `COMMANDS` maps a name to a module under `crashfleet.commands` that
defines `HELP`, `add_arguments(parser)` and `run(args) -> int`. Command modules keep heavy
imports (grpc, the store) inside `run`, so `crashfleet inspect` and `dmesg` start fast.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence

COMMANDS: tuple[tuple[str, str], ...] = (
    ("inspect", "crashfleet.commands.inspect"),
    ("dmesg", "crashfleet.commands.dmesg"),
    ("agent", "crashfleet.commands.agent"),
    ("collector", "crashfleet.commands.collector"),
    ("submit", "crashfleet.commands.submit"),
    ("clusters", "crashfleet.commands.clusters"),
    ("cluster", "crashfleet.commands.cluster"),
    ("crashes", "crashfleet.commands.crashes"),
    ("crash", "crashfleet.commands.crash"),
    ("hosts", "crashfleet.commands.hosts"),
    ("rates", "crashfleet.commands.rates"),
    ("suspects", "crashfleet.commands.suspects"),
    ("triage", "crashfleet.commands.triage"),
    ("recluster", "crashfleet.commands.recluster"),
    ("purge", "crashfleet.commands.purge"),
    ("demo", "crashfleet.commands.demo"),
    ("symbols", "crashfleet.commands.symbols"),
)

# Commands that run as services keep Python's SIGPIPE handling (ignored: a peer that hangs up is
# an EPIPE error their code handles). Every other command is a filter whose output may go to
# `head`: it dies quietly of SIGPIPE like any Unix tool, wherever the write happens (a command's
# own `except OSError` would otherwise print "[Errno 32] Broken pipe").
SERVICES = frozenset({"agent", "collector", "demo"})


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (`only`) one with just that subcommand: no other command module is imported."""
    parser = argparse.ArgumentParser(
        prog="crashfleet",
        description="Fleet-wide Linux kernel crash collector: analyze, ship, cluster.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS:
        if only is not None and name != only:
            continue
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None, *, own_process: bool = False) -> int:
    """Run one command. `own_process` (the installed script, `python -m crashfleet`) lets a filter
    command take SIGPIPE's default action; a caller in the same process (tests, a wrapper) keeps
    its own signal handling, since the disposition is process-wide."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # A named subcommand needs only its own module (keeps `crashfleet dmesg` start-up small).
    only = argv[0] if argv and argv[0] in dict(COMMANDS) else None
    args = build_parser(only).parse_args(argv)
    if own_process and args.command not in SERVICES and hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `crashfleet clusters | head`: the reader went away; not an error worth a traceback.
        sys.stderr.close()
        return 0


def run() -> None:
    """The `crashfleet` console script."""
    sys.exit(main(own_process=True))


if __name__ == "__main__":  # pragma: no cover
    run()
