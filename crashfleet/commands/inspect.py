"""`crashfleet inspect [--json] PATH...`: what an engineer reads off a crash in `crash`, without `crash`.

For each input (a kernel log, a crash dump or a kdump directory, see `analysis.sources`) it
prints a header like crash's `sys` and, per crash, the oops essentials: kind and title, RIP,
fault address with the #PF code decoded, CPU/PID/comm, taint, hardware, release, modules, the
call trace, the decoded faulting instruction with its verdict, and the fingerprint.

`--json` prints one JSON object per input (JSON Lines), as docs/report-schema.md documents.
An input that cannot be read gets one line on stderr naming it and the reason; the others are
still processed and the exit status is 1. A log without a crash is not an error.

Only the analysis library is imported (no grpc): this runs on the crashed host itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analysis.model import CallFrame, CrashRecord, SourceLocation, SystemFacts
    from analysis.oops import ParsedLog
    from analysis.sources import Capture
    from analysis.symbolize.debuginfo import DebuginfoSearch

HELP = "analyze kernel logs and crash dumps: crash signature, decoded faulting instruction, fingerprint"

LISTING_CONTEXT = 4  # instructions shown before and after the faulting one


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object per input (JSON Lines)")
    parser.add_argument(
        "--debuginfo",
        action="append",
        default=[],
        metavar="PATH",
        help="debug vmlinux / module .ko(.debug) file or directory to symbolize with (repeatable); "
        "/usr/lib/debug is searched too, by the dump's build-id and the kernel release",
    )
    parser.add_argument(
        "--debuginfod",
        action="append",
        default=None,
        metavar="URL",
        help="debuginfod server to fetch debuginfo from by build-id (repeatable; default $DEBUGINFOD_URLS)",
    )
    parser.add_argument("--no-symbolize", action="store_true", help="do not look for debuginfo at all")
    parser.add_argument(
        "--symbol-cache", default=None, metavar="DIR",
        help="where per-build-id symbol indexes live (default $XDG_CACHE_HOME/crashfleet/symbols)",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="kernel log (dmesg, serial console, journal, syslog; gzip ok), crash dump or kdump directory",
    )


def run(args: argparse.Namespace) -> int:
    from analysis.errors import CrashfleetInputError
    from analysis.report import capture_to_json
    from analysis.signature import analyze_log
    from analysis.sources import open_capture

    failed = False
    out = sys.stdout
    for index, path in enumerate(args.paths):
        try:
            capture = open_capture(path)
        except CrashfleetInputError as exc:
            print(f"crashfleet inspect: {exc.path}: {exc.reason}", file=sys.stderr)
            failed = True
            continue
        parsed = analyze_log(capture.log)
        records = parsed.records
        if capture.system is not None:  # a dump: the RIP address the text lacked is on its stack
            from analysis.vmcore.faultframe import fill_rip_addresses

            records = fill_rip_addresses(capture.source, records)
        listings: dict[int, list[str]] = {}
        if not args.no_symbolize:
            if records:
                records, listings = _symbolize(records, capture, args)
            capture = _with_dwarf_facts(capture, args)
        if args.json:
            doc = capture_to_json(
                path, records, capture.system, format=capture.format, source=capture.source,
                log_form=str(parsed.form), skipped_lines=parsed.skipped_lines, user_faults=parsed.user_faults,
            )
            out.write(json.dumps(doc) + "\n")
        else:
            if index:
                out.write("\n")
            out.writelines(line + "\n" for line in render(capture, records, listings, parsed))
        out.flush()
    return 1 if failed else 0


def _symbolize(
    records: list[CrashRecord], capture: Capture, args: argparse.Namespace
) -> tuple[list[CrashRecord], dict[int, list[str]]]:
    """Source lines (and the `dis -rl` view) from debuginfo, when any of the right build is found."""
    from pathlib import Path

    from analysis.symbolize.enrich import symbolize_capture

    cache = Path(args.symbol_cache) if args.symbol_cache else None
    return symbolize_capture(records, capture.system, _search(args), cache_dir=cache)


def _search(args: argparse.Namespace) -> DebuginfoSearch:
    import os

    from analysis.symbolize.debuginfo import DebuginfoSearch

    urls = args.debuginfod if args.debuginfod is not None else os.environ.get("DEBUGINFOD_URLS", "").split()
    return DebuginfoSearch(explicit=args.debuginfo, debuginfod_urls=urls)


def _with_dwarf_facts(capture: Capture, args: argparse.Namespace) -> Capture:
    """The capture with the `sys` facts only the dump's debug vmlinux gives (TASKS, UPTIME,
    LOAD AVERAGE) filled in, when it is a dump and that vmlinux is found."""
    import dataclasses

    from analysis.symbolize.sysfacts import with_dwarf_facts

    if capture.system is None:
        return capture
    system = with_dwarf_facts(capture.system, capture.source, capture.log, _search(args))
    return dataclasses.replace(capture, system=system)


# --- human output ------------------------------------------------------------------------------


def _field(label: str, value: object) -> str:
    """A right-aligned label as crash's `sys` prints it."""
    return f"{label:>12}: {value}"


def _hex(value: int | None) -> str:
    return "?" if value is None else f"0x{value:x}"


def _symbol(function: str, offset: int | None, size: int | None, module: str | None) -> str:
    text = function
    if offset is not None:
        text += f"+0x{offset:x}"
        if size is not None:
            text += f"/0x{size:x}"
    if module:
        text += f" [{module}]"
    return text


def _system_lines(system: SystemFacts) -> Iterator[str]:
    """The facts of a dump, in crash's `sys` order."""
    if system.nodename:
        yield _field("NODENAME", system.nodename)
    if system.release:
        yield _field("RELEASE", system.release)
    if system.version:
        yield _field("VERSION", system.version)
    if system.machine:
        yield _field("MACHINE", system.machine)
    if system.cpus is not None:
        yield _field("CPUS", system.cpus)
    if system.memory_bytes is not None:
        yield _field("MEMORY", _size(system.memory_bytes))
    if system.crash_time is not None:
        import datetime

        when = datetime.datetime.fromtimestamp(system.crash_time, tz=datetime.UTC)
        yield _field("DATE", when.strftime("%a %b %d %H:%M:%S %Y UTC"))
    if system.uptime_seconds is not None:
        from analysis.symbolize.sysfacts import format_uptime

        yield _field("UPTIME", format_uptime(system.uptime_seconds))
    if system.load_average is not None:
        yield _field("LOAD AVERAGE", ", ".join(f"{value:.2f}" for value in system.load_average))
    if system.tasks is not None:
        yield _field("TASKS", system.tasks)
    if system.panic_message:
        yield _field("PANIC", f'"{system.panic_message}"')
    if system.panic_pid is not None:
        yield _field("PID", system.panic_pid)
    if system.panic_comm:
        yield _field("COMMAND", f'"{system.panic_comm}"')
    if system.panic_cpu is not None:
        yield _field("CPU", system.panic_cpu)
    if system.build_id:
        yield _field("BUILD-ID", system.build_id)


def _size(count: int) -> str:
    for unit, shift in (("GB", 30), ("MB", 20), ("KB", 10)):
        if count >= 1 << shift:
            value = count / (1 << shift)
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{count} bytes"


def _encoding(data: bytes, arch: str) -> str:
    """Bytes as the Code: line printed them: x86 byte by byte, other architectures as words."""
    if arch == "s390x":  # Krnl Code: prints each instruction's 2, 4 or 6 bytes as one hex run
        return data.hex()
    if arch in ("x86_64", "i386") or len(data) not in (2, 4):
        return data.hex(" ")
    return f"{int.from_bytes(data, 'big' if arch == 'ppc64' else 'little'):0{2 * len(data)}x}"


def _trace_lines(frames: tuple[CallFrame, ...]) -> Iterator[str]:
    """The call trace as the kernel prints it: a `<IRQ>`/`<TASK>` line where the stack changes."""
    from analysis.fingerprint import is_inline

    context = None
    for frame in frames:
        if frame.context != context and frame.context.value:
            yield f"    <{frame.context.value.upper()}>"
        context = frame.context
        mark = "? " if not frame.reliable else ""
        inline = " [inline]" if is_inline(frame) else ""
        yield f"    {mark}{_symbol(frame.function, frame.offset, frame.size, frame.module)}{inline}"
        yield from _source_lines(frame.source, "        ")


def _source_lines(source: tuple[SourceLocation, ...], indent: str) -> Iterator[str]:
    """Debuginfo's answer, innermost first: `function at file:line`, then where it was inlined."""
    for level, loc in enumerate(source):
        where = f"{loc.file}:{loc.line}" if loc.line else loc.file
        yield f"{indent}{'inlined into ' if level else ''}{loc.function} at {where}"


def _record_lines(record: CrashRecord) -> Iterator[str]:
    from analysis.decode import context_listing

    yield _field("KIND", record.kind.value + (f"  [#{record.oops_number}]" if record.oops_number else ""))
    yield _field("REASON", record.reason)
    if record.corrupted:
        yield _field("CORRUPTED", record.corrupted_reason or "yes")
    if record.corrupt_fields:
        yield _field("LEFT OUT", ", ".join(record.corrupt_fields) + "  (printed values no field can hold)")
    if record.kernel_release:
        yield _field("RELEASE", " ".join(p for p in (record.kernel_release, record.kernel_build) if p))
    elif record.kernel_build:  # a build number alone ("#1") is not a release
        yield _field("RELEASE", f"unknown  (build {record.kernel_build})")
    if record.hardware:
        yield _field("HARDWARE", record.hardware + (f", BIOS {record.bios}" if record.bios else ""))
    who = []
    if record.cpu is not None:
        who.append(f"CPU {record.cpu}")
    if record.pid is not None:
        who.append(f"PID {record.pid}")
    if record.comm:
        who.append(f'COMMAND "{record.comm}"')
    if who:
        yield _field("TASK", "  ".join(who))
    if record.tainted is not None or record.taint_flags:
        flags = f" ({', '.join(record.taint_flags)})" if record.taint_flags else ""
        yield _field("TAINTED", (record.tainted or "").strip() + flags if record.tainted else "Not tainted")
    if record.modules:
        shown = " ".join(record.modules[:12]) + (" ..." if len(record.modules) > 12 else "")
        last = f"  [last unloaded: {record.last_unloaded}]" if record.last_unloaded else ""
        yield _field("MODULES", f"{len(record.modules)}: {shown}{last}")
    if record.panic_message:
        yield _field("PANIC", record.panic_message)
    if record.rip is not None:
        address = f"  ({record.rip.address:016x})" if record.rip.address is not None else ""
        yield _field(
            "RIP",
            _symbol(record.rip.function, record.rip.offset, record.rip.size, record.rip.module) + address,
        )
        yield from _source_lines(record.rip.source, " " * 14)
    if record.fault_address is not None or record.oops_code is not None:
        fault = _hex(record.fault_address)
        if record.oops_code is not None:
            fault += f"  (error code 0x{record.oops_code.value:04x}: {record.oops_code.describe()})"
        elif record.oops_code_raw is not None and record.arch == "arm64":
            from analysis.esr import decode_esr

            fault += f"  (ESR 0x{record.oops_code_raw:x}: {decode_esr(record.oops_code_raw).describe()})"
        elif record.oops_code_raw is not None:
            fault += f"  (code 0x{record.oops_code_raw:x})"
        yield _field("FAULT", fault)
    code = record.code
    if code is not None:
        if code.instruction is None:
            yield _field("CODE", f"not decoded: {code.error}")
        else:
            operation = f"  ({code.operation})" if code.operation else ""
            yield _field("INSTRUCTION", code.instruction + operation)
            if code.bad_register is not None:
                yield _field(code.bad_register.upper(), _hex(code.bad_register_value))
            if code.access:
                yield _field("VERDICT", code.access)
            listing = context_listing(code)
            at = next((i for i, line in enumerate(listing) if line.faulting), None)
            if at is not None:
                yield _field("CODE", f"({code.arch}, best guess around the marker)")
                for line in listing[max(0, at - LISTING_CONTEXT) : at + LISTING_CONTEXT + 1]:
                    marker = "*" if line.faulting else " "
                    yield f"{'':>12}  {marker} {line.offset:3x}:  {_encoding(line.data, code.arch):<30} {line.text}"
    fp = record.fingerprint
    if fp is not None:
        yield _field("FINGERPRINT", f"{fp.value}  ({fp.version})")
        if fp.frames:
            yield _field("SIGNATURE", " < ".join(fp.frames))
    if record.call_trace:
        yield _field("CALL TRACE", f"{len(record.call_trace)} frames")
        yield from _trace_lines(record.call_trace)


def render(
    capture: Capture,
    records: list[CrashRecord],
    listings: dict[int, list[str]] | None = None,
    parsed: ParsedLog | None = None,
) -> Iterator[str]:
    """The human summary of one input: the `sys`-style header, then each crash (with, where
    debuginfo was found, crash's `dis -rl` view of the faulting function from `listings`).
    `parsed` adds the log form, the other programs' lines skipped and the user-space faults."""
    yield _field("PATH", capture.path)
    if capture.source != capture.path:
        yield _field("SOURCE", capture.source)
    yield _field("FORMAT", capture.format)
    if parsed is not None:
        yield _field("LOG FORM", f"{parsed.form}, {parsed.skipped_lines} lines of other programs skipped")
        if parsed.user_faults:
            faults = sorted(parsed.user_faults.items(), key=lambda kv: (-kv[1], kv[0]))
            shown = ", ".join(f"{name} {count}" for name, count in faults[:8])
            more = f" (+{len(faults) - 8} more programs)" if len(faults) > 8 else ""
            yield _field("USER FAULTS", f"{sum(parsed.user_faults.values())}: {shown}{more}")
    if capture.dump_error:
        yield _field("DUMP UNUSED", capture.dump_error)
    if capture.system is not None:
        yield from _system_lines(capture.system)
    yield _field("CRASHES", len(records) if records else "none found")
    for number, record in enumerate(records, 1):
        yield ""
        yield f"[{number}/{len(records)}] {record.title}"
        yield from _record_lines(record)
        listing = (listings or {}).get(number - 1)
        if listing:
            yield _field("DIS -RL", "faulting function up to the faulting instruction")
            yield from (f"{'':>12}  {line}" for line in listing)
