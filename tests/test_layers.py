"""The packages point one way: analysis -> wire -> agent | collector -> crashfleet (the CLI).

Read from every module's imports (function-level ones too, since heavy imports hide there), so a
shortcut back up the stack fails here instead of growing unnoticed. The agent must also never
pull in what only the collector needs (scipy, the stores' drivers, the HTTP server).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

# package -> the project packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "analysis": set(),
    "wire": {"analysis"},
    "agent": {"analysis", "wire"},
    "collector": {"analysis", "wire"},
    "crashfleet": {"analysis", "wire", "agent", "collector"},
}
AGENT_FORBIDDEN_LIBRARIES = {"scipy", "numpy", "psycopg", "aiohttp", "jinja2", "debian"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if "_pb2" not in p.name)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_layers_below(package: str) -> None:
    forbidden = set(ALLOWED) - ALLOWED[package] - {package}
    wrong = [
        f"{path.relative_to(REPO)} imports {sorted(_imports(path) & forbidden)}"
        for path in _modules(package)
        if _imports(path) & forbidden
    ]
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_agent_never_imports_collector_only_libraries() -> None:
    wrong = [
        f"{path.relative_to(REPO)} imports {sorted(_imports(path) & AGENT_FORBIDDEN_LIBRARIES)}"
        for package in ("agent", "wire", "analysis")
        for path in _modules(package)
        if _imports(path) & AGENT_FORBIDDEN_LIBRARIES
    ]
    assert not wrong, "\n".join(wrong)


def test_the_layer_test_sees_a_violation(tmp_path: Path) -> None:
    """The checker itself: a module importing upward is caught."""
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from collector.store import Store\n    import crashfleet.cli\n")
    assert {"collector", "crashfleet"} <= _imports(module)
