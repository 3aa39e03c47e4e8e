"""PostgreSQL for real: set ``TRACEKWS_TEST_POSTGRES_URL`` (``postgresql+psycopg://...``, a
role that may create databases; .ci/run starts a throwaway cluster on port 5433) and the
store, concurrency and crash tests also run against PostgreSQL, each test on a database of
its own. Without the variable the PostgreSQL cases are skipped.

Also here: two service processes on one PostgreSQL database, 16 concurrent /adapt calls
across both, one unbroken version chain (the profile lock is a PostgreSQL advisory lock, so
it holds across processes).

The helpers (``BACKENDS``, ``database_url``, ``sql``) are imported by the other test files.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from _clips import wave
from _concurrent import adapt_concurrently
from tracekws.model.audio import encode_wav

PG_URL = os.environ.get("TRACEKWS_TEST_POSTGRES_URL", "")
needs_pg = pytest.mark.skipif(not PG_URL, reason="set TRACEKWS_TEST_POSTGRES_URL to run the "
                              "PostgreSQL cases")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=needs_pg)]
AUDIO = {"content-type": "audio/wav"}


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


def chain_of(body: dict) -> list[int]:
    """Version numbers from the active one back to 1, following parents."""
    parents = {v["version"]: v["parent"] for v in body["versions"]}
    n, seen = body["active_version"], []
    while n is not None and len(seen) <= len(parents):
        seen.append(n)
        n = parents[n]
    return seen


@needs_pg
def test_two_processes_one_database_one_chain(uvicorn_server, tmp_path_factory):
    with pg_database() as url:
        env = {"TRACEKWS_DATABASE_URL": url, "TRACEKWS_ADAPT_HYPERPARAMETERS": '{"epochs": 1}'}
        a = uvicorn_server(data_dir=tmp_path_factory.mktemp("pg-a") / "data", **env)
        b = uvicorn_server(data_dir=tmp_path_factory.mktemp("pg-b") / "data", **env)
        assert httpx.get(a.url + "/readyz").json()["database"] == "postgresql"
        # 8 calls on each process
        results = adapt_concurrently([b.url, a.url], "two", client_timeout=180, join_timeout=300)
        assert all(r is not None and r.status_code == 201 for r in results), [
            (r.status_code, r.text[:200]) if r is not None else None for r in results]
        got = sorted((r.json()["version"], r.json()["parent"]) for r in results)
        assert got == [(n, n - 1) for n in range(2, 18)]
        for srv in (a, b):  # both processes see the same chain
            body = httpx.get(srv.url + "/profiles/two/versions").json()
            assert body["active_version"] == 17
            assert chain_of(body) == list(range(17, 0, -1))
            assert len({v["sha256"] for v in body["versions"]}) == 17
        assert sql(url, "SELECT count(*) FROM versions WHERE profile = 'two'") == [(17,)]
        a.stop()
        b.stop()


@needs_pg
def test_idempotency_key_and_rollback_on_postgresql(service_settings):
    """Migration 0003's per-profile unique key, a restart, and the advisory lock released
    after each /adapt (the next one on the same profile does not wait)."""
    from fastapi.testclient import TestClient
    from tracekws.service.main import create_app

    wav = encode_wav(wave("yes", 0))

    def adapt(c, key, label="yes", profile="idem"):
        return c.post("/adapt", params={"profile": profile, "label": label}, content=wav,
                      headers={**AUDIO, "idempotency-key": key})

    with pg_database() as url:
        with TestClient(create_app(service_settings(database_url=url))) as c:
            assert adapt(c, "k-1").status_code == 201
            again = adapt(c, "k-1")
            assert again.status_code == 200 and again.json()["version"] == 2
            assert adapt(c, "k-2").status_code == 201
            assert c.post("/profiles/idem/versions/2/activate").status_code == 200
        with TestClient(create_app(service_settings(database_url=url))) as c2:  # a restart
            assert adapt(c2, "k-1").json()["version"] == 2
            assert adapt(c2, "k-1", label="no").status_code == 422
            r = adapt(c2, "k-3")
            assert (r.json()["version"], r.json()["parent"]) == (4, 2)
            assert adapt(c2, "k-1", profile="other").status_code == 201  # keys per profile
        assert sql(url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == [(0,)]
