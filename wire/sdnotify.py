"""sd_notify without libsystemd: one datagram per state change to $NOTIFY_SOCKET.

The protocol is a newline-separated `KEY=value` datagram on an AF_UNIX socket; a leading `@`
names a Linux abstract socket (the `@` becomes a NUL byte). With no $NOTIFY_SOCKET (not run by
systemd, or `Type=simple`) every call is a no-op, so the daemon code never checks. It lives in
the light `crashfleet` package (stdlib only) because both daemons use it and the collector must
not depend on the agent.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["Notifier", "watchdog_interval"]

log = logging.getLogger(__name__)


def watchdog_interval(environ: Mapping[str, str] = os.environ) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of $WATCHDOG_USEC, as sd_watchdog_enabled() advises.

    None when the watchdog is off, or when $WATCHDOG_PID names another process (the unit's
    main PID is someone else).
    """
    usec = environ.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = environ.get("WATCHDOG_PID", "")
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000.0


class Notifier:
    """Sends sd_notify messages; never raises (a lost READY is systemd's timeout, not our crash)."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        raw = environ.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None
        if not raw:
            self._address = None
        elif raw.startswith("@"):
            self._address = b"\0" + raw[1:].encode()
        elif raw.startswith("/"):
            self._address = raw
        else:
            log.warning("ignoring NOTIFY_SOCKET that is neither a path nor @abstract value=%s", raw)
            self._address = None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str | int) -> bool:
        """Send KEY=value lines (`send(READY=1, STATUS="...")`); returns whether it was delivered."""
        if self._address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self._address)
        except OSError as exc:
            log.warning("sd_notify failed error=%s", exc.strerror or exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status)

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def reloading(self) -> bool:
        return self.send(RELOADING=1)

    def stopping(self) -> bool:
        return self.send(STOPPING=1)
