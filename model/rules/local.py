"""Scaffolding shared by the three-factor comparators: TESS, e-prop, ETLP, DRTP, DECOLLE.

All of them run the same no-autograd forward step (:meth:`Rule.data_step`), train the
readout by the same delta rule (:class:`core.ReadoutLearner`, as TP and ``readout`` do) and
change W_in (H×I) and W_rec (H×H) by a three-factor product

    ∂W_ji = L_j · post_j · pre_i          (applied as W ← W − η ∂W, summed over frames)

They differ only in the learning signal L, the postsynaptic factor (the surrogate
ψ = k/(1+(π(v~−V_th))²) or a trace of it), the presynaptic factor (spikes or a trace) and
when the product is applied. A subclass implements :meth:`LocalRule.reset` (per-utterance
state), :meth:`LocalRule.hidden_update` (per frame) and, if it updates at the end of the
utterance, :meth:`LocalRule.final_update`.

A per-frame update that is an outer product is returned as its :class:`Factors` (δ, pre):
the factors of the frames between two optimiser steps are kept (B·(2H+I) floats a frame) and
summed as one matrix product when the step is due, the same sum for a fraction of the cost
and without a per-synapse accumulator between frames (as TP does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..neurons import surrogate
from .base import Rule, RuleConfig
from .core import FactorBuffer, ReadoutLearner, zero_path

FEEDBACK_SEED = 20250301  # fixed random projections; row k depends only on (seed, k)


@dataclass
class LocalConfig(RuleConfig):
    readout: str = "final"  # or "frame" (see core.ReadoutLearner)
    readout_norm: bool = True  # normalised delta rule (see core.ReadoutLearner)


class Factors(NamedTuple):
    """A frame's three-factor update as factors: ∂W_in = δᵀ pre_x, ∂W_rec = δᵀ pre_s."""

    delta: torch.Tensor  # (B, H): learning signal ⊙ postsynaptic factor (and 1/B)
    pre_x: torch.Tensor  # (B, I)
    pre_s: torch.Tensor  # (B, H)


Update = Factors | tuple[torch.Tensor, torch.Tensor] | None


def class_projection(n_hidden: int, n_classes: int, seed: int) -> torch.Tensor:
    """Fixed random (C × H) matrix, entries N(0, 1/H): a random feedback / local readout.

    Row k depends only on (seed, k), so enrolling a class appends a row and leaves the
    others as they were (the same property as TP's label projection).
    """
    rows = [torch.randn(n_hidden, generator=torch.Generator().manual_seed(seed + k))
            for k in range(n_classes)]
    return torch.stack(rows) / math.sqrt(n_hidden)


class LocalRule(Rule):
    """Forward, readout and optimiser plumbing of a three-factor rule (see module doc)."""

    config_class = LocalConfig

    def __init__(self, net, config: LocalConfig | None = None) -> None:
        super().__init__(net, config or self.config_class())
        self.make_optimiser([net.w_in, net.w_rec], [net.w_out])
        self.readout = ReadoutLearner(self.config.readout, net.params.readout_leak,
                                      self.config.readout_norm)
        self._proj: dict[str, torch.Tensor] = {}

    # ---- for subclasses ----------------------------------------------------------------
    def reset(self, b: int, h: int, n_in: int, c: int) -> None:
        """Per-utterance state of the rule (called by :meth:`begin`)."""

    def hidden_update(self, x: torch.Tensor, s_prev: torch.Tensor, s: torch.Tensor,
                      psi: torch.Tensor) -> Update:
        """This frame's update: :class:`Factors`, (∂W_in, ∂W_rec) or None. x (B, I) input,
        s_prev (B, H) the recurrent input, s (B, H) the new spikes, psi (B, H) the
        surrogate ψ(v~ − V_th)."""
        return None

    def final_update(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """End-of-utterance (∂W_in, ∂W_rec), or None (called before the readout's update)."""
        return None

    def rule_tensors(self) -> list[torch.Tensor]:
        """Rule-specific tensors kept between frames (traces, eligibilities)."""
        return []

    def fixed_tensors(self) -> list[torch.Tensor]:
        return list(self._proj.values())  # random feedback, local readouts

    def projection(self, kind: str, seed: int) -> torch.Tensor:
        """The rule's fixed (C × H) projection: ``random`` (seeded, see
        :func:`class_projection`) or ``readout`` (a frozen copy of W_out as it was when the
        projection was made: a fixed feedback aligned with the pretrained readout)."""
        _, h, c = self.net.sizes
        cached = self._proj.get(kind)
        if cached is None or cached.shape[0] != c:
            if kind == "random":
                cached = class_projection(h, c, seed)
            elif kind == "readout":
                cached = self.net.w_out.detach().clone()
            else:
                raise ValueError(f"unknown feedback {kind!r}")
            self._proj = {kind: cached}
        return cached

    # ---- the Rule interface -------------------------------------------------------------
    def begin(self, labels: torch.Tensor) -> None:
        n_in, h, c = self.net.sizes
        if self.net.w_out is not self.opt.param_groups[1]["params"][0]:  # readout grew
            self.make_optimiser([self.net.w_in, self.net.w_rec], [self.net.w_out])
        self.labels = labels.long()
        b = len(labels)
        self.onehot = torch.nn.functional.one_hot(self.labels, c).to(torch.get_default_dtype())
        self.data = zero_path(b, h)
        self.readout.begin(b, h, c, self.onehot)
        self.t = 0  # frame of the utterance
        self._factors = FactorBuffer()
        self.reset(b, h, n_in, c)

    @torch.no_grad()
    def step(self, x: torch.Tensor) -> torch.Tensor:
        net, p = self.net, self.net.params
        s_prev, s, v_tilde = self.data_step(x)
        psi = surrogate(v_tilde - p.v_th, p.k)
        d_out = self.readout.step(s, self.data.eps, net.w_out)  # readout m advanced first
        d_hidden = self.hidden_update(x, s_prev, s, psi)
        self.t += 1
        if isinstance(d_hidden, Factors):
            self._factors.add(*d_hidden)
            d_hidden = None
        if self.pending + 1 >= self.config.update_every:  # this frame's accumulate steps
            d_hidden = self._add(d_hidden, self._factors.drain())
        upd = {} if d_hidden is None else {net.w_in: d_hidden[0], net.w_rec: d_hidden[1]}
        self.accumulate(upd if d_out is None else upd | {net.w_out: d_out})
        return self.readout.m

    @staticmethod
    def _add(a, b):
        if a is None or b is None:
            return b if a is None else a
        return a[0] + b[0], a[1] + b[1]

    @torch.no_grad()
    def end(self) -> None:
        d = self._add(self._factors.drain(), self.final_update())
        self.finish(None if d is None else {self.net.w_in: d[0], self.net.w_rec: d[1]})

    def state_tensors(self) -> list[torch.Tensor]:
        buffered = self._factors.tensors() if hasattr(self, "_factors") else []
        return [*self.data.lif, self.data.eps, *self.readout.tensors(), *self.rule_tensors(),
                *buffered, *self.fixed_tensors(), *self.optimiser_tensors()]
