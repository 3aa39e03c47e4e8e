"""F10 (issue "Hardening"): /adapt must not starve /predict. Adaptation has its own thread
pool, yields to pending predictions between slices of audio, torch's intra-op threads fit
the cores, and a stalled upload gives up its profile lock after UPLOAD_IDLE_TIMEOUT_S."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
from _clips import wave
from tracekws.model.audio import encode_wav
from tracekws.service.runtime import PredictionGate
from tracekws.service.settings import Settings

AUDIO = {"content-type": "audio/wav"}


@pytest.fixture(scope="module")
def wav() -> bytes:
    return encode_wav(wave("yes", 0))


def test_pool_sizes_and_torch_threads_fit_the_cores(monkeypatch, tmp_path):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    s = Settings(data_dir=tmp_path)
    assert (s.predict_pool_threads, s.adapt_pool_threads, s.effective_torch_threads) == (6, 2, 1)
    s = Settings(data_dir=tmp_path, compute_threads=2, adapt_threads=2, torch_threads=2)
    assert s.effective_torch_threads == 2  # 2 x (2 + 2) = 8 cores
    s = Settings(data_dir=tmp_path, compute_threads=4, adapt_threads=2, torch_threads=4)
    assert s.effective_torch_threads == 1  # 4 x 6 would be 24 threads on 8 cores
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    s = Settings(data_dir=tmp_path)
    assert (s.predict_pool_threads, s.adapt_pool_threads, s.effective_torch_threads) == (1, 1, 1)
    for bad in ({"adapt_threads": -1}, {"adapt_yield_ms": 5000}, {"adapt_slice_seconds": 0}):
        with pytest.raises(ValueError):
            Settings(data_dir=tmp_path, **bad)


def test_adaptation_and_prediction_run_on_their_own_threads(make_client, wav):
    c = make_client(compute_threads=1, adapt_threads=1)
    rt = c.app.state.runtime
    seen: dict[str, str] = {}
    feed = rt.adapt_compute

    async def spy(fn, *a, **kw):
        seen.setdefault("adapt", (await feed(threading.current_thread)).name)
        return await feed(fn, *a, **kw)

    rt.adapt_compute = spy
    assert c.post("/adapt", params={"profile": "pools", "label": "yes"}, content=wav,
                  headers=AUDIO).status_code == 201
    seen["predict"] = c.portal.call(rt.compute, threading.current_thread).name
    assert seen["adapt"].startswith("tracekws-adapt")
    assert seen["predict"].startswith("tracekws-predict")


def test_busy_adaptation_pool_does_not_block_predict(make_client, wav):
    """Every adaptation thread taken (here: blocked on purpose): /predict still answers."""
    c = make_client(compute_threads=1, adapt_threads=1)
    rt = c.app.state.runtime
    release = threading.Event()
    blocker = rt.adapt_pool.submit(release.wait, 30)
    try:
        t0 = time.monotonic()
        r = c.post("/predict", content=wav, headers=AUDIO)
        assert r.status_code == 200, r.text
        assert time.monotonic() - t0 < 10
        assert not blocker.done()  # the adaptation pool was busy the whole time
    finally:
        release.set()
    blocker.result(10)


def test_prediction_gate_is_bounded():
    gate = PredictionGate(max_wait_s=0.2)
    t0 = time.monotonic()
    gate.wait_idle()  # nothing pending: no wait
    assert time.monotonic() - t0 < 0.05
    gate.enter()
    t0 = time.monotonic()
    gate.wait_idle()  # a prediction that never ends: the adapter goes on after max_wait_s
    assert 0.15 <= time.monotonic() - t0 < 2
    threading.Timer(0.05, gate.leave).start()
    gate.enter()
    gate.leave()
    t0 = time.monotonic()
    gate.wait_idle()  # released as soon as the last prediction leaves
    assert time.monotonic() - t0 < 0.15
    assert gate.yields == 2 and gate.pending == 0
    off = PredictionGate(max_wait_s=0)
    off.enter()
    t0 = time.monotonic()
    off.wait_idle()
    assert time.monotonic() - t0 < 0.05


def test_stalled_upload_releases_the_profile_lock(uvicorn_server, wav):
    """A real server: an upload that stalls holds the profile's lock only until
    UPLOAD_IDLE_TIMEOUT_S; a second /adapt on the same profile, waiting for that lock,
    then goes through, and /predict is answered during the stall."""
    idle = 1.5
    srv = uvicorn_server(TRACEKWS_UPLOAD_IDLE_TIMEOUT_S=str(idle),
                         TRACEKWS_ADAPT_HYPERPARAMETERS='{"epochs": 1}')
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    s.sendall(b"POST /adapt?profile=stall&label=yes HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: audio/wav\r\nTransfer-Encoding: chunked\r\n\r\n")
    s.sendall(f"{1000:x}\r\n".encode() + wav[:1000] + b"\r\n")  # then nothing
    t_stall = time.monotonic()
    time.sleep(0.3)  # the stalled upload holds the lock now
    second: dict = {}

    def other() -> None:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            r = c.post("/adapt", params={"profile": "stall", "label": "yes"}, content=wav,
                       headers=AUDIO)
            second["status"], second["body"] = r.status_code, r.json()
            second["done"] = time.monotonic()

    t = threading.Thread(target=other)
    t.start()
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        t0 = time.monotonic()
        assert c.post("/predict", content=wav, headers=AUDIO).status_code == 200
        assert time.monotonic() - t0 < idle  # not behind the stalled upload
    s.settimeout(30)
    head = s.recv(65536)
    t_408 = time.monotonic()
    s.close()
    t.join(60)
    assert head.startswith(b"HTTP/1.1 408"), head[:200]
    assert idle * 0.8 <= t_408 - t_stall < idle + 10
    assert second["status"] == 201, second
    assert second["body"]["version"] == 2 and second["body"]["parent"] == 1
    assert second["done"] >= t_stall + idle * 0.8  # it waited for the lock, then got it
