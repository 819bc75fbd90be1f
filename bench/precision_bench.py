"""Precision and recall on busy-host logs: every kernel report found, nothing from user space.

Usage: bench/precision_bench.py [--reports DIR] [--repeat N]

Builds the logs a busy host leaves from the project's own fixtures: every kernel report of
tests/data/printers (one per printer, its expected title in analysis.printers.PRINTERS), each
preceded by ordinary kernel lines and by daemons' lines that carry crash words (`WARNING:`,
`BUG:`, `panic:`, `Call Trace:`, a quoted oops), with daemon lines also interleaved inside
every report, and the kernel's reports of user-space faults between them. Each log is
rendered as a syslog file, `journalctl` short, `journalctl -o export` and `/dev/kmsg` records,
and parsed by `analysis.oops.parse_kernel_log`.

Printed per form: records made of user-space lines (goal 0), kernel reports found with the
right title (goal all), precision and recall, lines skipped, user-space faults counted, and
the parse time. The reference, measured in the same run, is the parser reading every line as
the kernel's (what crashfleet did before it told the kernel's lines apart): its precision is
printed beside ours, and the time ratio says what telling them apart costs.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis.logforms import kernel_lines  # noqa: E402
from analysis.logtext import decode_log  # noqa: E402
from analysis.model import CrashRecord  # noqa: E402
from analysis.oops import _parse_lines, parse_kernel_log  # noqa: E402
from analysis.printers import PRINTERS  # noqa: E402

DEFAULT_REPORTS = ROOT / "tests" / "data" / "printers"

# Daemons' lines a busy host logs, the crash words in them on purpose: (identifier, pid, message).
NOISE: tuple[tuple[str, int, str], ...] = (
    ("openvpn", 812, "WARNING: Make sure you understand the risks of 'script-security 2'"),
    ("dockerd", 1022, "WARNING: No swap limit support"),
    ("postgres", 4411, "WARNING:  there is no transaction in progress"),
    ("myapp", 3001, "BUG: kernel NULL pointer dereference, address: 0000000000000000 (quoted from dmesg)"),
    ("gopher", 3100, "panic: runtime error: invalid memory address or nil pointer dereference"),
    ("gopher", 3100, "goroutine 1 [running]:"),
    ("javaapp", 5000, "Call Trace:"),
    ("javaapp", 5000, " __netif_receive_skb+0x60/0x6e0"),
    ("supervisord", 1, "Kernel panic - not syncing: quoted by a monitoring script"),
    ("sshd", 900, "WARNING: connection from 10.0.0.5 reset"),
    ("kubelet", 1400, "general protection fault seen in container app-7 (error:4 in libc.so.6)"),
    ("appd", 1200, "INFO: task worker:12 blocked for more than 120 seconds."),
)
KERNEL_CHATTER = (
    "e1000 0000:00:03.0 eth0: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: RX",
    "EXT4-fs (vda1): mounted filesystem with ordered data mode. Quota mode: none.",
    "audit: type=1400 audit(1774741200.123:42): apparmor=\"STATUS\" operation=\"profile_load\"",
)
USER_FAULTS = (
    "java[4242]: segfault at 8 ip 00007f3a1c2b4e10 sp 00007f3a0effd8a0 error 4 in libjvm.so[7f3a1b600000+1000000]",
    "traps: python3[5150] trap invalid opcode ip:7f11c0a1b2c3 sp:7ffd2c9a8e10 error:0 in libcrypto.so.3[7f11c0800000+2b0000]",
    "traps: node[6001] general protection fault ip:55d0c3a4b1e2 sp:7ffc1e2d3a40 error:0 in node[55d0c2000000+2000000]",
)
INSIDE_EVERY = 4  # a daemon line after every this many lines of a kernel report
REPORT_EVERY_USEC = 300_000_000  # five minutes between two reports' bursts


@dataclass(frozen=True, slots=True)
class Line:
    kernel: bool
    ident: str
    pid: int
    text: str
    usec: int  # monotonic time: 10 ms between lines, minutes between one report's burst and the next


def timeline(reports: list[list[str]]) -> list[Line]:
    """The busy host's log: noise, chatter and faults around each report, noise inside it."""
    out: list[Line] = []
    n = 0
    clock = 3_600_000_000
    for report in reports:
        clock += REPORT_EVERY_USEC
        for ident, pid, message in NOISE:
            clock += 10_000
            out.append(Line(False, ident, pid, message, clock))
        for text in KERNEL_CHATTER + USER_FAULTS:
            clock += 10_000
            out.append(Line(True, "kernel", 0, text, clock))
        for k, text in enumerate(report):
            clock += 10_000
            out.append(Line(True, "kernel", 0, text, clock))
            if k % INSIDE_EVERY == INSIDE_EVERY - 1:
                ident, pid, message = NOISE[n % len(NOISE)]
                n += 1
                out.append(Line(False, ident, pid, message, clock))
    return out


def _clock(usec: int) -> tuple[str, str, int]:
    """(syslog stamp, printk stamp, usec) of a line."""
    seconds = usec // 1_000_000
    syslog = f"Mar 28 {seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return syslog, f"[{seconds:5d}.{usec % 1_000_000:06d}]", usec


def render_syslog(lines: list[Line]) -> bytes:
    out = []
    for line in lines:
        syslog, printk, _ = _clock(line.usec)
        if line.kernel:
            out.append(f"{syslog} web17 kernel: {printk} {line.text}")
        else:
            out.append(f"{syslog} web17 {line.ident}[{line.pid}]: {line.text}")
    return ("\n".join(out) + "\n").encode()


def render_journal_short(lines: list[Line]) -> bytes:
    out = ["-- Boot 3a0c8e6f2b9d4c1e8f7a6b5c4d3e2f10 --"]
    for line in lines:
        syslog, _, _ = _clock(line.usec)
        ident = "kernel" if line.kernel else f"{line.ident}[{line.pid}]"
        out.append(f"{syslog} web17 {ident}: {line.text}")
    return ("\n".join(out) + "\n").encode()


def render_export(lines: list[Line]) -> bytes:
    out = bytearray()
    for i, line in enumerate(lines):
        _, _, usec = _clock(line.usec)
        out += f"__CURSOR=s=1;i={i:x}\n__REALTIME_TIMESTAMP={1774741200000000 + usec}\n__MONOTONIC_TIMESTAMP={usec}\n".encode()
        if line.kernel:
            out += f"_TRANSPORT=kernel\nSYSLOG_IDENTIFIER=kernel\n_SOURCE_MONOTONIC_TIMESTAMP={usec}\n".encode()
        else:
            out += f"_TRANSPORT=syslog\nSYSLOG_IDENTIFIER={line.ident}\n_PID={line.pid}\n".encode()
        if i % 97 == 0:  # now and then a binary field, as journald stores a message with control bytes
            data = line.text.encode()
            out += b"MESSAGE\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += f"MESSAGE={line.text}\n".encode()
        out += b"_HOSTNAME=web17\n\n"
    return bytes(out)


def render_kmsg(lines: list[Line]) -> bytes:
    out = []
    for i, line in enumerate(lines):
        _, _, usec = _clock(line.usec)
        prio = 4 if line.kernel else 8 + 4  # user space writing /dev/kmsg gets LOG_USER
        text = line.text if line.kernel else f"{line.ident}[{line.pid}]: {line.text}"
        out.append(f"{prio},{i},{usec},-;{text}")
    return ("\n".join(out) + "\n").encode()


FORMS = (
    ("syslog", render_syslog),
    ("journal short", render_journal_short),
    ("journal export", render_export),
    ("kmsg", render_kmsg),
)


def score(records: list[CrashRecord], expected: list[str]) -> tuple[int, int, list[str]]:
    """(reports found with the right title, in order; records that are no expected report; misses)."""
    found = 0
    pos = 0
    extra = 0
    for record in records:
        if pos < len(expected) and record.title == expected[pos]:
            found += 1
            pos += 1
            continue
        later = expected.index(record.title, pos) if record.title in expected[pos:] else -1
        if later >= 0:
            pos = later + 1
            found += 1
            continue
        extra += 1
    titles = [r.title for r in records]
    missed = [t for t in expected if t not in titles]
    return found, extra, missed


def reference(data: bytes) -> list[CrashRecord]:
    """The parser reading every line as the kernel's, with the transport header stripped."""
    raw = decode_log(data).splitlines()
    return _parse_lines(raw, [True] * len(raw))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=Path, default=DEFAULT_REPORTS, help="tests/data/printers")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per form (best is kept)")
    args = parser.parse_args()
    reports: list[list[str]] = []
    expected: list[str] = []
    for row in PRINTERS:
        path = args.reports / f"{row.fixture}.log"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            print(f"precision_bench: {path}: {exc.strerror}", file=sys.stderr)
            return 1
        reports.append([line for line in text.splitlines() if line.strip()])
        expected.append(row.title)
    lines = timeline(reports)
    user_lines = sum(1 for line in lines if not line.kernel)
    print(f"busy-host log: {len(lines)} lines, {len(reports)} kernel reports (one per printer), "
          f"{user_lines} daemon lines ({INSIDE_EVERY - 1} report lines between two inside each report), "
          f"{len(USER_FAULTS) * len(reports)} user-space fault lines")
    print(f"{'form':<15} {'user records':>12} {'found':>9} {'precision':>9} {'recall':>7} {'skipped':>8} "
          f"{'faults':>6} {'ref precision':>13} {'ref user rec':>12} {'time ratio':>10}")
    ok = True
    titles: dict[str, list[str]] = {}
    for name, render in FORMS:
        data = render(lines)
        best = best_ref = float("inf")
        parsed = None
        ref: list[CrashRecord] = []
        for _ in range(max(1, args.repeat)):
            start = time.perf_counter()
            parsed = parse_kernel_log(data)
            best = min(best, time.perf_counter() - start)
            start = time.perf_counter()
            ref = reference(data)
            best_ref = min(best_ref, time.perf_counter() - start)
        assert parsed is not None
        found, extra, missed = score(parsed.records, expected)
        ref_found, ref_extra, _ = score(ref, expected)
        precision = found / len(parsed.records) if parsed.records else 0.0
        ref_precision = ref_found / len(ref) if ref else 0.0
        faults = sum(parsed.user_faults.values())
        print(f"{name:<15} {extra:>12} {found:>4}/{len(expected):<4} {precision:>9.3f} {found / len(expected):>7.3f} "
              f"{parsed.skipped_lines:>8} {faults:>6} {ref_precision:>13.3f} {ref_extra:>12} {best / best_ref:>9.2f}x")
        titles[name] = [r.title for r in parsed.records]
        if extra or missed:
            ok = False
            for title in missed:
                print(f"  missed: {title}")
        assert kernel_lines(data).skipped == parsed.skipped_lines
    print("\ngoal: 0 records from user-space lines, every report found with its title")
    print("titles found (journal export):")
    for title in titles["journal export"]:
        print(f"  {title}")
    print("result:", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
