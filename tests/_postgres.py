"""PostgreSQL helpers for the tests: set ``TRACEKWS_TEST_POSTGRES_URL``
(``postgresql+psycopg://...``, a role that may create databases; .ci/run starts a throwaway
cluster on port 5433) and the store, concurrency and crash tests also run against PostgreSQL,
each test on a database of its own. Without the variable the PostgreSQL cases are skipped."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PG_URL = os.environ.get("TRACEKWS_TEST_POSTGRES_URL", "")
needs_pg = pytest.mark.skipif(not PG_URL, reason="set TRACEKWS_TEST_POSTGRES_URL to run the "
                              "PostgreSQL cases")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=needs_pg)]


@contextmanager
def pg_database() -> Iterator[str]:
    """A fresh, empty database on the test server (dropped afterwards); its SQLAlchemy URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(PG_URL)
    name = f"tracekws_t_{uuid.uuid4().hex[:12]}"
    dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def database_url(backend: str, data_dir) -> Iterator[str | None]:
    """None for SQLite (the service's default file in ``data_dir``), else a fresh PG URL."""
    if backend == "sqlite":
        yield None
    else:
        with pg_database() as url:
            yield url


def sql(url: str, statement: str, **params) -> list[tuple]:
    """Run one statement on the service's database (either backend); its rows."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return [tuple(r) for r in result] if result.returns_rows else []
    finally:
        engine.dispose()
