"""``tracekws listen`` end to end: the CLI in a subprocess on real Speech Commands clips runs
``--exec`` once per detected keyword (never on silence), POSTs detections to a webhook (a
local test HTTP server), survives failing commands and unreachable webhooks, and listens
with a profile version's (or a model file's) per-keyword thresholds. The microphone path is
driven through a stand-in ``sounddevice`` module (no sound card here)."""

from __future__ import annotations

import builtins
import json
import os
import shlex
import subprocess
import sys
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from _clips import wave
from _store import profile_store
from tracekws.model.audio import SAMPLE_RATE
from tracekws.model.detect import Detector
from tracekws.model.pipeline import KWSModel
from tracekws.service import listen as L
from tracekws.service.process import free_port

ROOT = Path(__file__).resolve().parents[2]
WORD, CLIP = "down", 0  # a clip the shipped model detects once when padded with silence


def _write(path: Path, w: torch.Tensor) -> Path:
    sf.write(path, w.numpy(), SAMPLE_RATE)
    return path


@pytest.fixture(scope="module")
def keyword_clip(tmp_path_factory) -> Path:
    z = torch.zeros(SAMPLE_RATE)
    return _write(tmp_path_factory.mktemp("listen") / f"{WORD}.flac",
                  torch.cat([z, wave(WORD, CLIP), z, z]))


@pytest.fixture(scope="module")
def silence_clip(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("listen") / "silence.wav",
                  torch.cat([wave("_silence_", i) for i in range(3)]))


def _appender(out: Path) -> str:
    """A tiny command that appends $TRACEKWS_WORD (and the probability) to ``out``."""
    code = ("import os, sys; open(sys.argv[1], 'a').write(os.environ['TRACEKWS_WORD'] + ' ' "
            "+ os.environ['TRACEKWS_PROBABILITY'] + '\\n')")
    return shlex.join([sys.executable, "-c", code, str(out)])


def _listen(*args: str, env: dict[str, str] | None = None, timeout: float = 120
            ) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != L.WEBHOOK_ENV}
    e |= {"OMP_NUM_THREADS": "1"} | (env or {})
    return subprocess.run([sys.executable, "-m", "tracekws.cli", "listen", *args], cwd=ROOT,
                          env=e, capture_output=True, text=True, timeout=timeout)


def test_exec_runs_once_per_keyword_in_real_time(keyword_clip, shipped_model_path, tmp_path):
    out = tmp_path / "words.txt"
    t0 = time.monotonic()
    r = _listen("--file", str(keyword_clip), "--model", str(shipped_model_path),
                "--exec", _appender(out))
    elapsed = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, r.stdout
    t, word, p = lines[0].split("\t")
    assert word == WORD and 0.5 < float(p) <= 1 and 1.0 < float(t) < 4.0
    words = out.read_text().splitlines()
    assert len(words) == 1 and words[0].split()[0] == WORD, words
    assert abs(float(words[0].split()[1]) - float(p)) < 1e-3
    assert elapsed >= 4.0  # the 4 s file was streamed in real time, not at once


def test_silence_runs_nothing(silence_clip, shipped_model_path, tmp_path):
    out = tmp_path / "words.txt"
    r = _listen("--file", str(silence_clip), "--model", str(shipped_model_path), "--fast",
                "--exec", _appender(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and not out.exists()


class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append((self.path, self.headers["content-type"], body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def webhook_server():
    _Hook.received = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/hook", _Hook.received
    srv.shutdown()
    srv.server_close()


def test_webhook_gets_json_and_a_failing_command_is_not_fatal(keyword_clip, shipped_model_path,
                                                               webhook_server):
    url, received = webhook_server
    r = _listen("--file", str(keyword_clip), "--model", str(shipped_model_path), "--fast",
                "--json", "--exec", shlex.join([sys.executable, "-c", "raise SystemExit(3)"]),
                env={"TRACEKWS_ON_DETECT_URL": url})
    assert r.returncode == 0, r.stderr
    assert "command exited with status 3" in r.stderr
    printed = [json.loads(line) for line in r.stdout.splitlines()]
    assert [d["label"] for d in printed] == [WORD]
    assert len(received) == 1
    path, ctype, body = received[0]
    assert path == "/hook" and ctype == "application/json"
    assert json.loads(body) == printed[0]  # {"type": "detection", "label", "probability", "time"}


def test_unreachable_webhook_and_missing_command_are_reported(keyword_clip, shipped_model_path):
    r = _listen("--file", str(keyword_clip), "--model", str(shipped_model_path), "--fast",
                "--webhook", f"http://127.0.0.1:{free_port()}/x",
                "--exec", "/nonexistent/tracekws-hook")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\t")[1] == WORD
    assert "command failed to start" in r.stderr and "webhook" in r.stderr


def test_shell_is_used_only_when_asked(keyword_clip, shipped_model_path, tmp_path):
    out = tmp_path / "shell.txt"
    cmd = f'echo "$TRACEKWS_WORD at $TRACEKWS_TIME" >> {shlex.quote(str(out))}'
    r = _listen("--file", str(keyword_clip), "--model", str(shipped_model_path), "--fast",
                "--exec", cmd, "--shell")
    assert r.returncode == 0, r.stderr
    assert out.read_text().startswith(f"{WORD} at ")
    # without --shell the same text is /bin/echo with arguments: nothing is expanded or
    # redirected, and its output goes to stderr (stdout carries only detections)
    r = _listen("--file", str(keyword_clip), "--model", str(shipped_model_path), "--fast",
                "--exec", cmd)
    assert r.returncode == 0, r.stderr
    assert f"$TRACEKWS_WORD at $TRACEKWS_TIME >> {out}" in r.stderr
    assert len(r.stdout.splitlines()) == 1 and len(out.read_text().splitlines()) == 1


def test_bad_arguments_fail_in_one_line(tmp_path):
    r = _listen("--file", str(tmp_path / "missing.wav"))
    assert r.returncode == 1 and "no such file" in r.stderr and "Traceback" not in r.stderr
    r = _listen("--file", str(tmp_path / "x.wav"), "--webhook", "ftp://host/")
    assert r.returncode == 1 and "http://" in r.stderr


# ---- the microphone path, with a stand-in sounddevice ------------------------------------------
class _PortAudioError(Exception):
    pass


def _fake_sounddevice(wave48k: np.ndarray, rates: list[int]) -> types.ModuleType:
    """A ``sounddevice`` whose only input device records at 48 kHz and plays ``wave48k`` into
    the callback in 100 ms blocks from its own thread, as PortAudio does."""
    sd = types.ModuleType("sounddevice")
    sd.PortAudioError = _PortAudioError
    sd.default = types.SimpleNamespace(device=(0, None))
    dev = {"name": "Fake USB Mic", "max_input_channels": 1, "default_samplerate": 48_000.0}
    sd.query_devices = lambda device=None, kind=None: dev if kind else [dev]

    def check_input_settings(device=None, channels=None, dtype=None, samplerate=None):
        if samplerate != 48_000:
            raise _PortAudioError("Invalid sample rate")

    sd.check_input_settings = check_input_settings

    class InputStream:
        def __init__(self, device, channels, dtype, samplerate, blocksize, callback):
            assert channels == 1 and dtype == "float32"
            rates.append(samplerate)
            self.block, self.callback = blocksize, callback

        def __enter__(self):
            def play():
                for i in range(0, len(wave48k), self.block):
                    self.callback(wave48k[i : i + self.block, None], self.block, None, None)
                    time.sleep(0.001)
            self.thread = threading.Thread(target=play, daemon=True)
            self.thread.start()
            return self

        def __exit__(self, *exc):
            self.thread.join()

    sd.InputStream = InputStream
    return sd


def test_microphone_at_48k_is_resampled_and_detected(shipped_model_path, monkeypatch):
    import torchaudio.functional as F

    z = torch.zeros(SAMPLE_RATE)
    w16 = torch.cat([z, wave(WORD, CLIP), z, z])
    w48 = F.resample(w16, SAMPLE_RATE, 48_000).numpy().astype(np.float32)
    rates: list[int] = []
    monkeypatch.setitem(sys.modules, "sounddevice", _fake_sounddevice(w48, rates))
    model = KWSModel.load(shipped_model_path)
    stop = threading.Event()
    got = []

    def chunks():
        n = 0
        for c in L.mic_chunks(None, stop=stop):
            n += c.numel()
            yield c
            if n >= w16.numel() - 2 * L.CHUNK_SECONDS * SAMPLE_RATE:
                stop.set()

    dets = L.listen(chunks(), Detector(model), out=got.append)
    assert rates == [48_000]
    assert [d.label for d in dets] == [WORD] and got == dets
    direct = Detector(model).feed(w16)
    assert abs(dets[0].time - direct[0].time) <= 0.05


def test_listing_devices(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", _fake_sounddevice(np.zeros(1), []))
    assert L.list_devices() == "*  0  Fake USB Mic  (1 ch, 48000 Hz)"


def test_missing_portaudio_is_a_clear_message(monkeypatch):
    real_import = builtins.__import__

    def no_portaudio(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_portaudio)
    with pytest.raises(L.ListenError, match="apt-get install libportaudio2"):
        L.sounddevice_module()
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # the package itself missing
    monkeypatch.setattr(builtins, "__import__", real_import)
    with pytest.raises(L.ListenError, match="pip install sounddevice"):
        L.sounddevice_module()


def test_file_chunks_are_paced_like_a_microphone(keyword_clip):
    now = [0.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    chunks = list(L.file_chunks(keyword_clip, clock=lambda: now[0], sleep=sleep))
    assert sum(c.numel() for c in chunks) == 4 * SAMPLE_RATE
    assert all(c.numel() == L.CHUNK_SECONDS * SAMPLE_RATE for c in chunks)
    assert abs(now[0] - 4.0) < 1e-6 and len(sleeps) == len(chunks)


def test_profile_default_listens_with_the_shipped_model_and_unknown_fails(keyword_clip,
                                                                         tmp_path):
    env = {"TRACEKWS_DATA_DIR": str(tmp_path / "data")}
    r = _listen("--file", str(keyword_clip), "--profile", "default", "--fast", env=env)
    assert r.returncode == 0, r.stderr
    assert [ln.split("\t")[1] for ln in r.stdout.strip().splitlines()] == [WORD]
    r = _listen("--file", str(keyword_clip), "--profile", "nosuch", "--fast", env=env)
    assert r.returncode == 1 and "unknown profile 'nosuch'" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "data").exists()


def test_profile_and_model_thresholds_are_listened_with(keyword_clip, shipped_model_path,
                                                       tmp_path):
    """``--profile``: the active version's own per-keyword thresholds (as PUT
    /profiles/{p}/detector sets them); ``--model``: the model file's; ``--threshold`` sets one
    threshold for every keyword instead."""
    data = tmp_path / "data"
    engine, store = profile_store(data, shipped_model_path)
    store.commit_detector("alice", 1, {"thresholds": {WORD: 1.0}, "refractory": 2.0})
    engine.dispose()
    env = {"TRACEKWS_DATA_DIR": str(data), "TRACEKWS_MODEL_PATH": str(shipped_model_path)}
    args = ("--file", str(keyword_clip), "--fast")
    r = _listen(*args, "--profile", "alice", env=env)
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
    assert f"{WORD}=1," in r.stderr and "refractory 2 s" in r.stderr
    r = _listen(*args, "--profile", "alice", "--threshold", "0.5", env=env)
    assert [ln.split("\t")[1] for ln in r.stdout.strip().splitlines()] == [WORD], r.stderr
    # a model file that carries thresholds (tracekws bench stream --calibrated-out)
    m = KWSModel.load(shipped_model_path)
    m.config.detector = {"thresholds": {WORD: 1.0}}
    m.save(tmp_path / "calibrated")
    model = str(tmp_path / "calibrated.safetensors")
    r = _listen(*args, "--model", model)
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
    assert "refractory 1 s" in r.stderr  # the default: the model sets none
    r = _listen(*args, "--model", model, "--threshold", "0.5")
    assert [ln.split("\t")[1] for ln in r.stdout.strip().splitlines()] == [WORD], r.stderr
