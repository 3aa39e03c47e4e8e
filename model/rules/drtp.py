"""Direct Random Target Projection (DRTP; Frenkel, Lefebvre & Bol 2021) on the recurrent LIF
layer, frame by frame (docs/design.md §4).

DRTP replaces the error by its sign, which classification knows in advance: the error of the
target class is negative, of the others ≈ 0, so e ≈ −c*. The hidden layer's learning signal
is the label projected through a fixed random matrix B (C × H), with no forward pass of the
readout and no error computation:

    L_j = −(c* B)_j                                      (the same for every frame)
    ∂W_in[j,i]  = L_j ψ_j x_i        ∂W_rec[j,i] = L_j ψ_j s⁻_i        W ← W − η ∂W

ψ = surrogate(v~ − V_th) is f′ of the LIF step and the presynaptic factor is the current
input (no trace): the rule is one step deep. the reference notes write it δy = c* B,
ΔW = −η (δy ⊙ f′) yᵀ; with a random B drawn from a symmetric law, B and −B are the same rule.
We write L = −c* B (the sign of the error) so that ``feedback="readout"`` (B = a frozen copy
of the pretrained W_out) pushes up the neurons that vote for the target class.
The readout learns by the shared delta rule. State: nothing per synapse, B (C × H).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import register
from .local import FEEDBACK_SEED, Factors, LocalConfig, LocalRule


@dataclass
class DRTPConfig(LocalConfig):
    lr: float = 3e-4  # adaptation default (RuleConfig says where it comes from)
    feedback: str = "random"  # B: "random" (the rule as published) or "readout" (frozen W_out)


def target_signal(onehot: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """L = −c* B: the label projected through a fixed (C × H) matrix (DRTP, ETLP)."""
    return -(onehot @ proj)


@register("drtp")
class DRTP(LocalRule):
    config_class = DRTPConfig

    def reset(self, b: int, h: int, n_in: int, c: int) -> None:
        self.signal = target_signal(self.onehot, self.projection(self.config.feedback,
                                                                  FEEDBACK_SEED + 1000))

    def hidden_update(self, x, s_prev, s, psi):
        return Factors(self.signal * psi / x.shape[0], x, s_prev)

    def rule_tensors(self) -> list[torch.Tensor]:
        return [self.signal]
