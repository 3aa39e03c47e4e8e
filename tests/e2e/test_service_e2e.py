"""Against a real uvicorn process over loopback: the whole flow, 16 concurrent /adapt calls,
413 before the body is read, and a SIGKILL in the middle of a streamed /adapt (the last two
on SQLite and, with TRACEKWS_TEST_POSTGRES_URL set, on PostgreSQL)."""

import json
import socket
import sqlite3
import time

import httpx
import pytest
import torch
from _clips import clip_path, wave
from _concurrent import adapt_concurrently
from _postgres import BACKENDS, pg_database, sql
from tracekws.model.audio import encode_wav
from tracekws.model.pipeline import KEYWORDS

AUDIO = {"content-type": "audio/wav"}  # a body needs a Content-Type (CSRF rule)



@pytest.fixture(scope="module")
def server(uvicorn_server):
    return uvicorn_server(TRACEKWS_MAX_UPLOAD_BYTES=str(4 * 1024 * 1024),
                          TRACEKWS_ADAPT_HYPERPARAMETERS='{"epochs": 1}')


def _send_chunked_head(port: int, path: str, ctype: str = "audio/wav") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
              "Transfer-Encoding: chunked\r\n\r\n".encode())
    return s


def _send_chunk(s: socket.socket, data: bytes) -> None:
    s.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")


def _read_response(s: socket.socket) -> tuple[int, dict]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            part = s.recv(65536)
        except ConnectionResetError:
            break
        if not part:
            break
        buf += part
    head, _, rest = buf.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length")), None)
    while length is not None and len(rest) < length:
        part = s.recv(65536)
        if not part:
            break
        rest += part
    return status, json.loads(rest) if rest else {}


def test_end_to_end(server):
    with httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json()["status"] == "ready"
        flac = clip_path("stop", 1).read_bytes()
        p0 = c.post("/predict", content=flac, headers={"content-type": "audio/flac"}).json()
        assert p0["version"] == 1 and p0["profile"] == "default"
        r = c.post("/adapt", params={"profile": "e2e", "label": "stop"}, content=flac,
                   headers={"content-type": "audio/flac"})
        assert r.status_code == 201, r.text
        assert (r.json()["version"], r.json()["parent"]) == (2, 1)
        r = c.post("/adapt", params={"profile": "e2e", "label": "bird"},
                   files={"file": ("b.flac", clip_path("bird", 0).read_bytes(), "audio/flac")})
        assert r.status_code == 201 and r.json()["new_label"]
        vs = c.get("/profiles/e2e/versions").json()
        assert vs["active_version"] == 3 and len(vs["versions"]) == 3
        assert c.post("/predict", params={"profile": "e2e"}, content=flac,
                      headers=AUDIO).json()["version"] == 3
        assert c.post("/profiles/e2e/versions/2/activate").json()["active_version"] == 2
        w = c.get("/profiles/e2e/versions/3/weights")
        assert len(w.content) == vs["versions"][2]["size"]
        bad = c.post("/predict", content=b"garbage bytes here",
                     headers=AUDIO)
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
        assert "tracekws_adaptations_total" in c.get("/metrics").text
    from websockets.sync.client import connect

    pcm = (wave("yes", 0) * 32767).to(torch.int16).numpy().tobytes()
    with connect(server.url.replace("http", "ws") + "/stream?profile=e2e&threshold=0.01") as ws:
        ready = json.loads(ws.recv(timeout=30))
        assert ready["type"] == "ready" and ready["version"] == 2
        for i in range(0, len(pcm), 3200):
            ws.send(pcm[i : i + 3200])
        det = json.loads(ws.recv(timeout=30))
        assert det["type"] == "detection" and det["time"] > 0


@pytest.fixture(params=BACKENDS)
def backend_db(request):
    """(backend, database URL or None for the server's own SQLite file)."""
    if request.param == "sqlite":
        yield "sqlite", None
    else:
        with pg_database() as url:
            yield "postgresql", url


@pytest.fixture
def any_server(backend_db, server, uvicorn_server):
    backend, url = backend_db
    if url is None:
        yield server
        return
    srv = uvicorn_server(TRACEKWS_DATABASE_URL=url,
                         TRACEKWS_ADAPT_HYPERPARAMETERS='{"epochs": 1}')
    yield srv
    srv.stop()  # before its database is dropped


def test_16_concurrent_adapts_give_one_unbroken_chain(any_server, backend_db):
    server = any_server
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/readyz").json()["database"] == backend_db[0]
    results = adapt_concurrently([server.url], "conc")
    assert all(r is not None and r.status_code == 201 for r in results), [
        (r.status_code, r.text) if r is not None else None for r in results]
    got = sorted((r.json()["version"], r.json()["parent"]) for r in results)
    assert got == [(n, n - 1) for n in range(2, 18)]
    with httpx.Client(base_url=server.url) as c:
        body = c.get("/profiles/conc/versions").json()
    assert body["active_version"] == 17
    chain = {v["version"]: v["parent"] for v in body["versions"]}
    n, seen = 17, []
    while n is not None:
        seen.append(n)
        n = chain[n]
    assert seen == list(range(17, 0, -1))
    assert len({v["sha256"] for v in body["versions"]}) == 17


def test_413_before_the_body_is_read(server):
    """A chunked upload over the limit is answered while the client is still sending."""
    s = _send_chunked_head(server.port, "/adapt?profile=big&label=yes")
    # 48 kHz stereo float WAV of unknown length (384 kB/s): the byte limit comes first
    header = (b"RIFF\xff\xff\xff\xffWAVEfmt " + (16).to_bytes(4, "little")
              + (3).to_bytes(2, "little") + (2).to_bytes(2, "little")
              + (48_000).to_bytes(4, "little") + (384_000).to_bytes(4, "little")
              + (8).to_bytes(2, "little") + (32).to_bytes(2, "little")
              + b"data" + (0).to_bytes(4, "little"))
    _send_chunk(s, header)
    chunk = b"\x00" * 65536
    sent = 0
    s.settimeout(0.05)
    status = None
    try:
        while sent < 64 * 1024 * 1024:  # never finishes the body; stops at the response
            try:
                _send_chunk(s, chunk)
                sent += len(chunk)
            except OSError:
                break
            try:
                if s.recv(1, socket.MSG_PEEK):
                    break
            except TimeoutError:
                continue
        s.settimeout(30)
        status, body = _read_response(s)
    finally:
        s.close()
    assert status == 413 and body["code"] == "body-too-large"
    assert sent < 8 * 1024 * 1024  # answered soon after the 4 MiB limit
    with httpx.Client(base_url=server.url) as c:
        assert c.get("/profiles/big").status_code == 404
        big = b"\x00" * (4 * 1024 * 1024 + 1)
        r = c.post("/predict", content=big, headers=AUDIO)
        assert r.status_code == 413  # Content-Length checked up front


def test_sigkill_mid_adapt_leaves_db_consistent(uvicorn_server, tmp_path_factory, backend_db):
    data = tmp_path_factory.mktemp("killed") / "data"
    backend, url = backend_db
    env = {"TRACEKWS_ADAPT_HYPERPARAMETERS": '{"epochs": 1}'}
    if url is not None:
        env["TRACEKWS_DATABASE_URL"] = url
    srv = uvicorn_server(data_dir=data, **env)
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        r = c.post("/adapt", params={"profile": "k", "label": "yes"},
                   content=encode_wav(wave("yes", 0)), headers=AUDIO)
        assert r.status_code == 201
        before = c.post("/predict", params={"profile": "k"},
                        content=encode_wav(wave("no", 0)), headers=AUDIO).json()
    long = encode_wav(torch.cat([wave(w, 1) for w in KEYWORDS] * 2))  # 20 s
    s = _send_chunked_head(srv.port, "/adapt?profile=k&label=go")
    for i in range(0, len(long) // 2, 16_000):  # half of it, slowly: TP runs as bytes arrive
        _send_chunk(s, long[i : i + 16_000])
        time.sleep(0.05)
    time.sleep(0.5)
    metrics = httpx.get(srv.url + "/metrics").text
    assert "tracekws_http_requests_in_flight 2" in metrics  # this GET and the /adapt upload
    srv.kill()
    s.close()
    if url is None:
        with sqlite3.connect(data / "tracekws.db") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        url = f"sqlite:///{data / 'tracekws.db'}"
    else:  # the killed process's sessions end (its advisory lock with them)
        deadline = time.monotonic() + 10
        while (others := sql(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                             "current_database() AND pid <> pg_backend_pid()")) != [(0,)] \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert others == [(0,)]
    assert sql(url, "SELECT number FROM versions WHERE profile='k' ORDER BY number"
               ) == [(1,), (2,)]
    assert sql(url, "SELECT v.number FROM aliases a JOIN versions v ON v.id = a.version_id "
               "WHERE a.profile = 'k'") == [(2,)]
    srv2 = uvicorn_server(data_dir=data, **env)
    with httpx.Client(base_url=srv2.url, timeout=60) as c:
        vs = c.get("/profiles/k/versions").json()
        assert vs["active_version"] == 2 and len(vs["versions"]) == 2
        after = c.post("/predict", params={"profile": "k"},
                       content=encode_wav(wave("no", 0)), headers=AUDIO).json()
        assert after["version"] == 2 and after["scores"] == before["scores"]
        r = c.post("/adapt", params={"profile": "k", "label": "go"},
                   content=encode_wav(wave("go", 0)), headers=AUDIO)
        assert (r.json()["version"], r.json()["parent"]) == (3, 2)
    assert not any((data / "spool").iterdir())  # the killed upload's spool was cleaned up
    srv2.stop()  # before a PostgreSQL database is dropped
