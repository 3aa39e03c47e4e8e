"""Voice-activity benchmark: how well each detector finds the utterances of a recording.

/adapt cuts a recording into 1 s windows centred on each utterance (model/adapt.py
:class:`~tracekws.model.adapt.Segmenter`) and learns from each; a missed utterance is a lost
shot, a window on noise teaches the label from noise. This benchmark measures that on
synthetic recordings whose utterance positions are known:

- **Recordings.** 10-30 s of background, either a stretch of one of the folder's
  ``_background_noise_`` recordings or one ``_silence_`` clip tiled with 50 ms cross-fades
  (stationary, like a room), with 2-8 keyword clips of one speaker placed at seeded random
  times (at least 0.5 s between clips), the recording's SNR uniform in 0-20 dB (speech level =
  :func:`~tracekws.model.room.active_rms` of the clip), its overall level uniform in
  -10..+6 dB around a normal speaking level, each clip ±3 dB. Every fifth recording holds no
  utterance (a "silence" recording: /adapt must answer "no speech").
- **Where the speech is.** Once per clean clip: 10 ms frames whose energy is within 25 dB of
  the clip's loudest frame *and* 6 dB above its quietest tenth (so a clip's own noise floor
  never counts as speech); the extent is the run of such frames around the loudest one, gaps
  of up to 150 ms bridged (a stop's closure; a click at the clip's edge stays out). Clips
  whose loudest frame is under 15 dB above that floor, or whose extent exceeds 0.9 s, are not
  used (their word cannot be told from their own noise).
- **Conditions.** ``clean``: the clips as recorded. ``room``: the same recordings (words,
  times, noise) with the talker's clips reverberating in one room per recording drawn by
  model/room.py (RT60 0.2-0.8 s, 1-4 m), cut to the clip's length; the speech extent stays
  the clean clip's. Both run when pyroomacoustics (the bench extra) is installed.
- **Halves.** ``tune`` and ``check`` recordings use disjoint speakers (sha1 parity of the
  speaker id), disjoint ``_silence_`` clips, disjoint halves of each noise recording, and
  different seeds: settings are chosen on ``tune`` and confirmed on ``check``.
- **Detectors.** Each gives a speech decision per front-end frame (10 ms hop, 30 ms window),
  and every decision sequence drives the same 1 s window extraction, the segmenter
  :class:`Segmenter` that AdaptSession runs (its hang, minimum and maximum length, window
  centring and ring): ``energy`` is its own log-energy rule (the detector /adapt used before,
  on=4 nats, hang=35 frames); ``silero`` is model/vad.py's streaming silero-vad (the packaged
  network, fed 0.1 s at a time, a frame's decision from the latest 32 ms chunk complete with
  it), thresholded; ``silero+energy`` is that or the segmenter's energy ``loud`` nats above
  its floor (what AdaptSession runs); ``webrtc`` is WebRTC's VAD (10 or 30 ms frames, modes
  0-3, mapped to frames by the same causal rule). Each detector's setting is the one with
  the best ``net`` on the tune half, averaged over the conditions.
- **Metrics.** A window *hits* an utterance when its centre is within 250 ms of the
  utterance's speech centre (the word sits well inside the 1 s window); ``recall`` = share of
  utterances hit; ``false_per_min`` = windows overlapping no utterance's speech, per minute of
  audio; ``misplaced`` = windows on an utterance but off-centre; ``duplicates`` = second hits
  of one utterance; ``centre_err_ms`` (median, p90 over hits); ``start_err_ms`` /
  ``end_err_ms`` = median |detected segment boundary - true speech boundary| over hits;
  ``silence_recordings_with_windows``; ``net`` = (hits - false - misplaced - duplicates) /
  utterances, the tuning criterion; ``cpu_s_per_audio_s`` = process CPU time of the
  detector (its own features/network plus the segmenter; the front end runs for the network
  anyway) per second of audio, one thread.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..adapt import WINDOW, Segmenter, frame_energy
from ..audio import SAMPLE_RATE, load
from ..data import NOISE_DIR, noise_recordings, scan
from ..frontend import FrontEnd, FrontEndConfig
from ..pipeline import SILENCE, KWSModel
from ..room import REF_SPEECH_RMS, active_rms, impulse_response, sample_room
from ..vad import HANG, LOUD, THRESHOLD, SileroVAD

HOP = 160  # samples per front-end frame
FRAME_CENTRE = 240  # a front-end frame's centre, samples after its first sample
WINDOW_HALF = (HOP * (WINDOW - 1) + 480) // 2  # a 98-frame window spans exactly 1 s
HIT_MS = 250.0
SNR_RANGE = (0.0, 20.0)
LEVEL_DB = (-10.0, 6.0)
SILENCE_EVERY = 5

# the grids swept on the tune half (the energy rule /adapt used before: on=4, hang=35)
ENERGY_GRID = [{"on": on, "hang": h} for on in (2.0, 3.0, 4.0, 5.0, 6.0) for h in (20, 35, 50)]
SILERO_GRID = [{"threshold": t, "hang": h} for t in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
               for h in (10, 20, 35, 50)]
HYBRID_GRID = [{"threshold": t, "loud": lo, "hang": h} for t in (0.3, 0.4, 0.5, 0.6)
               for lo in (5.0, 5.5, 6.0, 7.0) for h in (35, 50)]
WEBRTC_GRID = [{"mode": m, "frame_ms": f, "hang": h} for m in (0, 1, 2, 3) for f in (10, 30)
               for h in (20, 35, 50)]


# ---- ground truth ---------------------------------------------------------------------------
def speech_extent(wave: torch.Tensor, rel_db: float = 25.0, floor_db: float = 6.0,
                  min_snr_db: float = 15.0, max_gap: int = 15) -> tuple[int, int] | None:
    """(first, end) sample of the speech in a clean clip, or None if it cannot be told.

    Energy per 10 ms frame relative to the clip's own loudest frame (within ``rel_db``) and
    to its own noise floor (its quietest tenth of frames, plus ``floor_db``): GSC clips carry
    their recording room's noise, which a peak-only rule would call speech on noisy clips.
    """
    x = wave.double().numpy()
    n = len(x) // HOP
    if n < 10:
        return None
    db = 10 * np.log10((x[: n * HOP].reshape(n, HOP) ** 2).mean(1) + 1e-12)
    peak, floor = db.max(), np.percentile(db, 10)
    if peak - floor < min_snr_db:
        return None
    idx = np.flatnonzero(db >= max(peak - rel_db, floor + floor_db))
    # the run of such frames around the loudest one, bridging gaps up to max_gap frames (a
    # stop's closure): a click at the clip's edge is not part of the word
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > max_gap) + 1)
    run = next(r for r in runs if r[0] <= int(db.argmax()) <= r[-1])
    return int(run[0]) * HOP, int(run[-1] + 1) * HOP


@dataclass
class Utterance:
    start: int  # speech extent in the recording, samples
    end: int
    word: str
    path: str

    @property
    def centre(self) -> float:
        return (self.start + self.end) / 2


@dataclass
class Recording:
    wave: torch.Tensor
    utts: list[Utterance]
    snr_db: float
    noise: str

    @property
    def seconds(self) -> float:
        return self.wave.numel() / SAMPLE_RATE


def _half_of(key: str) -> str:
    return "tune" if int(hashlib.sha1(key.encode()).hexdigest(), 16) % 2 == 0 else "check"


def _fade(x: np.ndarray, n: int) -> np.ndarray:
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, math.pi, n))
    y = x.copy()
    y[:n] *= ramp
    y[-n:] *= ramp[::-1]
    return y


def _tile(clip: np.ndarray, n: int, rng: np.random.Generator, xfade: int = 800) -> np.ndarray:
    """``clip`` repeated (each copy circularly shifted) with raised-cosine cross-fades."""
    out = np.zeros(n + len(clip))
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0, math.pi, xfade))
    env = np.ones(len(clip))
    env[:xfade], env[-xfade:] = ramp, ramp[::-1]
    pos = 0
    while pos < n:
        out[pos : pos + len(clip)] += np.roll(clip, int(rng.integers(len(clip)))) * env
        pos += len(clip) - xfade
    return out[:n]


@dataclass
class Pools:
    """What one half's recordings are built from."""

    speakers: dict[str, list[tuple[str, str, np.ndarray, tuple[int, int]]]] = field(
        default_factory=dict)  # speaker → [(word, path, clip, extent)]
    silences: list[np.ndarray] = field(default_factory=list)
    noises: list[np.ndarray] = field(default_factory=list)


def load_pools(data: str | Path, half: str) -> Pools:
    """Clips of the ``half``'s speakers (with a usable extent), its ``_silence_`` clips and
    its half of each ``_background_noise_`` recording."""
    pools = Pools()
    for c in scan(data, dedupe=False):
        key = c.path.name if c.word == SILENCE else c.speaker
        if _half_of(key) != half:
            continue
        wave = load(c.path)
        if c.word == SILENCE:
            if wave.numel() >= SAMPLE_RATE // 2:
                pools.silences.append(wave.double().numpy())
            continue
        ext = speech_extent(wave)
        if ext is not None and ext[1] - ext[0] <= 0.9 * SAMPLE_RATE:
            pools.speakers.setdefault(c.speaker, []).append(
                (c.word, str(c.path.relative_to(data)), wave.double().numpy(), ext))
    pools.speakers = {s: v for s, v in pools.speakers.items() if len(v) >= 2}
    for rec in noise_recordings(data):
        x = rec.double().numpy()
        h = len(x) // 2
        pools.noises.append(x[:h] if half == "tune" else x[h:])
    if not pools.speakers or not (pools.silences or pools.noises):
        raise ValueError(f"not enough clips of the {half} half under {data}")
    return pools


def make_recording(pools: Pools, rng: np.random.Generator, speech: bool = True,
                   seconds: tuple[float, float] = (10.0, 30.0), room: int | None = None
                   ) -> Recording:
    """One synthetic recording (see the module docstring); with a ``room`` seed, the talker's
    clips reverberate in that room of model/room.py (the same words, times and noise as
    without)."""
    n = int(rng.uniform(*seconds) * SAMPLE_RATE)
    rir = impulse_response(sample_room(room)) if room is not None else None
    long_ok = [x for x in pools.noises if len(x) >= n]
    if long_ok and (not pools.silences or rng.random() < 0.5):
        src = long_ok[int(rng.integers(len(long_ok)))]
        start = int(rng.integers(len(src) - n + 1))
        bg, noise = src[start : start + n].copy(), NOISE_DIR
    else:
        bg, noise = _tile(pools.silences[int(rng.integers(len(pools.silences)))], n, rng), SILENCE
    bg /= np.sqrt(np.mean(bg**2)) + 1e-12
    level = REF_SPEECH_RMS * 10 ** (rng.uniform(*LEVEL_DB) / 20)
    snr = float(rng.uniform(*SNR_RANGE))
    y = bg * level / 10 ** (snr / 20)
    utts: list[Utterance] = []
    if speech:
        speakers = sorted(pools.speakers)
        mine = pools.speakers[speakers[int(rng.integers(len(speakers)))]]
        gap, lead = int(0.5 * SAMPLE_RATE), int(0.5 * SAMPLE_RATE)
        k_max = min(8, len(mine), (n - 2 * lead + gap) // (SAMPLE_RATE + gap))
        k = int(rng.integers(min(2, k_max), k_max + 1))
        order = rng.permutation(len(mine))[:k]
        lens = [len(mine[i][2]) for i in order]
        free = n - 2 * lead - sum(lens) - gap * (k - 1)
        cuts = np.sort(rng.integers(0, free + 1, size=k))
        pos = lead
        prev = 0
        for i, ln, cut in zip(order, lens, cuts, strict=True):
            pos += int(cut - prev)
            prev = int(cut)
            word, path, clip, (s, e) = mine[i]
            if rir is not None:  # reverberant talker, cut to the clip (as RoomSimulator does)
                from scipy.signal import fftconvolve  # the bench extra (pyroomacoustics)

                wet = fftconvolve(clip, rir)[:ln]
                clip = wet * active_rms(clip) / (active_rms(wet) + 1e-12)
            c = _fade(clip, 160) * level * 10 ** (rng.uniform(-3, 3) / 20) / active_rms(clip)
            y[pos : pos + ln] += c
            utts.append(Utterance(pos + s, pos + e, word, path))
            pos += ln + gap
    y = np.clip(y, -1.0, 1.0)
    return Recording(torch.from_numpy(y).float(), utts, snr, noise)


def make_recordings(data: str | Path, half: str, count: int, seed: int, room: bool = False
                    ) -> list[Recording]:
    """``count`` recordings of one half, the recording i seeded by (seed, i)."""
    pools = load_pools(data, half)
    return [make_recording(pools, np.random.default_rng([seed, i]),
                           speech=(i % SILENCE_EVERY != SILENCE_EVERY - 1),
                           room=seed * 100_003 + i if room else None)
            for i in range(count)]


# ---- detectors: per-frame decisions driving the shipped window extraction -------------------
class _Recorder(Segmenter):
    """The shipped segmenter, remembering each emitted window's segment boundaries."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.segments: list[tuple[int, int]] = []

    def _window(self, start: int, end: int) -> torch.Tensor:
        self.segments.append((start, end))
        return super()._window(start, end)


@dataclass
class Windows:
    """One detector's output on one recording: window centres and segment boundaries (samples)."""

    centres: list[float]
    segments: list[tuple[float, float]]
    cpu_s: float


def _collect(seg: _Recorder, windows: list[torch.Tensor]) -> Windows:
    windows = windows + seg.flush()
    centres = [float(w[0, 0]) * HOP + WINDOW_HALF for w in windows]
    segs = [(s * HOP + FRAME_CENTRE, e * HOP + FRAME_CENTRE) for s, e in seg.segments]
    return Windows(centres, segs, 0.0)


def frame_index(n_frames: int) -> torch.Tensor:
    """Stand-in network inputs: each frame's own index, so a window tells where it is."""
    return torch.arange(n_frames, dtype=torch.float32).unsqueeze(1)


def run_energy(energy: torch.Tensor, on: float, hang: int) -> Windows:
    """The segmenter's own energy rule with threshold ``on`` (nats) and ``hang`` frames."""
    t = time.process_time()
    seg = _Recorder(on=on, hang=hang)
    w = _collect(seg, seg.push(energy, frame_index(len(energy))))
    w.cpu_s = time.process_time() - t
    return w


def run_flags(energy: torch.Tensor, flags: np.ndarray, hang: int,
              loud: float = math.inf) -> Windows:
    """The shipped segmenter driven by per-frame speech decisions (and frames ``loud`` nats
    above its noise floor), as AdaptSession runs it."""
    t = time.process_time()
    seg = _Recorder(hang=hang, loud=loud)
    w = _collect(seg, seg.push(energy, frame_index(len(flags)), flags.tolist()))
    w.cpu_s = time.process_time() - t
    return w


def to_frames(values: np.ndarray, block: int, n_frames: int) -> np.ndarray:
    """Per-block decisions (blocks of ``block`` samples from sample 0) → per front-end frame,
    causally: the latest block complete when the frame is (none before the first block), the
    rule model/vad.py applies to silero's chunks."""
    idx = (np.arange(n_frames) * HOP + 480) // block - 1
    out = values[np.clip(idx, 0, len(values) - 1)] if len(values) else np.zeros(n_frames)
    return np.where(idx >= 0, out, np.zeros_like(out))


def silero_probs(wave: torch.Tensor, chunk: int = 1600) -> tuple[np.ndarray, float]:
    """Speech probability per front-end frame from model/vad.py's streaming silero-vad, fed
    ``chunk`` samples at a time as an upload arrives, and its CPU time."""
    t = time.process_time()
    vad = SileroVAD()
    p = torch.cat([vad.probabilities(wave[i : i + chunk])
                   for i in range(0, wave.numel(), chunk)])
    return p.numpy(), time.process_time() - t


def webrtc_flags(wave: torch.Tensor, mode: int, frame_ms: int) -> tuple[np.ndarray, float]:
    """WebRTC VAD decision per ``frame_ms`` frame, and its CPU time."""
    import webrtcvad

    t = time.process_time()
    vad = webrtcvad.Vad(mode)
    size = SAMPLE_RATE * frame_ms // 1000
    pcm = (wave.clamp(-1, 1) * 32767).to(torch.int16).numpy().tobytes()
    n = wave.numel() // size
    f = np.array([vad.is_speech(pcm[2 * i * size : 2 * (i + 1) * size], SAMPLE_RATE)
                  for i in range(n)], dtype=bool)
    return f, time.process_time() - t


# ---- scoring --------------------------------------------------------------------------------
def score(recordings: list[Recording], outputs: list[Windows]) -> dict:
    """Metrics of one detector setting over recordings (see the module docstring)."""
    hit_tol = HIT_MS * SAMPLE_RATE / 1000
    n_utt = hits = false = misplaced = dup = silent_bad = 0
    centre_err: list[float] = []
    start_err: list[float] = []
    end_err: list[float] = []
    seconds = cpu = 0.0
    bands = {f"{lo:g}-{lo + 5:g}": [0, 0] for lo in (0, 5, 10, 15)}  # SNR band → [hits, utts]
    for rec, out in zip(recordings, outputs, strict=True):
        seconds += rec.seconds
        cpu += out.cpu_s
        n_utt += len(rec.utts)
        if not rec.utts and out.centres:
            silent_bad += 1
        taken: set[int] = set()
        for c, (s, e) in zip(out.centres, out.segments, strict=True):
            d = [abs(c - u.centre) for u in rec.utts]
            j = int(np.argmin(d)) if d else -1
            if j >= 0 and d[j] <= hit_tol:
                if j in taken:
                    dup += 1
                    continue
                taken.add(j)
                u = rec.utts[j]
                centre_err.append(d[j])
                start_err.append(abs(s - u.start))
                end_err.append(abs(e - u.end))
            elif any(c - WINDOW_HALF < u.end and c + WINDOW_HALF > u.start for u in rec.utts):
                misplaced += 1
            else:
                false += 1
        hits += len(taken)
        lo = min(15, 5 * int(rec.snr_db // 5))
        band = bands[f"{lo:g}-{lo + 5:g}"]
        band[0] += len(taken)
        band[1] += len(rec.utts)

    def ms(v: list[float], q: float) -> float | None:
        return round(float(np.percentile(v, q)) * 1000 / SAMPLE_RATE, 1) if v else None

    minutes = seconds / 60
    return {
        "utterances": n_utt, "hits": hits,
        "recall": round(hits / n_utt, 4) if n_utt else None,
        "recall_by_snr_db": {k: round(h / u, 3) if u else None for k, (h, u) in bands.items()},
        "net": round((hits - false - misplaced - dup) / n_utt, 4) if n_utt else None,
        "false_windows": false,
        "false_per_min": round(false / minutes, 3) if minutes else None,
        "misplaced": misplaced, "duplicates": dup,
        "silence_recordings_with_windows": silent_bad,
        "centre_err_ms_median": ms(centre_err, 50), "centre_err_ms_p90": ms(centre_err, 90),
        "start_err_ms_median": ms(start_err, 50), "end_err_ms_median": ms(end_err, 50),
        "cpu_s_per_audio_s": round(cpu / seconds, 5) if seconds else None,
        "audio_s": round(seconds, 1),
    }


# ---- the benchmark --------------------------------------------------------------------------
@dataclass
class Features:
    """Per recording, what each detector's settings are swept over (computed once)."""

    energy: torch.Tensor
    energy_cpu: float
    silero: np.ndarray | None = None
    silero_cpu: float = 0.0
    webrtc: dict[tuple[int, int], tuple[np.ndarray, float]] = field(default_factory=dict)


def features(rec: Recording, frontend: FrontEnd, n_mels: int, detectors: list[str]) -> Features:
    with torch.no_grad():
        frames = frontend(rec.wave)
    t = time.process_time()
    energy = frame_energy(frames, n_mels)
    f = Features(energy, time.process_time() - t)
    n = len(energy)
    if any(d.startswith("silero") for d in detectors):
        f.silero, f.silero_cpu = silero_probs(rec.wave)
        assert len(f.silero) == n, (len(f.silero), n)
    if "webrtc" in detectors:
        for mode in range(4):
            for ms in (10, 30):
                flags, cpu = webrtc_flags(rec.wave, mode, ms)
                f.webrtc[(mode, ms)] = (to_frames(flags, SAMPLE_RATE * ms // 1000, n), cpu)
    return f


def runner(name: str, setting: dict) -> Callable[[Features], Windows]:
    """A function running detector ``name`` at ``setting`` on one recording's features."""
    if name == "energy":
        def go(f: Features) -> Windows:
            w = run_energy(f.energy, setting["on"], setting["hang"])
            w.cpu_s += f.energy_cpu
            return w
    elif name == "silero":
        def go(f: Features) -> Windows:
            t = time.process_time()
            flags = f.silero >= setting["threshold"]
            w = run_flags(f.energy, flags, setting["hang"])
            w.cpu_s += f.silero_cpu + time.process_time() - t
            return w
    elif name == "silero+energy":
        def go(f: Features) -> Windows:
            t = time.process_time()
            flags = f.silero >= setting["threshold"]
            w = run_flags(f.energy, flags, setting["hang"], setting["loud"])
            w.cpu_s += f.silero_cpu + f.energy_cpu + time.process_time() - t
            return w
    elif name == "webrtc":
        def go(f: Features) -> Windows:
            flags, cpu = f.webrtc[(setting["mode"], setting["frame_ms"])]
            w = run_flags(f.energy, flags, setting["hang"])
            w.cpu_s += cpu
            return w
    else:
        raise ValueError(f"unknown detector {name!r}")
    return go


def choose(rows: list[dict]) -> dict:
    """The tune-half setting with the highest ``net`` (centred hits minus every other window:
    a missed utterance loses one shot, a window on noise or off-centre teaches one wrong one;
    averaged over the conditions), then fewer false windows."""
    return max(rows, key=lambda r: (r["net"], -r["false_per_min"]))


def available(name: str) -> bool:
    try:
        __import__({"silero": "silero_vad", "silero+energy": "silero_vad",
                    "webrtc": "webrtcvad"}.get(name, "math"))
    except ImportError:
        return False
    return True


def room_available() -> bool:
    try:
        import pyroomacoustics  # noqa: F401  (the bench extra)
    except ImportError:
        return False
    return True


def bench_vad(data: str | Path, model: KWSModel | None = None, recordings: int = 100,
              seed: int = 0, detectors: list[str] | None = None, progress: bool = False,
              conditions: list[str] | None = None) -> dict:
    """Sweep each detector on the tune half, pick its setting, report both halves.

    ``conditions``: ``clean`` (the clips as recorded) and ``room`` (the same recordings with the
    talker in a simulated room), both by default when pyroomacoustics is installed. A setting's
    score on the tune half is its ``net`` averaged over the conditions. Returns the recordings'
    description, every tune-half row, and per detector the chosen setting's metrics per
    condition on ``tune`` (seed ``seed``) and ``check`` (seed ``seed + 1``), next to the energy
    rule /adapt used before (on=4, hang=35).
    """
    detectors = [d for d in (detectors or ["energy", "silero", "silero+energy", "webrtc"])
                 if available(d)]
    conditions = conditions or (["clean", "room"] if room_available() else ["clean"])
    cfg = model.config.frontend if model is not None else FrontEndConfig()
    frontend = FrontEnd(cfg)
    grids = {"energy": ENERGY_GRID, "silero": SILERO_GRID, "silero+energy": HYBRID_GRID,
             "webrtc": WEBRTC_GRID}
    sets: dict[tuple[str, str], tuple[list[Recording], list[Features]]] = {}
    for cond in conditions:
        for k, half in enumerate(("tune", "check")):
            t0 = time.time()
            recs = make_recordings(data, half, recordings, seed + k, room=cond == "room")
            sets[(cond, half)] = (recs, [features(r, frontend, cfg.n_mels, detectors)
                                         for r in recs])
            if progress:
                print(f"{cond} {half}: {len(recs)} recordings, "
                      f"{sum(r.seconds for r in recs):.0f} s, features in "
                      f"{time.time() - t0:.0f} s", flush=True)

    def evaluate(cond: str, half: str, name: str, setting: dict) -> dict:
        recs, feats = sets[(cond, half)]
        go = runner(name, setting)
        return score(recs, [go(f) for f in feats])

    def tune_row(name: str, setting: dict) -> dict:
        per = {c: evaluate(c, "tune", name, setting) for c in conditions}
        return {"setting": setting,
                "net": round(float(np.mean([m["net"] for m in per.values()])), 4),
                "false_per_min": round(float(np.mean([m["false_per_min"]
                                                      for m in per.values()])), 3)} | per

    def row(name: str, setting: dict) -> dict:
        return {"setting": setting} | {c: {h: evaluate(c, h, name, setting)
                                           for h in ("tune", "check")} for c in conditions}

    sweep = {d: [tune_row(d, s) for s in grids[d]] for d in detectors}
    table = {"energy (before)": row("energy", {"on": 4.0, "hang": 35})}
    for d in detectors:
        table[d] = row(d, choose(sweep[d])["setting"])

    def describe(recs: list[Recording]) -> dict:
        return {"recordings": len(recs), "seconds": round(sum(r.seconds for r in recs), 1),
                "utterances": sum(len(r.utts) for r in recs),
                "silence_recordings": sum(not r.utts for r in recs),
                "noise": {k: sum(r.noise == k for r in recs) for k in (NOISE_DIR, SILENCE)}}

    return {
        "benchmark": "vad", "data": str(data), "seed": seed, "recordings_per_half": recordings,
        "conditions": conditions,
        "halves": {h: describe(sets[(conditions[0], h)][0]) for h in ("tune", "check")},
        "hit_ms": HIT_MS, "snr_db": SNR_RANGE, "detectors": detectors,
        "threads": torch.get_num_threads(),
        "adapt_session": {"detector": "silero+energy", "threshold": THRESHOLD, "loud": LOUD,
                          "hang": HANG},
        "table": table, "tune_sweep": sweep,
    }
