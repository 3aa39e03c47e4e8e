"""Event-based Three-factor Local Plasticity (ETLP; Quintana et al. 2024), docs/design.md §4.

e-prop's LIF eligibility with DRTP's third factor, applied on random events:

    ε_x = α ε_x + x          ε_s = α ε_s + s⁻        (presynaptic traces, per neuron)
    e_ji = ψ_j ε_i                                   (eligibility: no per-synapse storage)
    L_j = −(c* B)_j                                  (projected label, no error computed)
    ∂W_ji = L_j e_ji   at frames where an event fires (probability ``p_event``), else 0

with W ← W − η ∂W. The events are drawn from a seeded generator, so a run is reproducible.
The readout learns by the shared delta rule. State: ε_x (B × I), ε_s (B × H), B (C × H).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import register
from .core import PreTraces, pre_trace_step
from .drtp import target_signal
from .local import FEEDBACK_SEED, Factors, LocalConfig, LocalRule


@dataclass
class ETLPConfig(LocalConfig):
    lr: float = 1e-3  # adaptation default (RuleConfig says where it comes from)
    feedback: str = "random"  # B: "random" (as published) or "readout" (frozen W_out)
    p_event: float = 0.1  # probability that a frame triggers an update
    seed: int = 0  # of the event draws


@register("etlp")
class ETLP(LocalRule):
    config_class = ETLPConfig

    def __init__(self, net, config: ETLPConfig | None = None) -> None:
        super().__init__(net, config)
        self.events = torch.Generator().manual_seed(self.config.seed)

    def reset(self, b: int, h: int, n_in: int, c: int) -> None:
        self.pre = PreTraces(torch.zeros(b, n_in), torch.zeros(b, h))
        self.signal = target_signal(self.onehot, self.projection(self.config.feedback,
                                                                  FEEDBACK_SEED + 2000))

    def hidden_update(self, x, s_prev, s, psi):
        self.pre = pre_trace_step(x, s_prev, self.pre, self.net.params.alpha)
        if float(torch.rand((), generator=self.events)) >= self.config.p_event:
            return None
        return Factors(self.signal * psi / x.shape[0], self.pre.x, self.pre.s)

    def rule_tensors(self) -> list[torch.Tensor]:
        return [*self.pre, self.signal]
