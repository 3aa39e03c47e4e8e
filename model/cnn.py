"""A non-spiking baseline: the depthwise-separable CNN of the keyword-spotting literature.

DS-CNN-S of Zhang et al., "Hello Edge: Keyword Spotting on Microcontrollers" (2017): one
standard convolution (64 filters, 10×4, stride 2×2), four depthwise-separable blocks
(3×3 depthwise, 1×1 pointwise, 64 channels, batch norm and ReLU after each), global average
pooling and a linear classifier. It is here to answer the question a user asks first of a
spiking keyword spotter: what would an ordinary small CNN, trained on the same clips with the
same split and augmentation, score and cost? It is never the default model; the service,
streaming detection and personalisation are the SNN's (they need its frame-by-frame state).

Input: the SNN's own front end and normalisation (log-mel 40 + Δ + ΔΔ, standardised with the
training statistics, the ``analog`` encoder: no spikes), as three channels (static, Δ, ΔΔ)
of T frames × 40 mel bands. ``forward`` returns ``(logits, None, rate)`` like
:meth:`model.network.SNN.forward` (readout, state, spike rate; no state and no spikes here),
so evaluation, training and the benchmarks call both the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class DSCNNConfig:
    """Sizes of the DS-CNN (defaults: DS-CNN-S of Hello Edge, ~28k parameters here)."""

    channels: int = 64
    blocks: int = 4
    kernel: tuple[int, int] = (10, 4)  # (frames, mel bands) of the first convolution
    stride: tuple[int, int] = (2, 2)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DSCNNConfig:
        return cls(channels=int(d["channels"]), blocks=int(d["blocks"]),
                   kernel=tuple(d["kernel"]), stride=tuple(d["stride"]))


class _DSBlock(nn.Module):
    """3×3 depthwise convolution, BN, ReLU, 1×1 pointwise convolution, BN, ReLU."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.dw_bn = nn.BatchNorm2d(c)
        self.pw = nn.Conv2d(c, c, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.dw_bn(self.dw(x)))
        return torch.relu(self.pw_bn(self.pw(x)))


class DSCNN(nn.Module):
    """(B, T, 3·n_mels) normalised features → (B, C) logits."""

    def __init__(self, n_in: int, n_out: int, config: DSCNNConfig | None = None,
                 n_mels: int = 40) -> None:
        super().__init__()
        cfg = self.config = config or DSCNNConfig()
        if n_in % n_mels:
            raise ValueError(f"DS-CNN input of {n_in} features is not a multiple of {n_mels} "
                             "mel bands (static, Δ, ΔΔ blocks)")
        self.n_mels, self.in_channels = n_mels, n_in // n_mels
        kt, kf = cfg.kernel
        self.conv = nn.Conv2d(self.in_channels, cfg.channels, cfg.kernel, stride=cfg.stride,
                              padding=(kt // 2, kf // 2 - 1 if kf % 2 == 0 else kf // 2),
                              bias=False)
        self.bn = nn.BatchNorm2d(cfg.channels)
        self.blocks = nn.Sequential(*[_DSBlock(cfg.channels) for _ in range(cfg.blocks)])
        self.fc = nn.Linear(cfg.channels, n_out)

    @property
    def n_out(self) -> int:
        return self.fc.out_features

    def forward(
        self, x: torch.Tensor, state: None = None, dropout: float = 0.0,
        spikes: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, None, torch.Tensor]:
        """(B, T, F) → (logits (B, C), None, zero rate); ``state`` and ``spikes`` exist only
        for the SNN's call signature (a CNN sees the whole clip and emits no spikes)."""
        b, t, f = x.shape
        h = x.reshape(b, t, self.in_channels, self.n_mels).permute(0, 2, 1, 3)  # (B, 3, T, M)
        h = torch.relu(self.bn(self.conv(h)))
        h = self.blocks(h).mean((2, 3))
        if dropout > 0 and self.training:
            h = nn.functional.dropout(h, dropout, True)
        return self.fc(h), None, x.new_zeros(())

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
