"""The generated code under wire/v1 must be what `make proto` makes from proto/ right now, with the
locked generator (grpcio-tools and mypy-protobuf pinned in requirements.lock)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PROTO_DIR = REPO / "proto"
GENERATED = REPO / "wire" / "v1"
sys.path.insert(0, str(PROTO_DIR))
import generate  # noqa: E402  (proto/generate.py: the one generator `make proto` runs)


def test_generated_code_matches_proto(tmp_path: Path) -> None:
    if not (Path(sys.executable).parent / "protoc-gen-mypy").exists():
        pytest.fail(f"protoc-gen-mypy is not installed beside {sys.executable} (mypy-protobuf test extra)")
    generate.generate(tmp_path)
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "wire" / "v1").iterdir() if p.is_file()}
    committed = {
        p.name: p.read_bytes()
        for p in GENERATED.iterdir()
        if p.is_file() and ("_pb2" in p.name) and p.suffix in (".py", ".pyi")
    }
    assert sorted(fresh) == sorted(committed), "generated file set differs: run `make proto`"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated code {stale}: run `make proto` and commit the result"


def test_generated_code_imports_only_wire_v1() -> None:
    """No generated module may import the old `crashfleet.v1` home (the rewrite in generate.py)."""
    for path in GENERATED.glob("*_pb2*.py*"):
        assert "crashfleet.v1 import" not in path.read_text(), path


def test_proto_files_follow_buf_layout() -> None:
    """buf's PACKAGE_DIRECTORY_MATCH and service/RPC naming rules, checked without buf itself."""
    protos = list((PROTO_DIR / "crashfleet" / "v1").glob("*.proto"))
    assert protos
    for proto in protos:
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
