"""Finding the debuginfo of a crashed kernel and its modules, by build-id first.

Where distributions put it (every root is a parameter, so tests and odd hosts can point
elsewhere):
- `<debug root>/.build-id/xx/yyyy….debug` (the GNU build-id tree),
- `<debug root>/boot/vmlinux-<release>` and `<debug root>/lib/modules/<release>/vmlinux`,
- `<debug root>/lib/modules/<release>/**/<module>.ko[.debug]` for modules (by name),
- files and directories the user names (`--debuginfo`),
- optionally debuginfod servers (`GET <url>/buildid/<id>/debuginfo`), cached locally.

A file whose build-id differs from the one the dump recorded is never used: it is skipped with
a warning naming both ids, and the crash stays symbolized by the kernel's own symbol+offset.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from analysis.errors import DebuginfoError
from analysis.symbolize.elfinfo import ElfImage

__all__ = [
    "DEFAULT_DEBUG_ROOTS",
    "DebuginfoSearch",
    "Found",
    "debuginfod_fetch",
    "module_key",
]

log = logging.getLogger(__name__)

DEFAULT_DEBUG_ROOTS: tuple[str, ...] = ("/usr/lib/debug",)
MODULE_SUFFIXES: tuple[str, ...] = (".ko.debug", ".ko")
VMLINUX_NAMES: tuple[str, ...] = ("vmlinux", "vmlinux.debug")
MAX_WALK_FILES = 200_000  # a directory tree bigger than this is not a debuginfo directory
_BUILD_ID = re.compile(r"[0-9a-f]{8,128}")


def module_key(name: str) -> str:
    """Kernel module names treat '-' and '_' alike; compare them in one spelling."""
    return name.replace("-", "_")


@dataclass(frozen=True, slots=True)
class Found:
    """A debuginfo file chosen for a build: where, its build-id, and how it was found."""

    path: str
    build_id: str | None
    origin: str  # "explicit", "build-id", "release", "debuginfod"


@dataclass(slots=True)
class DebuginfoSearch:
    """Where to look. `explicit` are user-named files/dirs, searched before the system roots."""

    explicit: Sequence[str] = ()
    debug_roots: Sequence[str] = DEFAULT_DEBUG_ROOTS
    debuginfod_urls: Sequence[str] = ()
    debuginfod_cache: Path | None = None
    timeout: float = 30.0
    _explicit_files: list[str] | None = field(default=None, repr=False)

    # ---- vmlinux ---------------------------------------------------------------------------

    def find_vmlinux(self, build_id: str | None, release: str | None) -> Found | None:
        """The debug vmlinux for this build-id (preferred) or release; None when nothing fits."""
        build_id = _normal_id(build_id)
        return self._first(self._vmlinux_candidates(build_id, release), build_id, None, "vmlinux")

    def _vmlinux_candidates(self, build_id: str | None, release: str | None) -> Iterator[tuple[str, str]]:
        for path in self._explicit():
            if not _is_module_name(path):
                yield path, "explicit"
        for root in self._roots():
            if build_id is not None:
                yield os.path.join(root, ".build-id", build_id[:2], build_id[2:] + ".debug"), "build-id"
            if release:
                yield os.path.join(root, "boot", f"vmlinux-{release}"), "release"
                yield os.path.join(root, "lib", "modules", release, "vmlinux"), "release"
                yield os.path.join(root, f"vmlinux-{release}"), "release"

    # ---- modules ---------------------------------------------------------------------------

    def find_module(self, name: str, release: str | None, build_id: str | None = None) -> Found | None:
        """Debuginfo of module `name` (as the kernel prints it) for `release`."""
        build_id = _normal_id(build_id)
        key = module_key(name)
        return self._first(self._module_candidates(key, release, build_id), build_id, (key, release), name)

    def _module_candidates(
        self, key: str, release: str | None, build_id: str | None
    ) -> Iterator[tuple[str, str]]:
        for path in self._explicit():
            if _is_module_name(path) and module_key(_module_stem(path)) == key:
                yield path, "explicit"
        for root in self._roots():
            if build_id is not None:
                yield os.path.join(root, ".build-id", build_id[:2], build_id[2:] + ".debug"), "build-id"
            if release:
                tree = os.path.join(root, "lib", "modules", release)
                for path in _walk(tree):
                    if _is_module_name(path) and module_key(_module_stem(path)) == key:
                        yield path, "release"

    # ---- checks ----------------------------------------------------------------------------

    def _first(
        self,
        candidates: Iterator[tuple[str, str]],
        build_id: str | None,
        want_module: tuple[str, str | None] | None,
        what: str,
    ) -> Found | None:
        """The first candidate that passes the checks; rejected files are reported (as warnings)
        only when none passes, so a wrong build is never used, nor dropped, silently."""
        rejected: list[str] = []
        seen: set[str] = set()
        for path, origin in candidates:
            real = os.path.realpath(path)
            if real in seen:
                continue
            seen.add(real)
            found = self._check(path, origin, build_id, want_module, rejected)
            if found is not None:
                return found
        if build_id is not None and self.debuginfod_urls:
            fetched = debuginfod_fetch(self.debuginfod_urls, build_id, self._cache(), self.timeout)
            if fetched is not None:
                found = self._check(fetched, "debuginfod", build_id, want_module, rejected)
                if found is not None:
                    return found
                Path(fetched).unlink(missing_ok=True)  # a server's wrong answer is not kept
        for reason in rejected:
            log.warning("debuginfo not used what=%s %s", what, reason)
        return None

    def _roots(self) -> list[str]:
        """Debug roots: user-named directories first (they may be a copy of /usr/lib/debug)."""
        return [p for p in self.explicit if os.path.isdir(p)] + list(self.debug_roots)

    def _explicit(self) -> list[str]:
        if self._explicit_files is None:
            files: list[str] = []
            for item in self.explicit:
                if os.path.isdir(item):
                    files.extend(p for p in _walk(item) if _is_module_name(p) or _is_vmlinux_name(p))
                elif os.path.exists(item):
                    files.append(item)
                else:
                    log.warning("debuginfo path does not exist path=%s", item)
            self._explicit_files = files
        return self._explicit_files

    def _check(
        self,
        path: str,
        origin: str,
        build_id: str | None,
        want_module: tuple[str, str | None] | None,
        rejected: list[str],
    ) -> Found | None:
        if not os.path.isfile(path):
            return None
        try:
            with ElfImage(path) as image:
                found_id = image.build_id
                has_dwarf = image.has_dwarf()
                modinfo = image.modinfo() if want_module is not None else {}
        except DebuginfoError as exc:
            rejected.append(f"path={exc.path} reason=unreadable: {exc.reason}")
            return None
        if build_id is not None and found_id != build_id:
            rejected.append(f"path={path} reason=build-id mismatch expected={build_id} found={found_id}")
            return None
        if not has_dwarf:
            rejected.append(f"path={path} reason=no DWARF")
            return None
        if want_module is not None:
            key, release = want_module
            name = modinfo.get("name")
            if name is not None and module_key(name) != key:
                return None
            vermagic_release = modinfo.get("vermagic", "").split(" ", 1)[0]
            if release and vermagic_release and vermagic_release != release:
                rejected.append(
                    f"path={path} reason=release mismatch expected={release} found={vermagic_release}"
                )
                return None
        return Found(path, found_id, origin)

    def _cache(self) -> Path:
        if self.debuginfod_cache is not None:
            return self.debuginfod_cache
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "crashfleet" / "debuginfod"


def debuginfod_fetch(urls: Sequence[str], build_id: str, cache_dir: Path, timeout: float = 30.0) -> str | None:
    """Download `<url>/buildid/<id>/debuginfo` from the first server that has it, into
    `cache_dir/<id>/debuginfo` (reused next time); None when no server has it."""
    normal = _normal_id(build_id)
    if normal is None:
        raise DebuginfoError(build_id, "not a build-id (hex digits expected)")
    target = cache_dir / normal / "debuginfo"
    if target.is_file():
        return str(target)
    for base in urls:
        url = f"{base.rstrip('/')}/buildid/{normal}/debuginfo"
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            log.warning("debuginfod url ignored, not http(s) url=%s", base)
            continue
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
                try:
                    with os.fdopen(fd, "wb") as out:
                        shutil.copyfileobj(response, out, 1 << 20)
                    os.replace(tmp, target)
                except BaseException:
                    os.unlink(tmp)
                    raise
        except urllib.error.HTTPError as exc:
            log.info("debuginfod miss url=%s status=%d", url, exc.code)
            continue
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            log.warning("debuginfod unreachable url=%s reason=%s", url, exc)
            continue
        log.info("debuginfod fetched url=%s path=%s", url, target)
        return str(target)
    return None


def _normal_id(build_id: str | None) -> str | None:
    if not build_id:
        return None
    value = build_id.strip().lower()
    return value if _BUILD_ID.fullmatch(value) else None


def _is_module_name(path: str) -> bool:
    return path.endswith(MODULE_SUFFIXES)


def _is_vmlinux_name(path: str) -> bool:
    name = os.path.basename(path)
    return name in VMLINUX_NAMES or name.startswith("vmlinux-") or (name.endswith(".debug") and "vmlinux" in name)


def _module_stem(path: str) -> str:
    name = os.path.basename(path)
    for suffix in MODULE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _walk(root: str) -> Iterator[str]:
    """Files under `root` (not following directory symlinks), at most MAX_WALK_FILES of them."""
    seen = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in sorted(files):
            seen += 1
            if seen > MAX_WALK_FILES:
                log.warning("debuginfo directory too large, search cut path=%s files=%d", root, MAX_WALK_FILES)
                return
            yield os.path.join(dirpath, name)
