"""Bad input never gives a 5xx: one test per case of issue 4 point 2 (and a few more), each
answered as RFC 9457 problem JSON."""

import io

import numpy as np
import pytest
import soundfile as sf
import torch
from _clips import wave
from tracekws.model.audio import encode_wav

AUDIO = {"content-type": "audio/wav"}  # a body needs a Content-Type (CSRF rule)

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def wav() -> bytes:
    return encode_wav(wave("yes", 0))


def _problem(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["type"].startswith("/problems/")
    if code:
        assert body["code"] == code
    return body


def _both(client, data: bytes, ctype: str = "audio/wav", **params):
    """The same body to /predict and /adapt."""
    h = {"content-type": ctype}
    return (client.post("/predict", content=data, headers=h, params=params),
            client.post("/adapt", content=data, headers=h,
                        params={"profile": "p1", "label": "yes", **params}))


def test_empty_body(client):
    for r in _both(client, b""):
        _problem(r, 422, "empty-audio")
    assert client.get("/profiles/p1").status_code == 404  # a failed first /adapt leaves nothing


def test_random_bytes(client):
    rng = np.random.default_rng(0)
    for r in _both(client, rng.bytes(20_000), "application/octet-stream"):
        _problem(r, 422, "not-audio")


def test_random_bytes_with_audio_magic(client):
    rng = np.random.default_rng(1)
    for magic in (b"RIFF", b"fLaC", b"OggS"):
        for r in _both(client, magic + rng.bytes(5000), "application/octet-stream"):
            assert r.status_code in (422,), r.text


def test_truncated_wav(client, wav):
    for r in _both(client, wav[: len(wav) // 2]):
        _problem(r, 422, "truncated-audio")


def test_truncated_flac(client):
    buf = io.BytesIO()
    sf.write(buf, wave("no", 0).numpy(), 16_000, format="FLAC")
    data = buf.getvalue()
    for r in _both(client, data[: len(data) // 2], "audio/flac"):
        assert r.status_code == 422


def test_wrong_content_type(client, wav):
    for ctype in ("text/plain", "application/json", "image/png"):
        for r in _both(client, wav, ctype):
            _problem(r, 415, "unsupported-media-type")


def test_body_over_limit(make_client):
    client = make_client(max_upload_bytes=8 * 1024)
    big = encode_wav(torch.zeros(16_000))  # 32 kB
    for r in _both(client, big):
        _problem(r, 413, "body-too-large")


def test_body_over_limit_without_content_length(make_client):
    """Chunked upload: the limit is enforced on the bytes as they arrive."""
    client = make_client(max_upload_bytes=8 * 1024)
    big = encode_wav(torch.zeros(16_000))

    def gen():
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    r = client.post("/adapt", params={"profile": "p1", "label": "yes"}, content=gen(),
                    headers=AUDIO)
    _problem(r, 413, "body-too-large")


def test_audio_over_duration_limit(make_client):
    client = make_client(max_adapt_seconds=2, max_predict_seconds=1)
    three = encode_wav(torch.cat([wave("yes", 0)] * 3))
    for r in _both(client, three):
        _problem(r, 413, "audio-too-long")
    flac = io.BytesIO()
    sf.write(flac, torch.cat([wave("yes", 0)] * 3).numpy(), 16_000, format="FLAC")
    for r in _both(client, flac.getvalue(), "audio/flac"):
        _problem(r, 413, "audio-too-long")
    assert client.get("/profiles/p1").status_code == 404


def test_unknown_profile(client, wav):
    _problem(client.post("/predict", params={"profile": "ghost"}, content=wav, headers=AUDIO), 404,
             "unknown-profile")
    _problem(client.get("/profiles/ghost"), 404, "unknown-profile")
    _problem(client.get("/profiles/ghost/versions"), 404, "unknown-profile")
    _problem(client.get("/profiles/ghost/versions/1"), 404, "unknown-profile")
    _problem(client.get("/profiles/ghost/versions/1/weights"), 404, "unknown-profile")
    _problem(client.post("/profiles/ghost/versions/1/activate"), 404, "unknown-profile")
    _problem(client.delete("/profiles/ghost"), 404, "unknown-profile")


def test_unknown_version(client, wav):
    assert client.post("/profiles", json={"name": "vv"}).status_code == 201
    _problem(client.post("/predict", params={"profile": "vv", "version": 7}, content=wav,
                         headers=AUDIO), 404,
             "unknown-version")
    _problem(client.post("/predict", params={"version": 2}, content=wav,
                         headers=AUDIO), 404, "unknown-version")
    _problem(client.get("/profiles/vv/versions/7"), 404, "unknown-version")
    _problem(client.get("/profiles/vv/versions/7/weights"), 404, "unknown-version")
    _problem(client.post("/profiles/vv/versions/7/activate"), 404, "unknown-version")
    assert client.get("/profiles/vv").json()["active_version"] == 1


def test_invalid_version_numbers(client, wav):
    for v in ("0", "-1", "abc", "1.5", "99999999999999"):
        _problem(client.post("/predict", params={"version": v}, content=wav, headers=AUDIO), 422,
                 "validation-error")
        _problem(client.get(f"/profiles/default/versions/{v}"), 422, "validation-error")


@pytest.mark.parametrize("label", ["", "x" * 65, "ye\x00s", "a\nb", "tab\there", "\x7f",
                                   "bell\x07", " yes", "yes ", "zw\u200bj"])
def test_invalid_label(client, wav, label):
    r = client.post("/adapt", params={"profile": "p1", "label": label}, content=wav, headers=AUDIO)
    _problem(r, 422, "invalid-label")


def test_missing_label_and_profile(client, wav):
    body = _problem(client.post("/adapt", params={"profile": "p1"}, content=wav,
                                headers=AUDIO), 422,
                    "validation-error")
    assert body["errors"][0]["loc"] == ["query", "label"]
    _problem(client.post("/adapt", params={"label": "yes"}, content=wav, headers=AUDIO), 422)


def test_label_of_64_characters_is_fine(client, wav):
    r = client.post("/adapt", params={"profile": "p1", "label": "é" * 64}, content=wav,
                    headers=AUDIO)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("name", ["", "-x", "a/b", "a" * 65, "sp ace", "..", "ü"])
def test_invalid_profile_name(client, wav, name):
    r = client.post("/predict", params={"profile": name}, content=wav, headers=AUDIO)
    assert r.status_code in (404, 422), r.text  # "" and ".." cannot even reach a route
    r = client.post("/profiles", json={"name": name})
    _problem(r, 422, "validation-error")


def test_bad_profile_body(client):
    _problem(client.post("/profiles", content=b"{not json",
                         headers={"content-type": "application/json"}), 422)
    _problem(client.post("/profiles", json={"name": "ok", "extra": 1}), 422)
    _problem(client.post("/profiles", json=["ok"]), 422)


def test_bad_hyperparameters(client, wav):
    for params in ({"lr": "-1"}, {"epochs": "0"}, {"epochs": "1000"}, {"rule": "magic"},
                   {"optimizer": "lbfgs"}, {"lr": "nan"}, {"contrast": "classes", "rule":
                                                            "readout"}):
        r = client.post("/adapt", params={"profile": "p1", "label": "yes", **params},
                        content=wav, headers=AUDIO)
        _problem(r, 422)


def test_no_speech(client):
    short = encode_wav(torch.zeros(800))  # 50 ms: too little to hold an utterance
    _problem(client.post("/adapt", params={"profile": "p1", "label": "yes"}, content=short,
                         headers=AUDIO),
             422, "no-speech")


def test_too_short_for_predict(client):
    _problem(client.post("/predict", content=encode_wav(torch.zeros(100)),
                         headers=AUDIO), 422, "too-short")


def test_non_finite_and_bad_rate(client):
    x = np.zeros(16_000, dtype=np.float32)
    x[5] = np.inf
    buf = io.BytesIO()
    sf.write(buf, x, 16_000, format="WAV", subtype="FLOAT")
    for r in _both(client, buf.getvalue()):
        _problem(r, 422, "non-finite-audio")
    buf = io.BytesIO()
    sf.write(buf, np.zeros(4000, dtype=np.float32), 4_000, format="WAV")
    for r in _both(client, buf.getvalue()):
        _problem(r, 422, "bad-rate")


def test_multipart_problems(client, wav):
    r = client.post("/predict", files={"audio": ("a.wav", wav, "audio/wav")})
    _problem(r, 422, "missing-file")
    r = client.post("/predict", content=b"--x\r\ngarbage",
                    headers={"content-type": "multipart/form-data"})
    _problem(r, 400, "bad-multipart")


def test_unknown_route_and_method(client):
    _problem(client.get("/nothing-here"), 404, "not-found")
    _problem(client.get("/predict"), 405, "method-not-allowed")
    _problem(client.put("/profiles"), 405)


def test_no_input_gives_5xx(client, wav):
    """A sweep of malformed requests over every route: all 4xx."""
    rng = np.random.default_rng(2)
    bodies = [b"", rng.bytes(300), wav[:44], wav[:100], b"RIFF\xff\xff\xff\xffWAVEfmt "]
    routes = [("POST", "/predict?profile=default"), ("POST", "/adapt?profile=z&label=yes"),
              ("POST", "/profiles"), ("POST", "/profiles/z/versions/1/activate"),
              ("GET", "/profiles/z/versions/x/weights"), ("DELETE", "/profiles/%00")]
    for method, url in routes:
        for body in bodies:
            for ctype in ("audio/wav", "application/json", "multipart/form-data; boundary=b"):
                r = client.request(method, url, content=body, headers={"content-type": ctype})
                assert 400 <= r.status_code < 500, (method, url, body[:10], ctype, r.text)
                assert r.headers["content-type"] == PROBLEM
