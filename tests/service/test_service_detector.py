"""Per-keyword thresholds and the refractory time of a profile (issue "Detection in a real
home"): ``PUT /profiles/{p}/detector`` makes a new immutable version with the same weights,
a rollback rolls the settings back, an adaptation keeps them, /stream hears a real "yes"
clip through them (shipped model), the model file's own settings apply to versions without
theirs, and bad input is a 422 problem naming each bad field."""

from __future__ import annotations

import pytest
import torch
from _clips import wave
from tracekws.model.audio import encode_wav
from tracekws.model.pipeline import KWSModel

PROBLEM = "application/problem+json"
AUDIO = {"content-type": "audio/wav"}
KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def _put(client, profile: str, body, **kw):
    return client.put(f"/profiles/{profile}/detector", json=body, **kw)


def _pcm(word: str, i: int) -> bytes:
    """The clip with 0.5 s of silence either side, as 16-bit PCM."""
    x = torch.cat([torch.zeros(8000), wave(word, i), torch.zeros(8000)])
    return (x.clamp(-1, 1) * 32767).round().to(torch.int16).numpy().tobytes()


def _ready(client, query: str) -> dict:
    """/stream's ready message: what the connection is heard with."""
    with client.websocket_connect(f"/stream?{query}") as ws:
        ready = ws.receive_json()
        assert ready["type"] == "ready", ready
        return ready


def _heard(client, query: str, pcm: bytes) -> tuple[dict, list[str]]:
    """/stream's ready message and the labels it detects in ``pcm`` (sent as one message: the
    posteriors message that follows it ends the detections)."""
    with client.websocket_connect(f"/stream?posteriors=true&{query}") as ws:
        ready = ws.receive_json()
        assert ready["type"] == "ready", ready
        ws.send_bytes(pcm)
        found = []
        while (msg := ws.receive_json())["type"] != "posteriors":
            assert msg["type"] == "detection", msg
            found.append(msg["label"])
    return ready, found


def test_setting_thresholds_makes_a_version_and_a_rollback_restores_them(client,
                                                                         service_settings):
    assert client.post("/profiles", json={"name": "alice"}).status_code == 201
    before = client.get("/profiles/alice/detector").json()
    assert before["own"] is None and before["version"] == 1
    assert before["thresholds"] == dict.fromkeys(KEYWORDS, 0.5)
    assert before["refractory"] == 1.0
    assert before["sources"] == {"thresholds": "default", "refractory": "default"}

    r = _put(client, "alice", {"thresholds": {"yes": 0.7, "go": 0.95}, "refractory": 1.5})
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/profiles/alice/versions/2"
    body = r.json()
    assert body["version"] == 2 and body["own"] == {"thresholds": {"yes": 0.7, "go": 0.95},
                                                    "refractory": 1.5}
    assert body["thresholds"] == {**dict.fromkeys(KEYWORDS, 0.5), "yes": 0.7, "go": 0.95}
    assert body["sources"] == {"thresholds": "version", "refractory": "version"}
    versions = client.get("/profiles/alice/versions").json()
    v1, v2 = versions["versions"]
    assert versions["active_version"] == 2
    assert (v2["parent"], v2["rule"], v2["label"], v2["sha256"]) == (1, "detector", None,
                                                                       v1["sha256"])
    assert v1["detector"] is None and v2["detector"] == body["own"]
    assert client.get("/profiles/alice").json()["detector"] == body
    rt = client.app.state.runtime
    assert rt.store.storage_bytes() == len(rt.base_bytes)  # the same blob, not a copy
    # the same settings again: nothing new (a retried PUT), 200
    again = _put(client, "alice", {"refractory": 1.5, "thresholds": {"go": 0.95, "yes": 0.7}})
    assert again.status_code == 200 and again.json() == body
    assert client.get("/profiles/alice").json()["versions"] == 2
    ready = _ready(client, "profile=alice")
    assert ready["version"] == 2 and ready["thresholds"]["yes"] == 0.7
    assert ready["refractory"] == 1.5

    # rollback: the settings go back with the version
    assert client.post("/profiles/alice/versions/1/activate").status_code == 200
    assert client.get("/profiles/alice/detector").json() == before
    ready = _ready(client, "profile=alice")
    assert ready["version"] == 1 and ready["thresholds"]["yes"] == 0.5
    assert ready["refractory"] == 1.0
    assert client.post("/profiles/alice/versions/2/activate").status_code == 200
    assert client.get("/profiles/alice/detector").json() == body


def test_an_adaptation_keeps_the_thresholds_set_by_hand(client):
    assert _put(client, "bob", {"thresholds": {"yes": 0.8}}).status_code == 404  # no profile
    assert client.post("/profiles", json={"name": "bob"}).status_code == 201
    assert _put(client, "bob", {"thresholds": {"yes": 0.8}}).status_code == 201
    r = client.post("/adapt", params={"profile": "bob", "label": "no"},
                    content=encode_wav(wave("no", 0)), headers=AUDIO)
    assert r.status_code == 201, r.text
    d = client.get("/profiles/bob/detector").json()
    assert d["version"] == 3 and d["own"] == {"thresholds": {"yes": 0.8}}
    assert d["thresholds"]["yes"] == 0.8 and d["sources"]["refractory"] == "default"
    v3 = client.get("/profiles/bob/versions/3").json()
    assert v3["rule"] == "tp" and v3["detector"] == {"thresholds": {"yes": 0.8}}


def test_stream_hears_through_a_keywords_own_threshold(make_client, shipped_model_path):
    """The shipped model detects this real "yes" at the global 0.5 (its smoothed posterior
    peaks at 0.974); its own threshold of 1.0 (or 0.98) silences it, another keyword's does
    not, and ``?threshold=`` still sets one threshold for every keyword of that connection."""
    c = make_client(model_path=shipped_model_path)
    pcm = _pcm("yes", 1)
    assert c.post("/profiles", json={"name": "carol"}).status_code == 201
    assert _heard(c, "profile=carol", pcm)[1] == ["yes"]
    assert _put(c, "carol", {"thresholds": {"no": 1.0}}).status_code == 201
    assert _heard(c, "profile=carol", pcm)[1] == ["yes"]
    assert _put(c, "carol", {"thresholds": {"yes": 1.0}}).status_code == 201
    ready, found = _heard(c, "profile=carol", pcm)
    assert found == [] and ready["thresholds"]["yes"] == 1.0 and ready["thresholds"]["no"] == 0.5
    assert _heard(c, "profile=carol&threshold=0.5", pcm)[1] == ["yes"]
    assert _heard(c, "profile=carol&version=2", pcm)[1] == ["yes"]  # {"no": 1.0}
    assert _put(c, "carol", {"thresholds": {"yes": 0.98}}).status_code == 201
    assert _heard(c, "profile=carol", pcm)[1] == []
    assert c.post("/profiles/carol/versions/1/activate").status_code == 200
    assert _heard(c, "profile=carol", pcm)[1] == ["yes"]


def test_the_model_files_settings_apply_to_versions_without_their_own(make_client,
                                                                      small_model_path,
                                                                      tmp_path):
    m = KWSModel.load(small_model_path)
    m.config.detector = {"thresholds": {"yes": 0.9, "no": 0.8}, "refractory": 2.0,
                         "command": "tracekws bench stream ..."}
    m.save(tmp_path / "calibrated")
    c = make_client(model_path=tmp_path / "calibrated.safetensors")
    for profile in ("default", "dave"):
        if profile != "default":
            assert c.post("/profiles", json={"name": profile}).status_code == 201
        d = c.get(f"/profiles/{profile}/detector").json()
        assert d["own"] is None and d["refractory"] == 2.0
        assert d["thresholds"] == {**dict.fromkeys(KEYWORDS, 0.5), "yes": 0.9, "no": 0.8}
        assert d["sources"] == {"thresholds": "model", "refractory": "model"}
    # the version's own part replaces the model's part; the other part stays the model's
    d = _put(c, "dave", {"thresholds": {"go": 0.7}}).json()
    assert d["thresholds"] == {**dict.fromkeys(KEYWORDS, 0.5), "go": 0.7}
    assert d["refractory"] == 2.0
    assert d["sources"] == {"thresholds": "version", "refractory": "model"}
    ready = _ready(c, "profile=dave")
    assert ready["thresholds"]["go"] == 0.7 and ready["refractory"] == 2.0


@pytest.mark.parametrize("body,loc", [
    ({"thresholds": {"lights": 0.5}}, ["body", "thresholds", "lights"]),
    ({"thresholds": {"_unknown_": 0.5}}, ["body", "thresholds", "_unknown_"]),
    ({"thresholds": {"_silence_": 0.5}}, ["body", "thresholds", "_silence_"]),
    ({"thresholds": {"yes": 0}}, ["body", "thresholds", "yes"]),
    ({"thresholds": {"yes": 1.01}}, ["body", "thresholds", "yes"]),
    ({"thresholds": {"yes": -0.5}}, ["body", "thresholds", "yes"]),
    ({"thresholds": {"yes": True}}, ["body", "thresholds", "yes"]),
    ({"thresholds": {"yes": "0.5"}}, ["body", "thresholds", "yes"]),
    ({"thresholds": {"yes": None}}, ["body", "thresholds", "yes"]),
    ({"thresholds": ["yes"]}, ["body", "thresholds"]),
    ({"refractory": -1}, ["body", "refractory"]),
    ({"refractory": 11}, ["body", "refractory"]),
    ({"threshold": 0.5}, ["body", "threshold"]),
    ({}, ["body"]),
    ([], ["body"]),
])
def test_bad_settings_are_a_problem_naming_the_field(client, body, loc):
    assert client.post("/profiles", json={"name": "erin"}).status_code == 201
    r = _put(client, "erin", body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == PROBLEM
    p = r.json()
    assert p["code"] == "validation-error" and p["type"] == "/problems/validation-error"
    assert loc in [e["loc"] for e in p["errors"]], p
    assert client.get("/profiles/erin").json()["versions"] == 1  # nothing was made


def test_every_bad_field_is_named_and_other_bodies_refused(client):
    assert client.post("/profiles", json={"name": "fay"}).status_code == 201
    r = _put(client, "fay", {"thresholds": {"lights": 0.5, "yes": 2, "no": 0.5},
                             "refractory": "long"})
    assert r.status_code == 422
    assert sorted(e["loc"] for e in r.json()["errors"]) == [
        ["body", "refractory"], ["body", "thresholds", "lights"], ["body", "thresholds", "yes"]]
    assert "lights" in r.json()["detail"]
    r = client.put("/profiles/fay/detector", content=b"{nope",
                   headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (422, "validation-error")
    r = client.put("/profiles/fay/detector", content=b'{"thresholds": {"yes": NaN}}',
                   headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = client.put("/profiles/fay/detector", content=b'{"thresholds": {"yes": 0.5}}',
                   headers={"content-type": "text/plain"})
    assert (r.status_code, r.json()["code"]) == (415, "unsupported-media-type")
    r = client.put("/profiles/fay/detector", content=b"{}" + b" " * 70_000,
                   headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["code"]) == (413, "body-too-large")
    r = _put(client, "default", {"thresholds": {"yes": 0.7}})
    assert (r.status_code, r.json()["code"]) == (403, "read-only-profile")
    r = _put(client, "fay", {"thresholds": {"yes": 0.7}}, headers={"origin": "https://x.example"})
    assert (r.status_code, r.json()["code"]) == (403, "cross-origin")
    assert client.get("/profiles/nobody/detector").status_code == 404
    assert client.get("/profiles/fay").json()["versions"] == 1


def test_a_new_word_can_get_its_own_threshold(client):
    r = client.post("/adapt", params={"profile": "gus", "label": "lights"},
                    content=encode_wav(wave("yes", 0)), headers=AUDIO)
    assert r.status_code == 201, r.text
    d = _put(client, "gus", {"thresholds": {"lights": 0.9}}).json()
    assert d["thresholds"]["lights"] == 0.9
    # the version it was checked against lacks "lights": a rolled-back profile refuses it
    assert client.post("/profiles/gus/versions/1/activate").status_code == 200
    r = _put(client, "gus", {"thresholds": {"lights": 0.9}})
    assert r.status_code == 422 and "lights" in r.json()["detail"]
