"""Simulated rooms: the device on a shelf in someone's kitchen, not a studio microphone.

A :class:`Room` is drawn per speaker from a seed: a shoebox room whose image-source impulse
response (``pyroomacoustics``) has an RT60 of 0.2–0.8 s, the talker 1–4 m from the
microphone, a microphone band-pass, and background noise mixed in at 5–20 dB SNR (per clip).
Everything that speaker says — support, query — and the other people's clips used to measure
retention go through the same room, as they would on one device.

The noise is the folder's ``_background_noise_`` recordings (a random window per clip) mixed
with generated coloured noise (pink or brown, per room), so a folder without noise recordings
still gets a noisy room. Speech keeps its dry level (an automatic gain control would do the
same); the SNR is measured on the loudest 30 % of 10 ms frames, i.e. on the word, not on the
silence around it. ``_silence_`` clips hold no word: their noise is set against
:data:`REF_SPEECH_RMS`, so the room's noise floor is the same for them as for speech.

``pyroomacoustics`` is a dependency of the benchmarks only (the ``bench`` extra); the
service never imports this module.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .audio import SAMPLE_RATE
from .pipeline import SILENCE

RT60 = (0.2, 0.8)  # s
DISTANCE = (1.0, 4.0)  # m, talker to microphone
SNR_DB = (5.0, 20.0)  # per clip
LOW_CUT = (80.0, 250.0)  # Hz, the microphone's band-pass
HIGH_CUT = (4500.0, 7500.0)
# Active-speech RMS (loudest 30 % of frames) that `_silence_` clips' noise is set against: the
# median over the 3,290 keyword clips of ../shared/data/speech_commands
# (`python -m model.room --data ../shared/data/speech_commands` prints 0.1165).
REF_SPEECH_RMS = 0.1165
ROOM_SPEC = {"rt60_s": RT60, "distance_m": DISTANCE, "snr_db": SNR_DB,
             "low_cut_hz": LOW_CUT, "high_cut_hz": HIGH_CUT, "model": "shoebox image-source",
             "noise": "_background_noise_ recordings + generated pink/brown noise"}


@dataclass(frozen=True)
class Room:
    """One simulated room (everything the impulse response and the noise depend on)."""

    seed: int
    dims: tuple[float, float, float]
    rt60: float
    mic: tuple[float, float, float]
    source: tuple[float, float, float]
    low_cut: float
    high_cut: float
    colour: str  # generated noise: "pink" or "brown"

    @property
    def distance(self) -> float:
        return math.dist(self.mic, self.source)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["distance"] = round(self.distance, 3)
        return {k: (round(v, 3) if isinstance(v, float) else
                    [round(x, 3) for x in v] if isinstance(v, tuple) else v)
                for k, v in d.items()}


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    return float(rng.uniform(*lo_hi))


def sample_room(seed: int) -> Room:
    """A room drawn from ``seed``: dimensions, RT60, microphone and talker positions."""
    import pyroomacoustics as pra

    rng = np.random.default_rng(seed)
    rt60 = _uniform(rng, RT60)
    for _ in range(1000):
        dims = (float(rng.uniform(3.0, 8.0)), float(rng.uniform(3.0, 6.0)),
                float(rng.uniform(2.4, 3.2)))
        try:  # small rooms cannot reach a short RT60 (absorption would exceed 1)
            pra.inverse_sabine(rt60, list(dims))
        except ValueError:
            continue
        mic = np.array([rng.uniform(0.5, d - 0.5) for d in dims[:2]] + [rng.uniform(0.8, 1.5)])
        dist = _uniform(rng, DISTANCE)
        az = rng.uniform(0, 2 * math.pi)
        src = mic + np.array([dist * math.cos(az), dist * math.sin(az), 0.0])
        src[2] = rng.uniform(1.2, 1.8)
        # the horizontal offset keeps the drawn distance; the height moves it a little
        if all(0.3 <= src[i] <= dims[i] - 0.3 for i in range(3)):
            return Room(seed, dims, rt60, tuple(map(float, mic)), tuple(map(float, src)),
                        _uniform(rng, LOW_CUT), _uniform(rng, HIGH_CUT),
                        "pink" if rng.random() < 0.5 else "brown")
    raise RuntimeError(f"no room fits for seed {seed}")  # pragma: no cover


def impulse_response(room: Room) -> np.ndarray:
    """Image-source room impulse response from talker to microphone, peak-normalised."""
    import pyroomacoustics as pra

    absorption, max_order = pra.inverse_sabine(room.rt60, list(room.dims))
    shoebox = pra.ShoeBox(list(room.dims), fs=SAMPLE_RATE, materials=pra.Material(absorption),
                          max_order=max_order, air_absorption=False)
    shoebox.add_source(list(room.source))
    shoebox.add_microphone(list(room.mic))
    shoebox.compute_rir()
    rir = np.asarray(shoebox.rir[0][0], dtype=np.float64)
    return rir / np.abs(rir).max()


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS pink (1/f) or brown (1/f²) noise, shaped in the frequency domain."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    f[0] = f[1]
    spec /= np.sqrt(f) if colour == "pink" else f
    x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def active_rms(x: np.ndarray, frame: int = 160, top: float = 0.3) -> float:
    """RMS of the loudest ``top`` share of 10 ms frames: the level of the word itself."""
    n = len(x) // frame
    if n == 0:
        return float(np.sqrt(np.mean(x**2)))
    p = np.sort((x[: n * frame].reshape(n, frame) ** 2).mean(1))[::-1]
    return float(np.sqrt(p[: max(1, int(n * top))].mean()))


def _clip_seed(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha1(f"{seed}:{key}".encode()).digest()[:8], "little")


class RoomSimulator:
    """Applies one :class:`Room` to clips: reverberation, band-pass, noise at a random SNR.

    Deterministic: a clip's noise window, colour sample and SNR depend only on the room's seed
    and the clip's key (its path), so a clip sounds the same every time it passes this room.
    """

    def __init__(self, room: Room, noise: list[torch.Tensor] | None = None) -> None:
        from scipy.signal import butter

        self.room = room
        self.rir = impulse_response(room)
        self.noise = [n.numpy().astype(np.float64) for n in (noise or []) if n.numel() > 0]
        nyq = SAMPLE_RATE / 2
        self.sos = butter(2, [room.low_cut / nyq, min(room.high_cut / nyq, 0.99)],
                          btype="band", output="sos")

    def _noise(self, n: int, rng: np.random.Generator) -> np.ndarray:
        gen = coloured_noise(n, self.room.colour, rng)
        if not self.noise:
            return gen
        rec = self.noise[int(rng.integers(len(self.noise)))]
        if len(rec) < n:
            rec = np.tile(rec, n // len(rec) + 1)
        start = int(rng.integers(len(rec) - n + 1))
        w = rec[start : start + n]
        w = w / (np.sqrt(np.mean(w**2)) + 1e-12)
        return (w + gen) / math.sqrt(2.0)

    def apply(self, wave: torch.Tensor, key: str, speech: bool = True) -> torch.Tensor:
        """The clip as the device in this room hears it (same length as ``wave``)."""
        from scipy.signal import fftconvolve, sosfilt

        rng = np.random.default_rng(_clip_seed(self.room.seed, key))
        x = wave.numpy().astype(np.float64)
        n = len(x)
        level = active_rms(x) if speech else REF_SPEECH_RMS
        y = fftconvolve(x, self.rir)[:n]
        y *= active_rms(x) / (active_rms(y) + 1e-12)
        snr = _uniform(rng, SNR_DB)
        y = y + self._noise(n, rng) * level / 10 ** (snr / 20)
        y = sosfilt(self.sos, y)
        return torch.from_numpy(np.clip(y, -1.0, 1.0)).to(wave.dtype)

    def apply_clips(self, waves: torch.Tensor, clips: list) -> torch.Tensor:
        """``waves`` (N, n) of ``clips`` (:class:`model.data.Clip`) through this room: each
        clip keyed by its path, ``_silence_`` windows with noise set against
        :data:`REF_SPEECH_RMS`."""
        return torch.stack([self.apply(w, str(c.path), speech=c.word != SILENCE)
                            for w, c in zip(waves, clips, strict=True)])


def speaker_room(seed: int, speaker: str) -> Room:
    """The room of one speaker in a run seeded ``seed``."""
    return sample_room(_clip_seed(seed, f"room:{speaker}") % 2**32)


def main() -> None:  # pragma: no cover - a measurement, printed as JSON
    """Median active-speech RMS of a folder's keyword clips (the source of REF_SPEECH_RMS)."""
    import argparse
    import json

    from .audio import load
    from .data import scan
    from .pipeline import KEYWORDS

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    a = ap.parse_args()
    rms = [active_rms(load(c.path).numpy()) for c in scan(a.data) if c.word in KEYWORDS]
    print(json.dumps({"clips": len(rms), "median_active_rms": float(np.median(rms))}))


if __name__ == "__main__":  # pragma: no cover
    main()
