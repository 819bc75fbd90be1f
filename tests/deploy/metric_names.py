"""The metric names the deploy/ artefacts may reference: what collector/metrics.py and
agent/metrics.py really export, and the names a PromQL expression uses.

The metrics classes are built on a fresh registry and their families read back, so the check
follows the code (a renamed counter, a counter that became a gauge) rather than a copy of its
names; a rule or panel on a metric that no longer exists is an alert that can never fire.
"""

from __future__ import annotations

import importlib
import re

import pytest
from prometheus_client import CollectorRegistry

# The class that owns each component's metrics, built with `registry=` like production does.
METRIC_OWNERS: tuple[tuple[str, str], ...] = (
    ("collector.metrics", "Metrics"),
    ("agent.metrics", "AgentMetrics"),
)

# Series a family of each type exposes in the text format (prometheus_client >= 0.20).
SUFFIXES_BY_TYPE: dict[str, tuple[str, ...]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "unknown": ("",),
}

# A metric name inside PromQL: `crashfleet_...` not glued to a recording-rule colon
# (`:crashfleet_crashes:rate1h` is a recorded series, not an exported metric).
_METRIC_IN_EXPR = re.compile(r"(?<![\w:])(crashfleet_[a-z0-9_]+)\b(?!:)")


def exported_series(module_name: str, class_name: str) -> dict[str, str]:
    """Series name -> metric type for one component; a skip naming the module when it is absent."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        pytest.skip(f"{module_name} does not exist in this checkout; its metric names cannot be checked")
    registry = CollectorRegistry()
    getattr(module, class_name)(registry=registry)
    series: dict[str, str] = {}
    for family in registry.collect():
        for suffix in SUFFIXES_BY_TYPE[family.type]:
            series[family.name + suffix] = family.type
    assert series, f"{module_name}.{class_name} registers no metric"
    return series


def known_series() -> dict[str, str]:
    """Every series name the collector and the agent can expose, with its type."""
    series: dict[str, str] = {}
    for module_name, class_name in METRIC_OWNERS:
        series.update(exported_series(module_name, class_name))
    return series


def metrics_in_expr(expr: str) -> set[str]:
    return set(_METRIC_IN_EXPR.findall(expr))
