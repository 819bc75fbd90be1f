#!/usr/bin/env python3
"""`make e2e`: the Debian package on a real Debian bookworm host under systemd and kdump-tools.

Builds (once, cached outside the checkout) a bookworm guest image with debootstrap: the distribution
kernel, kdump-tools, and a test module of our own that dereferences NULL. One QEMU run (TCG, no
network device: everything talks over the guest's loopback) then goes through every boot of the
scenario that scripts/e2e/guest/crashfleet-e2e drives from inside the guest:

  install  the previous package: nothing enabled or started; configs written, units enabled, READY
           and WATCHDOG seen; `systemd-analyze security`; sysrq-c → capture kernel → reboot
  crash1   the agent finds kdump-tools' directory, the crash arrives; collector stopped; the
           module's NULL dereference → capture → reboot
  crash2   the agent spools it (collector down); sysrq-c again → capture → reboot
  crash3   spooled too; upgrade to this build with two reports waiting; collector started: both
           arrive once
  final    a second boot reports nothing again; an upgrade with a config the agent rejects keeps
           dpkg happy, fails the unit with a clear journal line and keeps the spool; purge

The guest prints "E2E ..." lines on its serial console; this script times them, fails on any
failed check, and reads the collector's database back from the scenario disk to check that each
crash is stored once with the right title, host and crash time. Only stdlib: it runs before any venv.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
GUEST = HERE / "guest"
REPO = HERE.parent.parent

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
HOSTNAME = "e2e-guest01"
# The guest's packages, besides the kernel's (Guest.kernel_packages). gcc, make and the headers
# build the test module inside the image; python3.11 runs the crashfleet package.
PACKAGES = (
    "systemd", "systemd-sysv", "udev", "dbus", "kmod", "procps",
    "initramfs-tools", "kdump-tools", "kexec-tools", "makedumpfile", "python3.11", "e2fsprogs",
    "gcc", "make", "libc6-dev",
)  # fmt: skip
GUEST_MEMORY = "1536"
CRASHKERNEL = "384M"
IMAGE_SIZE = "6G"
# Whole-run bound: TCG boots and two capture kernels per crash; stops by itself.
RUN_TIMEOUT = 3 * 3600
PREP_TIMEOUT = 3600

# Every check the driver must report, ok=1, for the run to pass.
REQUIRED_CHECKS = (
    "kdump_ready", "install_prev", "not_enabled_on_install_crashfleet-agent",
    "not_started_on_install_crashfleet-agent", "not_enabled_on_install_crashfleet-collector",
    "not_started_on_install_crashfleet-collector", "system_users", "collector_active", "agent_active",
    "agent_watchdog", "collector_watchdog", "crash1_arrived", "crash2_spooled", "crash3_spooled",
    "upgrade", "agent_running_after_upgrade", "upgrade_enabled_nothing", "spool_survived_upgrade",
    "spool_drained", "spool_empty", "agent_active_final", "collector_active_final", "no_second_report",
    "upgrade_with_broken_config", "agent_refuses_broken_config", "spool_kept_with_broken_config",
    "purge", "purge_removed_everything",
)  # fmt: skip
# What each crash's title must name (the faulting function the kernel reports).
# (sysrq-c panics directly on 6.1: no oops, the panic message is the title.)
EXPECTED_TITLES = (
    ("sysrq-c", "kernel panic: sysrq triggered crash"),
    ("module-null", "BUG: unable to handle kernel NULL pointer dereference in e2e_oops_pending"),
    ("sysrq-c", "kernel panic: sysrq triggered crash"),
)


class E2EError(RuntimeError):
    """The run failed; the message says which step and why."""


@dataclass(frozen=True)
class Guest:
    """One guest image: the suite debootstrap installs, where its kernel comes from, its architecture.

    `make e2e` uses BOOKWORM; scripts/e2e/capture.py builds the others with the same recipe.
    """

    name: str  # the cache directory's prefix, and capture.py's --guest
    suite: str = SUITE
    arch: str = "amd64"
    kernel_suite: str | None = None  # e.g. bookworm-backports: the kernel and its headers from there
    packages: tuple[str, ...] = PACKAGES

    @property
    def kernel_packages(self) -> tuple[str, ...]:
        return (f"linux-image-{self.arch}", f"linux-headers-{self.arch}")

    @property
    def console(self) -> str:
        """The serial console's tty: QEMU virt's PL011 on arm64, the PC's 16550 on amd64."""
        return "ttyAMA0" if self.arch == "arm64" else "ttyS0"

    @property
    def foreign(self) -> bool:
        """Another architecture than the host's: debootstrap --foreign, then its second stage under qemu-user."""
        return self.arch != host_arch()


BOOKWORM = Guest("bookworm")


def host_arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True, text=True).stdout.strip()


QEMU_SYSTEM = {"amd64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}
QEMU_USER = {"arm64": "qemu-aarch64-static"}


@dataclass
class Timings:
    """Wall-clock seconds per named step, printed at the end."""

    start: float = field(default_factory=time.monotonic)
    marks: list[tuple[str, float]] = field(default_factory=list)

    def mark(self, name: str) -> None:
        now = time.monotonic()
        last = self.marks[-1][1] if self.marks else self.start
        self.marks.append((name, now))
        print(f"e2e: step={name} seconds={now - last:.1f} total={now - self.start:.1f}", flush=True)

    def table(self) -> str:
        rows, last = [], self.start
        for name, at in self.marks:
            rows.append(f"  {name:<34} {at - last:8.1f} s")
            last = at
        rows.append(f"  {'total':<34} {last - self.start:8.1f} s")
        return "\n".join(rows)


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """A command that must succeed; its output goes to ours."""
    print("e2e: $ " + " ".join(cmd), flush=True)
    started = time.monotonic()
    try:
        return subprocess.run(cmd, check=True, text=True, **kwargs)  # type: ignore[call-overload, no-any-return]
    finally:
        print(f"e2e: took {time.monotonic() - started:.1f} s: {' '.join(cmd)[:160]}", flush=True)


def need_tools(guest: Guest = BOOKWORM) -> None:
    tools = ["debootstrap", QEMU_SYSTEM[guest.arch], "qemu-img", "mkfs.ext4", "debugfs", "dpkg-deb"]
    if guest.foreign:
        tools.append(QEMU_USER[guest.arch])
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise E2EError(
            f"missing tools: {' '.join(missing)} (apt-get install debootstrap qemu-system-x86 qemu-system-arm "
            "qemu-user-static qemu-utils e2fsprogs)"
        )
    if os.geteuid() != 0:
        raise E2EError("debootstrap and chroot need root")


def image_key(guest: Guest = BOOKWORM) -> str:
    """Changes to the package list, the module or the in-image files rebuild the cached image."""
    digest = hashlib.sha256()
    digest.update(f"{guest} {MIRROR} {CRASHKERNEL}".encode())
    for name in ("e2e_oops.c", "Kbuild", "crashfleet-e2e.service", "launcher", "kexec-text"):
        digest.update((GUEST / name).read_bytes())
    source = Path(__file__).read_bytes()  # the markers' last pair: the first is this line's own
    digest.update(source.rsplit(b"# -- image" + b" recipe --", 1)[1].split(b"# -- end" + b" recipe --", 1)[0])
    return digest.hexdigest()[:16]


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below path (from /proc/mounts): never removed with the tree."""
    prefix = str(path.resolve())
    points = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if len(line.split()) > 1]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


# -- image recipe --
# A foreign guest's initrds (MODULES=list): what the root of QEMU's virt machine needs, root=/dev/vda
# on virtio-blk-pci, ext4 (its crc32c by name: a soft dependency); udev loads the rest from the root.
FOREIGN_INITRD_MODULES = ("virtio_pci", "virtio_blk", "ext4", "crc32c_generic")


def foreign_shortcuts(tmp: Path) -> None:
    """Before a foreign guest's second stage: every process under qemu-user pays for emulation, and
    initramfs-tools' MODULES=most runs modinfo and cp per module (thousands): more than 19 minutes
    per mkinitramfs, and the kernel's hook, kdump-tools' and the capture initrd make three. MODULES=list
    with the modules the root needs, in conf.d and modules.d (no package's conffiles), which
    kdump-tools' hook keeps for its initrd (it sets MODULES=dep only over MODULES=most); dpkg without
    fsync while debootstrap installs (removed after)."""
    (tmp / "etc/initramfs-tools/conf.d").mkdir(parents=True, exist_ok=True)
    (tmp / "etc/initramfs-tools/conf.d/crashfleet-e2e").write_text("MODULES=list\n")
    (tmp / "usr/share/initramfs-tools/modules.d").mkdir(parents=True, exist_ok=True)
    (tmp / "usr/share/initramfs-tools/modules.d/crashfleet-e2e").write_text("\n".join(FOREIGN_INITRD_MODULES) + "\n")
    (tmp / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (tmp / "etc/dpkg/dpkg.cfg.d/crashfleet-e2e-unsafe-io").write_text("force-unsafe-io\n")


def build_rootfs(rootfs: Path, guest: Guest = BOOKWORM, debs: Path | None = None) -> str:
    """debootstrap plus the guest's configuration; returns the kernel release. debs: debootstrap's
    package cache (kept between builds)."""
    tmp = rootfs.with_suffix(".tmp")
    mounted = mounts_under(tmp)
    if mounted:  # an interrupted debootstrap second stage leaves /proc and /sys mounted there
        raise E2EError(f"{tmp}: still mounted: {' '.join(mounted)}; umount them before a rebuild")
    shutil.rmtree(tmp, ignore_errors=True)
    include = guest.packages + (() if guest.kernel_suite else guest.kernel_packages)
    cmd = ["debootstrap", "--variant=minbase", f"--arch={guest.arch}", "--include=" + ",".join(include)]
    if debs is not None:
        debs.mkdir(parents=True, exist_ok=True)
        cmd.append(f"--cache-dir={debs}")
    if guest.foreign:
        cmd.append("--foreign")
    run([*cmd, guest.suite, str(tmp), MIRROR])
    if guest.foreign:  # the second stage runs the guest's own binaries through qemu-user (binfmt_misc)
        shutil.copy(shutil.which(QEMU_USER[guest.arch]) or "", tmp / "usr/bin")
        foreign_shortcuts(tmp)
        run(["chroot", str(tmp), "/debootstrap/debootstrap", "--second-stage"])
        (tmp / "etc/dpkg/dpkg.cfg.d/crashfleet-e2e-unsafe-io").unlink()
    if guest.kernel_suite:
        (tmp / "etc/apt/sources.list.d/kernel.list").write_text(f"deb {MIRROR} {guest.kernel_suite} main\n")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["chroot", str(tmp), "apt-get", "update", "-qq"], env=env)
        # kdump-tools' kernel hook cannot make its initrd in a chroot (MODULES=dep wants /sys);
        # it is made below, as for the kernel debootstrap installs.
        hook = tmp / "etc/kernel/postinst.d/kdump-tools"
        hook.rename(hook.with_name("kdump-tools.off"))
        run(["chroot", str(tmp), "apt-get", "install", "-y", "-qq", "--no-install-recommends",
             "-t", guest.kernel_suite, *guest.kernel_packages], env=env)  # fmt: skip
        hook.with_name("kdump-tools.off").rename(hook)
        run(["chroot", str(tmp), "apt-get", "clean"])
    (tmp / "etc/hostname").write_text(HOSTNAME + "\n")
    (tmp / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {HOSTNAME}\n")
    (tmp / "etc/fstab").write_text("/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    (tmp / "var/log/journal").mkdir(parents=True, exist_ok=True)
    (tmp / "etc/sysctl.d/90-crashfleet-e2e.conf").write_text("kernel.panic_on_oops = 1\nkernel.sysrq = 1\n")
    defaults = tmp / "etc/default/kdump-tools"
    defaults.write_text(re.sub(r"(?m)^#?\s*USE_KDUMP=.*$", "USE_KDUMP=1", defaults.read_text()))
    kexec = tmp / "etc/default/kexec"  # reboots stay real resets, not kexec into the same kernel
    if kexec.exists():
        kexec.write_text(re.sub(r"(?m)^LOAD_KEXEC=.*$", "LOAD_KEXEC=false", kexec.read_text()))
    shutil.copy(GUEST / "launcher", tmp / "usr/local/sbin/crashfleet-e2e")
    (tmp / "usr/local/sbin/crashfleet-e2e").chmod(0o755)
    # The driver reports on the serial console (the service file names amd64's, ttyS0).
    service = (GUEST / "crashfleet-e2e.service").read_text().replace("/dev/ttyS0", f"/dev/{guest.console}")
    (tmp / "etc/systemd/system/crashfleet-e2e.service").write_text(service)
    wants = tmp / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / "crashfleet-e2e.service").symlink_to("/etc/systemd/system/crashfleet-e2e.service")
    # No login prompt on the serial console: its getty hangs the tty up under the driver's output.
    (tmp / f"etc/systemd/system/serial-getty@{guest.console}.service").symlink_to("/dev/null")
    if guest.arch == "arm64":  # kdump-tools loads the capture kernel with a _text kexec can find: see kexec-text
        shutil.copy(GUEST / "kexec-text", tmp / "usr/local/sbin/crashfleet-e2e-kexec-text")
        (tmp / "usr/local/sbin/crashfleet-e2e-kexec-text").chmod(0o755)
        dropin = tmp / "etc/systemd/system/kdump-tools.service.d"
        dropin.mkdir(parents=True, exist_ok=True)
        (dropin / "crashfleet-e2e.conf").write_text(
            "[Service]\nExecStart=\nExecStart=/usr/local/sbin/crashfleet-e2e-kexec-text /etc/init.d/kdump-tools start\n"
        )
    run(["chroot", str(tmp), "passwd", "-d", "root"])
    releases = sorted(p.name for p in (tmp / "lib/modules").iterdir())
    if len(releases) != 1:
        raise E2EError(f"expected one kernel in the image, found {releases}")
    release = releases[0]
    src = tmp / "root/e2e-src"
    src.mkdir(parents=True, exist_ok=True)
    for name in ("e2e_oops.c", "Kbuild"):
        shutil.copy(GUEST / name, src / name)
    run(["chroot", str(tmp), "make", "-s", "-C", f"/lib/modules/{release}/build", "M=/root/e2e-src", "modules"])
    (tmp / "root/e2e").mkdir(exist_ok=True)
    shutil.copy(src / "e2e_oops.ko", tmp / "root/e2e/e2e_oops.ko")
    # kdump-tools makes its capture initrd at the first load, inside the guest: many minutes under
    # TCG. Make it here instead, in the chroot; MODULES=most (a foreign guest's: list), since a
    # chroot cannot detect the root device that kdump-tools' "dep" would need. (Its kernel hook,
    # which a foreign guest's MODULES=list lets run, leaves its copy of the configuration.)
    shutil.rmtree(tmp / "var/lib/kdump/initramfs-tools", ignore_errors=True)
    shutil.copytree(tmp / "etc/initramfs-tools", tmp / "var/lib/kdump/initramfs-tools", symlinks=True)
    run(["chroot", str(tmp), "mkinitramfs", "-d", "/var/lib/kdump/initramfs-tools",
         "-o", f"/var/lib/kdump/initrd.img-{release}", release])  # fmt: skip
    # kdump-config deletes the initrd when /etc/kdump/sysctl.conf differs from its last copy.
    if (tmp / "etc/kdump/sysctl.conf").exists():  # (bullseye's kdump-tools has none)
        shutil.copy(tmp / "etc/kdump/sysctl.conf", tmp / f"var/lib/kdump/latest_sysctls-{release}")
    tmp.rename(rootfs)
    return release
# -- end recipe --


def qemu_command(
    kernel: Path, initrd: Path, disks: list[tuple[Path, str]], serial: Path, guest: Guest = BOOKWORM
) -> list[str]:
    if guest.arch == "arm64":
        # -M virt: virtio-blk on PCI, so that vda and vdb keep the order given here.
        # pauth-impdef: the kernel signs its return addresses (CONFIG_ARM64_PTR_AUTH_KERNEL), and TCG's
        # QARMA5 for the architected algorithm costs far more than QEMU's own one.
        machine, console = ["-machine", "virt", "-cpu", "max,pauth-impdef=on"], guest.console
    else:
        machine, console = ["-machine", "pc", "-cpu", "max"], f"{guest.console},115200"
    cmd = [
        QEMU_SYSTEM[guest.arch], *machine, "-accel", "tcg,thread=multi", "-smp", "2",
        "-m", GUEST_MEMORY, "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
        "-nic", "none", "-device", "virtio-rng-pci",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", f"root=/dev/vda rw console={console} crashkernel={CRASHKERNEL} quiet",
        "-chardev", f"file,id=ser0,path={serial}", "-serial", "chardev:ser0",
    ]  # fmt: skip
    for i, (path, fmt) in enumerate(disks):
        if guest.arch == "arm64":
            cmd += ["-drive", f"file={path},if=none,id=disk{i},format={fmt}", "-device", f"virtio-blk-pci,drive=disk{i}"]
        else:
            cmd += ["-drive", f"file={path},if=virtio,format={fmt}"]
    return cmd


def boot(cmd: list[str], serial: Path, timeout: float, timings: Timings | None) -> list[str]:
    """Run QEMU until the guest powers off; mark each E2E event and kernel boot as it appears."""
    print("e2e: $ " + " ".join(cmd), flush=True)
    serial.write_bytes(b"")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    events: list[str] = []
    offset = 0
    buffer = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            done = proc.poll() is not None
            with serial.open("rb") as f:
                f.seek(offset)
                chunk = f.read()
            offset += len(chunk)
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                event = _event(line)
                if event is None:
                    continue
                events.append(event)
                print(f"  [{time.monotonic() - (timings.start if timings else 0):7.1f}s] {event}", flush=True)
                if timings is not None and (event.startswith(("boot stage=", "trigger ", "done")) or
                                            event.startswith("kernel:")):  # fmt: skip
                    timings.mark(event.split(" at=")[0][:34])
            if done:
                break
            if time.monotonic() > deadline:
                raise E2EError(f"guest still running after {timeout:.0f} s; serial log: {serial}")
            time.sleep(1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise E2EError(f"qemu exited with status {proc.returncode}; serial log: {serial}")
    return events


# Kernel console lines worth a timestamp: each boot (the capture kernel's too) and kdump's own steps.
_KERNEL_EVENTS = (
    (re.compile(r"Linux version (\S+)"), "kernel: boot"),
    (re.compile(r"Kernel panic - not syncing"), "kernel: panic"),
    (re.compile(r"kdump-tools\[\d+\]: (Starting|saving|saved|makedumpfile|Kdump|Rebooting)", re.I), "kernel: kdump"),
)


def _event(line: str) -> str | None:
    at = line.find("E2E ")
    if at >= 0:
        return line[at + 4 :]
    for pattern, label in _KERNEL_EVENTS:
        match = pattern.search(line)
        if match:
            return f"{label} {line.strip()[-110:]}"
    return None


def prepare_image(
    cache: Path, timings: Timings, guest: Guest = BOOKWORM, prep_boot: bool = True
) -> tuple[Path, Path, Path]:
    """The cached base disk (after one boot that checked kdump's initrd loads), kernel and initrd.
    Without prep_boot (the capture lab) the run's own first boot waits for kdump to be ready."""
    key = image_key(guest)
    root = cache / f"{guest.name}-{key}"
    root.mkdir(parents=True, exist_ok=True)
    rootfs = root / "rootfs"
    base = root / "base.img"
    prepared = root / "prepared"
    if not rootfs.is_dir():
        build_rootfs(rootfs, guest, cache / f"debs-{guest.suite}-{guest.arch}")
        timings.mark("image: debootstrap + module")
    release = sorted(p.name for p in (rootfs / "lib/modules").iterdir())[0]
    kernel, initrd = root / "vmlinuz", root / "initrd.img"
    if not prepared.exists():
        shutil.copy(rootfs / f"boot/vmlinuz-{release}", kernel)
        shutil.copy(rootfs / f"boot/initrd.img-{release}", initrd)
        base.unlink(missing_ok=True)
        run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(rootfs), str(base), IMAGE_SIZE])
        timings.mark("image: mkfs")
        if not prep_boot:
            prepared.touch()
            return base, kernel, initrd
        events = boot(qemu_command(kernel, initrd, [(base, "raw")], root / "prep-serial.log", guest),
                      root / "prep-serial.log", PREP_TIMEOUT, None)  # fmt: skip
        failed = [e for e in events if e.startswith("check ") and "ok=1" not in e]
        if failed or not any(e.startswith("check name=kdump_ready ok=1") for e in events):
            raise E2EError(f"image preparation failed: {failed or 'no kdump_ready check'}")
        prepared.touch()
        timings.mark("image: prep boot (kdump initrd)")
    else:
        print(f"e2e: cached image {root}", flush=True)
    return base, kernel, initrd


def repack(deb: Path, version: str, out: Path) -> None:
    """The same build under another version: the upgrade's previous version."""
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        run(["dpkg-deb", "-R", str(deb), tmp])
        control = Path(tmp, "DEBIAN/control")
        control.write_text(re.sub(r"(?m)^Version: .*$", f"Version: {version}", control.read_text()))
        run(["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "-b", tmp, str(out)], stdout=subprocess.DEVNULL)


def scenario_disk(work: Path, deb: Path) -> Path:
    """A second disk with the driver and both package versions; the guest writes results to it."""
    content = work / "disk"
    content.mkdir()
    shutil.copy(GUEST / "crashfleet-e2e", content / "crashfleet-e2e")
    version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True,
                             text=True).stdout.strip()  # fmt: skip
    repack(deb, f"{version}~e2e.prev", content / "crashfleet_prev.deb")
    shutil.copy(deb, content / "crashfleet_next.deb")
    disk = work / "scenario.img"
    run(["mkfs.ext4", "-q", "-F", "-L", "e2e", "-d", str(content), str(disk), "1G"])
    return disk


def read_back(disk: Path, name: str, out: Path) -> Path:
    run(["debugfs", "-R", f"dump /results/{name} {out}", str(disk)], capture_output=True)
    if not out.is_file() or out.stat().st_size == 0:
        raise E2EError(f"{disk}: /results/{name} missing: the guest did not finish")
    return out


def parse_kv(event: str) -> dict[str, str]:
    return {m.group(1): m.group(2).strip('"') for m in re.finditer(r'(\w+)=("[^"]*"|\S+)', event)}


def verify(events: list[str], disk: Path, work: Path) -> list[str]:
    """Every required check ok, each crash stored once, right title, host and time; scores as documented."""
    problems: list[str] = []
    checks = {parse_kv(e)["name"]: e for e in events if e.startswith("check ")}
    for name in REQUIRED_CHECKS:
        if name not in checks:
            problems.append(f"check {name} never ran")
        elif " ok=1" not in checks[name]:
            problems.append(f"check failed: {checks[name]}")
    for extra in set(checks) - set(REQUIRED_CHECKS):
        if " ok=1" not in checks[extra]:
            problems.append(f"check failed: {checks[extra]}")
    triggers = [parse_kv(e) for e in events if e.startswith("trigger ")]
    db = read_back(disk, "collector.db", work / "collector.db")
    read_back(disk, "journal.txt", work / "journal.txt")
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT host, title, crash_time, idempotency_key FROM crashes ORDER BY crash_time").fetchall()
    print("e2e: stored crashes:", flush=True)
    for row in rows:
        print(f"  host={row[0]} title={row[1]!r} crash_time={row[2]}", flush=True)
    if len(rows) != len(EXPECTED_TITLES) or len(triggers) != len(EXPECTED_TITLES):
        problems.append(f"expected {len(EXPECTED_TITLES)} crashes stored once, found {len(rows)} "
                        f"for {len(triggers)} triggers")  # fmt: skip
    for (host, title, crash_time, _), trigger, (kind, expected) in zip(rows, triggers, EXPECTED_TITLES, strict=False):
        if trigger.get("kind") != kind:
            problems.append(f"trigger order: expected {kind}, got {trigger}")
        if host != HOSTNAME:
            problems.append(f"crash stored under host {host!r}, expected {HOSTNAME}")
        if title != expected:
            problems.append(f"title {title!r}, expected {expected!r}")
        at = int(trigger.get("at", "0"))
        # The store keeps microseconds since the epoch (older stores: seconds).
        seconds = crash_time / 1_000_000 if crash_time and crash_time > 10**14 else crash_time
        if seconds is None or not at - 5 <= seconds <= at + 120:
            problems.append(f"crash time {crash_time} not within the trigger's minute ({at})")
    documented = documented_scores()
    for event in events:
        if event.startswith("security "):
            m = re.search(r"unit=(\S+) .*Overall exposure level for \S+: ([0-9.]+)", event)
            if not m:
                problems.append(f"unreadable security line: {event}")
            elif documented.get(m.group(1)) != m.group(2):
                problems.append(f"{m.group(1)}: exposure {m.group(2)}, docs/operations.md says {documented.get(m.group(1))}")
    journal = (work / "journal.txt").read_text()
    for needle in ("READY=1", "WATCHDOG=1", "report shipped", "agent started", "collector serving"):
        if needle not in journal:
            problems.append(f"journal has no {needle!r} line")
    return problems


def documented_scores() -> dict[str, str]:
    text = (REPO / "docs/operations.md").read_text()
    m = re.search(r"`systemd-analyze security crashfleet-agent` rates the unit ([0-9]+\.[0-9]).*?collector.s ([0-9]+\.[0-9])", text, re.S)
    if not m:
        raise E2EError("docs/operations.md no longer quotes the exposure scores")
    return {"crashfleet-agent.service": m.group(1), "crashfleet-collector.service": m.group(2)}


def quote_journal(work: Path) -> None:
    wanted = re.compile(r"READY=1|WATCHDOG=1|agent started|collector serving|report shipped|agent.toml")
    seen: dict[str, int] = {}
    print("e2e: journal lines (READY, WATCHDOG, arrival, the broken config):", flush=True)
    for line in (work / "journal.txt").read_text().splitlines():
        m = wanted.search(line)
        if m and seen.get(m.group(0), 0) < 3:
            seen[m.group(0)] = seen.get(m.group(0), 0) + 1
            print("  " + line[:220], flush=True)


def recheck(work: Path) -> int:
    """Verify a kept run's results again, e.g. after correcting an expectation."""
    text = (work / "serial.log").read_text(errors="replace")
    events = [e for e in (_event(line.rstrip("\r")) for line in text.splitlines()) if e is not None]
    problems = verify(events, work / "scenario.img", work)
    quote_journal(work)
    if problems:
        print("e2e: FAILED\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print("e2e: PASSED (recheck)", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True, help="image cache (outside the checkout)")
    parser.add_argument("--deb", type=Path, required=True, help="directory holding the built crashfleet_*.deb")
    parser.add_argument("--keep", action="store_true", help="keep the run's work directory")
    parser.add_argument("--recheck", type=Path, metavar="WORKDIR",
                        help="only verify a kept run again (its serial.log and scenario.img)")  # fmt: skip
    args = parser.parse_args(argv)
    timings = Timings()
    if args.recheck:
        return recheck(args.recheck)
    try:
        need_tools()
        debs = sorted(args.deb.glob("crashfleet_*_amd64.deb"))
        if len(debs) != 1:
            raise E2EError(f"{args.deb}: expected one crashfleet_*_amd64.deb, found {[d.name for d in debs]}")
        cache = args.cache.resolve()
        if cache.is_relative_to(REPO):
            raise E2EError(f"{cache}: the image cache must live outside the checkout")
        base, kernel, initrd = prepare_image(cache, timings)
        work = Path(tempfile.mkdtemp(prefix="run-", dir=cache))
        overlay = work / "overlay.qcow2"
        run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "raw", str(overlay)])
        disk = scenario_disk(work, debs[0])
        timings.mark("scenario disk (prev + next .deb)")
        serial = work / "serial.log"
        events = boot(qemu_command(kernel, initrd, [(overlay, "qcow2"), (disk, "raw")], serial),
                      serial, RUN_TIMEOUT, timings)  # fmt: skip
        problems = verify(events, disk, work)
        quote_journal(work)
        print("e2e: step timings\n" + timings.table(), flush=True)
        if problems:
            print("e2e: FAILED\n  " + "\n  ".join(problems), file=sys.stderr)
            print(f"e2e: work directory kept: {work}", file=sys.stderr)
            return 1
        if not args.keep:
            shutil.rmtree(work)
        print("e2e: PASSED", flush=True)
        return 0
    except (E2EError, subprocess.CalledProcessError, OSError) as err:
        print(f"e2e: FAILED: {err}", file=sys.stderr)
        print("e2e: step timings\n" + timings.table(), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
