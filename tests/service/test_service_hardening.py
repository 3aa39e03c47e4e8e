"""Hardening (issue "Hardening"): findings of an attack run against a real server, each
checked here against the behaviour the issue asks for."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import httpx
import pytest
from _clips import wave
from tracekws.model.audio import encode_wav
from tracekws.service.process import ServerProcess

PROBLEM = "application/problem+json"
MIB = 1024 * 1024


def wav_header(data_bytes: int, rate: int = 8000, bits: int = 8, channels: int = 1) -> bytes:
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, bits)
            + b"data" + struct.pack("<I", data_bytes))


def hostile_wav(total: int = 16 * MIB) -> bytes:
    """An 8-bit 8 kHz WAV of ``total`` bytes: ~35 minutes of audio in a 16 MiB upload."""
    return wav_header(total - 44) + b"\x80" * (total - 44)


def vm(pid: int, field: str) -> int:
    """VmHWM / VmRSS of a process, bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


# ---- F1: /predict decodes as a stream, within a sample budget --------------------------------
def test_predict_hostile_wav_memory(uvicorn_server):
    srv = uvicorn_server()
    ok = encode_wav(wave("yes", 0))
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        for _ in range(3):  # warm every path a normal request takes
            assert c.post("/predict", content=ok,
                          headers={"content-type": "audio/wav"}).status_code == 200
        before = vm(srv.proc.pid, "VmHWM")
        r = c.post("/predict", content=hostile_wav(), headers={"content-type": "audio/wav"})
        # the same without a declared length (streamed WAV): the running check bounds it
        open_ended = wav_header(0) + b"\x80" * (16 * MIB - 44)
        r2 = c.post("/predict", content=open_ended, headers={"content-type": "audio/wav"})
        after = vm(srv.proc.pid, "VmHWM")
    for resp in (r, r2):
        assert resp.status_code == 413, resp.text
        assert resp.headers["content-type"] == PROBLEM
        assert resp.json()["code"] == "audio-too-long"
    delta = (after - before) / MIB
    print(f"hostile 16 MiB WAV: peak RSS {before / MIB:.0f} -> {after / MIB:.0f} MiB "
          f"(+{delta:.1f} MiB)")
    assert delta < 50, f"peak RSS grew by {delta:.0f} MiB"


def test_predict_decode_slots(make_client):
    """MAX_CONCURRENT_DECODES: a call that finds every slot taken waits, then gets 503."""
    import threading
    import time

    from test_service_upload import _call

    c = make_client(max_concurrent_decodes=1, upload_idle_timeout_s=0.5)
    data = encode_wav(wave("yes", 0))
    first: list = []
    slow = [data[i : i + 4000] for i in range(0, len(data), 4000)]  # one piece every 0.3 s
    t = threading.Thread(target=lambda: first.append(
        _call(c, "/predict", "", slow, stall_after=1, stall_s=0.3)))
    t.start()
    time.sleep(0.2)
    status, body, _ = _call(c, "/predict", "", [data])
    t.join()
    assert status == 503 and b'"busy"' in body
    assert first[0][0] == 200  # the slow (not stalled) upload finished and freed its slot
    assert _call(c, "/predict", "", [data])[0] == 200


# ---- F2: cross-site requests refused, content type required ----------------------------------
EVIL = "http://evil.example"
AUDIO = {"content-type": "audio/wav"}


def test_cross_origin_writes_refused(client):
    wav = encode_wav(wave("yes", 0))
    assert client.post("/profiles", json={"name": "own"},
                       headers={"origin": "http://testserver"}).status_code == 201
    for headers in ({"origin": EVIL}, {"origin": "null"}, {"sec-fetch-site": "cross-site"},
                    {"origin": "http://testserver.evil.example"},
                    {"origin": "https://testserver:8443"}):
        calls = [client.post("/profiles", json={"name": "csrf"}, headers=headers),
                 client.post("/adapt", params={"profile": "own", "label": "yes"}, content=wav,
                             headers={**AUDIO, **headers}),
                 client.post("/predict", content=wav, headers={**AUDIO, **headers}),
                 client.post("/profiles/own/versions/1/activate", headers=headers),
                 client.delete("/profiles/own", headers=headers)]
        for r in calls:
            assert r.status_code == 403, (headers, r.text)
            assert r.headers["content-type"] == PROBLEM
            assert r.json()["code"] == "cross-origin"
    assert client.get("/profiles/own").json()["versions"] == 1  # nothing changed
    assert client.get("/profiles/csrf").status_code == 404
    # reads stay open to any page (CORS keeps their answers from it)
    assert client.get("/profiles", headers={"origin": EVIL}).status_code == 200
    # same-origin and non-browser clients pass
    assert client.post("/predict", content=wav,
                       headers={**AUDIO, "origin": "http://testserver",
                                "sec-fetch-site": "same-origin"}).status_code == 200
    assert client.post("/predict", content=wav, headers=AUDIO).status_code == 200


def test_cross_origin_websocket_refused(client):
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as e:
        with client.websocket_connect("/stream", headers={"origin": EVIL}):
            pass
    assert e.value.code == 1008
    with client.websocket_connect("/stream", headers={"origin": "http://testserver"}) as ws:
        assert ws.receive_json()["type"] == "ready"


def test_allowed_origins_setting(make_client):
    c = make_client(allowed_origins="https://kws.example.org, http://10.0.0.5:8080")
    for origin, status in (("https://kws.example.org", 201), ("https://kws.example.org:443", 409),
                           ("http://10.0.0.5:8080", 409), ("http://10.0.0.5", 403),
                           (EVIL, 403)):
        r = c.post("/profiles", json={"name": "p"}, headers={"origin": origin})
        assert r.status_code == status, (origin, r.text)
    from pydantic import ValidationError
    from tracekws.service.settings import Settings

    for bad in ("kws.example.org", "https://x.org/path", "ftp://x.org"):
        with pytest.raises(ValidationError):
            Settings(allowed_origins=bad)


def test_state_changing_body_needs_a_json_or_audio_type(client):
    wav = encode_wav(wave("yes", 0))
    for headers in ({}, {"content-type": "text/plain"},
                    {"content-type": "application/x-www-form-urlencoded"}):
        for r in (client.post("/predict", content=wav, headers=headers),
                  client.post("/adapt", params={"profile": "x", "label": "yes"}, content=wav,
                              headers=headers),
                  client.post("/profiles", content=b'{"name": "x"}', headers=headers)):
            assert r.status_code == 415, (headers, r.text)
            assert r.json()["code"] == "unsupported-media-type"
    # bodyless writes (what the page sends to activate and delete) need no type
    assert client.post("/profiles", json={"name": "x"}).status_code == 201
    assert client.post("/profiles/x/versions/1/activate").status_code == 200
    assert client.delete("/profiles/x").status_code == 204


# ---- F5: API keys never in logs; WebSockets authenticate by a first message ------------------
KEY = "secret-key-0123456789-XYZ"


def _serve(tmp_path, model: Path, *args: str, hardened: bool = False, **env: str
           ) -> ServerProcess:
    """A real uvicorn process (uvicorn's own logging, access log on) and its log file;
    ``hardened``: run as ``tracekws serve`` runs it (service.server.uvicorn_config())."""
    return ServerProcess(tmp_path / "d", model, {"TRACEKWS_TORCH_THREADS": "1", **env},
                         uvicorn_args=args, hardened=hardened).start(timeout=60)


def test_stream_auth_by_first_message(make_client):
    from starlette.websockets import WebSocketDisconnect

    c = make_client(api_keys=KEY, predict_requires_key=True)
    with c.websocket_connect("/stream") as ws:
        ws.send_json({"type": "auth", "token": KEY})
        assert ws.receive_json()["type"] == "ready"
        ws.send_json({"type": "auth", "token": KEY})  # a repeated auth message is ignored
        ws.send_bytes(b"\0\0" * 1600)
    for first in ({"type": "auth", "token": "wrong-key-0123456789"}, {"type": "reset"}):
        with c.websocket_connect("/stream") as ws:
            ws.send_json(first)
            msg = ws.receive_json()
            assert msg["type"] == "error" and msg["problem"]["code"] == "unauthorized"
            with pytest.raises(WebSocketDisconnect) as e:
                ws.receive_json()
            assert e.value.code == 4401
    with c.websocket_connect("/stream", headers={"authorization": f"Bearer {KEY}"}) as ws:
        assert ws.receive_json()["type"] == "ready"
    o = make_client()  # open service: the page's auth message is harmless
    with o.websocket_connect("/stream") as ws:
        assert ws.receive_json()["type"] == "ready"
        ws.send_json({"type": "auth", "token": KEY})
        ws.send_bytes(b"\0\0" * 1600)
        ws.send_text("reset")


def test_no_key_in_any_log_line(tmp_path, small_model_path):
    from websockets.sync.client import connect

    srv = _serve(tmp_path, small_model_path, "--log-level", "debug",
                 TRACEKWS_API_KEYS=KEY, TRACEKWS_PREDICT_REQUIRES_KEY="true")
    url = srv.url
    try:
        wav = encode_wav(wave("yes", 0))
        with httpx.Client(base_url=url, timeout=30) as c:
            c.get("/profiles", params={"token": KEY})
            assert c.get("/profiles", headers={"authorization": f"Bearer {KEY}"}
                         ).status_code == 200
            assert c.post(f"/predict?token={KEY}&x=1", content=wav, headers=AUDIO
                          ).status_code == 401
            assert c.get(f"/nope?api_key={KEY}").status_code == 404
            assert c.get(f"/profiles/{KEY}").status_code == 401  # a key where a name goes
        ws_url = url.replace("http", "ws") + "/stream"
        with connect(f"{ws_url}?token={KEY}") as ws:  # the old way: still works, redacted
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        with connect(ws_url) as ws:  # the page's way
            ws.send(json.dumps({"type": "auth", "token": KEY}))
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        time.sleep(0.5)
    finally:
        srv.stop()
    text = srv.log_path.read_text()
    assert "GET /profiles" in text and "/stream" in text, text  # the access log is on
    assert "[redacted]" in text
    leaked = [line for line in text.splitlines() if KEY in line]
    assert not leaked, leaked


# ---- F7 / F6: odd paths, WebSocket limits, slow and over-long requests -----------------------
def test_static_nul_is_404(client):
    for path in ("/static/a%00b", "/static/%00", "/static/app.js%00.png"):
        r = client.get(path)
        assert r.status_code == 404, (path, r.text)
        assert r.headers["content-type"] == PROBLEM


def test_idle_stream_is_closed(make_client):
    from starlette.websockets import WebSocketDisconnect

    c = make_client(stream_idle_timeout_s=0.3)
    with c.websocket_connect("/stream") as ws:
        assert ws.receive_json()["type"] == "ready"
        msg = ws.receive_json()  # nothing sent: closed after 0.3 s
        assert msg["type"] == "error" and msg["problem"]["code"] == "stream-idle"
        with pytest.raises(WebSocketDisconnect) as e:
            ws.receive_json()
        assert e.value.code == 4408


def _raw(port: int, data: bytes, timeout: float = 10.0, trickle: float = 0.0) -> bytes:
    """Send ``data`` on a raw socket (``trickle``: one byte every so often); what comes back
    before the server closes (or ``timeout``)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            if trickle:
                for b in data:
                    s.sendall(bytes([b]))
                    time.sleep(trickle)
            else:
                s.sendall(data)
        except OSError:
            pass
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (TimeoutError, OSError):
            out += b"<timeout>"
        return out


def _upgrade(target: str, extra: str = "") -> bytes:
    return (f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def test_uvicorn_config_limits(tmp_path, small_model_path):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    srv = _serve(tmp_path, small_model_path, hardened=True,
                 TRACEKWS_HTTP_HEADER_TIMEOUT_S="1",
                 TRACEKWS_STREAM_MAX_MESSAGE_BYTES=str(64 * 1024))
    url, port = srv.url, srv.port
    try:
        t0 = time.monotonic()
        out = _raw(port, _upgrade("/stream?x=" + "a" * 9000))  # > 8 KB request line
        assert out.startswith(b"HTTP/1.1 414"), out[:200]
        out = _raw(port, _upgrade("/stream", f"X-Long: {'b' * 9000}\r\n"))  # > 8 KB header
        assert out.startswith(b"HTTP/1.1 4"), out[:200]
        out = _raw(port, b"GET /profiles?" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 414"), out[:200]
        assert time.monotonic() - t0 < 5  # answered, not left hanging
        # slow headers, and a connection that never sends anything: closed after 1 s
        t0 = time.monotonic()
        out = _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 100,
                   trickle=0.05)
        assert b"408" in out.split(b"\r\n", 1)[0], out[:200]
        assert _raw(port, b"") .startswith(b"HTTP/1.1 408")
        assert time.monotonic() - t0 < 10
        # keep-alive requests still work
        with httpx.Client(base_url=url, timeout=10) as c:
            for _ in range(3):
                assert c.get("/healthz").status_code == 200
        # a WebSocket message over STREAM_MAX_MESSAGE_BYTES is refused by the protocol
        with connect(url.replace("http", "ws") + "/stream", max_size=None) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            ws.send(b"\0" * (256 * 1024))
            with pytest.raises(ConnectionClosed) as e:
                while True:
                    ws.recv(timeout=10)
            assert e.value.rcvd is not None and e.value.rcvd.code == 1009
    finally:
        srv.stop()


# ---- F3: a full disk is a 507, /readyz says so, DELETE still frees space ---------------------
def _enospc(*a, **k):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def _sqlite_full(*a, **k):
    import sqlite3

    from sqlalchemy.exc import OperationalError

    raise OperationalError("INSERT INTO versions ...", {},
                           sqlite3.OperationalError("database or disk is full"))


def test_disk_full_is_507_and_not_ready(client, monkeypatch):
    wav = encode_wav(wave("yes", 0))
    rt = client.app.state.runtime
    assert client.post("/profiles", json={"name": "full"}).status_code == 201
    assert client.get("/readyz").status_code == 200
    with monkeypatch.context() as m:
        m.setattr(rt.store, "commit_version", _enospc)
        m.setattr(rt.store, "create_profile", _sqlite_full)
        m.setattr("tracekws.service.decoding.BoundedDecoder.feed", _enospc)  # the spool write
        for r in (client.post("/adapt", params={"profile": "full", "label": "yes"},
                              content=wav, headers=AUDIO),
                  client.post("/profiles", json={"name": "other"}),
                  client.post("/predict", content=wav, headers=AUDIO)):
            assert r.status_code == 507, r.text
            assert r.headers["content-type"] == PROBLEM
            assert r.json()["code"] == "insufficient-storage"
        r = client.get("/readyz")
        assert r.status_code == 503 and r.json()["reason"] == "storage-full"
        assert "storage full" in r.json()["detail"]
        m.setattr(rt.store, "delete_profile", _fail_once(rt.store.delete_profile))
        assert client.delete("/profiles/full").status_code == 204  # frees space, then works
    assert client.get("/profiles/full").status_code == 404
    assert client.get("/readyz").status_code == 200  # a write succeeded


@pytest.mark.parametrize("fmt", ["wav", "flac", "ogg"])
def test_disk_full_is_the_same_507_for_every_format(client, monkeypatch, fmt):
    """WAV is decoded as it arrives, FLAC/OGG are spooled to disk first (libsndfile needs a
    seekable file); when the disk is full each gives the same 507 on /adapt and /predict."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wave("yes", 0).numpy(), 16000, format=fmt.upper(),
             subtype={"wav": "PCM_16", "flac": "PCM_16", "ogg": "VORBIS"}[fmt])
    body, ctype = buf.getvalue(), {"content-type": f"audio/{fmt}"}
    assert client.post("/profiles", json={"name": "full"}).status_code == 201
    with monkeypatch.context() as m:
        # the spool or buffer write
        m.setattr("tracekws.model.stream_decode.StreamDecoder.feed", _enospc)
        for r in (client.post("/adapt", params={"profile": "full", "label": "yes"},
                              content=body, headers=ctype),
                  client.post("/predict", content=body, headers=ctype)):
            assert r.status_code == 507, r.text
            assert r.json()["code"] == "insufficient-storage"
    assert client.delete("/profiles/full").status_code == 204


def _fail_once(fn):
    calls = [0]

    def wrapped(*a, **k):
        calls[0] += 1
        if calls[0] == 1:
            _sqlite_full()
        return fn(*a, **k)

    return wrapped


# ---- Idempotency-Key on /adapt --------------------------------------------------------------
def test_adapt_idempotency_key_survives_restart(make_client):
    wav = encode_wav(wave("yes", 0))

    def adapt(c, key, label="yes", profile="idem"):
        return c.post("/adapt", params={"profile": profile, "label": label}, content=wav,
                      headers={**AUDIO, "idempotency-key": key})

    c = make_client()
    first = adapt(c, "k-1")
    assert first.status_code == 201
    again = adapt(c, "k-1")
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["version"] == first.json()["version"] == 2
    assert again.json()["sha256"] == first.json()["sha256"]
    assert c.get("/profiles/idem").json()["versions"] == 2  # no second version
    c2 = make_client()  # a restarted service on the same database
    assert adapt(c2, "k-1").json()["version"] == 2
    assert adapt(c2, "k-2").status_code == 201  # a new key: a new version
    assert c2.get("/profiles/idem").json()["versions"] == 3
    assert adapt(c2, "k-1", profile="other").status_code == 201  # keys are per profile
    r = adapt(c2, "k-1", label="no")
    assert r.status_code == 422 and r.json()["code"] == "idempotency-key-reused"
    r = adapt(c2, "bad\nkey")
    assert r.status_code == 422


# ---- names: labels in NFC, `default` reserved in every case form -----------------------------
def test_reserved_default_in_every_case(client):
    wav = encode_wav(wave("yes", 0))
    for name in ("DEFAULT", "Default", "dEfAuLt"):
        r = client.post("/profiles", json={"name": name})
        assert r.status_code == 409 and r.json()["code"] == "profile-exists", name
        r = client.post("/adapt", params={"profile": name, "label": "yes"}, content=wav,
                        headers=AUDIO)
        assert r.status_code == 403 and r.json()["code"] == "read-only-profile", name
    assert [p["name"] for p in client.get("/profiles").json()["profiles"]] == ["default"]


def test_labels_are_nfc(client):
    wav = encode_wav(wave("yes", 0))
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    r1 = client.post("/adapt", params={"profile": "nfc", "label": decomposed}, content=wav,
                     headers=AUDIO)
    assert r1.status_code == 201 and r1.json()["label"] == composed
    assert r1.json()["new_label"] is True
    r2 = client.post("/adapt", params={"profile": "nfc", "label": composed}, content=wav,
                     headers=AUDIO)
    assert r2.json()["new_label"] is False  # the same word, not a second class
    labels = client.get("/profiles/nfc/versions/3").json()["labels"]
    assert labels.count(composed) == 1 and decomposed not in labels
