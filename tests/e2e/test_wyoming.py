"""`tracekws wyoming` as a real process, spoken to with the ``wyoming`` package's own client
(what Home Assistant uses): describe → the profile's keywords; a real Speech Commands keyword
clip → a detection of that keyword, at the frame the service's streaming Detector finds it;
a silence clip → not-detected; detect restricts names; other formats are converted; clients
do not share state; a stored profile's new version is picked up, and its per-keyword
thresholds are heard with; a bad profile exits with a clear error; memory stays flat over
long streams. Latencies are printed (run with -s)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from tracekws.model.detect import Detector
from tracekws.model.pipeline import SILENCE, UNKNOWN, KWSModel, ModelConfig
from tracekws.service.process import free_port, stop_process

from tests._clips import clip_path, wave
from tests._store import profile_store

with warnings.catch_warnings():  # wyoming.audio imports the stdlib's deprecated audioop
    warnings.simplefilter("ignore", DeprecationWarning)
    from wyoming.audio import AudioChunk, AudioStart, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.error import Error
    from wyoming.info import Describe, Info
    from wyoming.wake import Detect, Detection, NotDetected

KEYWORD = ("yes", 1)  # 4c6167ca_nohash_0: the shipped model detects it (p ≈ 0.52), checked below
SILENT = ("_silence_", 0)
CHUNK = 320  # samples per audio-chunk (20 ms)
PAD = 8000  # 0.5 s of silence before and after a clip


def pcm16(x: torch.Tensor) -> bytes:
    return (x.clamp(-1, 1) * 32767).round().to(torch.int16).numpy().tobytes()


def padded(word: str, i: int) -> bytes:
    return pcm16(torch.cat([torch.zeros(PAD), wave(word, i), torch.zeros(PAD)]))


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Wyoming:
    """A ``tracekws wyoming`` subprocess on 127.0.0.1 (its output in a log file)."""

    def __init__(self, data_dir: Path, model_path: Path, profile: str = "default",
                 *extra: str) -> None:
        self.port = free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir.parent / f"wyoming-{self.port}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed by stop()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TRACEKWS_DATA_DIR": str(data_dir),
               "TRACEKWS_MODEL_PATH": str(model_path)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracekws.cli", "wyoming", "--uri",
             f"tcp://127.0.0.1:{self.port}", "--profile", profile, *extra],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while True:
            assert self.proc.poll() is None, self.output()
            try:
                self.info = asyncio.run(describe(self.port))
                return
            except OSError:
                assert time.time() < deadline, "no answer to describe: " + self.output()
                time.sleep(0.3)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc, 15)
        self.log.close()


async def describe(port: int) -> Info:
    async with AsyncTcpClient("127.0.0.1", port) as c:
        await c.write_event(Describe().event())
        while True:
            e = await asyncio.wait_for(c.read_event(), 5)
            assert e is not None, "connection closed before info"
            if Info.is_type(e.type):
                return Info.from_event(e)


async def send_stream(c: AsyncTcpClient, pcm: bytes, rate: int = 16000, width: int = 2,
                      channels: int = 1, names: list[str] | None = None,
                      chunk_bytes: int | None = None) -> float:
    """detect (if names), audio-start, the chunks, audio-stop; returns when audio-stop was
    written (perf_counter)."""
    if names is not None:
        await c.write_event(Detect(names=names).event())
    await c.write_event(AudioStart(rate, width, channels).event())
    step = chunk_bytes or CHUNK * width * channels
    for i in range(0, len(pcm), step):
        await c.write_event(AudioChunk(rate, width, channels, pcm[i : i + step]).event())
    await c.write_event(AudioStop().event())
    return time.perf_counter()


async def outcome(c: AsyncTcpClient, timeout: float = 30.0) -> tuple[list, float]:
    """Events up to the first detection or not-detected, and when it arrived."""
    events = []
    while True:
        e = await asyncio.wait_for(c.read_event(), timeout)
        assert e is not None, "connection closed"
        events.append(e)
        if Detection.is_type(e.type) or NotDetected.is_type(e.type):
            return events, time.perf_counter()


async def run_stream(port: int, pcm: bytes, **kw) -> tuple[list, float]:
    """One stream on a new connection: (events, seconds from audio-stop to the outcome)."""
    async with AsyncTcpClient("127.0.0.1", port) as c:
        stop = await send_stream(c, pcm, **kw)
        events, t = await outcome(c)
        return events, t - stop


@pytest.fixture(scope="module")
def shipped(shipped_model_path) -> KWSModel:
    m = KWSModel.load(shipped_model_path)
    m.net.eval()
    return m


@pytest.fixture(scope="module")
def server(tmp_path_factory, shipped_model_path):
    w = Wyoming(tmp_path_factory.mktemp("wyoming") / "data", shipped_model_path)
    yield w
    w.stop()
    assert w.proc.returncode == 0, w.output()  # SIGTERM: a clean exit


def expected(model: KWSModel, pcm: bytes, names: set[str] | None = None) -> list:
    """What the service's streaming detector finds in ``pcm``, fed the same chunks."""
    det = Detector(model)
    out = []
    for i in range(0, len(pcm), CHUNK * 2):
        out += det.feed(pcm[i : i + CHUNK * 2])
    return [d for d in out if names is None or d.label in names]


def test_describe_lists_the_profile_keywords(server, shipped):
    (prog,) = server.info.wake
    assert prog.name == "tracekws" and prog.installed
    want = [lab for lab in shipped.labels if lab not in (UNKNOWN, SILENCE)]
    assert [m.name for m in prog.models] == want and len(want) == 10
    assert all(m.installed for m in prog.models)


def test_keyword_clip_is_detected_like_the_stream_detector(server, shipped):
    pcm = padded(*KEYWORD)
    local = expected(shipped, pcm)
    assert [d.label for d in local] == ["yes"], "the chosen clip must be one the model hears"
    events, latency = asyncio.run(run_stream(server.port, pcm))
    det = Detection.from_event(events[-1])
    assert events[-1].type == "detection" and det.name == "yes"
    # no chunk timestamps sent: ms of audio at the detecting frame, the same frame as /stream's
    assert det.timestamp == round(local[0].time * 1000)
    print(f"\nkeyword {clip_path(*KEYWORD).name}: detected at {det.timestamp} ms of "
          f"{len(pcm) // 32} ms; {latency * 1000:.0f} ms after audio-stop (sent unpaced)")


def test_silence_clip_is_not_detected(server, shipped):
    pcm = padded(*SILENT)
    assert expected(shipped, pcm) == []
    events, latency = asyncio.run(run_stream(server.port, pcm))
    assert [e.type for e in events] == ["not-detected"]
    assert latency < 5.0
    print(f"\nsilence: not-detected {latency * 1000:.0f} ms after audio-stop (sent unpaced)")


def test_paced_stream_latency(server):
    """Real-time pacing (as a microphone sends): how long after the chunk that completes the
    detecting frame does the detection arrive, and the outcome after audio-stop."""
    pcm = padded(*KEYWORD)

    async def go():
        async with AsyncTcpClient("127.0.0.1", server.port) as c:
            await c.write_event(AudioStart(16000, 2, 1).event())
            sent: list[tuple[int, float]] = []  # (ms of audio sent, when)
            reader = asyncio.create_task(outcome(c))
            t0 = time.perf_counter()
            step = CHUNK * 2
            for k, i in enumerate(range(0, len(pcm), step)):
                await asyncio.sleep(max(0.0, t0 + k * 0.02 - time.perf_counter()))
                await c.write_event(AudioChunk(16000, 2, 1, pcm[i : i + step]).event())
                sent.append(((i + step) // 32, time.perf_counter()))
            await c.write_event(AudioStop().event())
            events, t = await reader
            d = Detection.from_event(events[-1])
            when = next(w for ms, w in sent if ms >= d.timestamp)
            return d, t - when

    d, lag = asyncio.run(go())
    assert d.name == "yes"
    assert lag < 1.0
    print(f"\npaced: detection {lag * 1000:.0f} ms after the chunk holding the detecting "
          "frame was sent")


def test_concurrent_realtime_streams(server):
    """N clients (``TRACEKWS_WYOMING_CLIENTS``, default 4) each stream 6 s in real time (the
    keyword clip three times): every keyword is reported to its own client, promptly."""
    n = int(os.environ.get("TRACEKWS_WYOMING_CLIENTS", "4"))
    pcm = padded(*KEYWORD) * 3

    async def one():
        async with AsyncTcpClient("127.0.0.1", server.port) as c:
            await c.write_event(AudioStart(16000, 2, 1).event())
            sent: list[tuple[int, float]] = []
            found: list[tuple[int, float]] = []

            async def read():
                while True:
                    e = await asyncio.wait_for(c.read_event(), 30)
                    if e is None or Info.is_type(e.type):  # answered after the last chunk
                        return
                    if Detection.is_type(e.type):
                        found.append((Detection.from_event(e).timestamp, time.perf_counter()))

            reader = asyncio.create_task(read())
            t0, step = time.perf_counter(), CHUNK * 2
            for k, i in enumerate(range(0, len(pcm), step)):
                await asyncio.sleep(max(0.0, t0 + k * 0.02 - time.perf_counter()))
                await c.write_event(AudioChunk(16000, 2, 1, pcm[i : i + step]).event())
                sent.append(((i + step) // 32, time.perf_counter()))
            await c.write_event(AudioStop().event())
            await c.write_event(Describe().event())
            await asyncio.wait_for(reader, 30)
            return [t - next(w for ms, w in sent if ms >= ts) for ts, t in found]

    async def all_():
        return await asyncio.gather(*(one() for _ in range(n)))

    lags = asyncio.run(all_())
    assert [len(x) for x in lags] == [3] * n
    flat = sorted(x for r in lags for x in r)
    assert flat[-1] < 1.0
    print(f"\n{n} concurrent real-time streams: {len(flat)} detections, lag after the chunk "
          f"median {flat[len(flat) // 2] * 1000:.0f} ms, max {flat[-1] * 1000:.0f} ms")


def test_detect_restricts_names_and_flags_unknown_ones(server):
    pcm = padded(*KEYWORD)
    events, _ = asyncio.run(run_stream(server.port, pcm, names=["no", "hey_jarvis"]))
    assert [e.type for e in events] == ["error", "not-detected"]
    assert "hey_jarvis" in Error.from_event(events[0]).text
    events, _ = asyncio.run(run_stream(server.port, pcm, names=["yes"]))
    assert Detection.from_event(events[-1]).name == "yes"


def test_other_formats_are_converted(server, shipped):
    """32-bit stereo at 16 kHz converts exactly: the same frame as 16-bit mono; 48 kHz is
    resampled by the wyoming converter and still heard."""
    pcm = padded(*KEYWORD)
    s16 = np.frombuffer(pcm, dtype="<i2").astype(np.int32) << 16
    stereo32 = np.repeat(s16, 2).astype("<i4").tobytes()
    events, _ = asyncio.run(run_stream(server.port, stereo32, width=4, channels=2))
    local = expected(shipped, pcm)
    assert Detection.from_event(events[-1]).timestamp == round(local[0].time * 1000)
    x48 = torch.from_numpy(np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768)
    import torchaudio.functional as AF

    x48 = AF.resample(x48, 16000, 48000)
    events, _ = asyncio.run(run_stream(server.port, pcm16(x48), rate=48000))
    assert events[-1].type == "detection" and Detection.from_event(events[-1]).name == "yes"


def test_clients_keep_their_own_state(server):
    """Two connections fed chunk by chunk in turn (one keyword, one silence): each gets its
    own outcome; then one connection runs a second stream (state reset at audio-start)."""
    key, sil = padded(*KEYWORD), padded(*SILENT)

    async def go():
        async with AsyncTcpClient("127.0.0.1", server.port) as a, \
                AsyncTcpClient("127.0.0.1", server.port) as b:
            for c in (a, b):
                await c.write_event(AudioStart(16000, 2, 1).event())
            step = CHUNK * 2
            for i in range(0, max(len(key), len(sil)), step):
                await a.write_event(AudioChunk(16000, 2, 1, key[i : i + step]).event())
                await b.write_event(AudioChunk(16000, 2, 1, sil[i : i + step]).event())
            for c in (a, b):
                await c.write_event(AudioStop().event())
            ea, _ = await outcome(a)
            eb, _ = await outcome(b)
            await send_stream(b, key)  # same connection, a new stream
            eb2, _ = await outcome(b)
            return ea[-1], eb[-1], eb2[-1]

    ra, rb, rb2 = asyncio.run(go())
    assert ra.type == "detection" and Detection.from_event(ra).name == "yes"
    assert rb.type == "not-detected"
    assert rb2.type == "detection" and Detection.from_event(rb2).name == "yes"


def test_memory_stays_bounded_over_long_streams(server, shipped):
    """Two 60 s streams (keywords and silence, sent unpaced): the server's RSS after the
    second is within a few MiB of after the first; every keyword is reported."""
    words = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
    parts = []
    while sum(p.numel() for p in parts) < 60 * 16000:
        for w in words:
            parts += [wave(w, 1), torch.zeros(16000), wave(SILENT[0], 0)]
    pcm = pcm16(torch.cat(parts)[: 60 * 16000])
    pid = server.proc.pid
    before = rss(pid)
    t = time.perf_counter()
    e1, _ = asyncio.run(run_all(server.port, pcm))
    first = time.perf_counter() - t
    after1 = rss(pid)
    e2, _ = asyncio.run(run_all(server.port, pcm))
    after2 = rss(pid)
    n = sum(e.type == "detection" for e in e1)
    assert n >= 10 and n == sum(e.type == "detection" for e in e2)
    assert after2 - after1 < 8 * 2**20, (before, after1, after2)
    print(f"\n60 s stream: {n} detections, processed in {first:.1f} s; RSS {before / 2**20:.1f}"
          f" → {after1 / 2**20:.1f} → {after2 / 2**20:.1f} MiB (before, after 1st, after 2nd)")


async def run_all(port: int, pcm: bytes) -> tuple[list, float]:
    """Every event of one stream, up to the audio-stop's answer (a ping is not needed: the
    server answers not-detected only when nothing was found, so read until the reader idles
    after audio-stop)."""
    async with AsyncTcpClient("127.0.0.1", port) as c:
        await c.write_event(Detect(names=None).event())
        reader = asyncio.create_task(_drain(c))
        stop = await send_stream(c, pcm)
        await c.write_event(Describe().event())  # answered after the stream's last chunk
        events = await reader
        return events, time.perf_counter() - stop


async def _drain(c: AsyncTcpClient) -> list:
    events = []
    while True:
        e = await asyncio.wait_for(c.read_event(), 60)
        assert e is not None
        if Info.is_type(e.type):
            return events
        events.append(e)


def test_oversized_event_is_refused(server):
    """A header announcing a 1 GB payload is answered with an error and the connection is
    closed before anything is buffered; the server keeps serving."""

    async def go():
        r, w = await asyncio.open_connection("127.0.0.1", server.port)
        head = {"type": "audio-chunk", "data": {"rate": 16000, "width": 2, "channels": 1},
                "payload_length": 10**9}
        w.write(json.dumps(head).encode() + b"\n")
        await w.drain()
        line = await asyncio.wait_for(r.readline(), 10)
        rest = await asyncio.wait_for(r.read(), 10)  # then EOF
        w.close()
        return json.loads(line), rest

    head, rest = asyncio.run(go())
    assert head["type"] == "error"
    assert b"payloads" in rest and rest.endswith(b"}")
    assert asyncio.run(describe(server.port)).wake[0].name == "tracekws"


def test_stored_profile_and_its_new_version(tmp_path, shipped_model_path):
    """A profile in the service's database is served (its active version), and a version
    committed while the server runs is picked up at the next audio-start."""
    data = tmp_path / "data"
    engine, store = profile_store(data, shipped_model_path)
    w = Wyoming(data, shipped_model_path, "alice", "--refresh", "0")
    try:
        (prog,) = w.info.wake
        assert "yes" in [m.name for m in prog.models] and prog.models[0].version == "1"
        torch.manual_seed(0)
        labels = ["hello", "yes", UNKNOWN, SILENCE]
        new = KWSModel(ModelConfig(labels=labels, n_hidden=32)).to_bytes()
        store.commit_version("alice", 1, new, "tp", "hello", {}, 1, labels, {})
        asyncio.run(run_stream(w.port, padded(*SILENT)))  # audio-start looks it up again
        (prog,) = asyncio.run(describe(w.port)).wake
        assert [m.name for m in prog.models] == ["hello", "yes"]
        assert prog.models[0].version == "2"
    finally:
        w.stop()
        engine.dispose()


def test_a_versions_thresholds_are_heard_with(tmp_path, shipped_model_path):
    """The profile version's own per-keyword thresholds (as PUT /profiles/{p}/detector sets
    them) decide what the server reports, a version with other settings is picked up at the
    next audio-start, and ``--threshold`` sets one threshold for every keyword."""
    data = tmp_path / "data"
    engine, store = profile_store(data, shipped_model_path)
    store.commit_detector("alice", 1, {"thresholds": {"yes": 1.0}})
    pcm = padded(*KEYWORD)  # detected at the global 0.5 (checked above)
    w = Wyoming(data, shipped_model_path, "alice", "--refresh", "0")
    try:
        assert "yes=1," in w.output() and "no=0.5," in w.output()  # the startup line
        events, _ = asyncio.run(run_stream(w.port, pcm))
        assert [e.type for e in events] == ["not-detected"]
        store.commit_detector("alice", 2, {"thresholds": {"no": 1.0}})
        events, _ = asyncio.run(run_stream(w.port, pcm))
        assert events[-1].type == "detection" and Detection.from_event(events[-1]).name == "yes"
    finally:
        w.stop()
    store.commit_detector("alice", 3, {"thresholds": {"yes": 1.0}})
    w = Wyoming(data, shipped_model_path, "alice", "--threshold", "0.5")
    try:
        events, _ = asyncio.run(run_stream(w.port, pcm))
        assert events[-1].type == "detection" and Detection.from_event(events[-1]).name == "yes"
    finally:
        w.stop()
        engine.dispose()


@pytest.mark.parametrize("profile,message", [
    ("nosuch", "unknown profile 'nosuch'"),
    ("../etc", "invalid profile name"),
])
def test_bad_profile_exits_with_a_clear_error(tmp_path, shipped_model_path, profile, message):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRACEKWS_DATA_DIR": str(tmp_path / "data"),
           "TRACEKWS_MODEL_PATH": str(shipped_model_path)}
    r = subprocess.run([sys.executable, "-m", "tracekws.cli", "wyoming", "--uri",
                        f"tcp://127.0.0.1:{free_port()}", "--profile", profile],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr
    assert not (tmp_path / "data" / "tracekws.db").exists()  # read-only: nothing created


def test_a_word_of_the_profiles_own_is_offered_and_heard(tmp_path, shipped_model_path):
    """A version with a word enrolled through /adapt's session (three takes of one speaker's
    "no", a bank without "no"): describe offers it, and its fourth take wakes it."""
    from tracekws.model.adapt import AdaptSession
    from tracekws.model.words import with_bank
    m = KWSModel.load(shipped_model_path)
    m.words = with_bank(m, "tests/data/gsc", size=30, exclude=("no",), val_percent=0)
    session = AdaptSession(m, "marvin")
    for u in range(3):
        session.feed(wave("no", u))
    assert session.finish().utterances == 3
    data = tmp_path / "data"
    engine, store = profile_store(data, shipped_model_path)
    store.commit_version("alice", 1, m.to_bytes(), "tp", "marvin", {}, 3, m.labels, {})
    w = Wyoming(data, shipped_model_path, "alice")
    try:
        (prog,) = w.info.wake
        assert [x.name for x in prog.models][-1] == "marvin"
        events, _ = asyncio.run(run_stream(w.port, padded("no", 3), names=["marvin"]))
        assert Detection.from_event(events[-1]).name == "marvin"
        events, _ = asyncio.run(run_stream(w.port, padded("yes", 3), names=["marvin"]))
        assert [e.type for e in events] == ["not-detected"]
    finally:
        w.stop()
        engine.dispose()
