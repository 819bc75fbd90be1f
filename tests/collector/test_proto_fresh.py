"""The generated code under crashfleet/v1 must be what `make proto` makes from proto/ right now."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "proto"
GENERATED = REPO / "crashfleet" / "v1"


def _regenerate(out: Path) -> None:
    bindir = Path(sys.executable).parent
    if not (bindir / "protoc-gen-mypy").exists():
        pytest.fail(f"protoc-gen-mypy is not installed beside {sys.executable} (mypy-protobuf test extra)")
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "crashfleet" / "v1").glob("*.proto"))
    assert protos, "no .proto files under proto/crashfleet/v1"
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", f"--python_out={out}",
         f"--grpc_python_out={out}", f"--mypy_out={out}", f"--mypy_grpc_out={out}", *protos],
        check=True, cwd=PROTO_DIR, env=env, capture_output=True,
    )


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    _regenerate(tmp_path)
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "crashfleet" / "v1").iterdir() if p.is_file()}
    committed = {
        p.name: p.read_bytes()
        for p in GENERATED.iterdir()
        if p.is_file() and ("_pb2" in p.name) and p.suffix in (".py", ".pyi")
    }
    assert sorted(fresh) == sorted(committed), "generated file set differs: run `make proto`"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated code {stale}: run `make proto` and commit the result"


def test_proto_files_follow_buf_layout() -> None:
    """buf's PACKAGE_DIRECTORY_MATCH and service/RPC naming rules, checked without buf itself."""
    for proto in (PROTO_DIR / "crashfleet" / "v1").glob("*.proto"):
        text = proto.read_text()
        assert "package crashfleet.v1;" in text, proto
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["service"]:
                assert words[1].endswith("Service"), line
            if words[:1] == ["rpc"]:
                # buf RPC_REQUEST_STANDARD_NAME / RPC_RESPONSE_STANDARD_NAME (streams included):
                # rpc Foo takes FooRequest and returns FooResponse.
                name = line.split("rpc", 1)[1].split("(", 1)[0].strip()
                request, response = (part.split(")", 1)[0].split()[-1] for part in line.split("(")[1:3])
                assert (request, response) == (f"{name}Request", f"{name}Response"), (
                    f"{proto.name}: rpc {name} must take {name}Request and return {name}Response (buf naming)"
                )
