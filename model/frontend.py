"""Streaming log-mel front end (docs/design.md §2).

40 mel bins, 30 ms window (n_fft 480), 10 ms hop, 20 Hz–4 kHz, log compression, plus Δ and ΔΔ
(120 features). Frames are computed without centre padding and the deltas are *causal*
(the regression delta of frame t−2, emitted at frame t, left edge replicated), so the front
end only needs past samples: feeding a clip in chunks of any size gives the same frames as
feeding it whole. That is what lets /adapt and live detection consume audio as it arrives.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torchaudio.transforms as T

DELTA_SPAN = 4  # frames of history a causal delta (window 5) needs


@dataclass(frozen=True)
class FrontEndConfig:
    sample_rate: int = 16_000
    n_mels: int = 40
    n_fft: int = 480
    hop_length: int = 160
    f_min: float = 20.0
    f_max: float = 4000.0
    deltas: bool = True
    log_eps: float = 1e-6

    @property
    def n_features(self) -> int:
        return self.n_mels * (3 if self.deltas else 1)

    def frames(self, n_samples: int) -> int:
        """Complete STFT frames (no padding) in ``n_samples`` samples."""
        return 0 if n_samples < self.n_fft else 1 + (n_samples - self.n_fft) // self.hop_length

    def samples(self, n_frames: int) -> int:
        """Samples that ``n_frames`` complete frames span (0 for none)."""
        return 0 if n_frames <= 0 else (n_frames - 1) * self.hop_length + self.n_fft

    def to_dict(self) -> dict:
        return asdict(self)


class FrontEndState(NamedTuple):
    """Per-stream state: unconsumed samples and the last frames the deltas need."""

    tail: torch.Tensor  # (B, n) samples not yet framed
    hist: torch.Tensor | None  # (B, 4, n_mels) last log-mel frames
    dhist: torch.Tensor | None  # (B, 4, n_mels) last delta frames


def causal_delta(x: torch.Tensor, hist: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Regression delta (window 5) of frame t−2, emitted at t. x: (B, T, F).

    d_t = (2 (x_t − x_{t−4}) + (x_{t−1} − x_{t−3})) / 10. Returns (deltas, new history).
    """
    if hist is None:
        hist = x[:, :1].expand(-1, DELTA_SPAN, -1)
    xx = torch.cat([hist, x], dim=1)
    d = (2.0 * (xx[:, 4:] - xx[:, :-4]) + (xx[:, 3:-1] - xx[:, 1:-3])) / 10.0
    return d, xx[:, -DELTA_SPAN:].clone()


class FrontEnd(torch.nn.Module):
    """Waveform (16 kHz) → (B, T, F) log-mel [+Δ+ΔΔ] frames, stateful for streaming."""

    def __init__(self, config: FrontEndConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or FrontEndConfig()
        self.mel = T.MelSpectrogram(
            sample_rate=c.sample_rate,
            n_fft=c.n_fft,
            hop_length=c.hop_length,
            f_min=c.f_min,
            f_max=c.f_max,
            n_mels=c.n_mels,
            center=False,
            power=2.0,
        )

    def init_state(self, batch: int = 1) -> FrontEndState:
        return FrontEndState(torch.zeros(batch, 0), None, None)

    def step(self, chunk: torch.Tensor, state: FrontEndState) -> tuple[torch.Tensor, FrontEndState]:
        """Consume a chunk (B, n) or (n,) of samples; return the frames it completes."""
        c = self.config
        if chunk.dim() == 1:
            chunk = chunk.unsqueeze(0)
        buf = torch.cat([state.tail, chunk.to(torch.float32)], dim=1)
        n = c.frames(buf.shape[1])
        if n == 0:
            return buf.new_zeros(buf.shape[0], 0, c.n_features), state._replace(tail=buf)
        used = c.samples(n)
        with torch.no_grad():
            logmel = torch.log(self.mel(buf[:, :used]) + c.log_eps).transpose(1, 2)
        tail = buf[:, n * c.hop_length :]
        if not c.deltas:
            return logmel, FrontEndState(tail, None, None)
        d1, hist = causal_delta(logmel, state.hist)
        d2, dhist = causal_delta(d1, state.dhist)
        return torch.cat([logmel, d1, d2], dim=2), FrontEndState(tail, hist, dhist)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Whole clip(s): (n,) → (T, F) or (B, n) → (B, T, F)."""
        frames, _ = self.step(wave, self.init_state(1 if wave.dim() == 1 else wave.shape[0]))
        return frames[0] if wave.dim() == 1 else frames
