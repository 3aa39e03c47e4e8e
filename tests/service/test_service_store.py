"""Storage: sha256-checked blobs (a corrupt one is refused and the profile keeps serving its
last good version), no lost updates, migrations, cascade deletes, opt-in raw audio, detector
settings as part of immutable versions.

Every test runs on SQLite and, with TRACEKWS_TEST_POSTGRES_URL set, on PostgreSQL (a fresh
database each; see test_service_postgres.py)."""

import pytest
from _clips import wave
from _postgres import BACKENDS, database_url, sql
from sqlalchemy import inspect
from tracekws.model.audio import encode_wav
from tracekws.service import db
from tracekws.service.store import Store, VersionConflict

HEAD = "0005_version_detector"

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
    [(size, key)] = _sql(s, "SELECT size, blob FROM versions WHERE profile='alice' AND number=3")
    _sql(s, "UPDATE blobs SET data = :z WHERE sha256 = :k", z=bytes(size), k=key)
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
                         headers=AUDIO),
                 c2.put("/profiles/alice/detector", json={"refractory": 2.0})):
        assert resp.status_code == 409, resp.text
        assert resp.json()["code"] == "corrupt-weights"
        assert "sha256" in resp.json()["detail"]
    assert "tracekws_corrupt_weights_total" in c2.get("/metrics").text
    assert c2.get("/profiles/alice").json()["versions"] == 3  # the PUT made nothing
    assert c2.get("/profiles/alice/detector").json()["version"] == 2  # what /stream serves
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
    assert db.current_revision(rt.engine) == HEAD
    assert db.migrate(rt.engine) == HEAD
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
    rows = _sql(service_settings(), "SELECT v.number, v.sha256, length(b.data), v.size, "
                "b.sha256 FROM versions v JOIN blobs b ON b.sha256 = v.blob "
                "WHERE v.profile='ivy' ORDER BY v.number")
    assert [(r[0], r[1]) for r in rows] == [(v["version"], v["sha256"]) for v in vs]
    assert all(r[2] == r[3] and r[4] == r[1] for r in rows)


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
    assert db.current_revision(c2.app.state.runtime.engine) == HEAD
    versions = c2.get("/profiles/hana/versions").json()["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert c2.get("/profiles/hana").json()["rule"] is None


def _db_bytes(settings) -> int:
    """The SQLite database's size on disk (after a checkpoint: WAL pages are reused)."""
    _sql(settings, "PRAGMA wal_checkpoint(TRUNCATE)")
    path = settings.data_dir / "tracekws.db"
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal"))
               if p.exists())


def test_profiles_share_the_shipped_model(make_client, service_settings, backend):
    """F4: a new profile adds rows, not another copy of the model (200 profiles used to add
    200 x the model's size)."""
    c = make_client(max_profiles=0)
    s = service_settings()
    model_size = c.app.state.runtime.store.base.__len__()
    assert c.post("/profiles", json={"name": "p000"}).status_code == 201
    before = _db_bytes(s) if backend == "sqlite" else 0
    for i in range(1, 200):
        assert c.post("/profiles", json={"name": f"p{i:03d}"}).status_code == 201
    assert _sql(s, "SELECT count(*), sum(size) FROM blobs") == [(1, model_size)]
    assert c.app.state.runtime.store.storage_bytes() == model_size
    if backend == "sqlite":
        grown = _db_bytes(s) - before
        assert grown < 5 * 1024 * 1024, grown  # was about 200 x 1.87 MB with the real model
    # every profile's version 1 still exports the shipped model, checksum and all
    r = c.get("/profiles/p123/versions/1/weights")
    assert r.status_code == 200 and r.content == c.app.state.runtime.base_bytes
    assert r.headers["etag"] == f'"{c.app.state.runtime.base_sha}"'
    assert c.post("/profiles/p123/versions/1/activate").status_code == 200
    assert c.delete("/profiles/p000").status_code == 204
    assert _sql(s, "SELECT count(*) FROM blobs") == [(1,)]


def test_deleting_a_profile_frees_its_own_blobs(client, service_settings, wav):
    v = _adapt(client, "jack", wav)
    s = service_settings()
    assert _sql(s, "SELECT count(*) FROM blobs WHERE sha256 = :k", k=v["sha256"]) == [(1,)]
    assert client.delete("/profiles/jack").status_code == 204
    assert _sql(s, "SELECT count(*) FROM blobs WHERE sha256 = :k", k=v["sha256"]) == [(0,)]
    assert _sql(s, "SELECT count(*) FROM blobs") == [(1,)]  # the shipped model stays


def test_a_corrupt_shared_blob_is_rewritten_by_the_next_write(client, service_settings):
    assert client.post("/profiles", json={"name": "kim"}).status_code == 201
    s = service_settings()
    [(size, key)] = _sql(s, "SELECT size, blob FROM versions WHERE profile='kim'")
    _sql(s, "UPDATE blobs SET data = :z WHERE sha256 = :k", z=bytes(size), k=key)
    r = client.get("/profiles/kim/versions/1/weights")
    assert r.status_code == 409 and r.json()["code"] == "corrupt-weights"
    assert client.post("/profiles", json={"name": "lee"}).status_code == 201
    assert client.get("/profiles/kim/versions/1/weights").status_code == 200


def _problem(r, status, code):
    assert r.status_code == status, r.text
    body = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert body["code"] == code and body["type"] == f"/problems/{code}"
    return body


def test_profile_quota(make_client, service_settings):
    c = make_client(max_profiles=2)
    for name in ("q1", "q2"):
        assert c.post("/profiles", json={"name": name}).status_code == 201
    body = _problem(c.post("/profiles", json={"name": "q3"}), 507, "quota-exceeded")
    assert (body["quota"], body["limit"]) == ("profiles", 2)
    assert "TRACEKWS_MAX_PROFILES" in body["detail"]
    assert c.get("/profiles/q3").status_code == 404
    assert c.get("/readyz").status_code == 200  # a quota is not a full disk
    # a first /adapt would create a profile: refused too, nothing written
    r = c.post("/adapt", params={"profile": "q3", "label": "yes"},
               content=encode_wav(wave("yes", 0)), headers=AUDIO)
    _problem(r, 507, "quota-exceeded")
    assert c.get("/profiles/q3").status_code == 404
    assert c.delete("/profiles/q1").status_code == 204  # DELETE works, and frees a slot
    assert c.post("/profiles", json={"name": "q3"}).status_code == 201


def test_version_quota(make_client, service_settings, wav):
    c = make_client(max_versions_per_profile=2)
    _adapt(c, "vq", wav)  # versions 1 and 2
    r = c.post("/adapt", params={"profile": "vq", "label": "yes"}, content=wav, headers=AUDIO)
    body = _problem(r, 507, "quota-exceeded")
    assert (body["quota"], body["limit"]) == ("versions", 2)
    assert c.get("/profiles/vq").json()["versions"] == 2
    assert c.delete("/profiles/vq").status_code == 204


def test_storage_quota(make_client, service_settings, wav):
    c = make_client()
    size = len(c.app.state.runtime.base_bytes)
    c = make_client(max_storage_bytes=size + size // 2)  # the shared model, not one more
    assert c.post("/profiles", json={"name": "sq1"}).status_code == 201
    assert c.post("/profiles", json={"name": "sq2"}).status_code == 201  # shares the blob
    r = c.post("/adapt", params={"profile": "sq1", "label": "yes"}, content=wav,
               headers=AUDIO)
    body = _problem(r, 507, "quota-exceeded")
    assert (body["quota"], body["limit"]) == ("storage", size + size // 2)
    s = service_settings()
    assert _sql(s, "SELECT count(*) FROM blobs") == [(1,)]
    assert c.get("/profiles/sq1").json()["versions"] == 1


def test_quota_settings_are_checked():
    from pydantic import ValidationError
    from tracekws.service.settings import Settings

    with pytest.raises(ValidationError):
        Settings(max_profiles=-1)
    s = Settings()
    assert (s.max_profiles, s.max_versions_per_profile, s.max_storage_bytes) == (
        100, 100, 1024**3)


def test_migration_0004_moves_blobs_and_back(make_client, service_settings, wav):
    """Upgrade shares identical blobs and keeps each version's bytes (a corrupt one stays
    corrupt); downgrade puts every version's bytes back into versions.weights."""
    c = make_client()
    _adapt(c, "mia", wav)
    assert c.post("/profiles", json={"name": "ned"}).status_code == 201
    rt = c.app.state.runtime
    s = service_settings()
    before = {r[0]: r[1] for r in _sql(s, "SELECT v.id, b.data FROM versions v "
                                       "JOIN blobs b ON b.sha256 = v.blob")}
    from alembic import command

    cfg = db.alembic_config(rt.engine.url.render_as_string(hide_password=False))
    with rt.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0003_idempotency_key")
        conn.commit()
    assert "blobs" not in inspect(rt.engine).get_table_names()
    after = {r[0]: bytes(r[1]) for r in _sql(s, "SELECT id, weights FROM versions")}
    assert after == {k: bytes(v) for k, v in before.items()}
    # a corrupt version 1 of mia, stored as its own bytes: must stay corrupt, ned's stays good
    _sql(s, "UPDATE versions SET weights = :z WHERE profile='mia' AND number=1",
         z=bytes(len(after[1])))
    c2 = make_client()  # upgrades again
    assert db.current_revision(c2.app.state.runtime.engine) == HEAD
    assert "weights" not in [x["name"] for x in inspect(rt.engine).get_columns("versions")]
    assert _sql(s, "SELECT count(*) FROM blobs") == [(3,)]  # model, zeros, mia's v2
    r = c2.get("/profiles/mia/versions/1/weights")
    assert r.status_code == 409 and r.json()["code"] == "corrupt-weights"
    assert c2.get("/profiles/ned/versions/1/weights").content == rt.base_bytes
    assert c2.get("/profiles/mia/versions/2/weights").status_code == 200


def test_detector_settings_are_part_of_immutable_versions(client, service_settings, wav):
    """A version's detector settings are a column of its own row: setting them adds a row
    that names the same blob, a rollback moves only the alias, and a setting checked against
    a version that is no longer active is a conflict."""
    _adapt(client, "olga", wav)
    own = {"thresholds": {"yes": 0.7}, "refractory": 2.0}
    r = client.put("/profiles/olga/detector", json=own)
    assert r.status_code == 201, r.text
    s = service_settings()
    rows = _sql(s, "SELECT number, parent, rule, blob, detector FROM versions "
                   "WHERE profile='olga' ORDER BY number")
    assert [(n, p, rule) for n, p, rule, _, _ in rows] == [(1, None, "pretrained"),
                                                          (2, 1, "tp"), (3, 2, "detector")]
    assert rows[2][3] == rows[1][3]  # the same blob
    assert rows[1][4] is None
    import json

    stored = rows[2][4] if isinstance(rows[2][4], dict) else json.loads(rows[2][4])
    assert stored == own
    assert client.post("/profiles/olga/versions/2/activate").status_code == 200
    assert client.get("/profiles/olga/detector").json()["own"] is None
    assert _sql(s, "SELECT count(*) FROM versions WHERE profile='olga'") == [(3,)]
    store: Store = client.app.state.runtime.store
    with pytest.raises(VersionConflict):
        store.commit_detector("olga", 3, {"thresholds": {"yes": 0.9}})
    info, created = store.commit_detector("olga", 2, own)
    assert created and (info.number, info.parent, info.detector) == (4, 2, own)


def test_migration_0005_adds_and_drops_the_detector_column(make_client, service_settings):
    c = make_client()
    assert c.post("/profiles", json={"name": "pia"}).status_code == 201
    assert c.put("/profiles/pia/detector", json={"refractory": 2.0}).status_code == 201
    rt = c.app.state.runtime
    from alembic import command

    cfg = db.alembic_config(rt.engine.url.render_as_string(hide_password=False))
    with rt.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004_shared_blobs")
        conn.commit()
    assert "detector" not in [x["name"] for x in inspect(rt.engine).get_columns("versions")]
    c2 = make_client()  # upgrades again: the versions are kept, without settings of their own
    assert db.current_revision(c2.app.state.runtime.engine) == HEAD
    d = c2.get("/profiles/pia/detector").json()
    assert (d["version"], d["own"], d["refractory"]) == (2, None, 1.0)
