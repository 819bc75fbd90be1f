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


# Names the prose uses: config keys, the database file, files of the repository ----------------

PROSE = (*(DOCS / name for name in (*OWN_DOCS, "collector.md", "http-api.md", "agent.md")), REPO / "README.md")
_SECTION_KEY = re.compile(r"`\[(\w+)\] (\w+)`")  # "`[auth] token_file`"
_KEY_IN_FILE = re.compile(r"`(\w+)` in (collector|agent)\.toml")  # "`token` in collector.toml"
_STATE_DB = re.compile(r"/var/lib/crashfleet-collector/([\w.-]+\.db)\b")
_REPO_PATH = re.compile(r"(?<![\w/.-])((?:deploy|docs|bench|scripts)/[\w/.-]*[\w])")


def _config_keys() -> dict[str, set[tuple[str, str]]]:
    """(section, key) pairs each shipped config accepts, read from the loaders themselves."""
    collector = pytest.importorskip("collector.config", reason="collector/config.py is not in this checkout")
    agent = pytest.importorskip("agent.config", reason="agent/config.py is not in this checkout")
    return {
        "collector": {(section, key) for section, keys in collector._SECTIONS.items() for key in keys},
        "agent": {(row[0], row[1]) for row in agent.SCHEMA},
    }


@pytest.mark.parametrize("path", PROSE, ids=lambda p: p.name)
def test_config_keys_named_in_prose_exist(path: Path) -> None:
    """A key the docs name (`[auth] token_file`, "`max_age_days` in agent.toml") is one the
    loaders accept: the guide once said `token` where the key is `[auth] token_file`."""
    keys = _config_keys()
    every = keys["collector"] | keys["agent"]
    text = path.read_text()
    for section, key in _SECTION_KEY.findall(text):
        if (section, key) != ("section", "key"):  # the reference tables' own legend
            assert (section, key) in every, f"{path.name}: `[{section}] {key}` is no config key"
    for key, which in _KEY_IN_FILE.findall(text):
        assert key in {k for _, k in keys[which]}, f"{path.name}: `{key}` is no key of {which}.toml"


def test_database_file_named_in_docs_is_the_shipped_one() -> None:
    """Backup and restore commands name the file the shipped config stores in (it once said
    crashfleet.db while the config writes collector.db)."""
    import tomllib

    shipped = tomllib.loads((REPO / "deploy" / "config" / "collector.toml").read_text())["db"]
    assert shipped.startswith("sqlite:////var/lib/crashfleet-collector/"), shipped
    db_file = shipped.rsplit("/", 1)[1]
    named = {(p.name, f) for p in PROSE for f in _STATE_DB.findall(p.read_text())}
    assert named, "the docs name no database file in the state directory"
    assert {f for _, f in named} == {db_file}, f"the shipped config stores in {db_file}: {sorted(named)}"


@pytest.mark.parametrize("path", PROSE, ids=lambda p: p.name)
def test_repository_paths_in_prose_exist(path: Path) -> None:
    for ref in _REPO_PATH.findall(path.read_text()):
        if re.search(r"\b[A-Z]{3,}\b", ref):  # a placeholder: bench/NAME.py
            continue
        assert (REPO / ref).exists(), f"{path.name} names {ref}, which is not in the repository"
