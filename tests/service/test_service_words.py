"""Words of the user's own through the API (issue 14, item 3): ``GET /profiles/{p}/words``
lists what /adapt enrolled, with each word's threshold and recordings; ``PUT
/profiles/{p}/words/{w}`` sets a word's threshold and ``DELETE`` removes the word, each a new
immutable version that /predict then answers with, and that a rollback undoes.

The behaviour tests run on the shipped model, whose file carries the word bank: a profile
learns "café" from three real recordings of speaker 4c6167ca saying "no" (tests/data), once
per module; each test starts from that version by activating it. Bad input is checked on the
small random model (no bank: nothing to enrol, so every word is unknown)."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

import pytest
from _clips import GSC
from tracekws.model.words import MAX_THRESHOLD, WordConfig

PROBLEM = "application/problem+json"
FLAC = {"content-type": "audio/flac"}
WORD = "café"  # composed (NFC); the API must find it under its decomposed spelling too
NFD = unicodedata.normalize("NFD", WORD)
OTHER_VOICE_NO = GSC / "no" / "0ea0e2f4_nohash_0.flac"  # "no" by someone else
KEY = "k" * 16 + "-alice"
OTHER = "o" * 16 + "-bob"


def _speaker_no(i: int) -> bytes:
    """Speaker 4c6167ca's i-th "no": 0-2 enrol the word, 3 is a later repetition."""
    return (GSC / "no" / f"4c6167ca_nohash_{i}.flac").read_bytes()


def _url(profile: str, word: str | None = None) -> str:
    return f"/profiles/{profile}/words" + ("" if word is None else f"/{quote(word, safe='')}")


def _put(client, profile: str, word: str, body, **kw):
    return client.put(_url(profile, word), json=body, **kw)


def _predict(client, profile: str, audio: bytes, **params) -> dict:
    r = client.post("/predict", params={"profile": profile, **params}, content=audio,
                    headers=FLAC)
    assert r.status_code == 200, r.text
    return r.json()


def _p(answer: dict, label: str) -> float | None:
    return next((s["probability"] for s in answer["scores"] if s["label"] == label), None)


def _versions(client, profile: str) -> list[dict]:
    return client.get(f"/profiles/{profile}/versions").json()["versions"]


def _problem(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["code"] == code and body["type"] == f"/problems/{code}", body
    return body


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory, shipped_model_path):
    """A service on the shipped model, and profile "ann" after three /adapt calls teaching it
    "café" (one recording each): (client, the enrolled version, the /adapt answers, the words
    listed after each)."""
    from fastapi.testclient import TestClient
    from tracekws.service.main import create_app
    from tracekws.service.settings import Settings

    settings = Settings(data_dir=tmp_path_factory.mktemp("words") / "data",
                        model_path=shipped_model_path, compute_threads=2, torch_threads=1,
                        adapt_hyperparameters={"epochs": 1})
    with TestClient(create_app(settings)) as c:
        answers, listed = [], []
        for i in range(3):
            r = c.post("/adapt", params={"profile": "ann", "label": WORD}, content=_speaker_no(i),
                       headers=FLAC)
            assert r.status_code == 201, r.text
            answers.append(r.json())
            listed.append(c.get(_url("ann")).json())
        yield c, answers[-1]["version"], answers, listed


@pytest.fixture
def ann(enrolled):
    """The client, with "ann"'s enrolled version active again (a rollback, like any other)."""
    c, version, _, _ = enrolled
    assert c.post(f"/profiles/ann/versions/{version}/activate").status_code == 200
    return c, version


def test_enrolment_is_listed_with_its_recordings_and_the_default_threshold(enrolled):
    c, version, answers, listed = enrolled
    assert [a["new_label"] for a in answers] == [True, False, False]
    # the consistency check the page shows: the first recording has nothing to compare with;
    # the third, the same voice saying the same word, sounds like the first two
    assert answers[0]["prob_before"] == 0.0 and answers[2]["prob_before"] >= 0.5
    assert [w["words"] for w in listed] == [
        [{"word": WORD, "threshold": WordConfig.threshold, "recordings": n}] for n in (1, 2, 3)]
    assert listed[-1] == {
        "profile": "ann", "version": version, "enrols_words": True,
        "words": [{"word": WORD, "threshold": 0.68, "recordings": 3}],
        "default_threshold": 0.68, "max_threshold": MAX_THRESHOLD,
        "recommended_recordings": 3, "max_recordings": WordConfig.max_templates}
    # the shipped model has the bank and no words; a later repetition is the word
    default = c.get(_url("default")).json()
    assert default["enrols_words"] and default["words"] == [] and default["version"] == 1
    assert _predict(c, "ann", _speaker_no(3))["label"] == WORD


def test_a_threshold_makes_a_version_that_predict_uses(ann):
    c, enrolled_v = ann
    other = OTHER_VOICE_NO.read_bytes()
    assert _predict(c, "ann", other)["label"] == "no"  # another voice: not the word
    # the loosest threshold takes it, under the decomposed spelling of the word
    r = _put(c, "ann", NFD, {"threshold": MAX_THRESHOLD})
    assert r.status_code == 201, r.text
    v = r.json()["version"]
    assert v > enrolled_v and r.headers["location"] == f"/profiles/ann/versions/{v}"
    assert r.json()["words"] == [{"word": WORD, "threshold": MAX_THRESHOLD, "recordings": 3}]
    assert c.get(_url("ann")).json() == r.json()
    made, parent = (next(x for x in _versions(c, "ann") if x["version"] == n)
                    for n in (v, enrolled_v))
    assert (made["parent"], made["rule"], made["label"]) == (enrolled_v, "word-threshold", WORD)
    assert made["hyperparameters"] == {"threshold": MAX_THRESHOLD}
    assert made["metrics"] == {"threshold_before": 0.68, "threshold_after": MAX_THRESHOLD,
                               "recordings": 3}
    assert made["labels"] == parent["labels"] and made["sha256"] != parent["sha256"]
    assert _predict(c, "ann", other)["label"] == WORD
    # the same threshold again makes nothing (a retried PUT)
    again = _put(c, "ann", WORD, {"threshold": MAX_THRESHOLD})
    assert again.status_code == 200 and again.json() == r.json()
    assert "location" not in again.headers and _versions(c, "ann")[-1]["version"] == v
    # a strict threshold: even the speaker's own repetition no longer fires
    r = _put(c, "ann", WORD, {"threshold": 0.3})
    assert r.status_code == 201 and r.json()["words"][0]["threshold"] == 0.3
    strict = _predict(c, "ann", _speaker_no(3))
    assert strict["label"] == "no" and _p(strict, WORD) < 0.5
    # a rollback restores the threshold
    assert c.post(f"/profiles/ann/versions/{enrolled_v}/activate").status_code == 200
    assert c.get(_url("ann")).json()["words"][0]["threshold"] == 0.68
    assert _predict(c, "ann", _speaker_no(3))["label"] == WORD


def test_an_adaptation_keeps_the_threshold_set_by_hand(ann):
    c, _ = ann
    assert _put(c, "ann", WORD, {"threshold": 0.9}).status_code == 201
    r = c.post("/adapt", params={"profile": "ann", "label": WORD}, content=_speaker_no(3),
               headers=FLAC)
    assert r.status_code == 201, r.text
    assert not r.json()["new_label"]
    listed = c.get(_url("ann")).json()
    assert listed["version"] == r.json()["version"]
    assert listed["words"] == [{"word": WORD, "threshold": 0.9, "recordings": 4}]


def test_an_adaptation_builds_the_new_versions_word_spotter(ann):
    """After /adapt on a profile with words, the new version's cached model already has a
    current word spotter, so its first /predict does not build one (about a second)."""
    from tracekws.service.runtime import runtime

    c, _ = ann
    r = c.post("/adapt", params={"profile": "ann", "label": "no"},
               content=OTHER_VOICE_NO.read_bytes(), headers=FLAC)
    assert r.status_code == 201, r.text
    rt = runtime(c)
    info = rt.store.version("ann", r.json()["version"])
    model = rt.cache.items[info.sha256]
    assert model._spotter is not None
    assert not model._spotter.stale(model.net, model.in_mean, model.words)


def test_removing_a_word_makes_a_version_without_it(ann):
    c, enrolled_v = ann
    r = c.delete(_url("ann", WORD))
    assert r.status_code == 200, r.text
    v = r.json()["version"]
    assert r.json()["words"] == [] and r.json()["enrols_words"]
    assert c.get(_url("ann")).json() == r.json()
    made = _versions(c, "ann")[-1]
    assert (made["version"], made["parent"], made["rule"], made["label"]) == (
        v, enrolled_v, "word-removed", WORD)
    assert made["metrics"] == {"threshold_before": 0.68, "recordings": 3}
    gone = _predict(c, "ann", _speaker_no(3))
    assert gone["label"] != WORD and _p(gone, WORD) is None
    _problem(c.delete(_url("ann", WORD)), 404, "unknown-word")
    _problem(_put(c, "ann", WORD, {"threshold": 0.5}), 404, "unknown-word")
    # not a hard delete: the older version still has it, and a rollback brings it back
    assert _predict(c, "ann", _speaker_no(3), version=enrolled_v)["label"] == WORD
    assert c.post(f"/profiles/ann/versions/{enrolled_v}/activate").status_code == 200
    assert c.get(_url("ann")).json()["words"][0]["word"] == WORD
    assert _predict(c, "ann", _speaker_no(3))["label"] == WORD


def test_unknown_profiles_and_words_and_the_read_only_profile(client):
    _problem(client.get(_url("nobody")), 404, "unknown-profile")
    _problem(_put(client, "nobody", "lights", {"threshold": 0.5}), 404, "unknown-profile")
    _problem(client.delete(_url("nobody", "lights")), 404, "unknown-profile")
    assert client.post("/profiles", json={"name": "bo"}).status_code == 201
    listed = client.get(_url("bo")).json()  # the small model has no bank: no words to enrol
    assert not listed["enrols_words"] and listed["words"] == [] and listed["version"] == 1
    # "yes" is a class, not a word of the user's own; "AC/DC" is a label /adapt takes
    for word in ("lights", "yes", "AC/DC"):
        p = _problem(_put(client, "bo", word, {"threshold": 0.5}), 404, "unknown-word")
        assert repr(word) in p["detail"]
        _problem(client.delete(_url("bo", word)), 404, "unknown-word")
    _problem(_put(client, "default", "lights", {"threshold": 0.5}), 403, "read-only-profile")
    _problem(client.delete(_url("default", "lights")), 403, "read-only-profile")
    r = _put(client, "bo", "lights", {"threshold": 0.5}, headers={"origin": "https://x.example"})
    _problem(r, 403, "cross-origin")
    assert client.get("/profiles/bo").json()["versions"] == 1  # nothing was made


@pytest.mark.parametrize("body,loc", [
    ({"threshold": 0}, ["body", "threshold"]),
    ({"threshold": -0.5}, ["body", "threshold"]),
    ({"threshold": MAX_THRESHOLD + 0.01}, ["body", "threshold"]),
    ({"threshold": True}, ["body", "threshold"]),
    ({"threshold": "0.5"}, ["body", "threshold"]),
    ({"threshold": None}, ["body", "threshold"]),
    ({}, ["body", "threshold"]),
    ({"threshold": 0.5, "thresholds": 0.5}, ["body", "thresholds"]),
    ([0.5], ["body"]),
])
def test_a_bad_threshold_is_a_problem_naming_the_field(client, body, loc):
    assert client.post("/profiles", json={"name": "cy"}).status_code == 201
    p = _problem(_put(client, "cy", "lights", body), 422, "validation-error")
    assert loc in [e["loc"] for e in p["errors"]], p


def test_bad_bodies_and_words_in_the_path(client):
    assert client.post("/profiles", json={"name": "di"}).status_code == 201
    json_ = {"content-type": "application/json"}
    for raw in (b'{"threshold": NaN}', b'{"threshold": Infinity}', b"{nope"):
        _problem(client.put(_url("di", "x"), content=raw, headers=json_), 422, "validation-error")
    _problem(client.put(_url("di", "x"), content=b'{"threshold": 0.5}',
                        headers={"content-type": "text/plain"}), 415, "unsupported-media-type")
    _problem(client.put(_url("di", "x"), content=b"{}" + b" " * 70_000, headers=json_), 413,
             "body-too-large")
    for word in (" lights", "lights ", "x" * 65, "a\u0007b", "a\u200bb"):
        _problem(_put(client, "di", word, {"threshold": 0.5}), 422, "invalid-label")
        _problem(client.delete(_url("di", word)), 422, "invalid-label")
    assert client.get("/profiles/di").json()["versions"] == 1


def test_keys(make_client):
    c = make_client(api_keys=f"{KEY}:alice {OTHER}:bob", predict_requires_key=True)
    alice, bob = ({"authorization": f"Bearer {k}"} for k in (KEY, OTHER))
    assert c.post("/profiles", json={"name": "alice"}, headers=alice).status_code == 201
    _problem(c.get(_url("alice")), 401, "unauthorized")
    _problem(c.get(_url("alice"), headers=bob), 403, "forbidden-profile")
    assert c.get(_url("alice"), headers=alice).json()["words"] == []
    _problem(_put(c, "alice", "lights", {"threshold": 0.5}), 401, "unauthorized")
    _problem(c.delete(_url("alice", "lights"), headers=bob), 403, "forbidden-profile")
    _problem(c.delete(_url("alice", "lights"), headers=alice), 404, "unknown-word")


def test_every_answer_is_documented(client):
    """The statuses these routes answer are in the schema, and only words routes are new."""
    schema = client.get("/openapi.json").json()["paths"]
    ops = {("get", "/profiles/{profile}/words"), ("put", "/profiles/{profile}/words/{word}"),
           ("delete", "/profiles/{profile}/words/{word}")}
    assert {(m, p) for p, o in schema.items() for m in o if "/words" in p} == ops
    assert client.post("/profiles", json={"name": "ed"}).status_code == 201
    cases = [("get", "/profiles/{profile}/words", _url("ed"), {}, 200),
             ("get", "/profiles/{profile}/words", _url("x y"), {}, 422),
             ("put", "/profiles/{profile}/words/{word}", _url("ed", "w"),
              {"json": {"threshold": 3}}, 422),
             ("put", "/profiles/{profile}/words/{word}", _url("ed", "w"),
              {"json": {"threshold": 1}}, 404),
             ("delete", "/profiles/{profile}/words/{word}", _url("ed", "w"), {}, 404),
             ("delete", "/profiles/{profile}/words/{word}", _url("default", "w"), {}, 403)]
    for method, template, url, kw, status in cases:
        r = client.request(method.upper(), url, **kw)
        assert r.status_code == status, (method, url, r.text)
        assert str(status) in schema[template][method]["responses"], (method, url, status)
