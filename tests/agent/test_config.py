"""Configuration: defaults, overrides, and every kind of mistake failing fast with a precise message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agent.config import SCHEMA, ConfigError, config_from_json, config_to_json, load_config, parse_address

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "config" / "agent.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_documented_production_paths() -> None:
    config = load_config(None)
    assert config.crash_dir == Path("/var/crash")
    assert config.pstore_dir == Path("/var/lib/systemd/pstore")
    assert config.state_dir == Path("/var/lib/crashfleet-agent")
    assert config.kmsg_enabled is True
    assert config.hostname  # filled from the system when not configured


def test_file_values_and_flag_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[agent]\nhostname = "web-1"\n[watch]\nsettle_seconds = 0.5\n[spool]\nmax_age_days = 2\n'
        '[collector]\naddress = "collector:7443"\n',
    )
    config = load_config(path, {"hostname": "override", "crash_dir": tmp_path, "state_dir": None})
    assert config.hostname == "override"
    assert config.crash_dir == tmp_path
    assert config.state_dir == Path("/var/lib/crashfleet-agent")  # None override leaves the value alone
    assert config.settle_seconds == 0.5
    assert config.spool_max_age_seconds == 2 * 86400
    assert config.collector == "collector:7443"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[agnet]\n", "unknown section [agnet]"),
        ("[watch]\nsettle = 1\n", "[watch] unknown key 'settle'"),
        ('[watch]\nsettle_seconds = "5"\n', "[watch] settle_seconds: expected a number, got str"),
        ("[watch]\nsettle_seconds = -1\n", "[watch] settle_seconds: must be at least 0"),
        ("[kmsg]\nenabled = 1\n", "[kmsg] enabled: expected true or false"),
        ("[spool]\nmax_bytes = 1.5\n", "[spool] max_bytes: expected a whole number"),
        ("[spool]\nmax_bytes = 10\n", "[spool] max_bytes: must be at least 65536"),
        ('[agent]\nlog_level = "loud"\n', "[agent] log_level: expected one of debug, info"),
        ('[agent]\nstate_dir = ""\n', "[agent] state_dir: must not be empty"),
        ('[collector]\naddress = "nohostport"\n', "[collector] address: 'nohostport' is not HOST:PORT"),
        ('[collector]\naddress = "h:99999"\n', "port must be a number 0-65535"),
        ('[collector]\ncert = "/nonexistent/c.pem"\n', "cert and key must be given together"),
        (
            '[collector]\nca = "/nonexistent/ca.pem"\n',
            "[collector] ca: /nonexistent/ca.pem is not a readable file",
        ),
        (
            "[spool]\nbackoff_initial_seconds = 10\nbackoff_max_seconds = 1\n",
            "backoff_max_seconds must be >=",
        ),
        ("watch = 3\n", "watch must be a [watch] table"),
        ("[watch\n", "not valid TOML"),
        ("[watch]\nsettle_seconds = nan\n", "expected a finite number"),
        ("[agent]\nworker_timeout_seconds = 0.5\n", "[agent] worker_timeout_seconds: must be at least 1"),
        (
            "[heartbeat]\nmin_interval_seconds = 600\nmax_interval_seconds = 60\n",
            "[heartbeat] max_interval_seconds must be >= min_interval_seconds",
        ),
        ('[symbolize]\ndebug_roots = "/usr/lib/debug"\n', "[symbolize] debug_roots: expected a list"),
        ('[symbolize]\ndebuginfo = ["/a", ""]\n', "[symbolize] debuginfo: expected a list of non-empty"),
        ("[watch]\npstore_fs_unlink = 1\n", "[watch] pstore_fs_unlink: expected true or false"),
    ],
)
def test_mistakes_fail_fast_naming_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not"):
        load_config(tmp_path / "bin.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_client_cert_needs_a_ca(tmp_path: Path) -> None:
    for name in ("c.pem", "k.pem"):
        (tmp_path / name).write_text("x")
    path = write(tmp_path, f'[collector]\ncert = "{tmp_path}/c.pem"\nkey = "{tmp_path}/k.pem"\n')
    with pytest.raises(ConfigError, match="needs the ca"):
        load_config(path)


def test_parse_address() -> None:
    assert parse_address("collector.example:7443") == ("collector.example", 7443)
    assert parse_address("[::1]:80") == ("::1", 80)
    with pytest.raises(ValueError, match="not HOST:PORT"):
        parse_address(":80")


def test_example_config_documents_every_key_and_loads() -> None:
    """deploy/config/agent.toml is the reference: every schema key appears there, with a comment."""
    text = EXAMPLE.read_text()
    for section, key, *_ in SCHEMA:
        assert f"[{section}]" in text, section
        assert re.search(rf"^#?\s*{re.escape(key)} = ", text, re.MULTILINE), f"[{section}] {key} undocumented"
    config = load_config(EXAMPLE)
    assert config.collector


def test_followup_keys_defaults_and_values(tmp_path: Path) -> None:
    """Worker timeout, live pstore, heartbeat bounds and symbolization are configuration, not constants."""
    defaults = load_config(None)
    assert defaults.worker_timeout_seconds == 3600.0
    assert defaults.pstore_fs_dir == Path("/sys/fs/pstore") and defaults.pstore_fs_unlink is False
    assert (defaults.heartbeat_min_interval_seconds, defaults.heartbeat_max_interval_seconds) == (
        60.0,
        3600.0,
    )
    assert defaults.symbolize_enabled is True
    assert defaults.debug_roots == (Path("/usr/lib/debug"),) and defaults.debuginfo == ()
    path = write(
        tmp_path,
        '[agent]\nworker_timeout_seconds = 120\n[watch]\npstore_fs_dir = ""\n'
        '[symbolize]\nenabled = false\ndebug_roots = ["/srv/debug", "/opt/debug"]\ndebuginfo = ["/srv/vmlinux"]\n',
    )
    config = load_config(path)
    assert config.worker_timeout_seconds == 120.0
    assert config.pstore_fs_dir is None  # empty: the live pstore filesystem is not read
    assert config.symbolize_enabled is False
    assert config.debug_roots == (Path("/srv/debug"), Path("/opt/debug"))
    assert config.debuginfo == (Path("/srv/vmlinux"),)
    assert config_from_json(config_to_json(config)) == config  # what the worker receives
