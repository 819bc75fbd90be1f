"""The agent's configuration: a TOML file plus command-line overrides, validated strictly.

Lenient on input, strict on configuration: an unknown section or key, a value of the wrong type
or out of range fails at start-up with the file, the `[section] key` and what was expected, so a
typo never silently turns a feature off on ten thousand hosts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from analysis.errors import CrashfleetError
from wire.model import MAX_LABELS, label_problem

__all__ = [
    "SCHEMA",
    "AgentConfig",
    "ConfigError",
    "check_tls",
    "config_from_json",
    "config_to_json",
    "load_config",
    "parse_address",
]


class ConfigError(CrashfleetError):
    """The configuration is unusable; the message names the file, the key and the reason."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Everything the agent reads from its config; paths and intervals are parameters so tests build a world."""

    hostname: str
    state_dir: Path
    log_level: str
    crash_dir: Path
    pstore_dir: Path
    pstore_fs_dir: Path | None
    pstore_fs_unlink: bool
    settle_seconds: float
    signalled_settle_seconds: float
    incomplete_timeout_seconds: float
    collector: str
    ca: Path | None
    cert: Path | None
    key: Path | None
    server_name: str
    token_file: Path | None
    deadline_seconds: float
    spool_max_bytes: int
    spool_max_age_seconds: float
    backoff_initial_seconds: float
    backoff_max_seconds: float
    kmsg_enabled: bool
    kmsg_path: Path
    kmsg_quiet_seconds: float
    heartbeat_interval_seconds: float
    heartbeat_min_interval_seconds: float
    heartbeat_max_interval_seconds: float
    worker_timeout_seconds: float
    symbolize_enabled: bool
    debug_roots: tuple[Path, ...]
    debuginfo: tuple[Path, ...]
    metrics_listen: str
    metrics_textfile_dir: Path | None
    dmi_dir: Path
    proc_dir: Path
    boot_id_path: Path
    labels: tuple[tuple[str, str], ...] = ()
    warm_worker: bool = True
    worker_memory_max_mb: int = 1024


# One row per key: (section, key, field, type, default, minimum). Types: str, path, opt-path, paths
# (a list of path strings), float, int, bool, level, labels (a table of short strings, wire.model bounds). The example file deploy/config/agent.toml documents every row; a test checks both agree.
_Row = tuple[str, str, str, str, Any, float | None]
SCHEMA: tuple[_Row, ...] = (
    ("agent", "hostname", "hostname", "str", "", None),
    ("agent", "state_dir", "state_dir", "path", "/var/lib/crashfleet-agent", None),
    ("agent", "log_level", "log_level", "level", "info", None),
    ("agent", "worker_timeout_seconds", "worker_timeout_seconds", "float", 3600.0, 1.0),
    ("agent", "warm_worker", "warm_worker", "bool", True, None),
    ("agent", "worker_memory_max_mb", "worker_memory_max_mb", "int", 1024, 0),
    ("watch", "crash_dir", "crash_dir", "path", "/var/crash", None),
    ("watch", "pstore_dir", "pstore_dir", "path", "/var/lib/systemd/pstore", None),
    ("watch", "pstore_fs_dir", "pstore_fs_dir", "opt-path", "/sys/fs/pstore", None),
    ("watch", "pstore_fs_unlink", "pstore_fs_unlink", "bool", False, None),
    ("watch", "settle_seconds", "settle_seconds", "float", 5.0, 0.0),
    ("watch", "signalled_settle_seconds", "signalled_settle_seconds", "float", 0.5, 0.0),
    ("watch", "incomplete_timeout_seconds", "incomplete_timeout_seconds", "float", 3600.0, 1.0),
    ("collector", "address", "collector", "str", "", None),
    ("collector", "ca", "ca", "opt-path", "", None),
    ("collector", "cert", "cert", "opt-path", "", None),
    ("collector", "key", "key", "opt-path", "", None),
    ("collector", "server_name", "server_name", "str", "", None),
    ("collector", "token_file", "token_file", "opt-path", "", None),
    ("collector", "deadline_seconds", "deadline_seconds", "float", 10.0, 0.1),
    ("spool", "max_bytes", "spool_max_bytes", "int", 256 * 1024 * 1024, 65536),
    ("spool", "max_age_days", "spool_max_age_seconds", "days", 30.0, 0.001),
    ("spool", "backoff_initial_seconds", "backoff_initial_seconds", "float", 1.0, 0.01),
    ("spool", "backoff_max_seconds", "backoff_max_seconds", "float", 300.0, 0.01),
    ("kmsg", "enabled", "kmsg_enabled", "bool", True, None),
    ("kmsg", "path", "kmsg_path", "path", "/dev/kmsg", None),
    ("kmsg", "quiet_seconds", "kmsg_quiet_seconds", "float", 2.0, 0.05),
    ("heartbeat", "interval_seconds", "heartbeat_interval_seconds", "float", 300.0, 1.0),
    ("heartbeat", "min_interval_seconds", "heartbeat_min_interval_seconds", "float", 60.0, 1.0),
    ("heartbeat", "max_interval_seconds", "heartbeat_max_interval_seconds", "float", 3600.0, 1.0),
    ("symbolize", "enabled", "symbolize_enabled", "bool", True, None),
    ("symbolize", "debug_roots", "debug_roots", "paths", ["/usr/lib/debug"], None),
    ("symbolize", "debuginfo", "debuginfo", "paths", [], None),
    ("metrics", "listen", "metrics_listen", "str", "127.0.0.1:9464", None),
    ("metrics", "textfile_dir", "metrics_textfile_dir", "opt-path", "", None),
    ("host", "dmi_dir", "dmi_dir", "path", "/sys/class/dmi/id", None),
    ("host", "proc_dir", "proc_dir", "path", "/proc", None),
    ("host", "boot_id_path", "boot_id_path", "path", "/proc/sys/kernel/random/boot_id", None),
    ("host", "labels", "labels", "labels", {}, None),
)

LOG_LEVELS = ("debug", "info", "warning", "error")


def parse_address(text: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 as [addr]:port) -> (host, port); ValueError with the reason otherwise."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: port must be a number 0-65535")
    return host, int(port_text)


def _coerce(where: str, kind: str, value: Any, minimum: float | None) -> Any:
    """Check one TOML value against its schema type; raise ConfigError naming `where`."""
    if kind in ("str", "level"):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__}")
        if kind == "level" and value.lower() not in LOG_LEVELS:
            raise ConfigError(f"{where}: expected one of {', '.join(LOG_LEVELS)}, got {value!r}")
        return value.lower() if kind == "level" else value
    if kind in ("path", "opt-path"):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a path string, got {type(value).__name__}")
        if not value:
            if kind == "path":
                raise ConfigError(f"{where}: must not be empty")
            return None
        return Path(value)
    if kind == "paths":
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where}: expected a list of non-empty path strings, got {value!r}")
        return tuple(Path(v) for v in value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind in ("float", "days", "int"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__}")
        if kind == "int" and not isinstance(value, int):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"{where}: must be at least {minimum:g}, got {value!r}")
        if kind == "days":
            return float(value) * 86400.0
        return float(value) if kind == "float" else int(value)
    if kind == "labels":
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table like {{ role = \"ci\" }}, got {type(value).__name__}")
        if len(value) > MAX_LABELS:
            raise ConfigError(f"{where}: {len(value)} labels, at most {MAX_LABELS}")
        for key, text in value.items():
            if not isinstance(text, str):
                raise ConfigError(f"{where}: {key}: expected a string, got {type(text).__name__}")
            problem = label_problem(key, text)
            if problem:
                raise ConfigError(f"{where}: {key!r}: {problem}")
        return tuple(sorted(value.items()))
    raise AssertionError(f"unknown schema type {kind}")


def _defaults() -> dict[str, Any]:
    return {row[2]: _coerce("default", row[3], row[4], None) for row in SCHEMA}


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> AgentConfig:
    """Read `path` (None: defaults only), apply `overrides` (field name -> value, e.g. from flags), validate.

    Overrides are already typed (argparse did it) and win over the file, as the command line should.
    """
    values = _defaults()
    where_file = str(path) if path is not None else "<defaults>"
    if path is not None:
        try:
            with open(path, "rb") as f:
                document = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such file") from None
        except PermissionError:
            raise ConfigError(f"{path}: permission denied") from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: is a directory") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
        rows = {(row[0], row[1]): row for row in SCHEMA}
        sections = {row[0] for row in SCHEMA}
        for section, table in document.items():
            if section not in sections:
                raise ConfigError(
                    f"{path}: unknown section [{section}] (known: {', '.join(sorted(sections))})"
                )
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: {section} must be a [{section}] table")
            for key, value in table.items():
                row = rows.get((section, key))
                if row is None:
                    known = ", ".join(r[1] for r in SCHEMA if r[0] == section)
                    raise ConfigError(f"{path}: [{section}] unknown key {key!r} (known: {known})")
                values[row[2]] = _coerce(f"{path}: [{section}] {key}", row[3], value, row[5])
    for name, value in (overrides or {}).items():
        if name not in values:
            raise ConfigError(f"override {name!r} is not a configuration field")
        if value is not None:
            values[name] = value
    if not values["hostname"]:
        values["hostname"] = socket.gethostname()
    config = AgentConfig(**values)
    _check(config, where_file)
    return config


def _check(config: AgentConfig, where: str) -> None:
    """Cross-field rules: what no single key can say on its own."""
    if config.collector:
        try:
            parse_address(config.collector)
        except ValueError as exc:
            raise ConfigError(f"{where}: [collector] address: {exc}") from None
    tls = {"ca": config.ca, "cert": config.cert, "key": config.key}
    if (config.cert is None) != (config.key is None):
        raise ConfigError(f"{where}: [collector] cert and key must be given together")
    if config.cert is not None and config.ca is None:
        raise ConfigError(f"{where}: [collector] a client cert needs the ca that verifies the collector")
    for name, value in tls.items():
        if value is not None and not value.is_file():
            raise ConfigError(f"{where}: [collector] {name}: {value} is not a readable file")
    if config.token_file is not None and not config.token_file.is_file():
        raise ConfigError(f"{where}: [collector] token_file: {config.token_file} is not a readable file")
    if config.backoff_max_seconds < config.backoff_initial_seconds:
        raise ConfigError(f"{where}: [spool] backoff_max_seconds must be >= backoff_initial_seconds")
    if config.heartbeat_max_interval_seconds < config.heartbeat_min_interval_seconds:
        raise ConfigError(f"{where}: [heartbeat] max_interval_seconds must be >= min_interval_seconds")
    if config.metrics_listen:
        try:
            parse_address(config.metrics_listen)
        except ValueError as exc:
            raise ConfigError(f"{where}: [metrics] listen: {exc}") from None


def replace(config: AgentConfig, **changes: Any) -> AgentConfig:
    """A copy with fields changed (tests and the CLI use it)."""
    return dataclasses.replace(config, **changes)


def config_to_json(config: AgentConfig) -> str:
    """The effective configuration for the worker process (what the daemon runs with, reloads included)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    return json.dumps({f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)})


def config_from_json(text: str) -> AgentConfig:
    """Inverse of config_to_json; types are restored from the dataclass annotations' schema rows."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"worker configuration: not JSON: {exc}") from None
    kinds = {row[2]: row[3] for row in SCHEMA}
    values: dict[str, Any] = {}
    for f in dataclasses.fields(AgentConfig):
        if f.name not in raw:
            raise ConfigError(f"worker configuration: {f.name} missing")
        value = raw[f.name]
        if kinds.get(f.name) in ("path", "opt-path") and value is not None:
            value = Path(value)
        elif kinds.get(f.name) == "paths":
            value = tuple(Path(v) for v in value)
        elif kinds.get(f.name) == "labels":
            value = tuple((str(k), str(v)) for k, v in value)
        values[f.name] = value
    return AgentConfig(**values)


def check_tls(config: AgentConfig) -> None:
    """Load the CA, client certificate and key the way the TLS stack will: a bad one fails at start-up.

    gRPC notices only at the first handshake, and then retries forever as UNAVAILABLE. This uses
    the stdlib ssl module (the daemon never imports grpc; its worker re-checks with wire.tls).
    """
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for name, path, marker in (
        ("ca", config.ca, b"-----BEGIN CERTIFICATE-----"),
        ("cert", config.cert, b"-----BEGIN CERTIFICATE-----"),
        ("key", config.key, b"PRIVATE KEY-----"),
    ):
        if path is None:
            continue
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"[collector] {name}: {path}: cannot read: {exc.strerror or exc}") from None
        if marker not in data:
            raise ConfigError(f"[collector] {name}: {path}: not a PEM file (no '{marker.decode()}' block)")
    if config.ca is not None:
        try:
            context.load_verify_locations(cafile=str(config.ca))
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"[collector] ca: {config.ca}: unusable CA certificate ({exc})") from None
    if config.cert is not None and config.key is not None:
        try:
            context.load_cert_chain(certfile=str(config.cert), keyfile=str(config.key))
        except ssl.SSLError as exc:
            reason = (
                "the key does not match the certificate" if "KEY_VALUES_MISMATCH" in str(exc) else str(exc)
            )
            raise ConfigError(f"[collector] key: {config.key}: {reason}") from None
    if config.token_file is not None:
        try:
            token = config.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"[collector] token_file: {config.token_file}: cannot read: {exc}") from None
        if not token:
            raise ConfigError(f"[collector] token_file: {config.token_file}: token file is empty")
