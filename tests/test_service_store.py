"""Storage: sha256-checked blobs (a corrupt one is refused and the profile keeps serving its
last good version), no lost updates, migrations, cascade deletes, opt-in raw audio.

Every test runs on SQLite and, with TRACEKWS_TEST_POSTGRES_URL set, on PostgreSQL (a fresh
database each; see test_service_postgres.py)."""

import pytest
from _clips import wave
from sqlalchemy import inspect
from test_service_postgres import BACKENDS, database_url, sql

from model.audio import encode_wav
from service import db
from service.store import Store, VersionConflict

AUDIO = {"content-type": "audio/wav"}  # a body needs a Content-Type (CSRF rule)


@pytest.fixture(scope="module")
def wav() -> bytes:
    return encode_wav(wave("yes", 0))


def _adapt(client, profile, wav, label="yes"):
    r = client.post("/adapt", params={"profile": profile, "label": label}, content=wav,
                    headers=AUDIO)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
def service_settings(service_settings, backend, tmp_path):
    """conftest's factory, on this test's backend (make_client and client follow it)."""
    with database_url(backend, tmp_path) as url:
        if url is None:
            yield service_settings
        else:
            yield lambda **o: service_settings(**{"database_url": url, **o})


def _sql(settings, statement: str, **params) -> list[tuple]:
    return sql(str(settings.database_url), statement, **params)


def test_corrupt_blob_is_refused_and_last_good_version_served(make_client, service_settings,
                                                              wav):
    c = make_client()
    _adapt(c, "alice", wav)
    _adapt(c, "alice", wav)
    good = c.post("/predict", params={"profile": "alice", "version": 2}, content=wav,
                  headers=AUDIO).json()
    s = service_settings()  # overwrite version 3's blob with zeros of the same length
    [(size,)] = _sql(s, "SELECT size FROM versions WHERE profile='alice' AND number=3")
    _sql(s, "UPDATE versions SET weights = :z WHERE profile='alice' AND number=3",
         z=bytes(size))
    c2 = make_client()  # a fresh process: nothing cached
    r = c2.post("/predict", params={"profile": "alice"}, content=wav, headers=AUDIO)
    assert r.status_code == 200
    assert r.json()["version"] == 2 and r.json()["fallback_from"] == 3
    assert r.json()["scores"] == good["scores"]
    for resp in (c2.post("/predict", params={"profile": "alice", "version": 3}, content=wav,
                         headers=AUDIO),
                 c2.get("/profiles/alice/versions/3/weights"),
                 c2.post("/profiles/alice/versions/3/activate"),
                 c2.post("/adapt", params={"profile": "alice", "label": "yes"}, content=wav,
                         headers=AUDIO)):
        assert resp.status_code == 409, resp.text
        assert resp.json()["code"] == "corrupt-weights"
        assert "sha256" in resp.json()["detail"]
    assert "tracekws_corrupt_weights_total" in c2.get("/metrics").text
    # rollback to a good version works and adaptation continues from there
    assert c2.post("/profiles/alice/versions/2/activate").status_code == 200
    v = _adapt(c2, "alice", wav)
    assert v["version"] == 4 and v["parent"] == 2


def test_stale_parent_is_a_conflict_not_a_lost_update(client, wav):
    _adapt(client, "bob", wav)
    rt = client.app.state.runtime
    store: Store = rt.store
    with pytest.raises(VersionConflict):
        store.commit_version("bob", 1, rt.base_bytes, "tp", "yes", {}, 1, ["yes"], {})
    assert client.get("/profiles/bob").json()["versions"] == 2


def test_rollback_then_adapt_branches_from_the_rolled_back_version(client, wav):
    _adapt(client, "carol", wav)
    _adapt(client, "carol", wav)
    client.post("/profiles/carol/versions/1/activate")
    v = _adapt(client, "carol", wav)
    assert (v["version"], v["parent"]) == (4, 1)


def test_migrations_are_idempotent_and_db_is_wal(make_client, service_settings, wav, backend):
    c = make_client()
    _adapt(c, "dave", wav)
    make_client()  # a second start on the same database
    rt = c.app.state.runtime
    assert rt.engine.dialect.name == backend
    assert db.current_revision(rt.engine) == "0003_idempotency_key"
    assert db.migrate(rt.engine) == "0003_idempotency_key"
    assert db.integrity_ok(rt.engine)
    assert c.get("/readyz").json()["database"] == backend
    if backend != "sqlite":
        return
    assert _sql(service_settings(), "PRAGMA journal_mode") == [("wal",)]
    with rt.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_delete_cascades(client, service_settings, wav):
    _adapt(client, "erin", wav)
    _adapt(client, "frank", wav)
    assert client.delete("/profiles/erin").status_code == 204
    s = service_settings()
    assert _sql(s, "SELECT count(*) FROM versions WHERE profile='erin'") == [(0,)]
    assert _sql(s, "SELECT count(*) FROM aliases WHERE profile='erin'") == [(0,)]
    assert _sql(s, "SELECT count(*) FROM versions WHERE profile='frank'") == [(2,)]
    assert db.integrity_ok(client.app.state.runtime.engine)
    v = _adapt(client, "erin", wav)  # the name can be reused, starting over
    assert v["version"] == 2


def test_raw_audio_only_kept_when_profile_opts_in(client, service_settings, wav):
    s = service_settings()
    _adapt(client, "gina", wav)
    assert not s.audio_dir.exists() or not any(s.audio_dir.rglob("*"))
    assert client.post("/profiles", json={"name": "hank", "store_audio": True}).status_code == 201
    _adapt(client, "hank", wav)
    v = client.get("/profiles/hank/versions/2").json()
    kept = s.data_dir / v["tags"]["audio"]
    assert kept.read_bytes() == wav
    assert not any(s.spool_dir.iterdir())  # no temporary files left behind
    client.delete("/profiles/hank")
    assert not kept.exists()


def test_versions_are_immutable_blobs(client, service_settings, wav):
    _adapt(client, "ivy", wav)
    vs = client.get("/profiles/ivy/versions").json()["versions"]
    rows = _sql(service_settings(), "SELECT number, sha256, length(weights), size "
                "FROM versions WHERE profile='ivy' ORDER BY number")
    assert [(r[0], r[1]) for r in rows] == [(v["version"], v["sha256"]) for v in vs]
    assert all(r[2] == r[3] for r in rows)


def test_a_database_of_the_first_schema_is_upgraded_in_place(make_client, service_settings,
                                                             wav):
    c = make_client()
    _adapt(c, "hana", wav)
    rt = c.app.state.runtime
    from alembic import command

    cfg = db.alembic_config(rt.engine.url.render_as_string(hide_password=False))
    with rt.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001_initial")
        conn.commit()
    cols = [c["name"] for c in inspect(rt.engine).get_columns("profiles")]
    assert "rule" not in cols
    c2 = make_client()  # starting the service migrates the old database
    assert db.current_revision(c2.app.state.runtime.engine) == "0003_idempotency_key"
    versions = c2.get("/profiles/hana/versions").json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert c2.get("/profiles/hana").json()["rule"] is None
