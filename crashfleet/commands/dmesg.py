"""`crashfleet dmesg VMCORE|DIR`: the kernel log of a crash dump, byte-identical to `makedumpfile --dump-dmesg`.

A kdump directory (what `inspect` takes too) is opened as `analysis.sources` opens it: its dump
first, else the dmesg text kdump saved beside it (said on stderr, with why the dump was not used).

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
        help="ELF, kdump-compressed or flattened dump, optionally gzip/xz/bzip2-wrapped, "
        "or a kdump directory (/var/crash/<stamp>/)",
    )


def run(args: argparse.Namespace) -> int:
    import os

    from analysis.errors import CrashfleetInputError
    from analysis.vmcore import read_dump_log

    try:
        log = _directory_log(args.vmcore) if os.path.isdir(args.vmcore) else read_dump_log(args.vmcore)
    except CrashfleetInputError as exc:
        print(f"crashfleet dmesg: {exc.path}: {exc.reason}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(log)
    sys.stdout.buffer.flush()
    return 0


def _directory_log(path: str) -> bytes:
    from analysis.sources import open_capture

    capture = open_capture(path)
    if capture.system is None:  # no usable dump: the text kdump wrote beside it
        why = f" ({capture.dump_error})" if capture.dump_error else ""
        print(f"crashfleet dmesg: {path}: no usable dump{why}; printing {capture.source}", file=sys.stderr)
    return capture.log
