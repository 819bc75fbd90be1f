"""Reproducible installs: requirements.lock, pyproject.toml, the committed generated code and the
installed environment agree, so that no release published upstream can break a fresh clone.

The failure these guard against: the generator (grpcio-tools) stamps GRPC_GENERATED_VERSION and
a protobuf gencode version into wire/v1, and that code refuses older runtimes at import. If
pyproject allowed an older grpcio, or the environment was not installed from the lock, a fresh
install could resolve to a combination that cannot import its own API.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import REPO

LOCK = REPO / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def _lock() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in LOCK.read_text().splitlines():
        m = PIN.match(line)
        if m:
            pins[canonicalize_name(m.group(1))] = Version(m.group(2))
    return pins


def _pyproject() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]


def _generated_versions() -> tuple[Version, Version]:
    """(GRPC_GENERATED_VERSION, protobuf gencode version) as stamped in wire/v1."""
    grpc_text = (REPO / "wire" / "v1" / "ingest_service_pb2_grpc.py").read_text()
    grpc_version = re.search(r"GRPC_GENERATED_VERSION = '([^']+)'", grpc_text)
    pb_text = (REPO / "wire" / "v1" / "crash_pb2.py").read_text()
    pb_version = re.search(r"Protobuf Python Version: (\S+)", pb_text)
    assert grpc_version and pb_version, "generated code lost its version stamps"
    return Version(grpc_version.group(1)), Version(pb_version.group(1))


def test_every_lock_entry_is_pinned_with_hashes() -> None:
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().strip())
    pinned = [e for e in entries if PIN.match(e)]
    assert len(pinned) > 20, "requirements.lock looks empty"
    for entry in pinned:
        assert "--hash=sha256:" in entry, f"lock entry without a hash: {entry.splitlines()[0]}"


def test_every_dependency_is_locked_within_its_range() -> None:
    pins = _lock()
    for req in _pyproject():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in requirements.lock: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {req.name}=={pins[name]} outside pyproject's {req.specifier}: run `make lock`"
        )


def test_pyproject_ranges_admit_only_runtimes_the_generated_code_accepts() -> None:
    grpc_generated, protobuf_gencode = _generated_versions()
    reqs = {canonicalize_name(r.name): r for r in _pyproject()}
    grpcio = reqs["grpcio"].specifier
    assert not grpcio.contains(Version("1.60.0")), "pyproject allows a grpcio the generated code refuses"
    floors = [Version(s.version) for s in grpcio if s.operator == ">="]
    assert floors and min(floors) >= grpc_generated, f"grpcio floor {floors} below GRPC_GENERATED_VERSION {grpc_generated}"
    protobuf = reqs["protobuf"].specifier
    pb_floors = [Version(s.version) for s in protobuf if s.operator == ">="]
    assert pb_floors and min(pb_floors) >= protobuf_gencode, f"protobuf floor below gencode {protobuf_gencode}"
    next_major = Version(f"{protobuf_gencode.major + 1}.0.0")
    assert not protobuf.contains(next_major), "protobuf range admits the next major, which gencode refuses"


def test_the_locked_generator_is_the_one_that_made_wire_v1() -> None:
    grpc_generated, _ = _generated_versions()
    assert _lock()["grpcio-tools"] == grpc_generated, (
        "requirements.lock's grpcio-tools differs from the generator of wire/v1: run `make proto`"
    )


def test_the_environment_is_the_lock() -> None:
    """`make` installs exactly the lock: a venv built any other way fails here, not later."""
    wrong = []
    for name, version in _lock().items():
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            wrong.append(f"{name} missing")
            continue
        if installed != version:
            wrong.append(f"{name} {installed} != {version}")
    assert not wrong, f"environment differs from requirements.lock: {wrong}"
