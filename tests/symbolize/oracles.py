"""Run binutils `addr2line -f -i` and elfutils `eu-addr2line -f -i` over many addresses at once and
parse their answers into (function, file, line) chains, innermost first."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence

import pytest

Chain = list[tuple[str, str, int]]

_DISCRIMINATOR = re.compile(r" \(discriminator \d+\)$")
_ADDRESS = re.compile(r"0x[0-9a-f]+")
_FILE_LINE_COLUMN = re.compile(r"^(.*?):(\d+)(?::\d+)?$")


def _file_line(text: str) -> tuple[str, int]:
    text = _DISCRIMINATOR.sub("", text.strip())
    path, _, line = text.rpartition(":")
    if not path:
        return text, 0
    try:
        return path, int(line)
    except ValueError:  # "??:?"
        return path, 0


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian: binutils / elfutils)")
    return path


def binutils(elf: str, addresses: Sequence[int], section: str | None = None) -> dict[int, Chain]:
    """`addr2line -f -i -a` (optionally `-j SECTION` with section offsets): address -> chain."""
    cmd = [need("addr2line"), "-f", "-i", "-a", "-e", elf]
    if section is not None:
        cmd += ["-j", section]
    out = subprocess.run(
        cmd, input="\n".join(f"0x{a:x}" for a in addresses) + "\n",
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.splitlines()
    result: dict[int, Chain] = {}
    current: Chain = []
    i = 0
    while i < len(out):
        line = out[i]
        if _ADDRESS.fullmatch(line):
            current = result.setdefault(int(line, 16), [])
            i += 1
            continue
        function = line
        path, lineno = _file_line(out[i + 1])
        if not (function == "??" and path == "??"):
            current.append((function, path, lineno))
        i += 2
    return result


def elfutils(elf: str, addresses: Sequence[int]) -> dict[int, list[tuple[str, int]]]:
    """`eu-addr2line -i -a` file:line chains (its function names follow other rules, so not kept)."""
    cmd = [need("eu-addr2line"), "-i", "-a", "-e", elf]
    out = subprocess.run(
        cmd, input="\n".join(f"0x{a:x}" for a in addresses) + "\n",
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.splitlines()
    result: dict[int, list[tuple[str, int]]] = {}
    current: list[tuple[str, int]] = []
    for line in out:
        if _ADDRESS.fullmatch(line):
            current = result.setdefault(int(line, 16), [])
            continue
        match = _FILE_LINE_COLUMN.match(line)
        if match and match.group(1) != "??":
            current.append((match.group(1), int(match.group(2))))
    return result
