#!/usr/bin/env python3
"""The capture lab: real kdump-tools captures on other Debian suites, kernels and architectures.

    scripts/e2e/capture.py --guest trixie-amd64 --cache DIR [--triggers sysrq-c,module-null]

A lighter sibling of `make e2e` (scripts/e2e/run.py, whose image recipe, QEMU command and console
reader it uses): the guest is built the same way (debootstrap, systemd, kdump-tools with
crashkernel= reserved, the distribution kernel, the e2e test module), but carries no crashfleet
package and boots once per trigger. Boot N waits for kdump-tools to be ready and crashes the
kernel (sysrq-c; the test module's NULL dereference); the capture kernel writes
/var/crash/<stamp>/dump.<stamp> and dmesg.<stamp> and resets the guest; the boot after the last
trigger powers off. The work directory (serial.log, overlay.qcow2 over the cached image,
capture.json naming the guest) is kept under the cache for scripts/e2e/fixtures.py:

    .venv/bin/python scripts/e2e/fixtures.py WORKDIR

Only stdlib, like run.py. Needs root (debootstrap, chroot); an arm64 guest on an amd64 host also
needs qemu-user-static with binfmt_misc (debootstrap's second stage and the module's build run the
guest's own binaries).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def load_run() -> ModuleType:
    """scripts/e2e/run.py (not a package)."""
    spec = importlib.util.spec_from_file_location("e2e_run", HERE / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


e2e = load_run()

# No crashfleet package, so no python3.11 (not in bullseye nor trixie): the rest as make e2e's.
CAPTURE_PACKAGES = tuple(p for p in e2e.PACKAGES if p != "python3.11")
# --guest NAME: the image, and the distribution's name in the fixtures' case names.
GUESTS = {
    "bookworm-amd64": (e2e.Guest("capture-bookworm-amd64", packages=CAPTURE_PACKAGES), "debian12"),
    "trixie-amd64": (e2e.Guest("capture-trixie-amd64", suite="trixie", packages=CAPTURE_PACKAGES), "debian13"),
    "bookworm-backports-amd64": (
        e2e.Guest("capture-bookworm-backports-amd64", kernel_suite="bookworm-backports", packages=CAPTURE_PACKAGES),
        "debian12",
    ),
    "bookworm-arm64": (e2e.Guest("capture-bookworm-arm64", arch="arm64", packages=CAPTURE_PACKAGES), "debian12"),
    "bullseye-amd64": (e2e.Guest("capture-bullseye-amd64", suite="bullseye", packages=CAPTURE_PACKAGES), "debian11"),
}
TRIGGERS = ("sysrq-c", "module-null")
# What each trigger's crash title must be, on any of these kernels: sysrq-c panics directly (5.10
# as 6.x: no oops); the module's bug names its function, however the architecture words it, or its
# caller where the compiler inlined it all the same (bullseye's gcc 10: e2e_oops_write+0x16).
TITLES = {
    "sysrq-c": re.compile(r"kernel panic: sysrq triggered crash"),
    "module-null": re.compile(r".*NULL pointer dereference.* in e2e_oops_(pending|write)"),
}
# One boot per trigger, each with a capture kernel's boot and a reset, then one that powers off.
BOOT_TIMEOUT = 2400


def capture_disk(work: Path, triggers: list[str]) -> Path:
    """The second disk the image's launcher runs its driver from: here the capture driver."""
    content = work / "disk"
    content.mkdir()
    shutil.copy(e2e.GUEST / "capture-driver", content / "crashfleet-e2e")  # the name the launcher runs
    shutil.copy(e2e.GUEST / "crashfleet-e2e", content / "e2e-stages")
    (content / "triggers").write_text(" ".join(triggers) + "\n")
    disk = work / "capture.img"
    e2e.run(["mkfs.ext4", "-q", "-F", "-L", "e2e", "-d", str(content), str(disk), "64M"])
    return disk


def check_events(events: list[str], triggers: list[str]) -> list[str]:
    problems = [f"check failed: {e}" for e in events if e.startswith("check ") and " ok=1" not in e]
    fired = [e2e.parse_kv(e).get("kind") for e in events if e.startswith("trigger ")]
    if fired != triggers:
        problems.append(f"triggers fired {fired}, wanted {triggers}")
    # kdump-tools says "saved vmcore" even when its makedumpfile failed and left an empty dump.
    problems += [f"capture failed: {e}" for e in events if "makedumpfile Failed" in e]
    if "done" not in events:
        problems.append("the guest never reached its last boot")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guest", choices=sorted(GUESTS), required=True)
    parser.add_argument("--cache", type=Path, required=True, help="image cache and work directories (outside the checkout)")
    parser.add_argument("--triggers", default=",".join(TRIGGERS), help=f"comma-separated, of {', '.join(TRIGGERS)}")
    args = parser.parse_args(argv)
    guest, distro = GUESTS[args.guest]
    triggers = [t for t in args.triggers.split(",") if t]
    unknown = [t for t in triggers if t not in TRIGGERS]
    if unknown or not triggers:
        parser.error(f"--triggers: unknown {unknown or 'empty'}; choose from {', '.join(TRIGGERS)}")
    timings = e2e.Timings()
    try:
        e2e.need_tools(guest)
        cache = args.cache.resolve()
        if cache.is_relative_to(e2e.REPO):
            raise e2e.E2EError(f"{cache}: the image cache must live outside the checkout")
        base, kernel, initrd = e2e.prepare_image(cache, timings, guest, prep_boot=False)
        work = Path(tempfile.mkdtemp(prefix=f"capture-{args.guest}-", dir=cache))
        overlay = work / "overlay.qcow2"
        e2e.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "raw", str(overlay)])
        disk = capture_disk(work, triggers)
        serial = work / "serial.log"
        started = time.time()
        events = e2e.boot(e2e.qemu_command(kernel, initrd, [(overlay, "qcow2"), (disk, "raw")], serial, guest),
                          serial, BOOT_TIMEOUT * len(triggers), timings)  # fmt: skip
        info = {
            "guest": args.guest,
            "distro": distro,
            "suite": guest.kernel_suite or guest.suite,
            "arch": guest.arch,
            "rootfs": str(base.parent / "rootfs"),  # the guest's own makedumpfile, for an arm64 oracle
            "triggers": triggers,
            "started": int(started),
            "seconds": round(time.time() - started, 1),
            "steps": [(name, round(at - timings.start, 1)) for name, at in timings.marks],
        }
        (work / "capture.json").write_text(json.dumps(info, indent=1) + "\n")
        print("capture: step timings\n" + timings.table(), flush=True)
        problems = check_events(events, triggers)
        if problems:
            print("capture: FAILED\n  " + "\n  ".join(problems), file=sys.stderr)
            print(f"capture: work directory kept: {work}", file=sys.stderr)
            return 1
        print(f"capture: PASSED; work directory: {work}", flush=True)
        print(f"capture: next: .venv/bin/python scripts/e2e/fixtures.py {work}", flush=True)
        return 0
    except (e2e.E2EError, subprocess.CalledProcessError, OSError) as err:
        print(f"capture: FAILED: {err}", file=sys.stderr)
        print("capture: step timings\n" + timings.table(), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
