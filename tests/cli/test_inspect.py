"""`crashfleet inspect`, run for real as a subprocess, on the seed, the vmcore consoles and bad inputs."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import REPO, shared_path

SCHEMA = json.loads((REPO / "docs" / "report.schema.json").read_text())


def inspect(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "crashfleet", "inspect", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )


def inspect_json(*paths: str) -> list[dict[str, Any]]:
    done = inspect("--json", *paths)
    assert done.returncode == 0, done.stderr
    docs = [json.loads(line) for line in done.stdout.splitlines()]
    for doc in docs:
        jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    return docs


def seeds() -> list[Path]:
    folder = shared_path("corpora", "seed")
    return [folder / "buildtest07-console.txt", folder / "buildtest07-console.restored.txt"]


def test_seed_both_versions_json() -> None:
    """The issue's acceptance facts, from the published (wrapped, addresses lost) and restored text."""
    docs = inspect_json(*(str(p) for p in seeds()))
    assert [d["path"] for d in docs] == [str(p) for p in seeds()]
    fingerprints = set()
    for doc in docs:
        assert len(doc["crashes"]) == 1
        crash = doc["crashes"][0]
        rip = crash["rip"]
        assert (rip["function"], rip["offset"], rip["size"]) == ("__netif_receive_skb", 0x60, 0x6E0)
        assert crash["fault_address"] == 0x60
        assert crash["oops_code"]["description"] == "kernel-mode read, not-present page"
        assert (crash["cpu"], crash["pid"], crash["comm"]) == (12, 0, "swapper")
        assert crash["hardware"] == "Supermicro X8DTT-H/X8DTT-H"
        assert len(crash["modules"]) == 26
        assert "e1000e" in crash["modules"]
        code = crash["code"]
        assert code["instruction"] == "cmp qword ptr [r12 + 0x60], rax"
        assert (code["bad_register"], code["bad_register_value"]) == ("r12", "0x0")
        assert code["access"] == "NULL pointer + 0x60 through r12"
        assert crash["registers"]["r12"] == "0x0"
        fingerprints.add(crash["fingerprint"])
    assert len(fingerprints) == 1


def test_seed_human_summary() -> None:
    done = inspect(str(seeds()[1]))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for expected in (
        "BUG: unable to handle kernel NULL pointer dereference in __netif_receive_skb",
        "RIP: __netif_receive_skb+0x60/0x6e0",
        "FAULT: 0x60  (error code 0x0000: kernel-mode read, not-present page)",
        'TASK: CPU 12  PID 0  COMMAND "swapper"',
        "HARDWARE: Supermicro X8DTT-H/X8DTT-H",
        "RELEASE: 2.6.32-220.7.1.el6.x86_64",
        "MODULES: 26: veth bridge stp llc e1000e",
        "INSTRUCTION: cmp qword ptr [r12 + 0x60], rax  (read)",
        "R12: 0x0",
        "VERDICT: NULL pointer + 0x60 through r12",
        "FINGERPRINT: ",
        "process_backlog+0x9a/0x100",
        "? handle_IRQ_event+0x60/0x170",
    ):
        assert expected in out, expected
    assert "*  2b:  49 39 44 24 60" in out  # the listing marks the faulting instruction


@pytest.mark.parametrize("crash", ["null", "bug", "warn", "softlockup"])
def test_vmcore_serial_logs(crash: str) -> None:
    """Real Debian 6.1 crashes: one decoded, fingerprinted crash each, with the kind the test module caused."""
    path = shared_path("vmcores", crash, "serial.log")
    (doc,) = inspect_json(str(path))
    kinds = {"null": "null-deref", "bug": "kernel-bug", "warn": "warning", "softlockup": "soft-lockup"}
    crashes = [c for c in doc["crashes"] if c["kind"] == kinds[crash]]
    assert crashes, [c["kind"] for c in doc["crashes"]]
    first = crashes[0]
    assert first["kernel_release"] == "6.1.0-56-amd64"
    assert first["fingerprint"]
    assert first["code"]["instruction"]
    expected_access = {
        "null": "NULL pointer + 0x60 through rdi",
        "bug": "BUG()/invalid opcode (ud2)",
        "warn": "WARN() trap (ud2): a warning, the kernel carried on",
        "softlockup": "not a fault: an interrupt found the CPU at this instruction",
    }
    assert first["code"]["access"] == expected_access[crash]


def test_error_inputs_reported_others_processed(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    binary = tmp_path / "garbage.bin"
    binary.write_bytes(bytes(range(256)) * 64)
    bad_gzip = tmp_path / "cut.log.gz"
    bad_gzip.write_bytes(gzip.compress(b"BUG: x\n" * 1000)[:40])
    missing = tmp_path / "missing.log"
    nothing_inside = tmp_path / "crash-dir"
    nothing_inside.mkdir()
    good = seeds()[1]
    done = inspect(
        "--json", str(missing), str(empty), str(good), str(binary), str(bad_gzip), str(nothing_inside)
    )
    assert done.returncode == 1
    errors = done.stderr.splitlines()
    assert len(errors) == 5, done.stderr
    for path, reason in (
        (missing, "no such file"),
        (empty, "empty"),
        (binary, "binary"),
        (bad_gzip, "gzip"),
        (nothing_inside, "no crash dump or kernel log"),
    ):
        line = next(e for e in errors if str(path) in e)
        assert reason in line, line
        assert "Traceback" not in line
    docs = [json.loads(line) for line in done.stdout.splitlines()]
    assert [d["path"] for d in docs] == [str(good)]


def test_no_crash_is_not_an_error(tmp_path: Path) -> None:
    quiet = tmp_path / "boot.log"
    quiet.write_text("[    0.000000] Linux version 6.1.0-56-amd64\n[    1.000000] systemd[1]: started\n")
    (doc,) = inspect_json(str(quiet))
    assert doc["crashes"] == []
    human = inspect(str(quiet))
    assert human.returncode == 0
    assert "CRASHES: none found" in human.stdout


def test_gzip_log(tmp_path: Path) -> None:
    packed = tmp_path / "console.log.gz"
    packed.write_bytes(gzip.compress(seeds()[1].read_bytes()))
    (doc,) = inspect_json(str(packed))
    assert doc["format"] == "text+gzip"
    assert doc["crashes"][0]["code"]["access"] == "NULL pointer + 0x60 through r12"


def test_does_not_import_grpc() -> None:
    """inspect runs on the crashed host: the analyzer must not pull in grpc."""
    code = (
        "import sys; from crashfleet.cli import main; "
        f"rc = main(['inspect', '--json', {str(seeds()[1])!r}]); "
        "assert 'grpc' not in sys.modules, 'grpc imported'; sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr


def test_usage_error_without_paths() -> None:
    done = inspect()
    assert done.returncode == 2
    assert "PATH" in done.stderr


def test_sys_header_shows_the_debuginfo_facts_like_crash() -> None:
    """UPTIME, LOAD AVERAGE and TASKS follow DATE as in crash's `sys`; absent when unknown."""
    from analysis.model import SystemFacts
    from analysis.sources import Capture
    from crashfleet.commands.inspect import render

    full = SystemFacts("kdump-zlib", cpus=2, tasks=57, load_average=(0.240234375, 0.05, 0.0), uptime_seconds=90061.7)
    lines = list(render(Capture("vmcore", "vmcore", b"", "kdump-zlib", full), []))
    at = lines.index("        CPUS: 2")
    assert lines[at + 1 : at + 4] == [
        "      UPTIME: 1 day, 01:01:01",
        "LOAD AVERAGE: 0.24, 0.05, 0.00",
        "       TASKS: 57",
    ]
    bare = list(render(Capture("vmcore", "vmcore", b"", "kdump-zlib", SystemFacts("kdump-zlib")), []))
    assert not any(line.split(":")[0].strip() in {"UPTIME", "LOAD AVERAGE", "TASKS"} for line in bare)


@pytest.mark.slow
def test_vmcore_with_debug_vmlinux_fills_the_sys_facts() -> None:
    vmlinux = os.environ.get("CRASHFLEET_DEBUG_VMLINUX")
    if not vmlinux:
        pytest.skip("set CRASHFLEET_DEBUG_VMLINUX to Debian's 6.1.0-56 debug vmlinux to run this")
    path = str(shared_path("vmcores", "null", "vmcore.kdump-zlib"))
    done = inspect("--json", "--debuginfo", vmlinux, path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    system = doc["system"]
    assert system["tasks"] == 57  # what `crashfleet symbols ps` lists for this dump
    assert system["load_average"] == [0.0, 0.0, 0.0]
    assert 4.3 < system["uptime_seconds"] < 4.6  # the panic is at [4.357716] on the console
    human = inspect("--debuginfo", vmlinux, path).stdout
    assert "      UPTIME: 00:00:04\n" in human and "       TASKS: 57\n" in human
    without = inspect("--json", "--no-symbolize", path)
    assert json.loads(without.stdout)["system"]["tasks"] is None


@pytest.mark.parametrize("name", ["journal-short.log", "journal-export.export", "kmsg.txt"])
def test_kernel_lines_only_and_the_skipped_count(name: str) -> None:
    """`journalctl -b -1 > lastboot.log` on a busy host: the daemons' WARNING:/BUG:/panic: lines
    make no record, inspect says how many lines it skipped and counts the user-space faults."""
    path = REPO / "tests" / "data" / "logforms" / name
    (doc,) = inspect_json(str(path))
    assert [c["title"] for c in doc["crashes"]] == [
        "BUG: unable to handle kernel NULL pointer dereference in ixgbe_clean_rx_irq"
    ]
    assert doc["skipped_lines"] > 0 and doc["user_faults"] == {"java": 1, "node": 1, "python3": 1}
    human = inspect(str(path))
    assert f"{doc['skipped_lines']} lines of other programs skipped" in human.stdout
    assert "USER FAULTS: 3: java 1, node 1, python3 1" in human.stdout
