"""Readout-only baseline: the hidden layer is frozen, W_out learns by the delta rule.

The same per-frame delta rule as TP's readout, (softmax(m) − c*) ⊗ ε, with Adam every frame.
"""

from __future__ import annotations

import torch

from ..neurons import LIFState
from .base import Rule, RuleConfig, register
from .tp import PathState, lif_forward, readout_grad


@register("readout")
class ReadoutDelta(Rule):
    def __init__(self, net, config: RuleConfig | None = None) -> None:
        super().__init__(net, config)
        self.opt_out = torch.optim.Adam([net.w_out], lr=self.config.lr_out)

    def begin(self, labels: torch.Tensor) -> None:
        _, h, c = self.net.sizes
        if self.net.w_out is not self.opt_out.param_groups[0]["params"][0]:
            self.opt_out = torch.optim.Adam([self.net.w_out], lr=self.config.lr_out)
        b = len(labels)
        self.labels = labels.long()
        self.onehot = torch.nn.functional.one_hot(self.labels, c).float()
        z = torch.zeros(b, h)
        self.data = PathState(LIFState(z, z.clone()), z.clone())
        self.m = torch.zeros(b, c)

    @torch.no_grad()
    def step(self, x: torch.Tensor) -> torch.Tensor:
        net, p = self.net, self.net.params
        cur = x @ net.w_in.T + self.data.lif.s @ net.w_rec.T
        s, _, self.data = lif_forward(cur, self.data, p)
        self.m = p.readout_leak * self.m + s @ net.w_out.T
        net.w_out.grad = readout_grad(self.m, self.onehot, self.data.eps)
        for group in self.opt_out.param_groups:
            group["lr"] = self.config.lr_out * self.lr_factor()
        with torch.enable_grad():
            self.opt_out.step()
        self.steps += 1
        return self.m

    def state_tensors(self) -> list[torch.Tensor]:
        moments = [t for st in self.opt_out.state.values() for t in st.values()
                   if torch.is_tensor(t)]
        return [*self.data.lif, self.data.eps, self.m, *moments]
