"""e-prop (Bellec et al. 2020) for the recurrent LIF layer, docs/design.md §4.

Eligibility of the LIF synapse j←i (recurrent spikes and reset held fixed in ∂v~/∂W):

    ε_x = α ε_x + x          ε_s = α ε_s + s⁻                    (eligibility vectors)
    e_ji = ψ_j ε_i                                               (eligibility trace)
    ē_ji = κ ē_ji + e_ji                                         (low-passed, per synapse)

with κ the readout leak (1: our integrator readout, so ē sums e over the utterance). The
learning signal is the readout error sent back through B (C × H):

    L_j = Σ_k B_kj (softmax(m)_k − c*_k)        B = W_out ("symmetric") or fixed random

and the update ∂W_ji = Σ_t L_j^t ē_ji^t, W ← W − η ∂W. The loss follows the readout's
timing (``readout``): ``final`` — the cross-entropy of the prediction (m at the last frame)
— updates once at the end with L^T ē^T; ``frame`` — Σ_t CE(m_t) — every frame with L^t ē^t.
With symmetric feedback both equal autograd of that loss on the unrolled graph with the
recurrent spikes and resets detached (tested).

ē is per synapse: the state is O(B·H·(I+H)) floats (1.7 MB per sample at 480-450), the
memory that TP and TESS avoid. ALIF's adaptation term is not implemented (the network is
LIF). The readout learns by the shared delta rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import register
from .core import PreTraces, ce_signal, pre_trace_step
from .local import FEEDBACK_SEED, LocalConfig, LocalRule


@dataclass
class EpropConfig(LocalConfig):
    lr: float = 3e-3  # adaptation defaults (RuleConfig says where they come from)
    lr_out: float = 0.1
    feedback: str = "symmetric"  # B: "symmetric" (W_out, as it learns) or "random" (fixed)


@register("eprop")
class Eprop(LocalRule):
    config_class = EpropConfig

    def reset(self, b: int, h: int, n_in: int, c: int) -> None:
        self.pre = PreTraces(torch.zeros(b, n_in), torch.zeros(b, h))
        self.e_in = torch.zeros(b, h, n_in)  # ē for W_in
        self.e_rec = torch.zeros(b, h, h)  # ē for W_rec

    def feedback(self) -> torch.Tensor:
        if self.config.feedback == "symmetric":
            return self.net.w_out.detach()
        if self.config.feedback != "random":
            raise ValueError(f"unknown feedback {self.config.feedback!r}")
        return self.projection("random", FEEDBACK_SEED + 4000)

    def hidden_update(self, x, s_prev, s, psi):
        self.pre = pre_trace_step(x, s_prev, self.pre, self.net.params.alpha)
        kappa = self.net.params.readout_leak
        if kappa != 1.0:
            self.e_in.mul_(kappa)
            self.e_rec.mul_(kappa)
        post = psi.unsqueeze(2)
        self.e_in.addcmul_(post, self.pre.x.unsqueeze(1))
        self.e_rec.addcmul_(post, self.pre.s.unsqueeze(1))
        return self._update() if self.config.readout == "frame" else None

    def final_update(self):
        return self._update() if self.config.readout == "final" else None

    def _update(self) -> tuple[torch.Tensor, torch.Tensor]:
        sig = ce_signal(self.readout.m, self.onehot, self.feedback())  # L (B, H), 1/B inside
        return (torch.einsum("bj,bji->ji", sig, self.e_in),
                torch.einsum("bj,bji->ji", sig, self.e_rec))

    def rule_tensors(self) -> list[torch.Tensor]:
        return [*self.pre, self.e_in, self.e_rec]
