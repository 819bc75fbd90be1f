"""Durable collector storage: `open_store(url)` picks SQLite or PostgreSQL from the URL."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit, urlunsplit

from collector.store import base
from collector.store.base import *  # noqa: F403 -- the package re-exports the store interface as is
from collector.store.base import Store, StoreError

__all__ = ["open_store"]
__all__ += base.__all__


def open_store(url: str) -> Store:
    """`sqlite:///relative/path.db`, `sqlite:////absolute/path.db`, `sqlite:///:memory:`, or a
    libpq URL `postgresql://user@host:port/db` (an extra `?schema=NAME` query parameter selects a
    schema).

    SQLite paths follow SQLAlchemy's convention: everything after `sqlite:///` is the path, so a
    relative one resolves against the working directory and an absolute one starts with a fourth
    slash. The schema is created or migrated on open; StoreError says why a database cannot be used.
    """
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        from collector.store.sqlite import SqliteStore

        if parts.netloc:
            raise StoreError(f"{url}: sqlite URLs have no host; use sqlite:///relative or sqlite:////absolute")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise StoreError(f"{url}: no database path")
        if path != ":memory:" and not os.path.isabs(path) and not os.path.isdir(os.path.dirname(path) or "."):
            # The usual slip is `sqlite:///var/lib/...` meant as absolute: name the fix.
            raise StoreError(
                f"{url}: {os.path.dirname(path)!r} does not exist under the working directory"
                f" {os.getcwd()!r} (the path is relative; an absolute path takes four slashes:"
                f" sqlite:////{path})"
            )
        return SqliteStore(path)
    if parts.scheme in ("postgresql", "postgres"):
        from collector.store.postgres import PostgresStore

        query = parse_qs(parts.query)
        schema = query.pop("schema", [None])[-1]
        rest = "&".join(f"{k}={v}" for k, values in query.items() for v in values)
        return PostgresStore(urlunsplit(parts._replace(query=rest)), schema=schema)
    raise StoreError(f"{url}: unknown database URL scheme {parts.scheme!r} (sqlite:// or postgresql://)")
