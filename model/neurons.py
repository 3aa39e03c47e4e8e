"""Neuron and trace core shared by the network and every learning rule.

Pure step functions in the Norse style: ``step(input, state, params) -> (out, state)`` with
state as explicit named tuples, so state belongs to whoever holds it (a request, a profile,
an adaptation session) and nothing is global.

LIF with soft reset (docs/design.md §2):

    v~ = α v + I            s = Θ(v~ − V_th)            v = v~ − V_th s

Surrogate derivative of Θ at x = v~ − V_th:  ψ(x) = k / (1 + (π x)²).
Per-neuron trace:  ε = β ε + s.       Leaky-integrator readout:  m = λ m + W s.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch


@dataclass(frozen=True)
class LIFParams:
    alpha: float = 0.77  # membrane leak per 10 ms step
    v_th: float = 0.66
    k: float = 1.0  # surrogate scale (docs/design.md §6: k=10 stalls BPTT here, k=1 learns)
    beta: float = 0.977  # trace leak
    readout_leak: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


class LIFState(NamedTuple):
    v: torch.Tensor  # membrane after reset
    s: torch.Tensor  # spikes of the previous step (the recurrent input)


def surrogate(x: torch.Tensor, k: float) -> torch.Tensor:
    """ψ(x) = k / (1 + (π x)²), the pseudo-derivative of the Heaviside step."""
    return k / (1.0 + (math.pi * x) ** 2)


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, k: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.k = k
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * surrogate(x, ctx.k), None


def spike(x: torch.Tensor, k: float) -> torch.Tensor:
    """Heaviside forward, surrogate ψ backward."""
    return _Spike.apply(x, k)


def lif_init(batch: int, n: int, dtype: torch.dtype = torch.float32) -> LIFState:
    z = torch.zeros(batch, n, dtype=dtype)
    return LIFState(z, z.clone())


def lif_step(
    current: torch.Tensor, state: LIFState, p: LIFParams, detach_reset: bool = True
) -> tuple[torch.Tensor, torch.Tensor, LIFState]:
    """One LIF step. Returns (spikes, pre-reset membrane v~, new state).

    The reset is detached by default (gradients flow through the spike, not the reset),
    the usual choice for surrogate-gradient training.
    """
    v_tilde = p.alpha * state.v + current
    s = spike(v_tilde - p.v_th, p.k)
    reset = s.detach() if detach_reset else s
    return s, v_tilde, LIFState(v_tilde - p.v_th * reset, s)


def trace_step(x: torch.Tensor, trace: torch.Tensor, beta: float) -> torch.Tensor:
    """ε = β ε + x: one trace per neuron (not per synapse)."""
    return beta * trace + x


def readout_step(current: torch.Tensor, m: torch.Tensor, leak: float) -> torch.Tensor:
    """Leaky integrator m = λ m + I (λ = 1: a pure integrator)."""
    return leak * m + current
