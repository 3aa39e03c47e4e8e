"""Upload handling at the ASGI level (bodies fed chunk by chunk): 413 before the body is
read, stalled uploads, clients that go away, and /predict batching."""

import asyncio

import pytest
import torch
from _clips import wave
from tracekws.model.audio import encode_wav
from tracekws.model.pipeline import KWSModel
from tracekws.service.batching import Batcher, predict_batch

AUDIO = {"content-type": "audio/wav"}  # a body needs a Content-Type (CSRF rule)


def _call(client, path: str, query: str, chunks, stall_after: int | None = None,
          stall_s: float = 0.0, disconnect_after: int | None = None,
          headers: list[tuple[bytes, bytes]] | None = None):
    """Run one HTTP request through the app; returns (status, body, chunks consumed)."""
    sent: list[dict] = []
    consumed = [0]

    async def receive():
        i = consumed[0]
        if disconnect_after is not None and i >= disconnect_after:
            return {"type": "http.disconnect"}
        if stall_after is not None and i >= stall_after:
            await asyncio.sleep(stall_s)
        consumed[0] += 1
        if i < len(chunks):
            return {"type": "http.request", "body": chunks[i], "more_body": i + 1 < len(chunks)}
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": query.encode(), "root_path": "",
             "headers": headers or [(b"content-type", b"audio/wav")],
             "client": ("127.0.0.1", 1), "server": ("testserver", 80),
             "state": {}}
    client.portal.call(client.app, scope, receive, send)
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return (start["status"] if start else None), body, consumed[0]


def test_413_before_the_whole_body_is_read(make_client):
    client = make_client(max_upload_bytes=64 * 1024)
    data = encode_wav(torch.cat([wave("yes", 0)] * 10))  # 320 kB
    chunks = [data[i : i + 8192] for i in range(0, len(data), 8192)]
    status, body, consumed = _call(client, "/adapt", "profile=a&label=yes", chunks)
    assert status == 413 and b"body-too-large" in body
    assert consumed <= 64 * 1024 // 8192 + 1 < len(chunks)
    status, _, consumed = _call(client, "/predict", "", chunks)
    assert status == 413 and consumed < len(chunks)


def test_413_from_content_length_reads_nothing(make_client):
    client = make_client(max_upload_bytes=64 * 1024)
    status, body, consumed = _call(
        client, "/adapt", "profile=a&label=yes", [b"x" * 100],
        headers=[(b"content-type", b"audio/wav"), (b"content-length", b"999999")])
    assert status == 413 and consumed == 0


def test_duration_limit_stops_the_upload_early(make_client):
    client = make_client(max_adapt_seconds=2)
    data = encode_wav(torch.cat([wave("yes", 0)] * 10))
    chunks = [data[i : i + 8192] for i in range(0, len(data), 8192)]
    status, body, consumed = _call(client, "/adapt", "profile=a&label=yes", chunks)
    assert status == 413 and b"audio-too-long" in body
    assert consumed < len(chunks) // 2


def test_stalled_upload_times_out(make_client):
    client = make_client(upload_idle_timeout_s=0.3)
    data = encode_wav(wave("yes", 0))
    chunks = [data[:1000], data[1000:]]
    status, body, _ = _call(client, "/adapt", "profile=s&label=yes", chunks, stall_after=1,
                            stall_s=5)
    assert status == 408 and b"upload-timeout" in body
    assert client.get("/profiles/s").status_code == 404
    # the profile lock was released: the next upload goes through
    r = client.post("/adapt", params={"profile": "s", "label": "yes"}, content=data, headers=AUDIO)
    assert r.status_code == 201 and r.json()["version"] == 2


def test_client_going_away_commits_nothing(make_client):
    client = make_client()
    assert client.post("/adapt", params={"profile": "d", "label": "yes"},
                       content=encode_wav(wave("yes", 0)), headers=AUDIO).status_code == 201
    data = encode_wav(torch.cat([wave("no", 0)] * 3))
    chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    _call(client, "/adapt", "profile=d&label=no", chunks, disconnect_after=5)
    assert client.get("/profiles/d").json()["versions"] == 2
    assert 'tracekws_adaptations_total{outcome="disconnected"} 1' in client.get("/metrics").text
    r = client.post("/adapt", params={"profile": "d", "label": "no"}, content=data, headers=AUDIO)
    assert r.json()["version"] == 3


def test_batcher_batches_concurrent_requests(small_model_path):
    model = KWSModel.load(small_model_path)
    waves = [wave(w, 0) for w in ("yes", "no", "up", "down", "left", "right")]
    waves.append(wave("go", 0)[:8000])  # another length: its own batch

    async def run(fn, *args):
        await asyncio.sleep(0.01)  # let the other requests queue up
        return fn(*args)

    async def main():
        b = Batcher(run, max_batch=4)
        res = await asyncio.gather(*(b.predict(model, w) for w in waves))
        return b, res

    b, res = asyncio.run(main())
    assert b.items == len(waves) and b.batches < len(waves)
    for w, r in zip(waves, res, strict=True):
        expected = model.predict(w)
        assert [lab for lab, _ in r][:1] == [expected[0][0]]
        assert r[0][1] == pytest.approx(expected[0][1], abs=1e-5)
    assert predict_batch(model, [waves[0]])[0] == model.predict(waves[0])  # alone: exact


def test_concurrent_predicts_agree_with_sequential(client):
    import concurrent.futures as cf

    data = [encode_wav(wave(w, 0)) for w in ("yes", "no", "up", "down", "stop", "go", "on", "off")]
    seq = [client.post("/predict", content=d, headers=AUDIO).json() for d in data]
    with cf.ThreadPoolExecutor(8) as ex:
        par = list(ex.map(lambda d: client.post("/predict", content=d, headers=AUDIO).json(), data))
    for a, b in zip(seq, par, strict=True):
        assert a["label"] == b["label"]
        assert a["scores"][0]["probability"] == pytest.approx(b["scores"][0]["probability"],
                                                              abs=1e-5)


def test_slow_upload_hits_the_total_deadline(make_client):
    client = make_client(upload_idle_timeout_s=1.0, upload_timeout_s=0.5)
    data = encode_wav(wave("yes", 0))
    chunks = [data[i : i + 2000] for i in range(0, len(data), 2000)]
    status, body, consumed = _call(client, "/adapt", "profile=t&label=yes", chunks,
                                   stall_after=0, stall_s=0.2)
    assert status == 408 and b"longer than" in body
    assert consumed < len(chunks)


def test_profile_body_is_capped(client):
    r = client.post("/profiles", content=b'{"name": "' + b"a" * 70_000 + b'"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 413
    r = client.post("/profiles", content=b"name=x",
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    assert client.app.state.runtime.locks == {}  # no lock entries left behind


def test_predict_client_going_away_is_not_an_error(client):
    data = encode_wav(wave("no", 0))
    chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    status, _, _ = _call(client, "/predict", "", chunks, disconnect_after=2)
    assert status in (None, 400)
    assert 'status="500"' not in client.get("/metrics").text
