"""The crashfleet agent: watches what kdump, pstore and the live kernel log leave, and ships it.

Two processes: `service` is the small daemon systemd runs (watch, kmsg, jobs, sd_notify,
metrics); `worker` is the short-lived process it starts when there is work (analysis, gRPC).
Modules, one concern each: `config` (strict TOML), `layouts` (the distro dump layouts as data),
`watch` (inotify + start-up scan), `extract` (analysis + host facts), `spool` (the durable
outbox, jobs, counts), `ship` (gRPC), `kmsg`, `heartbeat`, `metrics`, `logs` (journald-friendly
logging). sd_notify lives in `wire.sdnotify`, shared with the collector.
"""

from __future__ import annotations

__all__ = ["AGENT_VERSION"]

AGENT_VERSION = "0.1.0"
