"""Readout-only baseline: the hidden layer is frozen, W_out learns by the delta rule.

The same readout learner as TP (:class:`~model.rules.core.ReadoutLearner`), so the two
differ only in whether the hidden layer learns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Rule, RuleConfig, register
from .core import ReadoutLearner, zero_path


@dataclass
class ReadoutConfig(RuleConfig):
    readout: str = "final"
    readout_norm: bool = True


@register("readout")
class ReadoutDelta(Rule):
    config_class = ReadoutConfig

    def __init__(self, net, config: ReadoutConfig | None = None) -> None:
        super().__init__(net, config or ReadoutConfig())
        self.make_optimiser([], [net.w_out])
        self.readout = ReadoutLearner(self.config.readout, net.params.readout_leak,
                                      self.config.readout_norm)

    def begin(self, labels: torch.Tensor) -> None:
        _, h, c = self.net.sizes
        if self.net.w_out is not self.opt.param_groups[0]["params"][0]:  # readout grew
            self.make_optimiser([], [self.net.w_out])
        b = len(labels)
        self.labels = labels.long()
        self.data = zero_path(b, h)
        onehot = torch.nn.functional.one_hot(self.labels, c).to(self.net.w_out.dtype)
        self.readout.begin(b, h, c, onehot)

    @torch.no_grad()
    def step(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        _, s, _ = self.data_step(x)
        d_out = self.readout.step(s, self.data.eps, net.w_out)
        if d_out is not None:
            self.accumulate({net.w_out: d_out})
        return self.readout.m

    def end(self) -> None:
        self.finish()

    def state_tensors(self) -> list[torch.Tensor]:
        return [*self.data.lif, self.data.eps, *self.readout.tensors(), *self.optimiser_tensors()]
