"""The operator docs against the code: every configuration key in the reference tables, every
relative link resolving, and the TLS recipe's openssl commands producing certificates that verify
and that the collector's own TLS loader accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

DOCS = REPO / "docs"
OPERATIONS = DOCS / "operations.md"
OWN_DOCS = ("operations.md", "runbook.md", "architecture.md")


def _section(text: str, heading: str) -> str:
    """The text under a Markdown heading, up to the next heading of the same or a higher level
    (lines inside ``` fences are never headings: shell comments start with `#` too)."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = text.splitlines(keepends=True)
    start = lines.index(heading + "\n") + 1
    fenced = False
    for end in range(start, len(lines)):
        if lines[end].startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(rf"#{{1,{level}}} ", lines[end]):
            return "".join(lines[start:end])
    return "".join(lines[start:])


def _table_keys(section: str) -> set[tuple[str, str]]:
    """(section, key) pairs of a reference table: `[section]` cells carry over to following rows."""
    keys: set[tuple[str, str]] = set()
    current = ""
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or (cells[0] and set(cells[0]) <= {"-"}):
            continue
        if cells[0].startswith("`["):
            current = cells[0].strip("`[]")
        elif cells[0] == "(top)":
            current = ""
        for key in re.findall(r"`(\w+)`", cells[1]):
            keys.add((current, key))
    return keys


def test_agent_reference_lists_every_key() -> None:
    config = pytest.importorskip("agent.config", reason="agent/config.py is not in this checkout")
    documented = _table_keys(_section(OPERATIONS.read_text(), "### Agent: `/etc/crashfleet/agent.toml`"))
    known = {(row[0], row[1]) for row in config.SCHEMA}
    assert known - documented == set(), (
        f"agent keys missing from docs/operations.md: {sorted(known - documented)}"
    )
    assert documented - known == set(), (
        f"docs/operations.md lists unknown agent keys: {sorted(documented - known)}"
    )


def test_collector_reference_lists_every_key() -> None:
    config = pytest.importorskip("collector.config", reason="collector/config.py is not in this checkout")
    documented = _table_keys(
        _section(OPERATIONS.read_text(), "### Collector: `/etc/crashfleet/collector.toml`")
    )
    known = {(section, key) for section, keys in config._SECTIONS.items() for key in keys}
    assert known - documented == set(), f"collector keys missing: {sorted(known - documented)}"
    assert documented - known == set(), f"unknown collector keys documented: {sorted(documented - known)}"


@pytest.mark.parametrize("name", OWN_DOCS)
def test_relative_links_resolve(name: str) -> None:
    text = (DOCS / name).read_text()
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    assert links or name == "runbook.md"
    for link in links:
        assert (DOCS / link).resolve().exists(), f"{name}: broken link {link}"


def test_tls_recipe_works(tmp_path: Path) -> None:
    """Run the guide's openssl commands as written; the certificates must verify, and the
    collector's TLS loader must accept the server pair and the CA."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    section = _section(OPERATIONS.read_text(), "## TLS and mTLS")
    (script,) = [
        block for block in re.findall(r"```sh\n(.*?)```", section, re.S) if "openssl req -x509" in block
    ]
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "collector.pem: OK" in result.stdout and "web01.example.net.pem: OK" in result.stdout
    tls = pytest.importorskip("wire.tls", reason="wire/tls.py is not in this checkout")
    tls.server_credentials(
        str(tmp_path / "collector.pem"), str(tmp_path / "collector.key"), str(tmp_path / "ca.pem")
    )
