"""Audio decoding: bytes or files → mono float32 waveform at 16 kHz.

Every way an upload can be wrong ends in one typed error, :class:`AudioError`, so callers
(CLI, service) can turn it into a clear message instead of a stack trace.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

SAMPLE_RATE = 16_000
MIN_RATE = 8_000
MAX_RATE = 48_000


class AudioError(ValueError):
    """The input is not usable audio (not audio, empty, truncated, non-finite, bad rate)."""

    def __init__(self, message: str, code: str = "bad-audio") -> None:
        super().__init__(message)
        self.code = code


def _check(samples: np.ndarray, rate: int) -> np.ndarray:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz", "bad-rate")
    if samples.size == 0:
        raise AudioError("the audio holds no samples", "empty-audio")
    if not np.isfinite(samples).all():
        raise AudioError("the audio holds NaN or infinite samples", "non-finite-audio")
    return samples


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Downmix (frames, channels) to (frames,) by averaging channels."""
    return samples.mean(axis=1) if samples.ndim == 2 else samples


MAX_KERNEL = 1 << 21  # polyphase kernel elements before the input rate is snapped


def safe_rate(rate: int, target: int = SAMPLE_RATE) -> int:
    """The rate to resample from: ``rate`` itself, or, for a rate such as 44 099 Hz that
    shares no divisor with 16 kHz (its polyphase kernel would take gigabytes), the nearest
    multiple of 100 Hz (≤ 0.6 % pitch change)."""
    g = math.gcd(rate, target)
    if (rate // g) * (target // g) * 2 > MAX_KERNEL:
        return max(MIN_RATE, round(rate / 100) * 100)
    return rate


def resample(wave: torch.Tensor, rate: int) -> torch.Tensor:
    """Resample a 1-D waveform to 16 kHz (no-op at 16 kHz)."""
    if rate == SAMPLE_RATE:
        return wave
    return AF.resample(wave, safe_rate(rate), SAMPLE_RATE)


def _wav_truncated(data: bytes) -> str | None:
    """Why a RIFF/WAVE file is cut short, or None. libsndfile silently reads what is there."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if cid == b"data":
            have = len(data) - pos - 8
            if size not in (0, 0xFFFFFFFF) and have < size:
                return f"the WAV data chunk declares {size} bytes but {have} are present"
            return None
        pos += 8 + size + (size & 1)
    return "the WAV file has no complete data chunk"


def decode(data: bytes | bytearray | memoryview) -> torch.Tensor:
    """Decode WAV/FLAC/OGG bytes (any rate 8–48 kHz, mono or stereo, int or float).

    Returns a 1-D float32 tensor at 16 kHz in [-1, 1]. Raises :class:`AudioError`.
    """
    if len(data) == 0:
        raise AudioError("the request body is empty", "empty-audio")
    data = bytes(data)
    why = _wav_truncated(data)
    if why:
        raise AudioError(f"the audio is truncated: {why}", "truncated-audio")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate = f.samplerate
            expected = f.frames
            samples = f.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        raise AudioError(f"not a readable WAV/FLAC/OGG file ({exc})", "not-audio") from exc
    if expected > 0 and samples.shape[0] < expected:
        raise AudioError(
            f"the audio is truncated: header says {expected} frames, found {samples.shape[0]}",
            "truncated-audio",
        )
    samples = _check(to_mono(samples), rate)
    return resample(torch.from_numpy(np.ascontiguousarray(samples)), rate)


def load(path: str | Path) -> torch.Tensor:
    """Read an audio file from disk; same contract as :func:`decode`."""
    p = Path(path)
    if not p.is_file():
        raise AudioError(f"no such file: {p}", "not-found")
    return decode(p.read_bytes())


def encode_wav(wave: torch.Tensor | np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM WAV bytes of a mono waveform (used by tests, benchmarks and the CLI)."""
    arr = wave.numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    buf = io.BytesIO()
    sf.write(buf, np.clip(arr, -1.0, 1.0), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()
