"""Collector fixtures: one store of each backend per test, fresh and isolated.

PostgreSQL is the real server at 127.0.0.1:5432 (db `test`, user postgres, trust auth); each test
gets its own schema (`cf_test_<random>`), dropped afterwards, so parallel runs never collide.
Where the server is down the PostgreSQL cases skip with the reason, except under CI=true, where
a missing server is a failure.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.store import NewCrash, Store
from collector.store.postgres import PostgresStore
from collector.store.sqlite import SqliteStore
from tests.conftest import IN_CI

PG_URL = os.environ.get("CRASHFLEET_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@functools.cache
def _postgres_problem() -> str | None:
    """Probed once per session: why the test server cannot be used, or None."""
    import psycopg

    try:
        with psycopg.connect(PG_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_URL} unreachable: {str(exc).strip()}"
    return None


def postgres_url_or_skip() -> str:
    """The test database URL, or skip (fail under CI) with the reason it is unusable."""
    problem = _postgres_problem()
    if problem is not None:
        if IN_CI:
            pytest.fail(problem + " (CI=true requires it)")
        pytest.skip(problem)
    return PG_URL


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    """(url, schema) of a fresh PostgreSQL schema, dropped after the test."""
    url = postgres_url_or_skip()
    schema = f"cf_test_{uuid.uuid4().hex[:12]}"
    yield url, schema
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same tests against both backends."""
    if request.param == "sqlite":
        s: Store = SqliteStore(str(tmp_path / "collector.db"))
    else:
        url, schema = request.getfixturevalue("pg_schema")
        s = PostgresStore(url, schema=schema)
    yield s
    s.close()


NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def make_crash(
    key: str,
    *,
    host: str = "web-1",
    frames: tuple[str, ...] = ("crashme_napi_pending", "net_rx_action", "__do_softirq", "run_ksoftirqd"),
    kind: str = "null-deref",
    reason: str = "BUG: kernel NULL pointer dereference",
    fingerprint: str | None = None,
    release: str = "6.1.0-26-amd64",
    hardware: str = "QEMU Standard PC (i440FX + PIIX, 1996)",
    modules: tuple[str, ...] = ("crashme", "e1000e"),
    received_at: datetime = NOW,
    crash_time: datetime | None = None,
) -> NewCrash:
    """A crash as the ingest path would hand it to the store; fingerprint defaults to the frames."""
    fp = fingerprint if fingerprint is not None else "fp-" + "|".join((kind, reason, *frames))
    return NewCrash(
        idempotency_key=key,
        host=host,
        title=f"{reason} in {frames[0] if frames else '?'}",
        kind=kind,
        normalized_reason=reason,
        guilty_frame=frames[0] if frames else "",
        fingerprint=fp,
        fingerprint_version="fp-test",
        frames=frames,
        source=f"/var/crash/{key}/dmesg.txt",
        crash_time=crash_time,
        received_at=received_at,
        kernel_release=release,
        hardware=hardware,
        modules=modules,
        signature_json=f'{{"kind": "{kind}"}}',
        excerpt="BUG: kernel NULL pointer dereference\n",
        host_facts={"kernel_release": release, "machine": "x86_64"},
    )


def at(minutes: int) -> datetime:
    return NOW + timedelta(minutes=minutes)
