"""TESS, a temporally and spatially local rule (Apolinario, Roy & Frenkel 2025), docs/design.md §4.

Spatially local: the layer makes its own prediction through a fixed binary matrix whose rows
are square waves, and the learning signal is the gradient of that prediction's loss:

    B[c, d] = sign(sin(f_c d)) / D,   f = linspace(f_min, f_max, C),  d = 0 … D−1
    p = softmax(B pool(s_t) / T)      m = ∂CE(p, c*)/∂s_t = (p − c*) B pool′ / (T·batch)

(pool: average over ``pool`` bins of the H neurons; 0 = none, D = H.) Temporally local: an
STDP-like eligibility with a causal and a non-causal term, from per-neuron traces only:

    tr_x = λ_pre tr_x + x      tr_s = λ_pre tr_s + s⁻            (presynaptic traces)
    e_ji = α_pre ψ_j^t tr_i^t + α_post tr_ψ,j^{t−1} pre_i^t      (pre = x or s⁻)
    tr_ψ = λ_post tr_ψ + ψ                                       (postsynaptic trace)
    ∂W_ji = Σ_t m_j^t e_ji^t,   W ← W − η ∂W

summed over the learning window. The paper learns on the last frames of each sample; a
stream has no known end, so here the window opens at frame ``learn_from`` of the utterance
(0: every frame). Defaults (λ_post, λ_pre, α_post, α_pre) = (0.5, 0.8, −0.2, 1) are the
reference code's. The readout learns by the shared delta rule.

State: tr_x (B × I), tr_s (B × H), tr_ψ (B × H) and the square-wave matrix (C × H); e_ji is
an outer product of per-neuron traces and is never stored, so the only per-synapse memory
is the summed update between optimiser steps (counted with the optimiser's tensors).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import register
from .core import PreTraces, ce_signal, pre_trace_step
from .local import Factors, LocalConfig, LocalRule


@dataclass
class TESSConfig(LocalConfig):
    lr: float = 1e-3  # adaptation default (RuleConfig says where it comes from)
    lambda_pre: float = 0.8
    lambda_post: float = 0.5
    alpha_pre: float = 1.0  # causal term
    alpha_post: float = -0.2  # non-causal term
    f_min: float = 50.0
    f_max: float = 512.0
    pool: int = 0  # bins of the layer's pooled activity (0: no pooling)
    temperature: float = 1.0
    learn_from: int = 0  # frame of the utterance at which the learning signal switches on


def square_waves(n_classes: int, n: int, f_min: float = 50.0, f_max: float = 512.0
                 ) -> torch.Tensor:
    """TESS's fixed binary matrix (C × n): row c is sign(sin(f_c d)) / n, d = 0 … n−1."""
    f = torch.linspace(f_min, f_max, n_classes, dtype=torch.float64).unsqueeze(1)
    d = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    return (torch.sign(torch.sin(f * d)) / n).to(torch.get_default_dtype())


def pool_matrix(n: int, bins: int) -> torch.Tensor:
    """(bins × n) matrix of adaptive average pooling (the bins of ``adaptive_avg_pool1d``)."""
    if bins <= 0 or bins >= n:
        return torch.eye(n)
    eye = torch.eye(n).unsqueeze(0)  # pool each basis vector: column i = pool(e_i)
    return torch.nn.functional.adaptive_avg_pool1d(eye, bins)[0].T


@register("tess")
class TESS(LocalRule):
    config_class = TESSConfig

    def local_readout(self, h: int, c: int) -> torch.Tensor:
        """B pool / T as one (C × H) matrix: logits = s projᵀ."""
        cfg = self.config
        cached = self._proj.get("tess")
        if cached is None or cached.shape[0] != c:
            pool = pool_matrix(h, cfg.pool)
            b = square_waves(c, pool.shape[0], cfg.f_min, cfg.f_max)
            cached = self._proj["tess"] = b @ pool / cfg.temperature
        return cached

    def reset(self, b: int, h: int, n_in: int, c: int) -> None:
        self.pre = PreTraces(torch.zeros(b, n_in), torch.zeros(b, h))
        self.tr_psi = torch.zeros(b, h)
        self.proj = self.local_readout(h, c)

    def hidden_update(self, x, s_prev, s, psi):
        cfg = self.config
        self.pre = pre_trace_step(x, s_prev, self.pre, cfg.lambda_pre)
        tr_psi_prev = self.tr_psi
        self.tr_psi = cfg.lambda_post * self.tr_psi + psi
        if self.t < cfg.learn_from:
            return None
        m = ce_signal(s @ self.proj.T, self.onehot, self.proj)  # (B, H), 1/batch inside
        # causal and non-causal terms as one factor pair, stacked along the batch
        return Factors(torch.cat([cfg.alpha_pre * m * psi, cfg.alpha_post * m * tr_psi_prev]),
                       torch.cat([self.pre.x, x]), torch.cat([self.pre.s, s_prev]))

    def rule_tensors(self) -> list[torch.Tensor]:
        return [*self.pre, self.tr_psi]
