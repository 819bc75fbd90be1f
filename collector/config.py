"""Collector settings: a TOML file (tomllib) with command-line flags on top.

    # collector.toml
    db = "sqlite:////var/lib/crashfleet-collector/collector.db"  # 4 slashes: absolute path
    # db = "postgresql://crashfleet@db/crashfleet"                # several collector replicas
    listen = "0.0.0.0:50051"                           # gRPC: IngestService + QueryService
    http = "0.0.0.0:8080"                              # JSON API, web page, /metrics ("" = off)
    log_level = "info"
    [tls]
    cert = "/etc/crashfleet/collector.pem"
    key = "/etc/crashfleet/collector.key"
    client_ca = "/etc/crashfleet/fleet-ca.pem"         # set: mTLS, reporting host = cert identity
    [auth]
    token_file = "/etc/crashfleet/query.token"         # bearer token for the query API and web page
    [limits]
    reports_per_second = 2.0                           # per host (claimed name, or mTLS identity)
    report_burst = 60
    peer_reports_per_second = 20.0                     # per connection source address (NAT: shared)
    peer_report_burst = 600
    [clustering]
    transition_days = 90.0                             # rule change: old fingerprints still match this long
    [http_limits]                                      # the HTTP port's deadlines and bounds
    header_timeout = 10.0                              # seconds to send a complete request head
    max_connections_per_client = 64

Secrets are read from files (or the CRASHFLEET_TOKEN environment variable), never taken as
flags, so they do not show up in `ps`.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass, fields, replace
from typing import Any

from analysis.errors import CrashfleetInputError

__all__ = ["CollectorConfig", "ConfigError", "add_arguments", "config_from_args", "load_config", "parse_address"]

TOKEN_ENV = "CRASHFLEET_TOKEN"


class ConfigError(CrashfleetInputError):
    """A config file or flag that cannot be used; `path` names the file (or the flag)."""


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    db: str = "sqlite:///crashfleet.db"
    listen: str = "127.0.0.1:50051"
    http: str = "127.0.0.1:8080"  # "" disables the HTTP port
    log_level: str = "info"
    tls_cert: str | None = None
    tls_key: str | None = None
    client_ca: str | None = None  # mTLS: clients need a certificate from this CA
    token: str | None = None  # bearer token guarding the query API and the web page
    reports_per_second: float = 2.0  # per host; a kdump backlog of a few dozen fits in the burst
    report_burst: int = 60
    # Per peer address: without mTLS a host name is only a claim, so rotating names must not
    # bypass the limit (collector.limits). Hosts behind one NAT share it: larger than per host.
    peer_reports_per_second: float = 20.0
    peer_report_burst: int = 600
    grace_seconds: float = 10.0  # SIGTERM: in-flight RPCs get this long to finish
    symbols_dir: str | None = None  # per-build-id symbol indexes: crashes of those builds get source lines
    # How long after this database first met a fingerprint rule edition a new crash still joins the
    # cluster of its fingerprint under the previous edition (docs/collector.md "Rule transitions");
    # 0 ends the transition now.
    transition_days: float = 90.0
    # The HTTP port's limits (collector.http.HttpLimits says why each exists).
    http_header_timeout: float = 10.0
    http_body_timeout: float = 10.0
    http_request_timeout: float = 30.0
    http_max_connections: int = 1024
    http_max_connections_per_client: int = 64
    http_max_body_bytes: int = 65536

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def mtls(self) -> bool:
        return self.client_ca is not None

    def validate(self, origin: str) -> CollectorConfig:
        parse_address(self.listen, origin, "listen")
        if self.http:
            parse_address(self.http, origin, "http")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError(origin, "tls cert and key go together")
        if self.client_ca is not None and self.tls_cert is None:
            raise ConfigError(origin, "client_ca (mTLS) needs tls cert and key")
        if (
            self.reports_per_second <= 0
            or self.report_burst < 1
            or self.peer_reports_per_second <= 0
            or self.peer_report_burst < 1
        ):
            raise ConfigError(origin, "limits must be positive")
        if not self.transition_days >= 0:
            raise ConfigError(origin, "clustering.transition_days must be 0 or more")
        for name in ("http_header_timeout", "http_body_timeout", "http_request_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(origin, f"http_limits.{name.removeprefix('http_')} must be positive")
        for name in ("http_max_connections", "http_max_connections_per_client", "http_max_body_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(origin, f"http_limits.{name.removeprefix('http_')} must be at least 1")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(origin, f"unknown log_level {self.log_level!r}")
        return self


def parse_address(value: str, origin: str, name: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` -> (host, port); port 0 asks the OS for a free one."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(origin, f"{name} must be HOST:PORT, not {value!r}")
    return host.strip("[]"), int(port_text)


def _read_secret(path: str, origin: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        raise ConfigError(path, f"cannot read token file: {exc.strerror or exc}") from None
    if not token:
        raise ConfigError(path, "token file is empty")
    return token


_SECTIONS: dict[str, dict[str, str]] = {
    "": {"db": "db", "listen": "listen", "http": "http", "log_level": "log_level",
         "grace_seconds": "grace_seconds"},
    "tls": {"cert": "tls_cert", "key": "tls_key", "client_ca": "client_ca"},
    "auth": {"token_file": "token_file"},
    "limits": {"reports_per_second": "reports_per_second", "report_burst": "report_burst",
               "peer_reports_per_second": "peer_reports_per_second", "peer_report_burst": "peer_report_burst"},
    "symbols": {"dir": "symbols_dir"},
    "clustering": {"transition_days": "transition_days"},
    "http_limits": {"header_timeout": "http_header_timeout", "body_timeout": "http_body_timeout",
                    "request_timeout": "http_request_timeout", "max_connections": "http_max_connections",
                    "max_connections_per_client": "http_max_connections_per_client",
                    "max_body_bytes": "http_max_body_bytes"},
}  # fmt: skip


def load_config(path: str) -> CollectorConfig:
    """Read a TOML config; unknown keys and wrong types are errors naming the file and key."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(path, exc.strerror or str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"invalid TOML: {exc}") from None
    values: dict[str, Any] = {}
    types = {f.name: f.type for f in fields(CollectorConfig)}
    for section, keys in _SECTIONS.items():
        table = data if not section else data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(path, f"[{section}] must be a table")
        for key, value in table.items():
            if not section and key in _SECTIONS and isinstance(value, dict):
                continue
            if key not in keys:
                raise ConfigError(path, f"unknown setting {'.'.join(filter(None, (section, key)))}")
            values[keys[key]] = value
    token_file = values.pop("token_file", None)
    for name, value in values.items():
        expected = str(types[name])
        ok = (
            (isinstance(value, str) and "str" in expected)
            or (isinstance(value, int | float) and not isinstance(value, bool) and "float" in expected)
            or (isinstance(value, int) and not isinstance(value, bool) and expected == "int")
        )
        if not ok:
            raise ConfigError(path, f"{name} has the wrong type ({type(value).__name__})")
    config = CollectorConfig(**values)
    if token_file is not None:
        if not isinstance(token_file, str):
            raise ConfigError(path, "auth.token_file must be a path")
        config = replace(config, token=_read_secret(token_file, path))
    return config.validate(path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML settings file (flags override it)")
    parser.add_argument("--db", help="sqlite:///RELATIVE, sqlite:////ABSOLUTE or postgresql://USER@HOST/DB (default sqlite:///crashfleet.db)")
    parser.add_argument("--listen", metavar="HOST:PORT", help="gRPC address (default 127.0.0.1:50051)")
    parser.add_argument("--http", metavar="HOST:PORT", help="HTTP address for the web page, API and /metrics; '' = off")
    parser.add_argument("--tls-cert", metavar="PEM", help="server certificate (enables TLS)")
    parser.add_argument("--tls-key", metavar="PEM", help="server private key")
    parser.add_argument("--client-ca", metavar="PEM", help="CA of agent certificates (enables mTLS)")
    parser.add_argument("--token-file", metavar="FILE", help=f"bearer token for queries (or ${TOKEN_ENV})")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    parser.add_argument(
        "--symbols-dir", metavar="DIR",
        help="symbol indexes by build-id (`crashfleet symbols index --full --cache DIR vmlinux`); "
        "crashes of those kernels are stored with source lines",
    )


def config_from_args(args: argparse.Namespace) -> CollectorConfig:
    config = load_config(args.config) if args.config else CollectorConfig()
    overrides: dict[str, Any] = {}
    for name in ("db", "listen", "http", "tls_cert", "tls_key", "client_ca", "log_level", "symbols_dir"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if args.token_file:
        overrides["token"] = _read_secret(args.token_file, "--token-file")
    elif config.token is None and os.environ.get(TOKEN_ENV):
        overrides["token"] = os.environ[TOKEN_ENV]
    return replace(config, **overrides).validate(args.config or "command line")
