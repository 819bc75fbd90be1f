"""Host inventory: what the collector needs to turn crash counts into crash rates.

Read from /proc and /sys/class/dmi/id (both parameters, so a test builds a tiny fake tree), sent
with every heartbeat and attached to every crash report. Every reader tolerates a missing or
unreadable file (containers have no DMI; /proc/modules is absent without modules): the field is
simply left empty.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from agent import AGENT_VERSION

__all__ = [
    "HostInventory",
    "collect_inventory",
    "dmi_hardware",
    "heartbeat_interval",
    "parse_meminfo_total",
    "parse_modules",
    "read_boot_id",
]

_MEM_TOTAL = re.compile(r"^MemTotal:\s+(\d{1,18})\s*kB", re.MULTILINE)
_BOOT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True, slots=True)
class HostInventory:
    hostname: str
    kernel_release: str
    machine: str
    hardware: str
    modules: tuple[str, ...]
    cpus: int
    memory_bytes: int
    agent_version: str
    boot_id: str  # "" when unknown
    labels: tuple[tuple[str, str], ...] = ()  # [host] labels of the agent's config
    hardware_errors: tuple[tuple[str, int], ...] = ()  # (kind, count) seen in the kernel log
    # (program, count) of user-space faults in this boot's kernel log, as the daemon counted them
    user_faults: tuple[tuple[str, int], ...] = ()


def _read(path: Path, limit: int = 1 << 20) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return ""


def parse_modules(text: str) -> tuple[str, ...]:
    """/proc/modules -> module names in the kernel's order (newest first, as oopses print them)."""
    names = []
    for line in text.splitlines():
        name = line.split(" ", 1)[0]
        if name:
            names.append(name)
    return tuple(names)


def parse_meminfo_total(text: str) -> int:
    """MemTotal of /proc/meminfo in bytes (0 when absent)."""
    match = _MEM_TOTAL.search(text)
    return int(match.group(1)) * 1024 if match else 0


def dmi_hardware(dmi_dir: Path) -> str:
    """The hardware name as the kernel prints it in an oops: "vendor product/board" (see dmi_setup())."""
    vendor = _read(dmi_dir / "sys_vendor", 256).strip()
    product = _read(dmi_dir / "product_name", 256).strip()
    board = _read(dmi_dir / "board_name", 256).strip()
    name = " ".join(p for p in (vendor, product) if p)
    if board:
        name = f"{name}/{board}" if name else board
    return name


def read_boot_id(path: Path) -> str:
    """This boot's random id; "" when unreadable or not a UUID."""
    value = _read(path, 64).strip()
    return value if _BOOT_ID.match(value) else ""


def collect_inventory(
    hostname: str,
    *,
    dmi_dir: Path = Path("/sys/class/dmi/id"),
    proc_dir: Path = Path("/proc"),
    boot_id_path: Path = Path("/proc/sys/kernel/random/boot_id"),
    labels: tuple[tuple[str, str], ...] = (),
    hardware_errors: tuple[tuple[str, int], ...] = (),
) -> HostInventory:
    """Read the inventory now (cheap: a few small files)."""
    uname = os.uname()
    return HostInventory(
        hostname=hostname,
        kernel_release=_read(proc_dir / "sys/kernel/osrelease", 256).strip() or uname.release,
        machine=uname.machine,
        hardware=dmi_hardware(dmi_dir),
        modules=parse_modules(_read(proc_dir / "modules")),
        cpus=os.cpu_count() or 0,
        memory_bytes=parse_meminfo_total(_read(proc_dir / "meminfo")),
        agent_version=AGENT_VERSION,
        boot_id=read_boot_id(boot_id_path),
        labels=labels,
        hardware_errors=hardware_errors,
    )


def heartbeat_interval(configured: float, suggested: float, minimum: float, maximum: float) -> float:
    """Seconds until the next heartbeat: the collector's suggestion (from its last reply) bounded
    by [minimum, maximum], so a misconfigured collector can neither flood it nor silence a host;
    `configured` when it suggested nothing (0)."""
    if suggested <= 0:
        return configured
    return min(max(suggested, minimum), maximum)
