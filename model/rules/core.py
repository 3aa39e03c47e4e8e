"""Pieces every local rule shares: the no-autograd LIF + trace step and the readout learner."""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..neurons import LIFParams, LIFState, lif_init, trace_step


class PathState(NamedTuple):
    lif: LIFState
    eps: torch.Tensor  # per-neuron trace


def zero_path(b: int, n: int) -> PathState:
    """Rest state of a path of ``b`` samples through ``n`` neurons (membrane, spikes, trace)."""
    return PathState(lif_init(b, n, torch.get_default_dtype()), torch.zeros(b, n))


def lif_forward(current: torch.Tensor, st: PathState, p: LIFParams):
    """LIF + trace step without autograd: returns (s, v~, new PathState)."""
    v_tilde = p.alpha * st.lif.v + current
    s = (v_tilde > p.v_th).to(current.dtype)
    eps = trace_step(s, st.eps, p.beta)
    return s, v_tilde, PathState(LIFState(v_tilde - p.v_th * s, s), eps)


class PreTraces(NamedTuple):
    """Presynaptic traces of one layer: of its input x and of its recurrent input s⁻."""

    x: torch.Tensor
    s: torch.Tensor


def pre_trace_step(x: torch.Tensor, s_prev: torch.Tensor, tr: PreTraces, decay: float
                   ) -> PreTraces:
    """tr = decay·tr + (x, s⁻), the current presynaptic input included.

    With ``decay`` = α this is ∂v~/∂W of the LIF step (reset and recurrent spikes held
    fixed): the e-prop eligibility vector ε of a LIF neuron and DECOLLE's trace P.
    """
    return PreTraces(trace_step(x, tr.x, decay), trace_step(s_prev, tr.s, decay))


def three_factor(delta: torch.Tensor, pre_x: torch.Tensor, pre_s: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-summed outer products δᵀ pre: the (∂W_in, ∂W_rec) of a three-factor rule whose
    postsynaptic factor δ (B, H) already holds learning signal ⊙ surrogate (and 1/B)."""
    return delta.T @ pre_x, delta.T @ pre_s


class FactorBuffer:
    """The three-factor updates of the frames between two optimiser steps, kept as factors.

    A frame's update δᵀ pre is an outer product; keeping (δ, pre_x, pre_s) — B·(2H+I) floats
    a frame — and summing the frames as one matrix product per weight when the step is due
    gives the same sum for a fraction of the cost, with no per-synapse accumulator between
    frames (TP and the comparators of ``local.py`` share it).
    """

    def __init__(self) -> None:
        self.items: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def add(self, delta: torch.Tensor, pre_x: torch.Tensor, pre_s: torch.Tensor) -> None:
        self.items.append((delta, pre_x, pre_s))

    def __len__(self) -> int:
        return len(self.items)

    def drain(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(∂W_in, ∂W_rec) summed over the buffered frames, or None; empties the buffer."""
        if not self.items:
            return None
        d, px, ps = (torch.cat(t) for t in zip(*self.items, strict=True))
        self.items = []
        return three_factor(d, px, ps)

    def tensors(self) -> list[torch.Tensor]:
        return [t for item in self.items for t in item]


def ce_signal(logits: torch.Tensor, target: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
    """∂/∂a of mean_b CE(softmax(logits_b), target_b) for logits = a projᵀ: (softmax − c*) proj / B.

    The learning signal of every rule with a (fixed or trained) linear readout of the hidden
    layer: e-prop (proj = W_out or random B), TESS (square waves), DECOLLE (random G).
    """
    return (torch.softmax(logits, dim=1) - target) @ proj / logits.shape[0]


def readout_grad(m: torch.Tensor, target: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Delta rule (softmax(m) − c*) ⊗ ε, averaged over the batch."""
    return (torch.softmax(m, dim=1) - target).T @ eps / m.shape[0]


class ReadoutLearner:
    """The readout's delta rule, in one of two timings.

    ``final`` (default): the eligibility e = λ e + s (λ = the readout leak, so e is exactly
    ∂m/∂W_out) runs over the utterance and the update (softmax(m_T) − c*) ⊗ e is applied at
    its end, the forward-mode gradient of the cross-entropy of the prediction the model makes
    (the readout at the last frame). ``frame``: the per-frame delta rule of the TP reference
    code, (softmax(m_t) − c*) ⊗ ε_t at every frame.

    ``normalise`` divides the update by the squared norm of the presynaptic factor (the
    normalised LMS step): a step of size η then moves the logits by about η·(p − c*)
    whatever the spike counts of the utterance, so η is in logit units and one rate suits
    short and long, quiet and loud utterances.

    ``reference`` (a unit vector r, or None) removes the presynaptic factor's component along
    r before the update: ε ← ε − ⟨ε, r⟩ r. With r the direction of the average utterance's
    spike counts (the rules' ``readout_orth``), why: spike counts are non-negative and mostly
    shared by every utterance, so a plain delta step on one utterance moves the logits of
    *all* utterances nearly as much — teaching one "that was not a keyword" lowers every
    keyword. After the projection the average utterance's logits do not move at all, the taught
    utterance's move by the same η·(p − c*) (normalised), and others by how much they
    resemble what is specific to it.
    """

    def __init__(self, mode: str, leak: float, normalise: bool = False,
                 reference: torch.Tensor | None = None) -> None:
        if mode not in ("final", "frame"):
            raise ValueError(f"unknown readout mode {mode!r}")
        self.mode, self.leak, self.normalise = mode, leak, normalise
        self.reference = reference
        # class indices (e.g. `_unknown_`, `_silence_`) whose logits an utterance of another
        # class never pushes down (the rules' ``readout_protect``); None: the plain delta rule
        self.protect: torch.Tensor | None = None

    def begin(self, b: int, h: int, c: int, target: torch.Tensor) -> None:
        self.target = target
        self.e = torch.zeros(b, h)
        self.m = torch.zeros(b, c)

    def step(self, s: torch.Tensor, eps: torch.Tensor, w_out: torch.Tensor) -> torch.Tensor | None:
        """Advance the readout; return the per-frame update (``frame`` mode) or None."""
        self.m = self.leak * self.m + s @ w_out.T
        if self.mode == "frame":
            return self._grad(eps)
        self.e = self.leak * self.e + s
        return None

    def final(self) -> torch.Tensor | None:
        """The end-of-utterance update (``final`` mode) or None."""
        return self._grad(self.e) if self.mode == "final" else None

    def _grad(self, pre: torch.Tensor) -> torch.Tensor:
        if self.reference is not None:
            pre = pre - (pre @ self.reference)[:, None] * self.reference
        g = readout_grad(self.m, self.target, pre)
        if self.protect is not None:
            # a row's update is (p − c*)·ε: for a protected class that is not this utterance's
            # label it only lowers that class's logit, which is how keyword-only support
            # teaches the user's other speech to look like keywords
            keep = self.target[:, self.protect].sum(0) > 0
            g[self.protect[~keep]] = 0.0
        return g / (pre.pow(2).sum(1).mean() + 1.0) if self.normalise else g

    def tensors(self) -> list[torch.Tensor]:
        return [self.e, self.m]
