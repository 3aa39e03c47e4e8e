"""The spiking backbone: inputs → recurrent LIF layer → leaky-integrator readout.

A thin ``nn.Module`` holding the weights; the dynamics are the pure steps of
:mod:`model.neurons`. The prediction for a clip is the readout at its last frame.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from .neurons import LIFParams, LIFState, lif_init, lif_step, readout_step


class NetState(NamedTuple):
    hidden: LIFState
    m: torch.Tensor  # readout membrane (B, C)


class SNN(nn.Module):
    """n_in → n_hidden recurrent LIF → n_out leaky-integrator readout (no biases)."""

    def __init__(self, n_in: int, n_hidden: int, n_out: int, params: LIFParams | None = None):
        super().__init__()
        self.params = params or LIFParams()
        self.w_in = nn.Parameter(torch.randn(n_hidden, n_in) * (1.0 / n_in) ** 0.5)
        self.w_rec = nn.Parameter(torch.randn(n_hidden, n_hidden) * (0.5 / n_hidden) ** 0.5)
        with torch.no_grad():
            self.w_rec.fill_diagonal_(0.0)
        self.w_out = nn.Parameter(torch.randn(n_out, n_hidden) * (1.0 / n_hidden) ** 0.5 * 0.1)
        self._w_rec_t: np.ndarray | None = None  # see _w_rec_t_numpy
        self._w_rec_t_key: tuple[int, int] | None = None

    @property
    def sizes(self) -> tuple[int, int, int]:
        return self.w_in.shape[1], self.w_in.shape[0], self.w_out.shape[0]

    def init_state(self, batch: int = 1) -> NetState:
        _, h, c = self.sizes
        return NetState(lif_init(batch, h), torch.zeros(batch, c))

    def step(self, x: torch.Tensor, state: NetState) -> tuple[torch.Tensor, NetState]:
        """One time step: x (B, n_in) → (readout m (B, C), new state)."""
        p = self.params
        cur = x @ self.w_in.T + state.hidden.s @ self.w_rec.T
        s, _, hidden = lif_step(cur, state.hidden, p)
        m = readout_step(s @ self.w_out.T, state.m, p.readout_leak)
        return m, NetState(hidden, m)

    def forward(
        self, x: torch.Tensor, state: NetState | None = None, dropout: float = 0.0,
        spikes: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, NetState, torch.Tensor]:
        """Run (B, T, n_in). Returns (readout at the last frame, final state, mean spike rate).

        Input currents are computed for all frames at once; only the recurrence loops.
        ``spikes``: a list that receives the hidden spikes of every frame (with autograd on:
        for losses on the hidden layer, such as TP's layer loss during pretraining).
        """
        p = self.params
        b, t_len, _ = x.shape
        state = state or self.init_state(b)
        if not torch.is_grad_enabled():
            return self._infer(x, state)
        cur_in = x @ self.w_in.T
        hidden, m = state.hidden, state.m
        rate = x.new_zeros(())
        for t in range(t_len):
            s, _, hidden = lif_step(cur_in[:, t] + hidden.s @ self.w_rec.T, hidden, p)
            if spikes is not None:
                spikes.append(s)
            out = s
            if dropout > 0 and self.training:
                out = nn.functional.dropout(s, dropout, True)
            m = readout_step(out @ self.w_out.T, m, p.readout_leak)
            rate = rate + s.mean()
        return m, NetState(hidden, m), rate / max(t_len, 1)

    @torch.no_grad()
    def spike_counts(self, x: torch.Tensor) -> torch.Tensor:
        """Readout-leak-weighted spike sums (B, H) of whole clips: ∂m_T/∂W_out per sample."""
        return self._run(x, self.init_state(x.shape[0]))[0]

    def _infer(
        self, x: torch.Tensor, state: NetState
    ) -> tuple[torch.Tensor, NetState, torch.Tensor]:
        """Same dynamics as :meth:`forward` with the fewest ops per frame (no autograd).

        The readout is linear, so it is applied once to the leak-weighted spike sum.
        """
        acc, count, v, s = self._run(x, state)
        p = self.params
        m = state.m * p.readout_leak ** x.shape[1] + acc @ self.w_out.T
        rate = count.sum() / max(1, x.shape[0] * x.shape[1] * v.shape[1])
        return m, NetState(LIFState(v, s), m), rate

    @torch.no_grad()
    def spike_trains(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden spikes of every frame (B, T, H) of whole clips, from a fresh state: what a
        word of the user's own is matched on (:mod:`model.words`)."""
        frames: list[torch.Tensor] = []
        self._run(x, self.init_state(x.shape[0]), frames)
        return torch.stack(frames, 1) if frames else x.new_zeros(x.shape[0], 0, self.sizes[1])

    def _run(self, x: torch.Tensor, state: NetState, record: list | None = None):
        """The recurrence without autograd. At batch ≤ 4 the loop runs in numpy, whose
        per-op cost (~1 µs against ~5 µs in torch) halves inference time; larger batches
        stay in torch, whose matrix kernels are the faster ones there. Same float32 maths.
        ``record``: a list that receives each frame's hidden spikes."""
        if x.shape[0] <= 4:
            return self._run_numpy(x, state, record)
        p = self.params
        cur_in = x @ self.w_in.T
        w_rec_t = self.w_rec.detach().T
        v, s = (t.detach() for t in state.hidden)
        leaky = p.readout_leak != 1.0
        acc = torch.zeros_like(v)
        count = torch.zeros_like(v) if leaky else acc
        for t in range(x.shape[1]):
            v_tilde = torch.addmm(cur_in[:, t], s, w_rec_t).add_(v, alpha=p.alpha)
            s = (v_tilde > p.v_th).to(x.dtype)
            v = v_tilde.sub_(s, alpha=p.v_th)
            if record is not None:
                record.append(s)
            if leaky:
                acc.mul_(p.readout_leak)
                count.add_(s)
            acc.add_(s)
        return acc, count, v, s

    def _w_rec_t_numpy(self) -> np.ndarray:
        """W_rec transposed and contiguous, for the numpy loop: the transposing copy costs
        more than a 1 s clip's recurrence at batch 1, so it is kept until the weights change
        (in-place updates bump the tensor's version; loading new weights its storage)."""
        key = (self.w_rec.data_ptr(), self.w_rec._version)
        if self._w_rec_t_key != key:
            self._w_rec_t = np.ascontiguousarray(self.w_rec.detach().numpy().T)
            self._w_rec_t_key = key
        return self._w_rec_t

    def _run_numpy(self, x: torch.Tensor, state: NetState, record: list | None = None):
        p = self.params
        cur_in = (x @ self.w_in.T).numpy()
        w_rec_t = self._w_rec_t_numpy()
        v, s = (t.detach().numpy().astype(np.float32) for t in state.hidden)
        leaky = p.readout_leak != 1.0
        acc = np.zeros_like(v)  # readout-leak-weighted spike sum
        count = np.zeros_like(v) if leaky else acc  # plain spike count
        alpha, v_th, leak = np.float32(p.alpha), np.float32(p.v_th), np.float32(p.readout_leak)
        for t in range(cur_in.shape[1]):
            v *= alpha
            v_tilde = s @ w_rec_t
            v_tilde += cur_in[:, t]
            v_tilde += v
            s = (v_tilde > v_th).astype(np.float32)
            v = v_tilde - v_th * s
            if record is not None:
                record.append(torch.from_numpy(s))
            if leaky:
                acc *= leak
                count += s
            acc += s
        as_t = torch.from_numpy
        return as_t(acc), as_t(count), as_t(v), as_t(s)
