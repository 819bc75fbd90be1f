"""Fixtures every test area shares: where ../shared is, and skipping with a reason when it is absent."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CRASHFLEET_SHARED", REPO.parent / "shared"))
IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared data beside the checkout; skip (visibly) where a clone has none."""
    if not (SHARED / "README.md").is_file():
        pytest.skip(f"../shared is not beside this checkout ({SHARED}); real dumps and corpora unavailable")
    return SHARED


def shared_path(*parts: str) -> Path:
    """A path inside ../shared, or a skip naming what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available (../shared absent or incomplete)")
    return path


@pytest.fixture(autouse=True)
def _sigpipe_untouched() -> Iterator[None]:
    """A test that leaves SIGPIPE at its default action makes a later write to a closed socket kill
    the whole pytest run (exit 141, no report): restore it and fail the test that changed it."""
    if not hasattr(signal, "SIGPIPE"):
        yield
        return
    before = signal.getsignal(signal.SIGPIPE)
    yield
    after = signal.getsignal(signal.SIGPIPE)
    if after != before:
        signal.signal(signal.SIGPIPE, before)
        pytest.fail(f"the test changed the process's SIGPIPE handler from {before!r} to {after!r}")
