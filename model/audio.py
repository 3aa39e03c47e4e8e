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

SAMPLE_RATE = 16_000
MIN_RATE = 8_000
MAX_RATE = 48_000


class AudioError(ValueError):
    """The input is not usable audio (not audio, empty, truncated, non-finite, bad rate)."""

    def __init__(self, message: str, code: str = "bad-audio") -> None:
        super().__init__(message)
        self.code = code


MAX_KERNEL = 1 << 21  # polyphase kernel elements before the input rate is snapped


def safe_rate(rate: int, target: int = SAMPLE_RATE) -> int:
    """The rate to resample from: ``rate`` itself, or, for a rate such as 44 099 Hz that
    shares no divisor with 16 kHz (its polyphase kernel would take gigabytes), the nearest
    multiple of 100 Hz (≤ 0.6 % pitch change)."""
    g = math.gcd(rate, target)
    if (rate // g) * (target // g) * 2 > MAX_KERNEL:
        return max(MIN_RATE, round(rate / 100) * 100)
    return rate


def decode(data: bytes | bytearray | memoryview, max_seconds: float | None = None
           ) -> torch.Tensor:
    """Decode WAV/FLAC/OGG bytes (any rate 8–48 kHz, mono or stereo, int or float).

    Returns a 1-D float32 tensor at 16 kHz in [-1, 1]. Raises :class:`AudioError`. This is the
    streaming decoder (:class:`~.stream_decode.StreamDecoder`, the one the service uses on
    uploads) fed the whole file at once, so a file and an upload are decoded, checked and
    resampled the same way, with the same errors.
    """
    from .stream_decode import decode_chunks

    return decode_chunks([data], max_seconds)


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
