"""Bearer API keys: writes need a key, reads follow predict_requires_key, keys can be limited
to profiles; settings refuse unsafe values."""

import pytest
import torch
from _clips import wave
from pydantic import ValidationError
from tracekws.model.audio import encode_wav
from tracekws.service.settings import Settings

AUDIO = {"content-type": "audio/wav"}  # a body needs a Content-Type (CSRF rule)

ADMIN = "admin-key-0123456789"
ALICE = "alice-key-0123456789"
KEYS = f"{ADMIN};{ALICE}:alice,alice2"


@pytest.fixture(scope="module")
def wav() -> bytes:
    return encode_wav(wave("yes", 0))


def _h(key: str | None) -> dict:
    return {**AUDIO, "authorization": f"Bearer {key}"} if key else dict(AUDIO)


def _adapt(client, key, profile="alice", wav=b""):
    return client.post("/adapt", params={"profile": profile, "label": "yes"}, content=wav,
                       headers=_h(key))


def test_missing_key(make_client, wav):
    c = make_client(api_keys=KEYS)
    r = _adapt(c, None, wav=wav)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert c.post("/profiles", json={"name": "alice"}).status_code == 401
    assert c.delete("/profiles/alice").status_code == 401
    assert c.post("/profiles/alice/versions/1/activate").status_code == 401


def test_wrong_key(make_client, wav):
    c = make_client(api_keys=KEYS)
    for header in ({"authorization": "Bearer wrong-key-0123456789"},
                   {"authorization": "Basic " + ADMIN}, {"authorization": "Bearer"},
                   {"authorization": ADMIN}):
        r = c.post("/adapt", params={"profile": "alice", "label": "yes"}, content=wav,
                   headers={**header, **AUDIO})
        assert r.status_code == 401, header
        assert r.headers["content-type"] == "application/problem+json"


def test_right_keys_and_profile_restriction(make_client, wav):
    c = make_client(api_keys=KEYS)
    assert _adapt(c, ALICE, "alice", wav).status_code == 201
    r = _adapt(c, ALICE, "bob", wav)
    assert r.status_code == 403 and r.json()["code"] == "forbidden-profile"
    assert _adapt(c, ADMIN, "bob", wav).status_code == 201
    assert c.post("/profiles/bob/versions/1/activate", headers=_h(ALICE)).status_code == 403
    assert c.post("/profiles/alice/versions/1/activate", headers=_h(ALICE)).status_code == 200
    assert c.delete("/profiles/bob", headers=_h(ALICE)).status_code == 403
    assert c.delete("/profiles/bob", headers=_h(ADMIN)).status_code == 204


def test_predict_open_by_default(make_client, wav):
    c = make_client(api_keys=KEYS)
    assert c.post("/predict", content=wav, headers=AUDIO).status_code == 200
    assert c.get("/profiles").status_code == 200


def test_predict_requires_key_when_set(make_client, wav):
    c = make_client(api_keys=KEYS, predict_requires_key=True)
    assert c.post("/predict", content=wav, headers=AUDIO).status_code == 401
    assert c.post("/predict", content=wav, headers=_h("nope-nope-nope-nope")).status_code == 401
    assert c.post("/predict", content=wav, headers=_h(ALICE)).status_code == 403  # default
    assert c.post("/predict", content=wav, headers=_h(ADMIN)).status_code == 200
    assert _adapt(c, ALICE, "alice", wav).status_code == 201
    r = c.post("/predict", params={"profile": "alice"}, content=wav, headers=_h(ALICE))
    assert r.status_code == 200
    assert c.get("/profiles/alice/versions", headers=_h(ALICE)).status_code == 200
    assert c.get("/profiles/alice/versions").status_code == 401
    names = [p["name"] for p in c.get("/profiles", headers=_h(ALICE)).json()["profiles"]]
    assert names == ["alice"]
    assert c.get("/healthz").status_code == 200 and c.get("/metrics").status_code == 200


def test_stream_requires_key_when_set(make_client):
    from starlette.websockets import WebSocketDisconnect

    c = make_client(api_keys=KEYS, predict_requires_key=True)
    with c.websocket_connect("/stream") as ws:
        assert ws.receive_json()["problem"]["status"] == 401
        with pytest.raises(WebSocketDisconnect):
            ws.receive_json()
    with c.websocket_connect("/stream", headers=_h(ADMIN)) as ws:
        assert ws.receive_json()["type"] == "ready"
        ws.send_bytes((torch.zeros(1600)).to(torch.int16).numpy().tobytes())
    with c.websocket_connect(f"/stream?token={ADMIN}") as ws:
        assert ws.receive_json()["type"] == "ready"


def test_open_service_without_keys(client, wav):
    assert client.post("/adapt", params={"profile": "x", "label": "yes"},
                       content=wav, headers=AUDIO).status_code == 201


@pytest.mark.parametrize("bad", [
    {"api_keys": "short"},
    {"api_keys": f"{ADMIN};{ADMIN}"},
    {"api_keys": f"{ADMIN}:bad/name"},
    {"api_keys": "has space in it 0123456789"},
    {"max_upload_bytes": 0},
    {"max_upload_bytes": 10 * 1024**3},
    {"max_adapt_seconds": 0},
    {"max_adapt_seconds": 1e6},
    {"max_predict_seconds": -1},
    {"database_url": "mysql://x"},
    {"database_url": "sqlite://"},
    {"adapt_rule": "magic"},
    {"adapt_hyperparameters": {"nonsense": 1}},
    {"adapt_hyperparameters": {"lr": "fast"}},
    {"adapt_hyperparameters": {"epochs": 1.5}},
    {"stream_threshold": 0},
    {"model_cache_size": 0},
])
def test_settings_refuse_unsafe_values(tmp_path, bad):
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, **bad)


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TRACEKWS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("TRACEKWS_API_KEYS", f"{ADMIN} {ALICE}:alice")
    monkeypatch.setenv("TRACEKWS_PREDICT_REQUIRES_KEY", "true")
    monkeypatch.setenv("TRACEKWS_MAX_UPLOAD_BYTES", "2048")
    monkeypatch.setenv("TRACEKWS_ADAPT_HYPERPARAMETERS", '{"lr": 1e-5, "epochs": 2}')
    s = Settings()
    assert s.data_dir == tmp_path and s.predict_requires_key and s.max_upload_bytes == 2048
    assert [k.key for k in s.api_keys] == [ADMIN, ALICE]
    assert s.api_keys[1].profiles == frozenset({"alice"}) and s.api_keys[0].profiles is None
    assert s.database_url == f"sqlite:///{(tmp_path / 'tracekws.db').resolve()}"
    assert s.adapt_hyperparameters == {"lr": 1e-5, "epochs": 2}
    monkeypatch.setenv("TRACEKWS_API_KEYS", f'["{ADMIN}", {{"key": "{ALICE}", '
                                            f'"profiles": ["a"]}}]')
    assert Settings().api_keys[1].profiles == frozenset({"a"})
