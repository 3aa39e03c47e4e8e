"""Every route through httpx (FastAPI TestClient), on a small untrained model."""

import io

import pytest
import soundfile as sf
import torch
from _clips import clip_path, wave
from tracekws.model.audio import encode_wav
from tracekws.model.pipeline import KWSModel
from tracekws.model.rules import defaults

AUDIO = {"content-type": "audio/wav"}  # a body needs a Content-Type (CSRF rule)

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def yes_wav() -> bytes:
    return encode_wav(wave("yes", 0))


def _adapt(client, profile="alice", label="yes", data=None, **params):
    q = {"profile": profile, "label": label, **params}
    return client.post("/adapt", params=q, content=data or encode_wav(wave(label, 0)),
                       headers=AUDIO)


def test_health_ready_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    assert r.json()["schema"] == "0005_version_detector"
    assert "/adapt" in client.get("/openapi.json").json()["paths"]


def test_predict_raw_wav(client, yes_wav):
    r = client.post("/predict", content=yes_wav, headers=AUDIO)
    assert r.status_code == 200
    body = r.json()
    assert set(body) >= {"label", "scores", "version", "profile", "latency_ms"}
    assert body["profile"] == "default" and body["version"] == 1
    probs = [s["probability"] for s in body["scores"]]
    assert probs == sorted(probs, reverse=True) and abs(sum(probs) - 1) < 1e-3
    assert body["label"] == body["scores"][0]["label"]
    assert len(body["scores"]) == 12


def test_predict_matches_the_model(client, small_model_path):
    m = KWSModel.load(small_model_path)
    w = wave("no", 0)
    r = client.post("/predict", content=clip_path("no", 0).read_bytes(),
                    headers={"content-type": "audio/flac"})
    expected = m.predict(w)
    assert r.json()["label"] == expected[0][0]
    assert abs(r.json()["scores"][0]["probability"] - expected[0][1]) < 1e-5


@pytest.mark.parametrize("ctype", ["audio/flac", "audio/ogg", "application/octet-stream", None])
def test_predict_formats(client, ctype):
    w = wave("go", 0)
    buf = io.BytesIO()
    fmt = {"audio/flac": "FLAC", "audio/ogg": "OGG"}.get(ctype, "WAV")
    sf.write(buf, w.numpy(), 16_000, format=fmt)
    headers = {"content-type": ctype} if ctype else {}
    r = client.post("/predict", content=buf.getvalue(), headers=headers)
    # a body without a Content-Type is refused (415): see test_service_hardening's CSRF tests
    assert r.status_code == (200 if ctype else 415), r.text


def test_predict_multipart(client, yes_wav):
    r = client.post("/predict", files={"file": ("yes.wav", yes_wav, "audio/wav")},
                    data={"note": "ignored"})
    assert r.status_code == 200
    direct = client.post("/predict", content=yes_wav, headers=AUDIO).json()
    assert r.json()["scores"] == direct["scores"]


def test_predict_stereo_44k(client):
    import torchaudio.functional as AF

    x = AF.resample(wave("yes", 0), 16_000, 44_100)
    buf = io.BytesIO()
    sf.write(buf, torch.stack([x, x], 1).numpy(), 44_100, format="WAV", subtype="PCM_16")
    assert client.post("/predict", content=buf.getvalue(), headers=AUDIO).status_code == 200


def test_adapt_creates_profile_and_version(client):
    r = _adapt(client, "alice", "yes")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["version"] == 2 and body["parent"] == 1 and body["label"] == "yes"
    assert body["utterances"] >= 1 and not body["new_label"]
    assert 0 <= body["prob_before"] <= 1 and 0 <= body["prob_after"] <= 1
    assert body["hyperparameters"]["epochs"] == 1
    assert r.headers["location"] == "/profiles/alice/versions/2"
    p = client.get("/profiles/alice").json()
    assert p["active_version"] == 2 and p["versions"] == 2 and not p["read_only"]
    pred = client.post("/predict", params={"profile": "alice"}, content=encode_wav(wave()),
                       headers=AUDIO)
    assert pred.json()["version"] == 2


def test_adapt_enrols_new_keyword_multipart(client):
    data = clip_path("bed", 0).read_bytes()
    r = client.post("/adapt", params={"profile": "bob", "label": "bed"},
                    files={"file": ("bed.flac", data, "audio/flac")})
    assert r.status_code == 201, r.text
    assert r.json()["new_label"]
    v = client.get("/profiles/bob/versions/2").json()
    assert v["labels"][-1] == "bed" and v["label"] == "bed" and v["rule"] == "tp"
    pred = client.post("/predict", params={"profile": "bob"}, content=data, headers=AUDIO).json()
    assert "bed" in [s["label"] for s in pred["scores"]]
    # the default profile does not know the new word
    assert "bed" not in [s["label"] for s in client.post("/predict", content=data,
                                                         headers=AUDIO).json()[
        "scores"]]


def test_adapt_with_rule_and_hyperparameters(client):
    r = _adapt(client, "carol", "no", rule="readout", lr_out=1e-3, epochs=2)
    assert r.status_code == 201, r.text
    hp = client.get("/profiles/carol/versions").json()["versions"][-1]["hyperparameters"]
    assert hp["rule"] == "readout" and hp["lr_out"] == 1e-3 and hp["epochs"] == 2


def test_teaching_not_a_keyword_takes_the_orthogonal_readout_step(client):
    """_unknown_ adapts with readout_orth on and the hidden layer still unless the call says
    otherwise; words do not; the version records which (its lineage)."""
    def last_hp(profile):
        return client.get(f"/profiles/{profile}/versions").json()["versions"][-1][
            "hyperparameters"]

    other = encode_wav(wave("up", 1))  # a false trigger, as the page's button sends it
    assert _adapt(client, "olga", "_unknown_", data=other).status_code == 201
    assert last_hp("olga")["readout_orth"] is True and last_hp("olga")["lr"] == 0.0
    assert _adapt(client, "olga", "yes").status_code == 201
    assert last_hp("olga")["readout_orth"] is False
    assert last_hp("olga")["lr"] == defaults("tp")["lr"] > 0
    r = _adapt(client, "olga", "_unknown_", data=other, readout_orth="false", lr=1e-5)
    assert r.status_code == 201
    assert last_hp("olga")["readout_orth"] is False and last_hp("olga")["lr"] == 1e-5
    assert _adapt(client, "olga", "yes", lr_out=0.25).status_code == 201  # the default step
    r = _adapt(client, "olga", "yes", readout_orth="maybe")
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem")


def test_profile_keeps_its_rule(client):
    r = client.post("/profiles", json={"name": "frank", "rule": "tess"})
    assert r.status_code == 201 and r.json()["rule"] == "tess"
    assert _adapt(client, "frank", "yes").status_code == 201
    assert _adapt(client, "frank", "no", rule="readout").status_code == 201  # a call may override
    rules = [v["rule"] for v in client.get("/profiles/frank/versions").json()["versions"]]
    assert rules == ["pretrained", "tess", "readout"]
    assert client.get("/profiles/frank").json()["rule"] == "tess"
    bad = client.post("/profiles", json={"name": "gina", "rule": "hebb"})
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
    assert _adapt(client, "gina", "yes", rule="hebb").status_code == 422


@pytest.mark.parametrize("rule", ["tess", "eprop", "etlp", "drtp", "decolle"])
def test_adapt_with_every_local_rule(client, rule):
    r = _adapt(client, f"rule-{rule}", "yes", rule=rule)
    assert r.status_code == 201, r.text
    assert r.json()["rule"] == rule


def test_profiles_crud(client):
    r = client.post("/profiles", json={"name": "dave"})
    assert r.status_code == 201 and r.json()["active_version"] == 1
    assert client.post("/profiles", json={"name": "dave"}).status_code == 409
    assert client.post("/profiles", json={"name": "default"}).status_code == 409
    names = [p["name"] for p in client.get("/profiles").json()["profiles"]]
    assert names[0] == "default" and "dave" in names
    assert client.get("/profiles/default").json()["read_only"]
    assert client.delete("/profiles/dave").status_code == 204
    assert client.get("/profiles/dave").status_code == 404
    assert client.delete("/profiles/dave").status_code == 404
    assert "dave" not in [p["name"] for p in client.get("/profiles").json()["profiles"]]


def test_versions_list_activate_and_export(client):
    for _ in range(2):
        assert _adapt(client, "erin", "left").status_code == 201
    body = client.get("/profiles/erin/versions").json()
    assert body["active_version"] == 3
    vs = body["versions"]
    assert [v["version"] for v in vs] == [1, 2, 3]
    assert [v["parent"] for v in vs] == [None, 1, 2]
    assert vs[0]["rule"] == "pretrained" and vs[2]["active"] and not vs[0]["active"]
    for v in vs:
        assert set(v) >= {"version", "parent", "created_at", "rule", "hyperparameters", "clips",
                          "labels", "sha256"}
        assert v["created_at"].endswith("+00:00")
    r = client.post("/profiles/erin/versions/2/activate")
    assert r.json() == {"profile": "erin", "active_version": 2, "previous_version": 3,
                        "sha256": vs[1]["sha256"]}
    assert client.get("/profiles/erin/versions").json()["active_version"] == 2
    w = client.get("/profiles/erin/versions/3/weights")
    assert w.status_code == 200 and w.headers["content-type"] == "application/octet-stream"
    import hashlib

    assert hashlib.sha256(w.content).hexdigest() == vs[2]["sha256"] == w.headers["etag"][1:-1]
    m = KWSModel.from_bytes(w.content)  # a complete, loadable model
    assert m.labels == vs[2]["labels"]


def test_default_profile_versions_and_weights(client, small_model_path):
    body = client.get("/profiles/default/versions").json()
    assert body["active_version"] == 1 and len(body["versions"]) == 1
    w = client.get("/profiles/default/versions/1/weights")
    assert w.content == small_model_path.read_bytes()
    assert client.get("/profiles/default/versions/2").status_code == 404


def test_default_profile_is_read_only(client):
    for r in (_adapt(client, "default", "yes"),
              client.post("/profiles/default/versions/1/activate"),
              client.delete("/profiles/default")):
        assert r.status_code == 403 and r.headers["content-type"] == PROBLEM
        assert r.json()["code"] == "read-only-profile"


def test_metrics(client, yes_wav):
    client.post("/predict", content=yes_wav, headers=AUDIO)
    _adapt(client, "frank", "up")
    text = client.get("/metrics").text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    assert 'tracekws_http_requests_total{method="POST",route="/predict",status="200"}' in text
    assert "tracekws_http_request_duration_seconds_bucket" in text
    assert 'tracekws_adaptations_total{outcome="ok"} 1' in text
    assert "tracekws_predictions_total 1" in text


def test_problem_type_is_described(client):
    r = client.post("/predict", params={"profile": "nobody"}, content=b"x", headers=AUDIO)
    assert r.headers["content-type"] == PROBLEM
    t = r.json()["type"]
    d = client.get(t).json()
    assert d["status"] == 404 and d["title"] == r.json()["title"]


def test_stream_websocket(client):
    pcm = (wave("yes", 0) * 32767).to(torch.int16).numpy().tobytes()
    with client.websocket_connect("/stream?threshold=0.01") as ws:
        ready = ws.receive_json()
        assert ready["type"] == "ready" and ready["sample_rate"] == 16_000
        ws.send_bytes(pcm[:1001])  # odd sizes: a sample split across messages
        ws.send_bytes(pcm[1001:])
        det = ws.receive_json()
        assert det["type"] == "detection"
        assert set(det) == {"type", "label", "probability", "time"}
        assert det["label"] not in ("_unknown_", "_silence_")


def test_stream_unknown_profile_and_text(client):
    from starlette.websockets import WebSocketDisconnect

    with client.websocket_connect("/stream?profile=nobody") as ws:
        msg = ws.receive_json()
        assert msg["type"] == "error" and msg["problem"]["status"] == 404
        with pytest.raises(WebSocketDisconnect) as e:
            ws.receive_json()
        assert e.value.code == 4404
    with client.websocket_connect("/stream") as ws:
        ws.receive_json()
        ws.send_text("hello")
        assert ws.receive_json()["problem"]["status"] == 415
