"""The agent unit's capabilities are the least that work: the real agent, run as an unprivileged
user holding exactly the unit's CapabilityBoundingSet/AmbientCapabilities (via setpriv, with
no_new_privs like NoNewPrivileges=yes), reads a root-only kdump capture; an unprivileged user
without them cannot read the capture or /dev/kmsg. Needs root to switch users (CI runs as root).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.deploy.test_systemd import parse_unit

NOBODY = 65534
AGENT_UNIT = REPO / "deploy" / "systemd" / "crashfleet-agent.service"
FIXTURE = REPO / "tests" / "data" / "deploy" / "demo" / "ext4-kernel-bug.txt"


def _unit_caps() -> list[str]:
    service = parse_unit(AGENT_UNIT.read_text())["Service"]
    bounding = dict(service)["CapabilityBoundingSet"].split()
    assert dict(service)["AmbientCapabilities"].split() == bounding
    return [cap.removeprefix("CAP_").lower() for cap in bounding]


def _setpriv(caps: list[str]) -> list[str]:
    tool = shutil.which("setpriv")
    if tool is None:
        pytest.skip("setpriv (util-linux) is not installed")
    if os.geteuid() != 0:
        pytest.skip("switching to an unprivileged user needs root")
    cmd = [tool, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--no-new-privs"]
    if caps:
        listed = ",".join(f"+{c}" for c in caps)
        cmd += [f"--inh-caps={listed}", f"--ambient-caps={listed}", f"--bounding-set=-all,{listed}"]
    else:
        cmd += ["--bounding-set=-all"]
    return cmd


@pytest.fixture
def root_only_capture() -> Iterator[Path]:
    """/var/crash as kdump-tools leaves it: root-owned, 0700 directories, 0600 files."""
    top = Path(tempfile.mkdtemp(prefix="crashfleet-caps-"))
    try:
        top.chmod(0o755)
        crash = top / "crash"
        capture = crash / "202611250312"
        capture.mkdir(parents=True)
        (capture / "dmesg.202611250312").write_bytes(FIXTURE.read_bytes())
        for path, mode in ((crash, 0o700), (capture, 0o700), (capture / "dmesg.202611250312", 0o600)):
            os.chown(path, 0, 0)
            path.chmod(mode)
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_the_capture_is_unreadable_without_capabilities(root_only_capture: Path) -> None:
    """Control: an unprivileged user without the unit's capabilities cannot read it."""
    path = root_only_capture / "crash" / "202611250312" / "dmesg.202611250312"
    result = subprocess.run([*_setpriv([]), "cat", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "Permission denied" in result.stderr


def test_agent_reads_root_only_capture_with_the_unit_capabilities(root_only_capture: Path) -> None:
    caps = _unit_caps()
    assert "dac_read_search" in caps
    state = root_only_capture / "state"
    pstore = root_only_capture / "pstore"
    for d in (state, pstore):
        d.mkdir()
        os.chown(d, NOBODY, NOBODY)
    config = root_only_capture / "agent.toml"
    config.write_text('[watch]\nsettle_seconds = 0.5\npstore_fs_dir = ""\n[kmsg]\nenabled = false\n[metrics]\nlisten = ""\n')
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(state),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    log_path = root_only_capture / "agent.log"
    extracted = re.compile(r"crash extracted layout=debian .*reports=1")
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [*_setpriv(caps), sys.executable, "-m", "crashfleet", "agent", "--config", str(config),
             "--crash-dir", str(root_only_capture / "crash"), "--pstore-dir", str(pstore),
             "--state-dir", str(state), "--hostname", "caps-test"],
            stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                if extracted.search(log_path.read_text(errors="replace")):
                    break
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = log_path.read_text(errors="replace")
    assert extracted.search(log), log
    assert "failed capture" not in log and "Permission denied" not in log
    assert proc.returncode == 0, log


def test_kmsg_needs_cap_syslog() -> None:
    """/dev/kmsg under kernel.dmesg_restrict=1: refused without CAP_SYSLOG, readable with it."""
    restrict = Path("/proc/sys/kernel/dmesg_restrict")
    if not Path("/dev/kmsg").exists() or not restrict.exists() or restrict.read_text().strip() != "1":
        pytest.skip("needs /dev/kmsg with kernel.dmesg_restrict=1")
    assert "syslog" in _unit_caps()
    probe = (
        "import os; fd = os.open('/dev/kmsg', os.O_RDONLY | os.O_NONBLOCK); print(len(os.read(fd, 8192)) > 0)"
    )
    denied = subprocess.run(
        [*_setpriv([]), sys.executable, "-c", probe], capture_output=True, text=True, timeout=30
    )
    assert denied.returncode != 0 and "PermissionError" in denied.stderr
    allowed = subprocess.run(
        [*_setpriv(["syslog"]), sys.executable, "-c", probe], capture_output=True, text=True, timeout=30
    )
    assert allowed.returncode == 0 and allowed.stdout.strip() == "True", allowed.stderr
