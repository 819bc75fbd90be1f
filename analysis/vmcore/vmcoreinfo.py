"""VMCOREINFO: the kernel's own description of itself, written into every dump (no debuginfo needed).

The kernel emits `KEY=VALUE` lines (kernel/crash_core.c): `SYMBOL(name)=hex`,
`OFFSET(struct.member)=dec`, `SIZE(struct)=dec`, `LENGTH(name)=dec`, `NUMBER(name)=dec` (signed;
a few arches print hex with 0x), plus `OSRELEASE`, `BUILD-ID`, `PAGESIZE`, `KERNELOFFSET` (hex)
and `CRASHTIME` (the kdump kernel adds it; QEMU dumps have none).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["MAX_VMCOREINFO_BYTES", "VmcoreInfo", "parse_vmcoreinfo"]

MAX_VMCOREINFO_BYTES = 1024 * 1024  # the kernel reserves one page; anything far larger is not VMCOREINFO

_HEX_ID = re.compile(r"\A[0-9A-Fa-f]+\Z")
_KEYED = re.compile(r"^(SYMBOL|OFFSET|SIZE|LENGTH|NUMBER)\(([^()]+)\)$")


def _empty_ints() -> Mapping[str, int]:
    return MappingProxyType({})


def _empty_strs() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class VmcoreInfo:
    """Parsed VMCOREINFO; lookups return None when the kernel did not export the key."""

    osrelease: str | None = None
    build_id: str | None = None
    page_size: int | None = None
    kernel_offset: int | None = None
    crash_time: int | None = None
    symbols: Mapping[str, int] = field(default_factory=_empty_ints)
    offsets: Mapping[str, int] = field(default_factory=_empty_ints)
    sizes: Mapping[str, int] = field(default_factory=_empty_ints)
    lengths: Mapping[str, int] = field(default_factory=_empty_ints)
    numbers: Mapping[str, int] = field(default_factory=_empty_ints)
    raw: Mapping[str, str] = field(default_factory=_empty_strs)

    def symbol(self, name: str) -> int | None:
        return self.symbols.get(name)

    def offset(self, name: str) -> int | None:
        return self.offsets.get(name)

    def size(self, name: str) -> int | None:
        return self.sizes.get(name)

    def length(self, name: str) -> int | None:
        return self.lengths.get(name)

    def number(self, name: str) -> int | None:
        return self.numbers.get(name)


def _int(text: str, base: int) -> int | None:
    text = text.strip()
    try:
        if text.lower().startswith(("0x", "-0x")):
            return int(text, 16)
        return int(text, base)
    except ValueError:
        return None


def parse_vmcoreinfo(data: bytes) -> VmcoreInfo:
    """Parse VMCOREINFO text; unparsable lines are kept in `raw` only (the kernel never writes them)."""
    text = data[:MAX_VMCOREINFO_BYTES].split(b"\x00", 1)[0].decode("ascii", "replace")
    tables: dict[str, dict[str, int]] = {k: {} for k in ("SYMBOL", "OFFSET", "SIZE", "LENGTH", "NUMBER")}
    raw: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep or not key:
            continue
        raw[key] = value
        m = _KEYED.match(key)
        if m is None:
            continue
        kind, name = m.groups()
        number = _int(value, 16 if kind == "SYMBOL" else 10)
        if number is not None:
            tables[kind][name] = number
    build_id = raw.get("BUILD-ID")
    return VmcoreInfo(
        osrelease=raw.get("OSRELEASE") or None,
        build_id=build_id.strip().lower()
        if build_id and _HEX_ID.fullmatch(build_id.strip())
        else None,
        page_size=_int(raw["PAGESIZE"], 10) if "PAGESIZE" in raw else None,
        kernel_offset=_int(raw["KERNELOFFSET"], 16) if "KERNELOFFSET" in raw else None,
        crash_time=_int(raw["CRASHTIME"], 10) if "CRASHTIME" in raw else None,
        symbols=MappingProxyType(tables["SYMBOL"]),
        offsets=MappingProxyType(tables["OFFSET"]),
        sizes=MappingProxyType(tables["SIZE"]),
        lengths=MappingProxyType(tables["LENGTH"]),
        numbers=MappingProxyType(tables["NUMBER"]),
        raw=MappingProxyType(raw),
    )
