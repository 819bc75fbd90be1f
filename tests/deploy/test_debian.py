"""The Debian package's metadata, without building it (`make deb` takes minutes: docs/packaging.md).

What a build would only show late or never: a unit or config the package forgets, a doc the units
point at that is not installed (or is compressed), a unit's user that sysusers.d does not create,
a state directory purge leaves behind, maintainer scripts that enable or start on install, a
lintian override without its reason, and test tools in the hosts' Python environment.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import IN_CI, REPO
from tests.deploy.test_systemd import UNIT_EXPECTATIONS, parse_unit

DEBIAN = REPO / "debian"
UNITS = REPO / "deploy" / "systemd"
MAINTAINER_SCRIPTS = ("crashfleet.preinst", "crashfleet.postinst", "crashfleet.postrm")
# Never on a host: the lock's test extras.
TEST_ONLY = ("pytest", "pytest-timeout", "hypothesis", "mypy", "ruff", "grpcio-tools", "mypy-protobuf",
             "jsonschema", "pyyaml", "types-protobuf", "grpc-stubs", "setuptools")  # fmt: skip


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _control() -> list[dict[str, str]]:
    """debian/control's paragraphs as field dicts (continuation lines joined)."""
    paragraphs: list[dict[str, str]] = []
    for block in DEBIAN.joinpath("control").read_text().strip().split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in block.splitlines():
            if line[:1].isspace():
                fields[key] += "\n" + line.strip()
            else:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        paragraphs.append(fields)
    return paragraphs


def _install_lines() -> list[tuple[str, str]]:
    rows = []
    for line in DEBIAN.joinpath("crashfleet.install").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            source, destination = line.split()
            rows.append((source, destination))
    return rows


def test_one_binary_package_with_both_daemons() -> None:
    source, *binaries = _control()
    assert source["Source"] == "crashfleet" and source["Rules-Requires-Root"] == "no"
    assert [b["Package"] for b in binaries] == ["crashfleet"]
    package = binaries[0]
    assert package["Architecture"] == "amd64", "the lock's wheels are x86_64 manylinux"
    depends = package["Depends"]
    assert "python3.11" in depends and "systemd" in depends and "${shlibs:Depends}" in depends
    assert "kdump-tools" in package["Recommends"]


def test_package_installs_every_unit_and_config() -> None:
    rows = _install_lines()
    for source, _ in rows:
        assert (REPO / source).is_file(), f"debian/crashfleet.install: {source} does not exist"
    units = {Path(s).name for s, d in rows if d == "lib/systemd/system/"}
    assert units == set(UNIT_EXPECTATIONS) == {p.name for p in UNITS.glob("*.service")}
    configs = {Path(s).name for s, d in rows if d == "etc/crashfleet/"}
    # Everything under /etc in a debhelper package is a conffile: the operator's edits survive upgrades.
    assert configs == {p.name for p in (REPO / "deploy" / "config").glob("*.toml")}


def test_units_documentation_is_installed_uncompressed() -> None:
    installed = set(DEBIAN.joinpath("crashfleet.docs").read_text().split())
    for name in UNIT_EXPECTATIONS:
        unit = parse_unit((UNITS / name).read_text())["Unit"]
        for ref in (r for key, value in unit if key == "Documentation" for r in value.split()):
            if ref.startswith("file:///usr/share/doc/crashfleet/"):
                doc = "docs/" + ref.rsplit("/", 1)[1]
                assert doc in installed, f"{name} points at {ref}, but debian/crashfleet.docs lacks {doc}"
    for doc in installed:
        assert (REPO / doc).is_file(), f"debian/crashfleet.docs: {doc} does not exist"
    # dh_compress would turn operations.md into operations.md.gz and break the links.
    assert re.search(r"dh_compress -X\.md\b", DEBIAN.joinpath("rules").read_text())


def test_sysusers_creates_the_units_users() -> None:
    entries = [line.split() for line in DEBIAN.joinpath("crashfleet.sysusers").read_text().splitlines()
               if line.strip() and not line.startswith("#")]  # fmt: skip
    created = {fields[1] for fields in entries if fields[0] == "u"}
    wanted = {dict(parse_unit((UNITS / name).read_text())["Service"])["User"] for name in UNIT_EXPECTATIONS}
    assert created == wanted


def test_purge_removes_each_units_state_directory() -> None:
    postrm = DEBIAN.joinpath("crashfleet.postrm").read_text()
    purge = postrm[postrm.index('if [ "$1" = purge ]') :]
    assert re.search(r'for name in ([\w -]+); do', purge)
    names = set(re.search(r"for name in ([\w -]+); do", purge).group(1).split())  # type: ignore[union-attr]
    for unit in UNIT_EXPECTATIONS:
        service = dict(parse_unit((UNITS / unit).read_text())["Service"])
        assert service["StateDirectory"] in names, f"purge leaves /var/lib/private/{service['StateDirectory']}"
    assert '"/var/lib/private/$name" "/var/lib/$name"' in purge and "userdel" in purge


def test_nothing_is_enabled_or_started_on_install() -> None:
    rules = DEBIAN.joinpath("rules").read_text()
    assert "dh_installsystemd --no-enable --no-start" in rules
    for name in MAINTAINER_SCRIPTS:
        text = DEBIAN.joinpath(name).read_text()
        assert text.count("#DEBHELPER#") == 1, f"{name}: needs exactly one #DEBHELPER#"
        assert re.search(r"(?m)^set -e$", text), f"{name}: no set -e"
        assert not re.search(r"systemctl\s+(--\S+\s+)*(enable|start)\b", text), f"{name} enables or starts a unit"
        assert "deb-systemd-helper enable" not in text
    postinst = DEBIAN.joinpath("crashfleet.postinst").read_text()
    # The only start: units preinst stopped for an upgrade, read back from its marker file.
    assert postinst.count("deb-systemd-invoke start") == 1
    assert 'done < "$marker"' in postinst


def _shellcheck() -> str:
    tool = shutil.which("shellcheck")
    if tool is None:
        if IN_CI:
            pytest.fail("shellcheck is missing on the CI machine")
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    return tool


@pytest.mark.parametrize(
    "path",
    [DEBIAN / n for n in MAINTAINER_SCRIPTS],
    ids=lambda p: p.name,
)
def test_shell_scripts_pass_shellcheck(path: Path) -> None:
    result = subprocess.run([_shellcheck(), "--shell=sh", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_catches_an_unquoted_variable(tmp_path: Path) -> None:
    """The test above relies on shellcheck failing on a real defect; prove it does here."""
    script = tmp_path / "bad.postrm"
    script.write_text('#!/bin/sh\nset -e\nrm -rf /var/lib/private/$1\n')
    result = subprocess.run([_shellcheck(), str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "SC2086" in result.stdout


def test_lintian_overrides_each_have_a_reason() -> None:
    lines = DEBIAN.joinpath("crashfleet.lintian-overrides").read_text().splitlines()
    assert any(line.strip() and not line.startswith("#") for line in lines)
    for i, line in enumerate(lines):
        if line.strip() and not line.startswith("#"):
            assert i > 0 and lines[i - 1].startswith("#"), f"override without a reason above it: {line}"


@pytest.fixture(scope="module")
def runtime() -> ModuleType:
    return _load(DEBIAN / "runtime_requirements.py", "runtime_requirements")


def test_hosts_get_the_runtime_part_of_the_lock(runtime: ModuleType) -> None:
    subset = runtime.runtime_subset(REPO / "requirements.lock", REPO / "pyproject.toml")
    names = {entry.name for entry in subset}
    roots = runtime.runtime_roots(REPO / "pyproject.toml")
    assert roots <= names
    assert {"numpy", "psycopg-binary", "typing-extensions"} <= names, "pulled-in packages are kept"
    assert names.isdisjoint(TEST_ONLY), sorted(names & set(TEST_ONLY))
    for entry in subset:
        assert "--hash=sha256:" in entry.block, entry.name


def test_lock_without_hash_or_pin_is_refused(runtime: ModuleType, tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\ndependencies = ["watchdog>=4"]\n')
    lock = tmp_path / "requirements.lock"
    lock.write_text("watchdog==7.1.1\n    # via x\n")
    with pytest.raises(runtime.LockError, match=r"requirements\.lock: watchdog has no hash"):
        runtime.runtime_subset(lock, pyproject)
    lock.write_text("scipy==1.0 \\\n    --hash=sha256:00\n    # via x\n")
    with pytest.raises(runtime.LockError, match="runtime dependencies missing from the lock: watchdog"):
        runtime.runtime_subset(lock, pyproject)
