"""Deep Continuous Local Learning (DECOLLE; Kaiser, Mostafa & Neftci 2020), docs/design.md §4.

Each hidden layer has a fixed random local readout G (C × H) and its own loss at every
frame; gradients go through the current step only. DECOLLE writes the membrane as
U = W P with P the presynaptic trace, so ∂U/∂W = P; for our LIF (v~ = α v + W x + R s⁻,
reset held fixed) that trace has the membrane leak α:

    P_x = α P_x + x        P_s = α P_s + s⁻
    y_t = G s_t            E_t = CE(softmax(y_t), c*)                (local loss, per frame)
    δ_j = (∂E_t/∂s_t)_j ψ_j = [(softmax(y_t) − c*) G]_j ψ_j / B
    ∂W_in = δᵀ P_x         ∂W_rec = δᵀ P_s                           W ← W − η ∂W

which is autograd of E_t on the unrolled graph with recurrent spikes and resets detached
(tested). The network readout W_out learns by the shared delta rule.
State: P_x (B × I), P_s (B × H), G (C × H).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import register
from .core import PreTraces, ce_signal, pre_trace_step
from .local import FEEDBACK_SEED, Factors, LocalConfig, LocalRule


@dataclass
class DECOLLEConfig(LocalConfig):
    lr: float = 3e-5  # adaptation default (RuleConfig says where it comes from)
    local_readout: str = "random"  # G: "random" (as published) or "readout" (frozen W_out)


@register("decolle")
class DECOLLE(LocalRule):
    config_class = DECOLLEConfig

    def reset(self, b: int, h: int, n_in: int, c: int) -> None:
        self.pre = PreTraces(torch.zeros(b, n_in), torch.zeros(b, h))
        self.g = self.projection(self.config.local_readout, FEEDBACK_SEED + 3000)

    def hidden_update(self, x, s_prev, s, psi):
        self.pre = pre_trace_step(x, s_prev, self.pre, self.net.params.alpha)
        y = s @ self.g.T
        self.last_loss = torch.nn.functional.cross_entropy(y, self.labels)
        delta = ce_signal(y, self.onehot, self.g) * psi
        return Factors(delta, self.pre.x, self.pre.s)

    def rule_tensors(self) -> list[torch.Tensor]:
        return [*self.pre]
