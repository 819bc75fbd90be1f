"""Collector settings files and the per-host rate limiter."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from collector.config import CollectorConfig, ConfigError, add_arguments, config_from_args, load_config
from collector.limits import TokenBuckets


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "collector.toml"
    path.write_text(text)
    return str(path)


def test_full_config_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    for name in ("c.pem", "k.pem", "ca.pem"):
        (tmp_path / name).write_text("x")
    path = _write(tmp_path, f"""
db = "postgresql://crashfleet@db/crashfleet"
listen = "0.0.0.0:50051"
http = ""
log_level = "warning"
[tls]
cert = "{tmp_path}/c.pem"
key = "{tmp_path}/k.pem"
client_ca = "{tmp_path}/ca.pem"
[auth]
token_file = "{token}"
[limits]
reports_per_second = 5
report_burst = 10
""")
    config = load_config(path)
    assert config.db.startswith("postgresql://") and config.http == "" and config.mtls
    assert config.token == "t0ken" and config.reports_per_second == 5 and config.report_burst == 10


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("db = ", "invalid TOML"),
        ("dbb = 'x'", "unknown setting dbb"),
        ("[tls]\ncrt = 'x'", "unknown setting tls.crt"),
        ("listen = 'nowhere'", "listen must be HOST:PORT"),
        ("listen = 5", "wrong type"),
        ("[limits]\nreport_burst = 0", "positive"),
        ("[tls]\ncert = 'a'", "go together"),
        ("[tls]\nclient_ca = 'a'", "needs tls"),
        ("[auth]\ntoken_file = '/nonexistent/token'", "cannot read token file"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, text: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        load_config(_write(tmp_path, text))


def test_flags_override_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRASHFLEET_TOKEN", "from-env")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    path = _write(tmp_path, "db = 'sqlite:///a.db'\nlisten = '127.0.0.1:1'")
    config = config_from_args(parser.parse_args(["--config", path, "--listen", "[::1]:2", "--http", ""]))
    assert (config.db, config.listen, config.http, config.token) == ("sqlite:///a.db", "[::1]:2", "", "from-env")
    assert config_from_args(parser.parse_args([])) == CollectorConfig(token="from-env")


def test_rate_limiter_refills_and_bounds_memory() -> None:
    now = [0.0]
    limiter = TokenBuckets(rate=1.0, burst=2, max_keys=2, clock=lambda: now[0])
    assert [limiter.allow("a") for _ in range(3)] == [True, True, False]
    now[0] = 1.0
    assert limiter.allow("a") and not limiter.allow("a")
    assert limiter.allow("b") and limiter.allow("c")
    assert len(limiter._buckets) == 2  # "a" evicted, least recently used


def test_transition_days_is_read_and_checked(tmp_path: Path) -> None:
    assert CollectorConfig().transition_days == 90.0
    assert load_config(_write(tmp_path, "[clustering]\ntransition_days = 30\n")).transition_days == 30
    assert load_config(_write(tmp_path, "[clustering]\ntransition_days = 0\n")).transition_days == 0
    with pytest.raises(ConfigError, match="transition_days must be 0 or more"):
        load_config(_write(tmp_path, "[clustering]\ntransition_days = -1\n"))
    with pytest.raises(ConfigError, match="wrong type"):
        load_config(_write(tmp_path, '[clustering]\ntransition_days = "forever"\n'))
