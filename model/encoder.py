"""Spike encoder: normalised features → binary spike trains (docs/design.md §2).

``sigma-delta`` (default): every feature drives an ON and an OFF population of integrate-and-
fire units with soft reset and no leak (a first-order sigma-delta modulator). Per frame

    u = u + x
    n_on  = clamp(floor( u / θ), 0, L)     n_off = clamp(floor(−u / θ), 0, L)
    u = u − θ·n_on + θ·n_off,  then clipped to ±L·θ (no wind-up)

and unit k of a population spikes when n > k (a thermometer code over L levels). The spike
count tracks the feature over time with the quantisation error pushed to high frequencies,
which the membrane leak of the network filters out.

``level``: threshold units per feature and polarity with no memory (a level-crossing code),
n = clamp(round(x/θ), −L, L), same thermometer output: each frame is quantised instead of
dithered across frames. ``analog`` passes the features through as current, as the reference
TP code does. The encoder is stateful: chunked == whole.

The network sees ``spikes − μ`` (μ: mean rate of each output on the training data, stored in
the model): binary events plus a constant bias current −W μ per neuron. Without it the
all-positive spike inputs are badly conditioned and the network learns several times slower.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch


@dataclass(frozen=True)
class EncoderConfig:
    kind: str = "sigma-delta"  # or "level", "analog"
    threshold: float = 0.5
    levels: int = 2

    def n_outputs(self, n_features: int) -> int:
        return n_features if self.kind == "analog" else n_features * 2 * self.levels

    def to_dict(self) -> dict:
        return asdict(self)


class EncoderState(NamedTuple):
    u: torch.Tensor | None  # (B, F) integrator residual


def init_state() -> EncoderState:
    return EncoderState(None)


def encode(
    x: torch.Tensor, state: EncoderState, config: EncoderConfig
) -> tuple[torch.Tensor, EncoderState]:
    """Encode (B, T, F) normalised features into (B, T, n_outputs) inputs for the network."""
    if config.kind == "analog":
        return x, state
    if config.kind not in ("sigma-delta", "level"):
        raise ValueError(f"unknown encoder kind {config.kind!r}")
    theta, levels = config.threshold, config.levels
    if config.kind == "level":
        return _thermometer(torch.clamp(torch.round(x / theta), -levels, levels), levels), state
    u = x.new_zeros(x.shape[0], x.shape[2]) if state.u is None else state.u
    b, t_len, f = x.shape
    counts = x.new_zeros(b, t_len, f)  # signed spike count n_on − n_off (only one is non-zero)
    xs = x / theta  # work in units of θ
    u = u / theta
    for t in range(t_len):
        u = u + xs[:, t]
        n = torch.clamp(torch.trunc(u), -levels, levels)  # floor toward zero for both signs
        u = torch.clamp(u - n, -levels, levels)
        counts[:, t] = n
    return _thermometer(counts, levels), EncoderState(u * theta)


def _thermometer(counts: torch.Tensor, levels: int) -> torch.Tensor:
    """Signed counts (B, T, F) → binary (B, T, F·2·L): ON units k < n, OFF units k < −n."""
    ks = torch.arange(levels, dtype=counts.dtype)
    on = (counts.unsqueeze(-1) > ks).to(counts.dtype)  # (B, T, F, L)
    off = ((-counts).unsqueeze(-1) > ks).to(counts.dtype)
    return torch.cat([on.flatten(2), off.flatten(2)], dim=2)
