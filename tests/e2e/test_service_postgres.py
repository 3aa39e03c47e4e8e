"""PostgreSQL for real: set ``TRACEKWS_TEST_POSTGRES_URL`` (``postgresql+psycopg://...``, a
role that may create databases; .ci/run starts a throwaway cluster on port 5433) and the
store, concurrency and crash tests also run against PostgreSQL, each test on a database of
its own. Without the variable the PostgreSQL cases are skipped.

Also here: two service processes on one PostgreSQL database, 16 concurrent /adapt calls
across both, one unbroken version chain (the profile lock is a PostgreSQL advisory lock, so
it holds across processes).

The helpers (``BACKENDS``, ``database_url``, ``sql``) are in tests/_postgres.py.
"""

from __future__ import annotations

import httpx
from _clips import wave
from _concurrent import adapt_concurrently
from _postgres import needs_pg, pg_database, sql
from tracekws.model.audio import encode_wav

AUDIO = {"content-type": "audio/wav"}


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
