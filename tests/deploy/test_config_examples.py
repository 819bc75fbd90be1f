"""deploy/config/collector.toml: loads with the collector's own parser, and documents every
setting the parser knows (active, or commented out where it needs files that only exist on a
real host: certificates, the token)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO

EXAMPLE = REPO / "deploy" / "config" / "collector.toml"
# Keys left commented out in the example, because their value is a file the test machine lacks.
# [symbols] dir is optional and needs a directory the test machine lacks too.
COMMENTED_OUT = frozenset(
    {("tls", "cert"), ("tls", "key"), ("tls", "client_ca"), ("auth", "token_file"), ("symbols", "dir")}
)


def _documented_keys(text: str) -> set[tuple[str, str]]:
    """(section, key) of every `key = ...` line, active or commented out; '' is the top level."""
    keys: set[tuple[str, str]] = set()
    section = ""
    for line in text.splitlines():
        header = re.fullmatch(r"\[(\w+)\]\s*", line)
        if header:
            section = header[1]
            continue
        match = re.match(r"^#?\s?(\w+) = ", line)
        if match:
            keys.add((section, match[1]))
    return keys


def test_example_loads() -> None:
    config = pytest.importorskip("collector.config", reason="collector/config.py is not in this checkout")
    loaded = config.load_config(str(EXAMPLE))
    assert loaded.db.startswith("sqlite:////var/lib/crashfleet-collector/"), (
        "the store must be in StateDirectory="
    )
    assert not loaded.tls and loaded.token is None


def test_example_documents_every_setting() -> None:
    config = pytest.importorskip("collector.config", reason="collector/config.py is not in this checkout")
    known = {(section, key) for section, keys in config._SECTIONS.items() for key in keys}
    documented = _documented_keys(EXAMPLE.read_text())
    assert known - documented == set(), f"undocumented settings: {sorted(known - documented)}"
    assert documented - known == set(), f"settings the collector does not know: {sorted(documented - known)}"


def test_commented_settings_are_exactly_the_file_ones() -> None:
    text = EXAMPLE.read_text()
    commented = {
        (section, key)
        for section, key in _documented_keys(text)
        if re.search(rf"^# {key} = ", text, re.MULTILINE)
    }
    assert commented == COMMENTED_OUT


def test_example_fails_loudly_on_a_typo(tmp_path: Path) -> None:
    """The example's strictness claim ("an unknown key stops the start-up") holds."""
    config = pytest.importorskip("collector.config", reason="collector/config.py is not in this checkout")
    broken = tmp_path / "collector.toml"
    broken.write_text(EXAMPLE.read_text().replace("log_level =", "loglevel ="))
    with pytest.raises(config.ConfigError, match="loglevel"):
        config.load_config(str(broken))
