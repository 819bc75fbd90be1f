"""The bound and character set of every string field a report or heartbeat carries, as one table.

A crash report comes from a machine an attacker may control: a `Code:` line of 3 MB, or one
holding terminal escapes, must not reach the store, a terminal or a page. `FIELD_RULES` gives
each string field of ReportCrashRequest and HeartbeatRequest (by its path in the message tree,
list indices left out, map entries as `.key` / `.value`) its longest length and its character
set; `check_strings` walks a request and raises the first violation naming the field
(`signature.call_trace[3].function`). tests/collector/test_fields.py walks the proto descriptors
and fails for a string field without a row, so a new field arrives with its rule; until it has
one it gets `DEFAULT_RULE`. Lengths are characters; the excerpt is also capped in bytes
(collector.ingest). Repeated fields and maps hold at most `MAX_REPEATED` entries.

Bounds follow the kernel: a printk record is at most 1024 bytes (PRINTKRB_RECORD_MAX, 6.x), a
symbol name 512 (KSYM_NAME_LEN since 6.1), a module name 56 (MODULE_NAME_LEN), a uts field 64
(__NEW_UTS_LEN), a path 4096 (PATH_MAX) — with room to spare, since the analyzer joins lines
(titles, wrapped `Code:` lines) and older kernels differ. tests/collector/test_fields.py also runs
every crash the analyzer finds in the project's fixtures and the syzkaller corpus through these
rules: a bound that refused a real crash would fail there.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

__all__ = [
    "ASCII",
    "DEFAULT_RULE",
    "FIELD_RULES",
    "LINE",
    "LOG",
    "MAX_REPEATED",
    "TOKEN",
    "Charset",
    "FieldError",
    "Rule",
    "check_strings",
    "rule_for",
    "strings_clean",
]

MAX_REPEATED: Final = 4096  # frames, modules, registers ... per list or map


@dataclass(frozen=True, slots=True)
class Charset:
    """A character set, as the characters it refuses; `joiner` is one it allows (the fast path
    joins a rule's strings with it and searches once)."""

    name: str
    refused: re.Pattern[str]
    joiner: str
    says: str  # the refusal, as the error message words it


# C1 controls (U+0080..U+009F) are refused with the C0 ones: U+009B is a one-character CSI that
# some terminals honour like ESC [.
LINE: Final = Charset("line", re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]"), "\t", "contains control characters")
"""One line of text, as the kernel printed it: any character but control characters (tab allowed)."""
ASCII: Final = Charset("ascii", re.compile(r"[^\x20-\x7e]"), " ", "contains characters other than printable ASCII")
"""Printable ASCII with spaces: the `Code:` line (hex bytes, `<..>`, `(..)`, s390's `Krnl Code` text)."""
TOKEN: Final = Charset("token", re.compile(r"[^\x21-\x7e]"), "!", "contains spaces or characters other than printable ASCII")
"""Printable ASCII without spaces: names our own code gives (kinds, architectures, registers)."""
LOG: Final = Charset("log", re.compile(r"\x00"), "\n", "contains NUL bytes")
"""Kernel log text kept as evidence: anything but NUL (PostgreSQL TEXT cannot hold it); every
reader escapes it for its medium (the web page for HTML, the CLI for the terminal)."""


@dataclass(frozen=True, slots=True)
class Rule:
    max_chars: int
    charset: Charset


# Rules by what the field holds ------------------------------------------------------------------
_KERNEL_LINE = Rule(2048, LINE)  # text from one log line (a reason, a panic message)
_TITLE = Rule(4096, LINE)  # a reason plus a frame, or lines the analyzer joined
_SYMBOL = Rule(1024, LINE)  # a function name as the log printed it (KSYM_NAME_LEN 512, with slack)
_MODULE = Rule(256, LINE)  # a module name, possibly with its taint flags (MODULE_NAME_LEN 56)
_UTS = Rule(256, LINE)  # uname fields: release, version, nodename, machine (__NEW_UTS_LEN 64)
_PATH = Rule(4096, LINE)  # a file path (PATH_MAX)
_NAME = Rule(64, TOKEN)  # a name our code chose: kind, arch, register, format, context
_DIGEST = Rule(128, TOKEN)  # a fingerprint value, a build-id, an idempotency key
_SHORT = Rule(128, LINE)  # short free text: comm, taint string, flags, an instruction's access

DEFAULT_RULE: Final = Rule(4096, LINE)
"""For a string field the table does not name yet (the descriptor test fails until it does)."""

FIELD_RULES: Final[Mapping[str, Rule]] = {
    # ReportCrashRequest
    "idempotency_key": _DIGEST,
    "source_path": _PATH,
    "log_excerpt": Rule(64 * 1024, LOG),  # also capped at MAX_EXCERPT_BYTES in UTF-8 (ingest)
    # CrashSignature (analysis.model.CrashRecord)
    "signature.kind": _NAME,
    "signature.reason": _KERNEL_LINE,
    "signature.normalized_reason": _KERNEL_LINE,
    "signature.title": _TITLE,
    "signature.guilty_frame": _SYMBOL,
    "signature.arch": _NAME,
    "signature.oops_flags": _SHORT,
    "signature.tainted": _SHORT,
    "signature.taint_flags": _SHORT,
    "signature.comm": _SHORT,  # TASK_COMM_LEN is 16; printed as the kernel saw it
    "signature.kernel_release": _UTS,
    "signature.kernel_build": _KERNEL_LINE,  # "#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2 (...)"
    "signature.hardware": _KERNEL_LINE,  # DMI vendor, product and BIOS as the oops prints them
    "signature.bios": _KERNEL_LINE,
    "signature.modules": _MODULE,
    "signature.module_taints.key": _MODULE,
    "signature.module_taints.value": _SHORT,
    "signature.last_unloaded": _MODULE,
    "signature.panic_message": _KERNEL_LINE,
    "signature.rip.function": _SYMBOL,
    "signature.rip.module": _MODULE,
    "signature.rip.source.function": _SYMBOL,
    "signature.rip.source.file": _PATH,
    "signature.call_trace.function": _SYMBOL,
    "signature.call_trace.module": _MODULE,
    "signature.call_trace.context": _NAME,
    "signature.call_trace.source.function": _SYMBOL,
    "signature.call_trace.source.file": _PATH,
    "signature.registers.key": _NAME,
    "signature.code_line": Rule(2048, ASCII),  # x86: 64 bytes = ~200 characters; s390 joins lines
    "signature.code.arch": _NAME,
    "signature.code.instruction": _KERNEL_LINE,
    "signature.code.base_register": _NAME,
    "signature.code.index_register": _NAME,
    "signature.code.bad_register": _NAME,
    "signature.code.access": _KERNEL_LINE,  # the verdict sentence
    "signature.code.error": _KERNEL_LINE,
    "signature.code.operation": _NAME,
    "signature.fingerprint.value": _DIGEST,
    "signature.fingerprint.version": _NAME,
    "signature.fingerprint.kind": _NAME,
    "signature.fingerprint.reason": _KERNEL_LINE,
    "signature.fingerprint.frames": _SYMBOL,
    "signature.fingerprint.skipped.function": _SYMBOL,
    "signature.fingerprint.skipped.rule": _SHORT,
    "signature.corrupted_reason": _KERNEL_LINE,
    "signature.related": _KERNEL_LINE,
    "signature.corrupt_fields": _SHORT,  # a field path the parser left out, e.g. call_trace[0].offset
    # HostFacts (ReportCrashRequest.host and HeartbeatRequest.host)
    "host.hostname": Rule(253, LINE),  # a DNS name; collector.ingest checks it further
    "host.kernel_release": _UTS,
    "host.machine": _UTS,
    "host.hardware": _KERNEL_LINE,
    "host.modules": _MODULE,
    "host.agent_version": _SHORT,
    "host.user_faults.binary": _SHORT,  # a program's comm (TASK_COMM_LEN 16) or "(other)"
    "host.labels.key": Rule(64, LINE),  # collector.ingest then holds it to [a-z0-9_]{1,32}, by name
    "host.labels.value": Rule(128, LINE),
    "host.hardware_errors.kind": _NAME,  # analysis.hwerrors' kinds: mce, edac_ce ...
    # SystemFacts (a dump's header)
    "system.format": _NAME,
    "system.release": _UTS,
    "system.version": _UTS,
    "system.nodename": _UTS,
    "system.machine": _UTS,
    # Not a digest rule: a value that is no build-id is dropped at ingest (collector.ingest._build_id),
    # the crash kept; only what could harm a reader is refused.
    "system.build_id": Rule(4096, LINE),
    "system.panic_message": _KERNEL_LINE,
    "system.panic_comm": _SHORT,
}


# Every distinct rule, numbered: the fast path groups strings by these numbers (hashing a Rule per
# string cost more than the checks themselves).
_RULES: Final[tuple[Rule, ...]] = tuple(dict.fromkeys((*FIELD_RULES.values(), DEFAULT_RULE)))
_RULE_NUMBER: Final[Mapping[Rule, int]] = {rule: n for n, rule in enumerate(_RULES)}
_CHARSETS: Final[tuple[Charset, ...]] = tuple(dict.fromkeys(rule.charset for rule in _RULES))
_RULE_CHARSET: Final[tuple[int, ...]] = tuple(_CHARSETS.index(rule.charset) for rule in _RULES)


def rule_for(path: str) -> Rule:
    """The rule of a field path (`signature.call_trace.function`; no indices)."""
    return FIELD_RULES.get(path, DEFAULT_RULE)


class FieldError(Exception):
    """A string field that breaks its rule; `too_large` tells a size cap from a character set."""

    def __init__(self, field: str, reason: str, too_large: bool) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.too_large = too_large


def _check(field: str, value: str, rule: Rule) -> None:
    if len(value) > rule.max_chars:
        raise FieldError(field, f"{len(value)} characters, more than {rule.max_chars}", too_large=True)
    if rule.charset.refused.search(value):
        raise FieldError(field, rule.charset.says, too_large=False)


def _is_map(field: FieldDescriptor) -> bool:
    inner = field.message_type
    return inner is not None and inner.GetOptions().map_entry


def _map_strings(field: FieldDescriptor) -> tuple[bool, bool]:
    """Whether a map field's keys and values are strings."""
    entry = field.message_type
    assert entry is not None
    key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
    return key.type == FieldDescriptor.TYPE_STRING, value.type == FieldDescriptor.TYPE_STRING


def check_strings(msg: Message, prefix: str = "") -> None:
    """Walk every string field of a message tree against its rule; FieldError names the first
    offender with its indices (`signature.modules[3]`). `prefix` is the path of `msg` itself."""
    _walk(msg, prefix, prefix)


def _walk(msg: Message, path: str, rule_path: str) -> None:
    for descriptor, value in msg.ListFields():
        name = f"{path}.{descriptor.name}" if path else descriptor.name
        rule_name = f"{rule_path}.{descriptor.name}" if rule_path else descriptor.name
        if descriptor.is_repeated:
            if len(value) > MAX_REPEATED:
                raise FieldError(name, f"{len(value)} entries, more than {MAX_REPEATED}", too_large=True)
            if _is_map(descriptor):
                string_keys, string_values = _map_strings(descriptor)
                for key, item in list(value.items()):
                    if string_keys:
                        _check(f"{name}[{key!r}]", key, rule_for(f"{rule_name}.key"))
                    if string_values:
                        _check(f"{name}[{key!r}]", item, rule_for(f"{rule_name}.value"))
                continue
            for i, item in enumerate(value):
                if isinstance(item, Message):
                    _walk(item, f"{name}[{i}]", rule_name)
                elif isinstance(item, str):
                    _check(f"{name}[{i}]", item, rule_for(rule_name))
        elif isinstance(value, Message):
            _walk(value, name, rule_name)
        elif isinstance(value, str):
            _check(name, value, rule_for(rule_name))


# The fast path: every string of a request grouped by rule, one length check and one regex search
# per rule instead of per field; only a request that fails is walked again to name the field.


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to read from one message type at one path, built once from its descriptor."""

    read_strings: Callable[[Message], tuple[str, ...]] | None  # singular strings, grouped by rule
    slices: tuple[tuple[int, int, int], ...]  # (rule number, start, stop) into what read_strings gives
    string_lists: tuple[tuple[str, int], ...]
    lists: tuple[str, ...]  # other repeated scalars: only their length is capped
    maps: tuple[tuple[str, int | None, int | None], ...]  # name, key / value rule number (strings)
    messages: tuple[tuple[str, _Plan], ...]
    message_lists: tuple[tuple[str, _Plan], ...]


_NOTHING = _Plan(None, (), (), (), (), (), ())


def _reader(names: list[str]) -> Callable[[Message], tuple[str, ...]]:
    """Reads fields `names` of a message as a tuple in one C call."""
    if len(names) == 1:  # attrgetter of one name returns the bare value
        read_one = operator.attrgetter(names[0])
        return lambda msg: (read_one(msg),)
    return operator.attrgetter(*names)


@functools.cache
def _plan(descriptor: Descriptor, path: str) -> _Plan:
    """The _Plan of a message type at `path` (no message type of ours contains itself)."""
    by_rule: dict[int, list[str]] = {}
    string_lists: list[tuple[str, int]] = []
    lists: list[str] = []
    maps: list[tuple[str, int | None, int | None]] = []
    messages: list[tuple[str, _Plan]] = []
    message_lists: list[tuple[str, _Plan]] = []
    for field in descriptor.fields:
        name = field.name
        full = f"{path}.{name}" if path else name
        if _is_map(field):
            string_keys, string_values = _map_strings(field)
            key_rule = _RULE_NUMBER[rule_for(f"{full}.key")] if string_keys else None
            value_rule = _RULE_NUMBER[rule_for(f"{full}.value")] if string_values else None
            maps.append((name, key_rule, value_rule))
        elif field.message_type is not None:
            plan = _plan(field.message_type, full)
            if field.is_repeated:
                message_lists.append((name, plan))
            elif plan != _NOTHING:
                messages.append((name, plan))
        elif field.is_repeated:
            if field.type == field.TYPE_STRING:
                string_lists.append((name, _RULE_NUMBER[rule_for(full)]))
            else:
                lists.append(name)
        elif field.type == field.TYPE_STRING:
            by_rule.setdefault(_RULE_NUMBER[rule_for(full)], []).append(name)
    names = [name for group in by_rule.values() for name in group]
    slices, start = [], 0
    for rule, group in by_rule.items():
        slices.append((rule, start, start + len(group)))
        start += len(group)
    return _Plan(
        _reader(names) if names else None,
        tuple(slices),
        tuple(string_lists),
        tuple(lists),
        tuple(maps),
        tuple(messages),
        tuple(message_lists),
    )


def strings_clean(msg: Message, prefix: str = "") -> bool:
    """True when `check_strings` would find nothing (it is the fast path for the common case)."""
    groups: list[list[str]] = [[] for _ in _RULES]
    if not _gather(msg, _plan(msg.DESCRIPTOR, prefix), groups):
        return False
    by_charset: list[list[str]] = [[] for _ in _CHARSETS]
    for rule, number, strings in zip(_RULES, _RULE_CHARSET, groups, strict=True):
        if strings:
            if max(map(len, strings)) > rule.max_chars:
                return False
            by_charset[number] += strings
    for charset, strings in zip(_CHARSETS, by_charset, strict=True):
        if strings and charset.refused.search(charset.joiner.join(strings)):
            return False
    return True


def _gather(msg: Message, plan: _Plan, out: list[list[str]]) -> bool:
    """Add the strings `plan` checks in `msg` to `out[rule number]`; False at a list over MAX_REPEATED."""
    if plan.read_strings is not None:
        values = plan.read_strings(msg)
        for rule, start, stop in plan.slices:
            out[rule].extend(values[start:stop])
    for name, rule in plan.string_lists:
        values = getattr(msg, name)
        if len(values) > MAX_REPEATED:
            return False
        out[rule].extend(values)
    for name in plan.lists:
        if len(getattr(msg, name)) > MAX_REPEATED:
            return False
    for name, key_rule, value_rule in plan.maps:
        entries = getattr(msg, name)
        if len(entries) > MAX_REPEATED:
            return False
        if entries:
            if key_rule is not None:
                out[key_rule].extend(entries)
            if value_rule is not None:
                out[value_rule].extend(entries.values())
    for name, inner in plan.messages:
        if msg.HasField(name) and not _gather(getattr(msg, name), inner, out):
            return False
    for name, inner in plan.message_lists:
        items = getattr(msg, name)
        if len(items) > MAX_REPEATED:
            return False
        for item in items:
            if not _gather(item, inner, out):
                return False
    return True
