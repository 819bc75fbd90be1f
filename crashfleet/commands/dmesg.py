"""`crashfleet dmesg VMCORE`: the kernel log of a crash dump, byte-identical to `makedumpfile --dump-dmesg`.

Only the dump reader is imported (no grpc, no analyzer), so the whole process stays small and
quick: this runs on a host that has just rebooted from a crash.
"""

from __future__ import annotations

import argparse
import sys

HELP = "print a crash dump's kernel log exactly as `makedumpfile --dump-dmesg` does"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "vmcore",
        metavar="VMCORE",
        help="ELF, kdump-compressed or flattened dump, optionally gzip/xz/bzip2-wrapped",
    )


def run(args: argparse.Namespace) -> int:
    from analysis.errors import CrashfleetInputError
    from analysis.vmcore import read_dump_log

    try:
        log = read_dump_log(args.vmcore)
    except CrashfleetInputError as exc:
        print(f"crashfleet dmesg: {exc.path}: {exc.reason}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(log)
    sys.stdout.buffer.flush()
    return 0
