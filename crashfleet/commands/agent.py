"""`crashfleet agent`: the per-host daemon that watches for crashes and ships them (systemd Type=notify)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

HELP = "run the host agent: watch /var/crash, pstore and /dev/kmsg, ship crashes to the collector"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML configuration (e.g. /etc/crashfleet/agent.toml); flags below override it",
    )
    parser.add_argument(
        "--crash-dir", type=Path, default=None, help="kdump/apport directory (default /var/crash)"
    )
    parser.add_argument(
        "--pstore-dir",
        type=Path,
        default=None,
        help="systemd-pstore directory (default /var/lib/systemd/pstore)",
    )
    parser.add_argument(
        "--pstore-fs-dir",
        type=Path,
        default=None,
        help="live pstore filesystem read for records systemd-pstore has not archived (default /sys/fs/pstore)",
    )
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="spool and state (default /var/lib/crashfleet-agent)"
    )
    parser.add_argument("--collector", default=None, metavar="HOST:PORT", help="collector gRPC address")
    parser.add_argument("--hostname", default=None, help="name to report (default: the system hostname)")
    parser.add_argument(
        "--check-config", action="store_true", help="validate the configuration and TLS files, then exit"
    )


def run(args: argparse.Namespace) -> int:
    # The daemon imports neither grpc nor the analyzer (its worker process does): keep it that way.
    from agent.config import ConfigError, check_tls, load_config, parse_address
    from agent.logs import configure_logging
    from agent.service import AgentService
    from agent.spool import SpoolError

    def absolute(path: Path | None) -> Path | None:
        # Reports name the path a crash came from; a relative one means nothing at the collector.
        return None if path is None else path.absolute()

    overrides = {
        "crash_dir": absolute(args.crash_dir),
        "pstore_dir": absolute(args.pstore_dir),
        "pstore_fs_dir": absolute(args.pstore_fs_dir),
        "state_dir": absolute(args.state_dir),
        "collector": args.collector,
        "hostname": args.hostname,
    }
    if args.collector is not None:
        try:
            parse_address(args.collector)
        except ValueError as exc:
            print(f"crashfleet agent: --collector: {exc}", file=sys.stderr)
            return 2
    try:
        config = load_config(args.config, overrides)
        check_tls(config)
    except ConfigError as exc:
        print(f"crashfleet agent: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(f"configuration OK: collector={config.collector or '-'} state_dir={config.state_dir}")
        return 0
    configure_logging(config.log_level)
    service = AgentService(config, config_path=args.config, overrides=overrides)
    try:
        return service.run()
    except (ConfigError, SpoolError, OSError) as exc:
        logging.getLogger("crashfleet.agent").error("start-up failed error=%s", exc)
        return 1
