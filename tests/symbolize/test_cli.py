"""`crashfleet symbols index|lookup` and `crashfleet inspect --debuginfo`, run through the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from crashfleet.cli import main
from tests.conftest import shared_path
from tests.symbolize import oracles

PROG = Path(__file__).resolve().parents[1] / "data" / "symbolize" / "prog"


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    out = tmp_path_factory.mktemp("cli") / "prog"
    subprocess.run(["gcc", "-g", "-O2", "-o", str(out), str(PROG / "main.c"), str(PROG / "walk.c")],
                   check=True, timeout=120)
    return out


def test_lookup_prints_what_addr2line_prints(prog: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = subprocess.run(["nm", str(prog)], capture_output=True, text=True, check=True).stdout
    walk = next(int(line.split()[0], 16) for line in out.splitlines() if line.endswith(" walk"))
    addresses = [walk + i for i in range(0, 24, 3)]
    assert main(["symbols", "--cache", str(tmp_path), "lookup", str(prog), *(f"0x{a:x}" for a in addresses)]) == 0
    printed = capsys.readouterr().out.splitlines()
    expected = oracles.binutils(str(prog), addresses)
    want: list[str] = []
    for a in addresses:
        want.append(f"0x{a:x}")
        for function, file, line in expected[a]:
            want += [function, f"{file}:{line}"]
    assert printed == want


def test_lookup_function_offset_and_unknowns(prog: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache = str(tmp_path)
    assert main(["symbols", "--cache", cache, "lookup", "--return-address", str(prog), "walk+0x9"]) == 0
    first = capsys.readouterr().out.splitlines()
    assert first[0] == "walk+0x9" and len(first) >= 3 and first[-1].rsplit(":", 1)[1].isdigit()
    assert main(["symbols", "--cache", cache, "lookup", str(prog), "no_such+0x1"]) == 1
    assert capsys.readouterr().out.splitlines() == ["no_such+0x1", "??", "??:0"]
    assert main(["symbols", "--cache", cache, "lookup", str(prog), "zzz"]) == 2
    assert main(["symbols", "--cache", cache, "lookup", "--kaslr-offset", "xyz", str(prog), "0x1"]) == 2


def test_index_reports_and_refuses(prog: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert main(["symbols", "--cache", str(tmp_path), "index", "--full", str(prog), str(empty)]) == 1
    captured = capsys.readouterr()
    assert "build-id" in captured.out and "(all)" in captured.out
    assert f"{empty}: not an ELF file" in captured.err


def test_inspect_with_debuginfo_shows_source_and_dis_rl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ko = shared_path("vmcores", "module", "crashme.ko")
    log = shared_path("vmcores", "null", "serial.log")
    common = ["--debuginfo", str(ko), "--symbol-cache", str(tmp_path), "--debuginfod", "http://127.0.0.1:9"]
    assert main(["inspect", *common, str(log)]) == 0
    text = capsys.readouterr().out
    assert "list_empty at /usr/src/linux-headers-6.1.0-56-common/include/linux/list.h:299" in text
    assert "inlined into crashme_napi_pending at /usr/src/crashme-1.0/crashme.c:46" in text
    assert "DIS -RL" in text and "mov rax, qword ptr [rdi + 0x60]  <-- faulting instruction" in text
    assert main(["inspect", "--json", *common, str(log)]) == 0
    doc = json.loads(capsys.readouterr().out.splitlines()[0])
    crash = doc["crashes"][0]
    assert crash["rip"]["source"][0] == {
        "function": "list_empty",
        "file": "/usr/src/linux-headers-6.1.0-56-common/include/linux/list.h",
        "line": 299,
    }
    assert crash["call_trace"][0]["source"] == [
        {"function": "crashme_null", "file": "/usr/src/crashme-1.0/crashme.c", "line": 56}
    ]
    assert main(["inspect", "--json", "--no-symbolize", str(log)]) == 0
    plain = json.loads(capsys.readouterr().out.splitlines()[0])["crashes"][0]
    assert "source" not in plain["rip"]
    assert plain["fingerprint"] == crash["fingerprint"]
