#!/usr/bin/env python3
"""Turn a kept `make e2e` or capture lab run's kdump-tools captures into the project's own small fixtures.

    .venv/bin/python scripts/e2e/fixtures.py WORKDIR [--out tests/data/agent/kdump_tools]

WORKDIR is the run's work directory, kept by `make e2e E2E_ARGS=--keep` (scripts/e2e/run.py
--keep) or by the capture lab (scripts/e2e/capture.py, which also leaves capture.json naming the
guest): its serial.log and the guest's disk (overlay.qcow2 over the cached image). The guest's
/var/crash holds what kdump-tools' capture kernel wrote for each crash of the run: `<stamp>/dump.<stamp>` (`makedumpfile -F -c -d 31`: the flattened stream of a
kdump-compressed zlib dump) and `<stamp>/dmesg.<stamp>` (`makedumpfile --dump-dmesg` of
/proc/vmcore), stamp = YYYYMMDDHHMM in the guest's clock (UTC), beside kdump_lock and kexec_cmd.

For the first crash of each kind (sysrq-c, the test module's NULL dereference) this writes
OUT/<distro>-<kernel>-<arch>-<trigger>/ (e.g. debian13-6.12-amd64-sysrq-c; distro and arch from
capture.json, else make e2e's debian12 amd64; kernel the dump's release's first two numbers):

  var/crash/<stamp>/dump.<stamp>.xz   the dump cut down by scripts/trim-dump.py --keep-oracle
                                      makedumpfile (the pages crashfleet and makedumpfile read),
                                      still flattened, xz
  var/crash/<stamp>/dmesg.<stamp>.xz  kdump-tools' dmesg file, byte for byte, xz
  var/crash/<name>                    the small files kdump-tools keeps beside the stamps
  serial.log                          the crashed boot's serial console (ground truth), through the
                                      crashed kernel's last line
  expected.json                       the run's facts (trigger, stamp, CRASHTIME, host, release) and
                                      the crash as the console gives it

Removing `.xz` gives the directory exactly as kdump-tools left it (tests/agent/test_kdump_tools.py
does that). The oracle is makedumpfile's own --dump-dmesg: the capture kernel's dmesg.<stamp> of the
whole /proc/vmcore; this script checks that the host's makedumpfile (after -R) reads the same
bytes from the original and from the trimmed dump, and so does crashfleet, and refuses to write a
case otherwise. For an arm64 guest the oracle reader is the guest's own arm64 makedumpfile, run
from the cached image's root under qemu-aarch64-static (the host's reads only its own
architecture's dumps). Each case's crash title must be the one scripts/e2e/run.py (make e2e) or
scripts/e2e/capture.py (the capture lab) expects for its trigger.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import lzma
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))

from analysis.signature import analyze  # noqa: E402
from analysis.vmcore import read_dump  # noqa: E402
from analysis.vmcore.faultframe import fill_rip_addresses  # noqa: E402
from analysis.vmcore.flattened import FLAT_SIGNATURE  # noqa: E402
from analysis.vmcore.printk import without_caller_ids  # noqa: E402

STAMP = re.compile(r"\d{12}")
# A bare panic (sysrq-c) or an oops: with kdump loaded, an oops goes to the capture kernel without
# printing "Kernel panic" (crash_kexec in oops_end, before panic_on_oops's panic).
CRASHED = re.compile(rb"Kernel panic - not syncing|Oops: ")
TIMESTAMP = re.compile(rb"\[ *([0-9]+\.[0-9]+)\] ")
REBOOTED = re.compile(rb"reboot: (?:Restarting system|Power down)")
# arm64's last words as it jumps into the capture kernel ("Starting crashdump kernel...", "Bye!").
KEXEC_BYE = re.compile(rb"\] Bye!\r?$")
TRIGGER = re.compile(rb"E2E trigger kind=(\S+) at=(\d+)")
SMALL_BESIDE = 4096  # files kdump-tools keeps in /var/crash beside the stamps, copied when this small


def load_script(name: str) -> ModuleType:
    """scripts/e2e/run.py or capture.py (not a package): their expectations."""
    spec = importlib.util.spec_from_file_location(f"e2e_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@dataclasses.dataclass
class Run:
    """What fixtures need to know of the run: names, the title rule, how to run makedumpfile."""

    distro: str
    arch: str
    made_with: str
    title_ok: Callable[[str, str], bool]  # (trigger, title)
    makedumpfile: list[str]  # the command prefix reading this architecture's dumps
    makedumpfile_name: str  # which makedumpfile that is, for expected.json


def describe_run(work: Path) -> Run:
    """make e2e's run (debian12 amd64, exact titles) or the capture lab's (capture.json)."""
    version = subprocess.run(["makedumpfile", "-v"], capture_output=True, text=True).stdout
    host = re.search(r"makedumpfile: version (\S+)", version)
    host_name = f"makedumpfile {host.group(1) if host else '?'} on the host"
    info_path = work / "capture.json"
    if not info_path.is_file():
        titles = dict(load_script("run").EXPECTED_TITLES)
        return Run("debian12", "amd64", "make e2e (scripts/e2e/run.py --keep), then scripts/e2e/fixtures.py on its "
                   "work directory", lambda kind, title: titles.get(kind) == title, ["makedumpfile"], host_name)  # fmt: skip
    try:
        info = json.loads(info_path.read_text())
        distro, arch, guest, rootfs = info["distro"], info["arch"], info["guest"], info["rootfs"]
    except (ValueError, KeyError, TypeError) as err:
        sys.exit(f"{info_path}: not the capture lab's description ({err!r})")
    rules = load_script("capture").TITLES
    made_with = f"scripts/e2e/capture.py --guest {guest}, then scripts/e2e/fixtures.py on its work directory"
    command, name = ["makedumpfile"], host_name
    if arch != host_arch():
        if arch != "arm64" or shutil.which("qemu-aarch64-static") is None:
            sys.exit(f"{info_path}: no makedumpfile for {arch} dumps (apt-get install qemu-user-static)")
        command = ["qemu-aarch64-static", "-L", rootfs, f"{rootfs}/usr/bin/makedumpfile"]
        version = subprocess.run([*command, "-v"], capture_output=True, text=True).stdout
        found = re.search(r"makedumpfile: version (\S+)", version)
        if found is None:
            sys.exit(f"{rootfs}/usr/bin/makedumpfile: does not run under qemu-aarch64-static: {version!r}")
        name = f"the guest's own arm64 makedumpfile {found.group(1)} under qemu-aarch64-static on the host"
    return Run(distro, arch, made_with, lambda kind, title: bool(rules[kind].fullmatch(title)), command, name)


def host_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True, text=True).stdout.strip()


def sh(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    print("fixtures: $ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kwargs)


def guest_crash_dir(work: Path, tmp: Path) -> Path:
    """The guest's /var/crash, copied out of its disk (the overlay over the cached base image)."""
    raw = tmp / "root.img"
    sh(["qemu-img", "convert", "-O", "raw", str(work / "overlay.qcow2"), str(raw)])
    sh(["debugfs", "-c", "-R", f"rdump /var/crash {tmp}", str(raw)], capture_output=True)
    raw.unlink()
    crash = tmp / "crash"
    if not crash.is_dir():
        sys.exit(f"{work}: no /var/crash on the guest's disk")
    return crash


@dataclasses.dataclass
class Crash:
    kind: str
    at: int  # the trigger's Unix time, printed by the guest
    console: bytes  # the crashed boot's serial console, through the end of its panic


def console_segments(serial: bytes) -> list[Crash]:
    """Each trigger's boot on the serial console: from the previous reset to the crashed kernel's
    last line. With kdump loaded the capture kernel starts before any "end Kernel panic" line: the
    crashed kernel's output ends where the console's timestamps start again, or on arm64 at its
    "Bye!" (the capture kernel's clock can be past the crashed kernel's by its first line)."""
    lines = serial.split(b"\n")
    crashes: list[Crash] = []
    start = 0
    i = 0
    while i < len(lines):
        if REBOOTED.search(lines[i]):
            start = i + 1
        match = TRIGGER.search(lines[i])
        if match is None:
            i += 1
            continue
        end, last = None, -1.0
        for j in range(i + 1, len(lines)):
            stamp = TIMESTAMP.match(lines[j])
            if stamp is None:
                continue
            if float(stamp.group(1)) < last:
                break
            end, last = j, float(stamp.group(1))
            if KEXEC_BYE.search(lines[j]):
                break
        kind, at = match.group(1).decode(), int(match.group(2))
        if end is None or not any(CRASHED.search(line) for line in lines[i : end + 1]):
            sys.exit(f"trigger {kind} at {at}: no panic or oops on the console after it")
        crashes.append(Crash(kind, at, b"\n".join(lines[start : end + 1]) + b"\n"))
        i = end + 1
    return crashes


def dump_dmesg(path: Path, tmp: Path, makedumpfile: list[str]) -> bytes:
    """makedumpfile --dump-dmesg of a dump; a flattened one (kdump-tools') first through -R."""
    out, plain = tmp / "makedumpfile.dmesg", tmp / "makedumpfile.plain"
    out.unlink(missing_ok=True)
    with path.open("rb") as f:
        flattened = f.read(len(FLAT_SIGNATURE)) == FLAT_SIGNATURE
    if flattened:
        with path.open("rb") as stream:
            sh([*makedumpfile, "-R", str(plain)], stdin=stream, capture_output=True)
        path = plain
    sh([*makedumpfile, "--dump-dmesg", str(path), str(out)], capture_output=True)
    plain.unlink(missing_ok=True)
    return out.read_bytes()


def crash_facts(records: list[Any]) -> list[dict[str, Any]]:
    facts = []
    for record in records:
        entry: dict[str, Any] = {
            "kind": record.kind.value,
            "title": record.title,
            "rip": record.rip.function if record.rip else None,
            "module": record.rip.module if record.rip else None,
        }
        if record.fault_address is not None:
            entry["fault_address"] = record.fault_address
        if record.code is not None and record.code.instruction:
            entry["instruction"] = record.code.instruction
            entry["bad_register"] = record.code.bad_register
            entry["verdict"] = record.code.access
        facts.append(entry)
    return facts


def make_case(run: Run, crash: Crash, stamp_dir: Path, beside: list[Path], out: Path, tmp: Path) -> None:
    stamp = stamp_dir.name
    dump, dmesg = stamp_dir / f"dump.{stamp}", stamp_dir / f"dmesg.{stamp}"
    names = sorted(p.name for p in stamp_dir.iterdir())
    if names != sorted([dump.name, dmesg.name]):
        sys.exit(f"{stamp_dir}: expected exactly {dump.name} and {dmesg.name}, found {names}")
    when = datetime.strptime(stamp, "%Y%m%d%H%M").replace(tzinfo=UTC).timestamp()
    if not crash.at - 60 <= when <= crash.at + 900:
        sys.exit(f"{stamp}: not the capture of the {crash.kind} triggered at {crash.at}")
    written = dmesg.read_bytes()
    # The capture kernel's makedumpfile from 1.7.4 on (trixie's) prints caller ids: compared
    # without that column, the form crashfleet and makedumpfile 1.7.2 print.
    capture_log = without_caller_ids(written)
    caller_ids = capture_log != written
    host_log = dump_dmesg(dump, tmp, run.makedumpfile)
    if host_log not in (capture_log, written):
        sys.exit(f"{dump}: {run.makedumpfile_name} reads a log other than the capture kernel's {dmesg.name}")
    trimmed = tmp / f"trimmed.{stamp}"
    sh([sys.executable, str(REPO / "scripts/trim-dump.py"), "--keep-oracle", " ".join(run.makedumpfile),
        str(dump), str(trimmed)])  # fmt: skip
    if dump_dmesg(trimmed, tmp, run.makedumpfile) != host_log:
        sys.exit(f"{trimmed}: makedumpfile reads another log from the trimmed dump")
    result = read_dump(str(trimmed))
    if result.log != capture_log:
        sys.exit(f"{trimmed}: crashfleet's log differs from makedumpfile's; a reader bug, not a fixture")
    from_dump = fill_rip_addresses(str(trimmed), analyze(result.log))
    from_console = analyze(crash.console)
    titles = {"console": [c.title for c in from_console], "dump": [c.title for c in from_dump],
              "dmesg": [c.title for c in analyze(written)]}  # fmt: skip
    if len({tuple(t) for t in titles.values()}) != 1 or len(titles["dump"]) != 1:
        sys.exit(f"{stamp}: console, dump and dmesg file disagree, or not one crash: {titles}")
    if not run.title_ok(crash.kind, titles["dump"][0]):
        sys.exit(f"{stamp}: title {titles['dump'][0]!r} is not what the run expects of {crash.kind}")
    system = result.system
    release = system.release or ""
    line = ".".join(re.split(r"[.+-]", release)[:2])
    case = out / f"{run.distro}-{line}-{run.arch}-{crash.kind}"
    shutil.rmtree(case, ignore_errors=True)
    target = case / "var/crash" / stamp
    target.mkdir(parents=True)
    (target / f"{dump.name}.xz").write_bytes(lzma.compress(trimmed.read_bytes(), preset=9 | lzma.PRESET_EXTREME))
    (target / f"{dmesg.name}.xz").write_bytes(lzma.compress(written, preset=9 | lzma.PRESET_EXTREME))
    for path in beside:
        shutil.copy(path, case / "var/crash" / path.name)
    (case / "serial.log").write_bytes(crash.console)
    facts = crash_facts(from_console)
    for entry, record in zip(facts, from_dump, strict=True):
        entry["rip_address"] = f"{record.rip.address:#x}" if record.rip and record.rip.address else None
    expected = {
        "made_with": run.made_with,
        "distro": run.distro,
        "arch": run.arch,
        "trigger": {"kind": crash.kind, "at": crash.at},
        "stamp": stamp,
        "crash_time": system.crash_time,
        "nodename": system.nodename,
        "release": release,
        "machine": system.machine,
        "format": system.format,
        "oracle": f"{dmesg.name}: kdump-tools' makedumpfile --dump-dmesg of /proc/vmcore in the capture kernel"
        + (f", with caller ids ([    T476]: makedumpfile 1.7.4+); without them, the bytes {run.makedumpfile_name} "
           "reads from the original and the trimmed dump" if caller_ids else
           f"; {run.makedumpfile_name} reads the same bytes from the original and the trimmed dump"),
        "dmesg_caller_ids": caller_ids,
        "original_dump_bytes": dump.stat().st_size,
        "crashes": facts,
    }
    (case / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    size = sum(p.stat().st_size for p in case.rglob("*") if p.is_file())
    print(f"fixtures: {case.relative_to(REPO) if case.is_relative_to(REPO) else case}: {size} bytes", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("work", type=Path, help="a kept scripts/e2e/run.py work directory")
    parser.add_argument("--out", type=Path, default=REPO / "tests/data/agent/kdump_tools")
    parser.add_argument("--kinds", help="comma-separated triggers to make cases of (default: every one the run has)")
    args = parser.parse_args(argv)
    kinds = set(args.kinds.split(",")) if args.kinds else None
    for tool in ("qemu-img", "debugfs", "makedumpfile"):
        if shutil.which(tool) is None:
            sys.exit(f"missing {tool} (apt-get install qemu-utils e2fsprogs makedumpfile)")
    run = describe_run(args.work)
    crashes = console_segments((args.work / "serial.log").read_bytes())
    with tempfile.TemporaryDirectory(dir=args.work) as name:
        tmp = Path(name)
        crash_dir = guest_crash_dir(args.work, tmp)
        stamps = sorted(p for p in crash_dir.iterdir() if p.is_dir() and STAMP.fullmatch(p.name))
        beside = sorted(p for p in crash_dir.iterdir() if p.is_file() and p.stat().st_size <= SMALL_BESIDE)
        if len(stamps) != len(crashes):
            sys.exit(f"{len(crashes)} triggers on the console, {len(stamps)} kdump-tools directories")
        seen: set[str] = set()
        for crash, stamp_dir in zip(crashes, stamps, strict=True):
            if crash.kind not in seen and (kinds is None or crash.kind in kinds):
                seen.add(crash.kind)
                make_case(run, crash, stamp_dir, beside, args.out, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
