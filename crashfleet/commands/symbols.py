"""`crashfleet symbols index|lookup|upload`: the per-build-id symbol index, by hand.

`index ELF...` builds (once per build-id) the on-disk index `inspect` uses, and with `--full`
indexes every compile unit up front (what a shipped index needs; minutes for a debug vmlinux).
`lookup ELF WHAT...` answers like `addr2line -f -i -e ELF`: WHAT is an address (hex, with
`--kaslr-offset` subtracted) or `function+0xoff[/0xsize]` as the kernel prints it;
`--return-address` looks call-trace entries up at offset - 1.
`ps VMCORE` lists the dump's tasks like crash's `ps`, with struct offsets from the vmlinux found
by the dump's BUILD-ID. `upload --collector HOST:PORT ELF...` indexes each ELF fully (once per build-id) and sends the
index to the collector, which from then on stores crashes of that build with source lines.

Only `upload` talks to the collector (gRPC SymbolService, with the query bearer token).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

HELP = "build the per-build-id symbol index of a debug ELF, or look addresses up in it (addr2line -f -i)"

UPLOAD_MIN_BYTES_PER_S = 1 << 20  # the upload deadline assumes at least 1 MiB/s beyond --timeout
_FUNCTION_OFFSET = re.compile(r"^(?P<function>[^+\s]+)\+0x(?P<offset>[0-9a-fA-F]+)(?:/0x(?P<size>[0-9a-fA-F]+))?$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache", default=None, metavar="DIR",
        help="index directory (default $XDG_CACHE_HOME/crashfleet/symbols)",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    index = sub.add_parser("index", help="build the index of debug ELF files (vmlinux, .ko, .ko.debug)")
    index.add_argument("--full", action="store_true", help="index every compile unit now, not on first use")
    index.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                       help="with --full: stop after this long (the rest stays lazy)")
    index.add_argument("elves", nargs="+", metavar="ELF")
    lookup = sub.add_parser("lookup", help="source lines with inline chains, like addr2line -f -i")
    lookup.add_argument("--kaslr-offset", default="0", metavar="HEX", help="KASLR slide to subtract from addresses")
    lookup.add_argument("--return-address", action="store_true", help="look up at offset - 1 (call-trace entries)")
    lookup.add_argument("elf", metavar="ELF")
    lookup.add_argument("what", nargs="+", metavar="ADDRESS|FUNCTION+0xOFF[/0xSIZE]")
    ps = sub.add_parser("ps", help="crash's ps: the tasks of a dump, from its debug vmlinux's DWARF")
    ps.add_argument("--debuginfo", action="append", default=[], metavar="PATH",
                    help="debug vmlinux, or a directory holding it (repeatable; /usr/lib/debug is searched too)")
    ps.add_argument("vmcore", metavar="VMCORE")
    upload = sub.add_parser("upload", help="send debug ELFs' full indexes to the collector, keyed by build-id")
    from wire.channel import add_client_arguments

    add_client_arguments(upload)
    upload.add_argument("elves", nargs="+", metavar="ELF")


def run(args: argparse.Namespace) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cache = Path(args.cache) if args.cache else None
    if args.action == "index":
        return _index(args.elves, cache, args.full, args.budget)
    if args.action == "upload":
        return _upload(args, cache)
    if args.action == "ps":
        return _ps(args.vmcore, args.debuginfo)
    return _lookup(args.elf, args.what, cache, args.kaslr_offset, args.return_address)


def _index(elves: list[str], cache: Path | None, full: bool, budget: float | None) -> int:
    from analysis.errors import DebuginfoError
    from analysis.symbolize.index import SymbolIndex

    status = 0
    for path in elves:
        started = time.monotonic()
        try:
            with SymbolIndex.open_or_build(path, cache_dir=cache) as index:
                if full:
                    index.index_all(budget)
                stats = index.stats()
                size = index.db_path.stat().st_size
                error = index.dwarf_error
                rest = "all" if index.meta.get("complete_dwarf") == "1" else "others on first use"
                print(
                    f"{path}: build-id {index.build_id or '-'}  index {index.db_path} ({size / 2**20:.1f} MB)  "
                    f"symbols {stats['symbols']}  compile units indexed {stats['cu_done']} ({rest})  "
                    f"{time.monotonic() - started:.1f} s"
                )
                if error:
                    print(f"crashfleet symbols: {path}: DWARF partly unreadable: {error}", file=sys.stderr)
                    status = 1
        except DebuginfoError as exc:
            print(f"crashfleet symbols: {exc.path}: {exc.reason}", file=sys.stderr)
            status = 1
    return status


def _lookup(elf: str, items: list[str], cache: Path | None, kaslr: str, return_address: bool) -> int:
    from analysis.errors import DebuginfoError
    from analysis.symbolize import Symbolizer

    try:
        slide = int(kaslr, 16)
    except ValueError:
        print(f"crashfleet symbols: --kaslr-offset {kaslr!r} is not a hex number", file=sys.stderr)
        return 2
    status = 0
    try:
        with Symbolizer.open(elf, cache_dir=cache) as sym:
            for item in items:
                match = _FUNCTION_OFFSET.match(item)
                if match:
                    size = int(match.group("size"), 16) if match.group("size") else None
                    source = sym.symbolize_frame(
                        match.group("function"), int(match.group("offset"), 16), return_address, size
                    )
                else:
                    try:
                        address = int(item, 16)
                    except ValueError:
                        print(f"crashfleet symbols: {item!r} is neither an address nor function+0xoffset",
                              file=sys.stderr)
                        status = 2
                        continue
                    source = sym.symbolize_address(address, slide, return_address)
                if not source:
                    print(f"{item}\n??\n??:0")
                    status = max(status, 1)
                    continue
                print(item)
                for loc in source:
                    print(f"{loc.function}\n{loc.file}:{loc.line}")
    except DebuginfoError as exc:
        print(f"crashfleet symbols: {exc.path}: {exc.reason}", file=sys.stderr)
        return 1
    return status


def _upload(args: argparse.Namespace, cache: Path | None) -> int:
    import grpc

    from analysis.errors import DebuginfoError
    from analysis.symbolize.index import SymbolIndex
    from collector.symbols import upload_chunks
    from wire.channel import client_config_from_args, open_channel
    from wire.v1 import symbols_service_pb2_grpc

    config = client_config_from_args(args)
    metadata = (("authorization", f"Bearer {config.token}"),) if config.token else ()
    status = 0
    with open_channel(config) as channel:
        stub = symbols_service_pb2_grpc.SymbolServiceStub(channel)
        for path in args.elves:
            try:
                with SymbolIndex.open_or_build(path, cache_dir=cache) as index:
                    index.index_all()
                    build_id, db_path, error = index.build_id, index.db_path, index.dwarf_error
            except DebuginfoError as exc:
                print(f"crashfleet symbols: {exc.path}: {exc.reason}", file=sys.stderr)
                status = 1
                continue
            if build_id is None:
                print(f"crashfleet symbols: {path}: no build-id; the collector could not match crashes to it",
                      file=sys.stderr)
                status = 1
                continue
            if error:
                print(f"crashfleet symbols: {path}: DWARF partly unreadable: {error}", file=sys.stderr)
            try:
                deadline = args.timeout + db_path.stat().st_size / UPLOAD_MIN_BYTES_PER_S
                reply = stub.UploadSymbols(upload_chunks(db_path, build_id), metadata=metadata, timeout=deadline)
            except grpc.RpcError as exc:
                print(f"crashfleet symbols: {path}: upload refused: {exc.code().name}: {exc.details()}", file=sys.stderr)
                status = 1
                continue
            print(f"{path}: build-id {reply.build_id} uploaded ({reply.size_bytes / 2**20:.1f} MB"
                  + (", replaced the previous index)" if reply.replaced else ")"))
    return status


def _ps(vmcore: str, debuginfo: list[str]) -> int:
    from analysis.errors import CrashfleetInputError
    from analysis.symbolize.debuginfo import DebuginfoSearch
    from analysis.symbolize.elfinfo import ElfImage
    from analysis.symbolize.tasks import list_tasks, render_ps
    from analysis.vmcore import open_dump
    from analysis.vmcore.memory import AddressSpace

    try:
        dump = open_dump(vmcore)
    except CrashfleetInputError as exc:
        print(f"crashfleet symbols: {exc.path}: {exc.reason}", file=sys.stderr)
        return 1
    try:
        info = dump.vmcoreinfo
        found = DebuginfoSearch(explicit=debuginfo).find_vmlinux(info.build_id, info.osrelease)
        if found is None:
            print(f"crashfleet symbols: {vmcore}: no debug vmlinux of build-id {info.build_id or '?'} found "
                  "(give it with --debuginfo)", file=sys.stderr)
            return 1
        with ElfImage(found.path) as vmlinux:
            tasks = list_tasks(AddressSpace(dump), vmlinux, info.kernel_offset, len(dump.prstatus()) or None)
    except CrashfleetInputError as exc:
        print(f"crashfleet symbols: {exc.path}: {exc.reason}", file=sys.stderr)
        return 1
    finally:
        dump.close()
    print(f"       TASKS: {len(tasks.tasks)}")
    if tasks.load_average is not None:
        print("LOAD AVERAGE: " + ", ".join(f"{v:.2f}" for v in tasks.load_average))
    print()
    for line in render_ps(tasks):
        print(line)
    if tasks.problem:
        print(f"crashfleet symbols: {vmcore}: task list incomplete: {tasks.problem}", file=sys.stderr)
        return 1
    return 0
