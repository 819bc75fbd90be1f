"""Where each distribution's kdump and pstore leave a crash, and how each says "complete" — as data.

`RULES` is the table: one row per layout names the entry it matches (a directory or a file in
the crash or pstore directory), the files that mean "still being written" (the tool renames them
when done), the dumps and texts to read in order of preference, and an optional file whose
presence says the save finished. Adding a layout is adding a row; `assess()` never grows an `if`
per distribution.

The agent decides "complete" from a row plus a settle time (no write for N seconds), and
"failed" from an incomplete marker (or nothing readable) that stays untouched past a timeout.
A row may also name a status file the tool writes (SUSE's README.txt, `StatusFormat`): its
text says whether the save finished, which files it failed to write, and the crashed kernel's
release — parsed by `parse_status`, driven by the format's tables.
"""

from __future__ import annotations

import enum
import fnmatch
import hashlib
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "IGNORED_NAMES",
    "RULES",
    "SUSE_README",
    "Assessment",
    "CaptureState",
    "FoundCapture",
    "LayoutRule",
    "Root",
    "SaveStatus",
    "StatusFormat",
    "archived_by_systemd_pstore",
    "assess",
    "capture_for_path",
    "discover",
    "match_rule",
    "parse_status",
]


class Root(enum.StrEnum):
    """Which watched directory an entry lives in."""

    CRASH = "crash"  # /var/crash
    PSTORE = "pstore"  # /var/lib/systemd/pstore
    PSTORE_FS = "pstore-fs"  # /sys/fs/pstore: records systemd-pstore has not archived (yet)


class CaptureState(enum.StrEnum):
    COMPLETE = "complete"  # the layout's "done" signal is there (settle time still applies)
    INCOMPLETE = "incomplete"  # an in-progress marker is present
    EMPTY = "empty"  # nothing readable yet (a directory that was just created)


def _efi_group(name: str) -> str:
    """EFI pstore names carry id = (seconds * 100 + part) * 1000 + count: parts of one crash share seconds."""
    match = _EFI_NAME.fullmatch(name)
    if match is None:
        return name
    return f"dmesg-efi-{int(match.group(1)) // 100_000}"


_EFI_NAME = re.compile(r"\Admesg-efi-(\d+)(?:\.enc\.z)?")
_PSTORE_FS_NAME = re.compile(r"(dmesg-[a-z][a-z0-9_-]*?-)(\d+)(?:\.enc\.z)?")
SYSTEMD_PSTORE_IGNORE_DIGITS = 6  # systemd-pstore's PSTORE_FILENAME_IGNORE


def _systemd_pstore_group(name: str) -> str:
    """Group live pstore records the way systemd-pstore does: the record id without its last six
    digits (EFI/ERST ids end in part and count digits), so the parts of one dump go together;
    an id of six digits or fewer (ramoops' 0, 1, ...) is a record of its own. Compressed parts
    group with the rest (systemd-pstore leaves them alone; we can inflate them)."""
    match = _PSTORE_FS_NAME.fullmatch(name)
    if match is None or len(match.group(2)) <= SYSTEMD_PSTORE_IGNORE_DIGITS:
        return name.removesuffix(".enc.z")
    return match.group(1) + match.group(2)[:-SYSTEMD_PSTORE_IGNORE_DIGITS]


@dataclass(frozen=True, slots=True, eq=False)  # compared and hashed by identity: formats are constants
class StatusFormat:
    """A status file a dump tool writes beside the dump, as data: which lines mean what.

    Lines are `label: value` (any spacing around the colon); labels are matched case-insensitively
    with runs of blanks collapsed. A "<file> status" value among `ok` means the file is whole,
    among `neutral` that it was deliberately not written; anything else is a failure, and the
    files `status_files` names for that field are not read.
    """

    name: str  # the file, e.g. README.txt
    fields: dict[str, str]  # normalized label -> field name
    in_progress: tuple[str, ...]  # lowercase phrases only a temporary, still-running status file has
    status_files: dict[str, tuple[str, ...]]  # status field -> globs of the files it speaks for
    ok: tuple[str, ...] = ("saved successfully",)
    neutral: tuple[str, ...] = ("skipped",)
    max_bytes: int = 64 * 1024  # a status file is a dozen lines; more is not one


# SUSE kdump: kdump-save (kdump >= 1.0, dracut) first writes a temporary README.txt ("This file will
# be overwritten when the dump is finished. If you see this text the crash dump is likely
# incomplete."), then dmesg and vmcore, then the final README.txt with "dmesg status:",
# "vmcore status:" ("saved successfully", "skipped", "error while saving, return code: N",
# "deleted (...)"), "Kernel version:" and "Crash time:" from VMCOREINFO, "Dump time:", "Host:",
# "Dump level:", "Dump format:". kdumptool's older save_dump wrote only the final form, aligned:
# "Crash time     : 2024-01-01 12:00 (+0100)", "Kernel version : ...", "Host           : ...".
SUSE_README = StatusFormat(
    name="README.txt",
    fields={
        "kernel version": "kernel_release",
        "crash time": "crash_time",
        "dump time": "dump_time",
        "host": "host",
        "dump level": "dump_level",
        "dump format": "dump_format",
        "dmesg status": "dmesg_status",
        "vmcore status": "vmcore_status",
    },
    in_progress=(
        "this file will be overwritten when the dump is finished",
        "the crash dump is likely incomplete",
    ),
    status_files={"vmcore_status": ("vmcore", "vmcore.*"), "dmesg_status": ("dmesg", "dmesg.txt")},
)


@dataclass(frozen=True, slots=True)
class SaveStatus:
    """What a status file says about its capture."""

    in_progress: bool  # the temporary form: the tool had not finished (or died) when it was read
    fields: tuple[tuple[str, str], ...]  # (field, value) in file order, known labels only
    failures: tuple[str, ...]  # "vmcore: error while saving, return code: 1"
    unusable: tuple[str, ...]  # globs of files the tool says it failed to write whole

    def get(self, field_name: str) -> str | None:
        for name, value in self.fields:
            if name == field_name:
                return value
        return None

    @property
    def kernel_release(self) -> str | None:
        return self.get("kernel_release") or None


def parse_status(fmt: StatusFormat, text: str) -> SaveStatus:
    """A status file's text -> SaveStatus. Pure; unknown lines are ignored, never an error."""
    lowered = text.lower()
    in_progress = any(phrase in lowered for phrase in fmt.in_progress)
    fields: list[tuple[str, str]] = []
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        if not sep:
            continue
        name = fmt.fields.get(" ".join(label.split()).lower())
        if name is not None and value.strip():
            fields.append((name, " ".join(value.split())))
    failures: list[str] = []
    unusable: list[str] = []
    for name, value in fields:
        globs = fmt.status_files.get(name)
        if globs is None:
            continue
        verdict = value.lower()
        if any(verdict.startswith(ok) for ok in fmt.ok) or any(verdict.startswith(n) for n in fmt.neutral):
            continue
        failures.append(f"{name.removesuffix('_status')}: {value}")
        unusable.extend(globs)
    return SaveStatus(in_progress, tuple(fields), tuple(failures), tuple(unusable))


@dataclass(frozen=True, slots=True)
class LayoutRule:
    """One layout: how to recognize its entry and what inside it means what."""

    name: str
    root: Root
    is_dir: bool  # the entry is a directory (kdump) or a file (apport, pstore records)
    pattern: re.Pattern[str]  # full match on the entry's name
    incomplete: tuple[str, ...] = ()  # globs: any present -> still being written
    dumps: tuple[str, ...] = ()  # globs, in preference order ("." = the entry itself)
    texts: tuple[str, ...] = ()  # globs of kernel-log text, in preference order ("." = the entry itself)
    complete_marker: str | None = None  # a file that must exist before the capture counts as done
    group: Callable[[str], str] | None = None  # file entries: entries with one group key form one capture
    status: StatusFormat | None = None  # a status file the tool writes (read when present)
    note: str = ""

    @property
    def signals_done(self) -> bool:
        """The tool says when it is done (a marker renamed away, a file written last): settle briefly."""
        return bool(self.incomplete) or self.complete_marker is not None

    @property
    def signals_whole_capture(self) -> bool:
        """The done signal is a file written after everything else (SUSE's final README.txt), not
        a dump renamed into place: a capture holding only text (its dump skipped or failed) is
        done too, where a kdump directory with only text may be one whose dump has not started."""
        return self.complete_marker is not None


# Ordered: the first matching row wins (the RHEL pattern is the most general directory name).
RULES: tuple[LayoutRule, ...] = (
    LayoutRule(
        name="debian",
        root=Root.CRASH,
        is_dir=True,
        pattern=re.compile(r"\d{12}"),
        incomplete=("dump-incomplete", "dump-incomplete.*"),
        dumps=("dump.*",),
        texts=("dmesg.*",),
        note="kdump-tools (Debian, Ubuntu): YYYYMMDDHHMM/, dump-incomplete renamed to dump.<stamp>",
    ),
    LayoutRule(
        name="suse",
        root=Root.CRASH,
        is_dir=True,
        # kdumptool: YYYY-MM-DD-HH:MM; kdump-save: YYYY-MM-DD-HH-MM (HOST-... on NFS/CIFS targets).
        pattern=re.compile(r"\A(?:.+-)?\d{4}-\d{2}-\d{2}-\d{2}[-:]\d{2}"),
        dumps=("vmcore", "vmcore.*"),
        texts=("dmesg.txt", "dmesg"),
        complete_marker="README.txt",
        status=SUSE_README,
        note="SUSE kdump: YYYY-MM-DD-HH-MM/, final README.txt (with each file's status) written last",
    ),
    LayoutRule(
        name="rhel",
        root=Root.CRASH,
        is_dir=True,
        pattern=re.compile(r"\A.+-\d{4}-\d{2}-\d{2}-\d{2}:\d{2}:\d{2}"),
        incomplete=("vmcore-incomplete", "vmcore.flat-incomplete", "vmcore-dmesg-incomplete.txt"),
        dumps=("vmcore", "vmcore.flat"),
        texts=("vmcore-dmesg.txt", "kexec-dmesg.log"),
        note="RHEL/Fedora kdump: HOST-YYYY-MM-DD-HH:MM:SS/, vmcore-incomplete renamed to vmcore",
    ),
    LayoutRule(
        name="apport",
        root=Root.CRASH,
        is_dir=False,
        pattern=re.compile(r"linux-image-.+\.crash"),
        dumps=(".",),
        note="Ubuntu apport kernel_crashdump: linux-image-<release>-<stamp>.crash (VmCore base64-gzip)",
    ),
    LayoutRule(
        name="systemd-pstore",
        root=Root.PSTORE,
        is_dir=True,
        pattern=re.compile(r"[^.].*"),
        texts=("dmesg.txt", "dmesg-*"),
        note="systemd-pstore per-crash folder: dmesg.txt (reassembled) and the dmesg-* parts",
    ),
    LayoutRule(
        name="pstore",
        root=Root.PSTORE,
        is_dir=False,
        pattern=re.compile(r"dmesg-(?:efi|efi_pstore|ramoops|erst|nvram|powerpc-ofw)-\d+(?:\.enc\.z)?"),
        texts=(".",),
        group=_efi_group,
        note="pstore records moved as files: dmesg-efi-*, dmesg-ramoops-*; .enc.z is zlib-compressed",
    ),
    LayoutRule(
        name="pstore-fs",
        root=Root.PSTORE_FS,
        is_dir=False,
        pattern=_PSTORE_FS_NAME,
        texts=(".",),
        group=_systemd_pstore_group,
        note="live pstore filesystem: dmesg-<backend>-<id>[.enc.z], grouped like systemd-pstore",
    ),
)

# Owners whose entries are read. /var/crash is world-writable on Ubuntu (apport): a capture
# planted by an unprivileged user, or a symlink to /etc/shadow named like a dump, must not be
# read and shipped by a root agent.
TRUSTED_UIDS = frozenset({0, os.getuid()})

# Names kdump/apport/pstore keep beside captures that are never captures themselves.
IGNORED_NAMES: tuple[str, ...] = (
    "kdump_lock",
    "kexec_cmd",
    "kdump-*",
    "*.lock",
    ".*",
    "lost+found",
    "*.upload",
    "*.uploaded",
    "console-*",
    "pmsg-*",
    "ftrace-*",
    "mce-*",
)


@dataclass(frozen=True, slots=True)
class FoundCapture:
    """A capture unit: a kdump directory, an apport file, or the pstore files of one crash."""

    rule: LayoutRule
    path: Path  # the directory, or the first file of the group
    members: tuple[Path, ...] = ()  # file captures: every file of the group (sorted)

    @property
    def key(self) -> str:
        """Stable name of the capture inside its root (what the spool remembers as shipped)."""
        if self.rule.group is not None:
            return f"{self.rule.root}:{self.rule.group(self.path.name)}"
        return f"{self.rule.root}:{self.path.name}"


@dataclass(frozen=True, slots=True)
class Assessment:
    """What a capture looks like right now."""

    capture: FoundCapture
    state: CaptureState
    dumps: tuple[Path, ...]
    texts: tuple[Path, ...]
    newest_mtime: float  # the latest change of anything inside: the settle clock
    identity: str  # digest of names, sizes and mtimes: changes whenever the capture does
    reason: str  # for logs: why this state
    status: SaveStatus | None = None  # the tool's status file, when the layout has one and it is there


def is_ignored(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in IGNORED_NAMES)


def match_rule(root: Root, name: str, is_dir: bool) -> LayoutRule | None:
    """The first layout row that claims an entry of `root`, or None (ignored or unknown)."""
    if is_ignored(name):
        return None
    for rule in RULES:
        if rule.root == root and rule.is_dir == is_dir and rule.pattern.fullmatch(name):
            return rule
    return None


def _group_key(rule: LayoutRule, name: str) -> str:
    """The capture a file of a file layout belongs to: its group, or the file alone."""
    return rule.group(name) if rule.group is not None else name


def _group_files(rule: LayoutRule, paths: Iterable[Path]) -> list[FoundCapture]:
    groups: dict[str, list[Path]] = {}
    for path in paths:
        key = _group_key(rule, path.name)
        groups.setdefault(key, []).append(path)
    found = []
    for members in groups.values():
        members.sort()
        found.append(FoundCapture(rule=rule, path=members[0], members=tuple(members)))
    return found


def discover(root: Root, directory: Path) -> list[FoundCapture]:
    """Every capture under `directory` (one level deep), ignored names and unknown entries left out."""
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    found: list[FoundCapture] = []
    files: dict[str, list[Path]] = {}
    rules: dict[str, LayoutRule] = {}
    for entry in entries:
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
            if not is_dir and not entry.is_file(follow_symlinks=False):
                continue  # symlinks, sockets, devices: never a capture
            if entry.stat(follow_symlinks=False).st_uid not in TRUSTED_UIDS:
                continue
        except OSError:
            continue
        rule = match_rule(root, entry.name, is_dir)
        if rule is None:
            continue
        if is_dir:
            found.append(FoundCapture(rule=rule, path=Path(entry.path)))
        else:
            files.setdefault(rule.name, []).append(Path(entry.path))
            rules[rule.name] = rule
    for name, paths in files.items():
        found.extend(_group_files(rules[name], paths))
    found.sort(key=lambda c: c.path)
    return found


def capture_for_path(root: Root, directory: Path, path: Path) -> FoundCapture | None:
    """The capture a filesystem event under `directory` belongs to, or None when it belongs to none."""
    try:
        relative = path.relative_to(directory)
    except ValueError:
        return None
    if not relative.parts:
        return None
    top = directory / relative.parts[0]
    try:
        st = top.lstat()
    except OSError:
        st = None
    if st is not None and (stat.S_ISLNK(st.st_mode) or st.st_uid not in TRUSTED_UIDS):
        return None
    is_dir = len(relative.parts) > 1 or (st is not None and stat.S_ISDIR(st.st_mode))
    rule = match_rule(root, top.name, is_dir)
    if rule is None:
        return None
    if is_dir:
        return FoundCapture(rule=rule, path=top)
    key = _group_key(rule, top.name)
    siblings = [
        directory / name
        for name in _listdir(directory)
        if match_rule(root, name, False) is rule
        and _group_key(rule, name) == key
        and (directory / name).is_file()
    ]
    if not siblings:
        return FoundCapture(rule=rule, path=top, members=(top,))
    return _group_files(rule, siblings)[0]


def _listdir(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except OSError:
        return []


def _select(names: list[str], globs: tuple[str, ...], base: Path) -> tuple[Path, ...]:
    """Names matching the globs, in glob order then name order; each name once."""
    chosen: list[Path] = []
    seen: set[str] = set()
    for pattern in globs:
        for name in sorted(names):
            if name not in seen and fnmatch.fnmatchcase(name, pattern):
                seen.add(name)
                chosen.append(base / name)
    return tuple(chosen)


def assess(capture: FoundCapture) -> Assessment:
    """Look at a capture once: its state, the dumps and texts to read, and the settle clock."""
    rule = capture.rule
    stats: list[tuple[str, int, float]] = []
    status: SaveStatus | None = None
    if rule.is_dir:
        names: list[str] = []
        try:
            with os.scandir(capture.path) as it:
                for entry in it:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if entry.is_file(follow_symlinks=False):
                        names.append(entry.name)
                    stats.append((entry.name, st.st_size, st.st_mtime))
            dir_mtime = capture.path.stat().st_mtime
        except OSError as exc:
            return Assessment(capture, CaptureState.EMPTY, (), (), 0.0, "", f"unreadable: {exc.strerror}")
        stats.append((".", 0, dir_mtime))
        names = [n for n in names if not is_ignored(n)]
        incomplete = [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in rule.incomplete)]
        payload = [n for n in names if n not in incomplete]
        if rule.status is not None and rule.status.name in names:
            status = _read_status(capture.path / rule.status.name, rule.status)
            payload = [n for n in payload if not any(fnmatch.fnmatchcase(n, g) for g in status.unusable)]
        dumps = _select(payload, rule.dumps, capture.path)
        texts = _select([n for n in payload if capture.path / n not in dumps], rule.texts, capture.path)
    else:
        members = capture.members or (capture.path,)
        present = []
        for member in members:
            try:
                st = member.stat()
            except OSError:
                continue
            present.append(member)
            stats.append((member.name, st.st_size, st.st_mtime))
        incomplete = []
        dumps = tuple(present) if "." in rule.dumps else ()
        texts = tuple(present) if "." in rule.texts else ()
    newest = max((s[2] for s in stats), default=0.0)
    identity = hashlib.sha256(repr(sorted(stats)).encode()).hexdigest()[:32]
    if incomplete:
        state, reason = CaptureState.INCOMPLETE, f"in progress: {', '.join(sorted(incomplete))}"
    elif status is not None and status.in_progress:
        state, reason = (
            CaptureState.INCOMPLETE,
            f"{rule.complete_marker} is the temporary one: save not finished",
        )
    elif status is not None and status.failures and not dumps and not texts:
        # The tool finished and says what it could not save: a failed capture now, not in an hour.
        state, reason = CaptureState.COMPLETE, f"nothing saved whole: {'; '.join(status.failures)}"
    elif not dumps and not texts:
        state, reason = CaptureState.EMPTY, "no dump and no kernel log yet"
    elif rule.complete_marker is not None and not (capture.path / rule.complete_marker).exists():
        state, reason = CaptureState.INCOMPLETE, f"{rule.complete_marker} not written yet"
    else:
        state, reason = CaptureState.COMPLETE, f"{len(dumps)} dump(s), {len(texts)} text(s)"
    if status is not None and status.failures and state == CaptureState.COMPLETE:
        reason = f"{reason}; not read: {'; '.join(status.failures)}"
    return Assessment(capture, state, dumps, texts, newest, identity, reason, status)


def _read_status(path: Path, fmt: StatusFormat) -> SaveStatus:
    """Read and parse a status file; an unreadable one says nothing (the settle time still applies)."""
    try:
        with open(path, "rb") as f:
            data = f.read(fmt.max_bytes)
    except OSError:
        return SaveStatus(False, (), (), ())
    return parse_status(fmt, data.decode("utf-8", errors="replace"))


def archived_by_systemd_pstore(members: Iterable[Path], archive_dir: Path) -> bool:
    """Whether systemd-pstore already copied every one of these live pstore records into its
    archive (Storage=external, `archive_dir/<id prefix>/<name>` or `archive_dir/<name>`): then the
    archived copy is the capture, and the live one is left alone (with Unlink=no both stay)."""
    names = {m.name for m in members}
    if not names:
        return False
    found = {n for n in names if (archive_dir / n).is_file()}
    if found == names:
        return True
    try:
        subdirs = [Path(e.path) for e in os.scandir(archive_dir) if e.is_dir(follow_symlinks=False)]
    except OSError:
        return False
    for subdir in subdirs:
        found |= {n for n in names - found if (subdir / n).is_file()}
        if found == names:
            return True
    return False
