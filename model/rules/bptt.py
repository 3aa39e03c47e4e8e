"""BPTT fine-tuning with surrogate gradients: the accuracy reference and the memory foil.

It must keep the autograd graph of every frame of the utterance, so its memory grows
linearly with the length of the audio; the update happens once, at :meth:`end`, on the
cross-entropy of the readout at the last frame (the same objective as pretraining).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..network import NetState
from ..neurons import lif_step, readout_step
from .base import Rule, RuleConfig, register


@dataclass
class BPTTConfig(RuleConfig):
    """Adam on the whole utterance at its end (the reference, not an online rule)."""

    lr: float = 1e-6
    lr_out: float = 1e-6
    update_every: int = 1
    optimizer: str = "adam"


@register("bptt")
class BPTT(Rule):
    config_class = BPTTConfig

    def __init__(self, net, config: BPTTConfig | None = None) -> None:
        super().__init__(net, config or BPTTConfig())
        self.make_optimiser([net.w_in, net.w_rec], [net.w_out])

    def begin(self, labels: torch.Tensor) -> None:
        if self.net.w_out is not self.opt.param_groups[1]["params"][0]:  # readout grew
            self.make_optimiser([self.net.w_in, self.net.w_rec], [self.net.w_out])
        self.labels = labels.long()
        self.state: NetState = self.net.init_state(len(labels))
        self.kept: list[torch.Tensor] = []  # the graph holds every frame's activations

    def step(self, x: torch.Tensor) -> torch.Tensor:
        net, p = self.net, self.net.params
        self.frames += 1
        with torch.enable_grad():
            h = self.state.hidden
            s, _, hidden = lif_step(x @ net.w_in.T + h.s @ net.w_rec.T, h, p)
            m = readout_step(s @ net.w_out.T, self.state.m, p.readout_leak)
        self.state = NetState(hidden, m)
        self.kept.append(s)
        return m.detach()

    def end(self) -> None:
        if not self.kept:
            return
        loss = torch.nn.functional.cross_entropy(self.state.m, self.labels)
        self.opt.zero_grad()
        loss.backward()
        self.pending = 1
        self.flush()
        self.kept = []
        h = self.state.hidden
        self.state = NetState(type(h)(h.v.detach(), h.s.detach()), self.state.m.detach())

    def state_tensors(self) -> list[torch.Tensor]:
        return [*self.state.hidden, self.state.m, *self.kept, *self.optimiser_tensors()]
