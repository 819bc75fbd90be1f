#!/usr/bin/env python3
"""The runtime part of requirements.lock, hashes kept, for the Debian package's /opt/crashfleet.

requirements.lock holds the runtime and the test extras in one file (`make lock` compiles both so
that every install agrees). Hosts get only what `crashfleet` imports: the packages named in
pyproject's [project] dependencies and everything the lock says they pull in (its `# via`
annotations), never pytest, mypy or ruff. A lock entry that neither side reaches is an error, so
a hand-edited lock cannot silently drop a runtime package.

Usage: runtime_requirements.py REQUIREMENTS_LOCK PYPROJECT_TOML > runtime.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

# A distribution name as PEP 508 starts one; normalized as PEP 503 does (case, runs of -_.).
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
# The project itself, as uv names it in `# via` lines.
_SELF = "crashfleet"


def normalize(name: str) -> str:
    """PEP 503: the lock says `prometheus-client`, pyproject `prometheus_client`."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Entry:
    """One pinned distribution of the lock: its text block (pin and hashes) and who pulls it in."""

    name: str
    block: str
    via: tuple[str, ...]


class LockError(ValueError):
    """The lock cannot be split; the message names the file and the reason."""


def parse_lock(path: Path) -> dict[str, Entry]:
    """Entries by normalized name, each with its `# via` parents (uv's annotation format)."""
    text = path.read_text()
    entries: dict[str, Entry] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text.strip()):
        if block.startswith("#"):
            continue
        pin = block.split("\n", 1)[0]
        if "==" not in pin:
            raise LockError(f"{path}: not a pinned requirement: {pin!r}")
        name = normalize(pin.split("==", 1)[0])
        if "--hash=" not in block:
            raise LockError(f"{path}: {name} has no hash")
        via: list[str] = []
        for line in block.splitlines():
            comment = line.strip()
            if not comment.startswith("#"):
                continue
            comment = comment.lstrip("#").strip()
            comment = comment.removeprefix("via").strip()
            if comment:
                via.append(normalize(comment.split()[0]))
        if not via:
            raise LockError(f"{path}: {name} has no '# via' annotation (regenerate it with make lock)")
        entries[name] = Entry(name, block.rstrip() + "\n", tuple(via))
    return entries


def runtime_roots(pyproject: Path) -> set[str]:
    """The normalized names of [project] dependencies (extras like psycopg[binary] arrive via the lock)."""
    data = tomllib.loads(pyproject.read_text())
    roots = set()
    for requirement in data["project"]["dependencies"]:
        match = _NAME.match(requirement)
        if match is None:
            raise LockError(f"{pyproject}: unreadable dependency {requirement!r}")
        roots.add(normalize(match.group(1)))
    return roots


def runtime_subset(lock: Path, pyproject: Path) -> list[Entry]:
    """Roots plus every entry one of whose `via` parents is already runtime, to a fixed point."""
    entries = parse_lock(lock)
    roots = runtime_roots(pyproject)
    missing = sorted(roots - entries.keys())
    if missing:
        raise LockError(f"{lock}: runtime dependencies missing from the lock: {', '.join(missing)}")
    runtime = set(roots)
    changed = True
    while changed:
        changed = False
        for entry in entries.values():
            if entry.name not in runtime and any(parent in runtime for parent in entry.via):
                runtime.add(entry.name)
                changed = True
    for entry in entries.values():
        unknown = [p for p in entry.via if p != _SELF and p not in entries]
        if unknown:
            raise LockError(f"{lock}: {entry.name} is pulled in by {unknown}, which the lock does not pin")
    return [entries[name] for name in sorted(runtime)]


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        subset = runtime_subset(Path(argv[1]), Path(argv[2]))
    except (OSError, LockError) as err:
        print(f"runtime_requirements: {err}", file=sys.stderr)
        return 1
    sys.stdout.write("".join(entry.block for entry in subset))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
