"""`make e2e`'s scripts, checked without QEMU: the guest's shell scripts pass shellcheck, and the
driver reports every check scripts/e2e/run.py requires (a check renamed on one side only would
otherwise fail the next hour-long run, or worse, pass it without running)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import REPO
from tests.deploy.test_debian import _shellcheck

E2E = REPO / "scripts" / "e2e"
GUEST_SCRIPTS = (
    E2E / "guest" / "crashfleet-e2e", E2E / "guest" / "launcher", E2E / "guest" / "capture-driver",
    E2E / "guest" / "kexec-text",
)  # fmt: skip


def _script_module(name: str, filename: str) -> ModuleType:
    """One of scripts/e2e's stdlib scripts, imported under `name`."""
    spec = importlib.util.spec_from_file_location(name, E2E / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _run_module() -> ModuleType:
    return _script_module("e2e_run", "run.py")


@pytest.mark.parametrize("path", GUEST_SCRIPTS, ids=lambda p: p.name)
def test_guest_scripts_pass_shellcheck(path: Path) -> None:
    result = subprocess.run([_shellcheck(), str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_driver_reports_every_required_check() -> None:
    driver = "".join(p.read_text() for p in GUEST_SCRIPTS)
    reported = set(re.findall(r'check\s+"?([a-z0-9_]+)', driver))
    reported |= set(re.findall(r"check name=([a-z0-9_]+)", driver))
    # Checks named per unit: check "not_enabled_on_install_${unit%.service}".
    for prefix in re.findall(r'check\s+"([a-z_]+)_\$\{unit%\.service\}"', driver):
        reported |= {f"{prefix}_crashfleet-agent", f"{prefix}_crashfleet-collector"}
    required = set(_run_module().REQUIRED_CHECKS)
    assert required <= reported, sorted(required - reported)


def test_event_lines_are_parsed_from_the_serial_console() -> None:
    run = _run_module()
    assert run._event("[  12.3] crashfleet-e2e[311]: E2E check name=agent_active ok=1") == "check name=agent_active ok=1"
    assert run._event("[    0.000000] Linux version 6.1.0-50-amd64 (debian-kernel@lists.debian.org)").startswith("kernel: boot")
    assert run._event("[    5.1] random: crng init done") is None
    kv = run.parse_kv('check name=no_second_report ok=1 last_watchdog="Mon 2026-12-07 00:01:02 UTC"')
    assert kv == {"name": "no_second_report", "ok": "1", "last_watchdog": "Mon 2026-12-07 00:01:02 UTC"}


def test_documented_exposure_scores_are_found() -> None:
    scores = _run_module().documented_scores()
    assert set(scores) == {"crashfleet-agent.service", "crashfleet-collector.service"}
    assert all(re.fullmatch(r"\d+\.\d", s) for s in scores.values()), scores


def _key_of(tree: Path, name: str) -> str:
    spec = importlib.util.spec_from_file_location(name, tree / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return str(module.image_key())


def test_image_cache_key_follows_the_recipe_only(tmp_path: Path) -> None:
    """A recipe change must rebuild the cached image; a change elsewhere in run.py must not."""
    tree = tmp_path / "e2e"
    shutil.copytree(E2E, tree, ignore=shutil.ignore_patterns("__pycache__"))
    original = _key_of(tree, "e2e_key_0")
    source = (tree / "run.py").read_text()
    (tree / "run.py").write_text(source.replace("RUN_TIMEOUT = ", "RUN_TIMEOUT = 1 + "))
    assert _key_of(tree, "e2e_key_1") == original
    (tree / "run.py").write_text(source.replace('"passwd", "-d", "root"', '"passwd", "-l", "root"'))
    assert _key_of(tree, "e2e_key_2") != original
    (tree / "run.py").write_text(source)
    (tree / "guest" / "e2e_oops.c").write_text((tree / "guest" / "e2e_oops.c").read_text() + "\n")
    assert _key_of(tree, "e2e_key_3") != original


def _fixtures_module() -> ModuleType:
    return _script_module("e2e_fixtures", "fixtures.py")


def test_fixture_console_is_the_crashed_boot_only() -> None:
    """scripts/e2e/fixtures.py cuts each crash's boot out of the run's console: after the previous
    reset, through the crashed kernel's last line (an oops under kdump prints no "Kernel panic"),
    never the capture kernel's lines that follow with their timestamps started again."""
    serial = b"\r\n".join([
        b"[   77.6] kdump-tools[204]: Starting kdump-tools:",
        b"E2E trigger kind=sysrq-c at=100 next=crash1",
        b"[  380.1] sysrq: Trigger a crash",
        b"[  380.1] Kernel panic - not syncing: sysrq triggered crash",
        b"[  380.1]  </TASK>",
        b"[   49.9] kdump-tools[214]: Starting kdump-tools:",
        b"[   80.2] reboot: Restarting system",
        b"[   69.4] kdump-tools[208]: Starting kdump-tools:",
        b"E2E boot stage=crash1",
        b"E2E trigger kind=module-null at=200 next=crash2",
        b"[  233.9] BUG: kernel NULL pointer dereference, address: 0000000000000060",
        b"[  233.9] Oops: 0000 [#1] PREEMPT SMP NOPTI",
        b"[  233.9] CR2: 0000000000000060",
        b"[   77.6] kdump-tools[218]: Starting kdump-tools:",
    ]) + b"\r\n"  # fmt: skip
    first, second = _fixtures_module().console_segments(serial)
    assert (first.kind, first.at, second.kind, second.at) == ("sysrq-c", 100, "module-null", 200)
    assert first.console.startswith(b"[   77.6] kdump-tools[204]") and first.console.endswith(b"</TASK>\r\n")
    assert second.console.startswith(b"[   69.4] kdump-tools[208]")
    assert second.console.endswith(b"CR2: 0000000000000060\r\n")
    assert b"[218]" not in second.console and b"[214]" not in first.console


def test_fixture_console_ends_at_arm64_kexec_bye() -> None:
    """arm64 says "Bye!" as it jumps into the capture kernel, whose first console line can carry a
    later timestamp than the crashed kernel's last: the segment ends there all the same, and the
    next trigger's starts after the capture kernel's reset."""
    serial = b"\r\n".join([
        b"E2E trigger kind=sysrq-c at=100 next=1",
        b"[   25.2] Kernel panic - not syncing: sysrq triggered crash",
        b"[   25.2] Starting crashdump kernel...",
        b"[   25.2] Bye!",
        b"[   25.4] kdump-tools[210]: Starting kdump-tools:",
        b"[   32.9] reboot: Restarting system",
        b"[   13.5] kdump-tools[202]: loaded kdump kernel.",
        b"E2E trigger kind=module-null at=200 next=2",
        b"[   28.2] Unable to handle kernel NULL pointer dereference at virtual address 0000000000000060",
        b"[   28.2] Internal error: Oops: 0000000096000004 [#1] SMP",
        b"[   28.2] Bye!",
        b"[   26.1] kdump-tools[209]: Starting kdump-tools:",
    ]) + b"\r\n"  # fmt: skip
    first, second = _fixtures_module().console_segments(serial)
    assert first.console.endswith(b"Bye!\r\n") and b"[210]" not in first.console
    assert second.console.startswith(b"[   13.5] kdump-tools[202]") and b"sysrq" not in second.console
    assert second.console.endswith(b"Bye!\r\n")


def _capture_module() -> ModuleType:
    return _script_module("e2e_capture", "capture.py")


def test_capture_lab_titles_take_the_e2e_titles_and_arm64_wording() -> None:
    """The capture lab's title rules accept what make e2e expects on 6.1 and arm64's wording of the
    module's bug, and never one trigger's title for the other's."""
    titles = _capture_module().TITLES
    for kind, title in _run_module().EXPECTED_TITLES:
        assert titles[kind].fullmatch(title), (kind, title)
    arm64 = "Unable to handle kernel NULL pointer dereference in e2e_oops_pending"
    assert titles["module-null"].fullmatch(arm64) and not titles["sysrq-c"].fullmatch(arm64)
    assert not titles["module-null"].fullmatch("kernel panic: sysrq triggered crash")
    assert not titles["sysrq-c"].fullmatch("BUG: soft lockup in sha256_transform_rorx")
    bullseye = "BUG: unable to handle kernel NULL pointer dereference in e2e_oops_write"
    assert titles["module-null"].fullmatch(bullseye)
    assert not titles["module-null"].fullmatch("BUG: unable to handle kernel NULL pointer dereference in proc_reg_write")


def test_capture_driver_knows_every_trigger() -> None:
    driver = (E2E / "guest" / "capture-driver").read_text()
    handled = set(re.findall(r"^\s+([a-z-]+)\) crash_", driver, re.M))
    assert handled == set(_capture_module().TRIGGERS)


def test_capture_fails_when_makedumpfile_does() -> None:
    """kdump-tools reports "saved vmcore" after its makedumpfile failed (an empty dump.<stamp>, no
    dmesg.<stamp>: Debian 12 arm64 without a _text kexec can find); the capture lab must not pass."""
    capture = _capture_module()
    events = ["trigger kind=sysrq-c at=1", "done"]
    assert capture.check_events(events, ["sysrq-c"]) == []
    failed = "kernel: kdump [   32.465147] kdump-tools[282]: makedumpfile Failed."
    (problem,) = capture.check_events([events[0], failed, "done"], ["sysrq-c"])
    assert problem.startswith("capture failed:") and "makedumpfile Failed" in problem


def test_arm64_kexec_gets_text_where_the_image_starts() -> None:
    """scripts/e2e/guest/kexec-text: _stext rounded down to 2 MiB, with a /proc/kallsyms of its own."""
    text = (E2E / "guest" / "kexec-text").read_text()
    assert "0x$stext & ~0x1fffff" in text and "unshare --mount" in text
    out = subprocess.run(["bash", "-c", "stext=ffffc30d6a010000; printf '%016x' $((0x$stext & ~0x1fffff))"],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out == "ffffc30d6a000000"


def test_capture_guests_get_images_of_their_own() -> None:
    """Each guest its own cached image, none make e2e's; arm64 boots its own QEMU on PCI disks."""
    capture, run = _capture_module(), _run_module()
    guests = [guest for guest, _ in capture.GUESTS.values()]
    keys = {run.image_key(guest) for guest in guests} | {run.image_key()}
    assert len(keys) == len(guests) + 1
    assert len({guest.name for guest in guests}) == len(guests)
    assert all("python3.11" not in guest.packages for guest in guests)
    arm64 = capture.GUESTS["bookworm-arm64"][0]
    cmd = run.qemu_command(Path("k"), Path("i"), [(Path("a"), "qcow2"), (Path("b"), "raw")], Path("s"), arm64)
    assert cmd[0] == "qemu-system-aarch64" and "console=ttyAMA0" in " ".join(cmd)
    assert [a for a in cmd if a.startswith("virtio-blk-pci")] == ["virtio-blk-pci,drive=disk0", "virtio-blk-pci,drive=disk1"]
    assert run.qemu_command(Path("k"), Path("i"), [], Path("s"))[0] == "qemu-system-x86_64"


@pytest.mark.skipif(shutil.which("makedumpfile") is None, reason="fixtures.py asks makedumpfile its version")
def test_fixture_runs_are_make_e2e_or_the_capture_lab(tmp_path: Path) -> None:
    """Without capture.json a work directory is make e2e's (debian12 amd64, its exact titles); a
    capture.json fixtures.py cannot read stops it with the file named, not a traceback."""
    fixtures = _fixtures_module()
    run = fixtures.describe_run(tmp_path)
    assert (run.distro, run.arch, run.makedumpfile) == ("debian12", "amd64", ["makedumpfile"])
    assert run.title_ok("sysrq-c", "kernel panic: sysrq triggered crash")
    assert not run.title_ok("sysrq-c", "BUG: unable to handle kernel NULL pointer dereference in e2e_oops_pending")
    (tmp_path / "capture.json").write_text('{"guest": "trixie-amd64"}')
    with pytest.raises(SystemExit, match=r"capture\.json: not the capture lab's description"):
        fixtures.describe_run(tmp_path)
    (tmp_path / "capture.json").write_text(
        '{"guest": "trixie-amd64", "distro": "debian13", "arch": "amd64", "rootfs": "/nonexistent"}'
    )
    run = fixtures.describe_run(tmp_path)
    assert (run.distro, run.arch) == ("debian13", "amd64")
    assert run.title_ok("module-null", "BUG: unable to handle kernel NULL pointer dereference in e2e_oops_write")
