"""Run a learning rule on random spike input, for tests of its state size."""

import torch
from tracekws.model.adapt import make
from tracekws.model.network import SNN
from tracekws.model.pipeline import KWSModel, ModelConfig


def state_bytes_after(rule_name: str, frames: int, n_hidden: int = 32) -> int:
    """Bytes the rule keeps after ``frames`` frames of one utterance (40 inputs, 12 classes)."""
    rule = make(KWSModel(ModelConfig(n_hidden=n_hidden), net=SNN(40, n_hidden, 12)), rule_name)
    rule.begin(torch.tensor([5]))
    for _ in range(frames):
        rule.step((torch.rand(1, 40) < 0.3).float())
    return rule.state_bytes()
