"""Every regular expression that reads untrusted text runs in linear time.

Kernel logs, dump notes and requests come from crashed or hostile machines: one pattern that
backtracks exponentially (a `Code:` line followed by 42 hex digits took 15 s) or quadratically
stalls the agent and the collector. The class is closed here, not case by case:

* discovery finds every compiled pattern the packages below the CLI hold at module level, in
  tables too (tuples, dicts, dataclass rows, class attributes) — not a hand-picked list;
* a source scan makes sure no pattern hides inside a function, out of the discovery's reach;
* each pattern is timed over adversarial strings built from its own syntax (tests/redos.py) at
  doubling sizes, and the time may grow at most linearly (a generous factor, above a floor, so
  that it is a complexity check and not a speed target). `re2` patterns are timed too.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import importlib
import pkgutil
import re
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REPO
from tests.redos import Attack, attacks, growth

PACKAGES = ("analysis", "wire", "agent", "collector")
FLOOR = 0.002  # seconds at the largest size below which any growth is fine (noise, not complexity)
SLACK = 2.5  # allowed time ratio over the size ratio (linear = 1.0; quadratic over 4x sizes = 4.0)

try:
    import re2

    _RE2_TYPE: type | None = type(re2.compile("x"))
except ImportError:  # pragma: no cover - re2 is in the lock
    _RE2_TYPE = None


@dataclasses.dataclass(frozen=True)
class Found:
    where: str  # "analysis.oops._CODE_CONT", "analysis.title.OOPS_GROUPS[3].anchor_re" ...
    regex: Any  # re.Pattern or re2's pattern


def _is_pattern(obj: object) -> bool:
    return isinstance(obj, re.Pattern) or (_RE2_TYPE is not None and isinstance(obj, _RE2_TYPE))


def _walk(obj: object, where: str, depth: int, seen: set[int]) -> Iterator[Found]:
    """Patterns reachable from a module-level value through containers and the project's objects."""
    if (
        depth > 8
        or id(obj) in seen
        or isinstance(obj, (str, bytes, int, float, type(None), types.ModuleType))
    ):
        return
    seen.add(id(obj))
    if _is_pattern(obj):
        yield Found(where, obj)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _walk(key, f"{where}[key {key!r}]", depth + 1, seen)
            yield from _walk(value, f"{where}[{key!r}]", depth + 1, seen)
    elif isinstance(obj, (tuple, list, set, frozenset)):
        for n, value in enumerate(obj):
            yield from _walk(value, f"{where}[{n}]", depth + 1, seen)
    elif isinstance(obj, enum.Enum):
        yield from _walk(obj.value, f"{where}.value", depth + 1, seen)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _walk(getattr(obj, f.name), f"{where}.{f.name}", depth + 1, seen)
    elif isinstance(obj, type) and obj.__module__.split(".")[0] in PACKAGES:
        for key, value in vars(obj).items():
            yield from _walk(value, f"{where}.{key}", depth + 1, seen)
    elif type(obj).__module__.split(".")[0] in PACKAGES:  # instances of the project's own classes
        attrs = getattr(obj, "__dict__", None) or {
            s: getattr(obj, s) for s in getattr(type(obj), "__slots__", ()) if hasattr(obj, s)
        }
        for key, value in attrs.items():
            yield from _walk(value, f"{where}.{key}", depth + 1, seen)


def _modules() -> list[types.ModuleType]:
    modules = []
    for name in PACKAGES:
        package = importlib.import_module(name)
        modules.append(package)
        for info in pkgutil.walk_packages(package.__path__, f"{name}."):
            if "_pb2" not in info.name:  # generated protobuf code holds no patterns
                modules.append(importlib.import_module(info.name))
    return modules


def discover() -> list[Found]:
    """Every distinct compiled pattern at module level in PACKAGES, first place seen."""
    found: dict[tuple[object, int], Found] = {}
    for module in _modules():
        seen: set[int] = set()
        for key, value in vars(module).items():
            if isinstance(value, type) and value.__module__ != module.__name__:
                continue  # imported classes are walked where they are defined
            for f in _walk(value, f"{module.__name__}.{key}", 0, seen):
                flags = getattr(f.regex, "flags", 0)
                found.setdefault((f.regex.pattern, flags), f)
    return sorted(found.values(), key=lambda f: f.where)


PATTERNS = discover()


def test_discovery_reaches_tables_and_every_package() -> None:
    """The discovery is not a hand-picked list: it reaches tuples, dataclass rows and all packages."""
    where = {f.where for f in PATTERNS}
    assert "analysis.oops._CODE_CONT" in where
    assert any(w.startswith("analysis.oops._FAULT_ADDR[") for w in where)  # a tuple
    assert any(w.startswith("analysis.") and "]." in w for w in where)  # dataclass rows inside tables
    assert {w.split(".")[0] for w in where} >= {"analysis", "agent", "collector"}  # wire holds none today
    assert len(PATTERNS) > 300


def _literal(node: ast.expr) -> bool:
    """A pattern written out in the call (a table builder passing a variable is fine: its
    results are module-level values the discovery reaches)."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.JoinedStr):
        return all(isinstance(v, ast.Constant) for v in node.values)
    return isinstance(node, ast.BinOp) and _literal(node.left) and _literal(node.right)


def _inline_regex_calls(path: Any) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        for node in ast.walk(func):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in ("re", "re2")
                and node.func.attr in ("compile", "search", "match", "fullmatch", "sub", "subn", "findall",
                                       "finditer", "split")
                and node.args
                and _literal(node.args[0])
            ):  # fmt: skip
                yield f"{path.relative_to(REPO)}:{node.lineno} {node.func.value.id}.{node.func.attr}"


def test_no_pattern_hides_inside_a_function() -> None:
    """A pattern compiled in a function escapes the discovery above: keep them all at module level."""
    hidden = [hit for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))
              for hit in _inline_regex_calls(path)]  # fmt: skip
    assert hidden == []


def _verdict(found: Found, attack: Attack, repeat: int = 3) -> str | None:
    regex = found.regex
    as_bytes = isinstance(regex.pattern, bytes)
    g = growth(regex.search, regex.match, attack, as_bytes=as_bytes, repeat=repeat)
    last = len(g.sizes) - 1
    if g.seconds[last] < FLOOR:
        return None
    base = max(0, last - 2)  # a quarter of the last size
    ratio = g.seconds[last] / max(g.seconds[base], 1e-9)
    allowed = SLACK * g.sizes[last] / g.sizes[base]
    if ratio <= allowed:
        return None
    sample = attack.build(48)
    return (
        f"{found.where}: {g.sizes[base]} -> {g.sizes[last]} chars took {g.seconds[base] * 1e3:.2f} -> "
        f"{g.seconds[last] * 1e3:.2f} ms (x{ratio:.1f}, allowed x{allowed:.1f}) on {sample!r}..."
    )


@pytest.mark.parametrize("found", PATTERNS, ids=[f.where for f in PATTERNS])
def test_pattern_is_linear_on_adversarial_input(found: Found) -> None:
    pattern = found.regex.pattern
    text = pattern.decode("latin-1") if isinstance(pattern, bytes) else pattern
    flags = found.regex.flags if isinstance(found.regex, re.Pattern) else 0
    started = time.perf_counter()
    failures = []
    for attack in attacks(text, flags & ~(re.UNICODE | re.ASCII)):
        failure = _verdict(found, attack)
        if failure:  # measured again, longer, before it counts: one slow sample is not a complexity
            failure = _verdict(found, attack, repeat=7)
        if failure:
            failures.append(failure)
            break  # one is enough to show the pattern is not linear; keep the run short
    assert failures == [], failures
    assert time.perf_counter() - started < 60
