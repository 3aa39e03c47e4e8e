"""Streaming keyword detection on a live 16 kHz PCM stream (the service's WebSocket).

Audio goes through the same streaming front end, encoder and SNN as a clip, one frame (10 ms)
at a time, and the network never resets. A clip's prediction is the readout integrated over
the clip, so for a stream the logits at frame t are the readout currents ``s_t @ W_outᵀ``
integrated over a sliding window of the last ``window`` frames (~1 s, the training clip
length, with the readout leak); posteriors are the softmax of those logits, smoothed by a
moving average over the last ``smooth`` frames. A keyword (any label but ``_unknown_`` and
``_silence_``) whose smoothed posterior exceeds ``threshold`` is reported once, and that label
is then suppressed for ``refractory`` seconds.

State is bounded: the stream state of the front end/encoder/network, a ring of ``window``
readout currents and a ring of ``smooth`` posteriors; nothing grows with the stream length.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .audio import SAMPLE_RATE
from .pipeline import SILENCE, UNKNOWN, KWSModel


@dataclass(frozen=True)
class Detection:
    label: str
    probability: float
    time: float  # seconds from the start of the stream to the end of the detecting frame

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DetectorConfig:
    threshold: float = 0.5
    window: int = 100  # frames of readout integrated (≈ 1 s)
    smooth: int = 30  # frames of posterior averaging
    refractory: float = 1.0  # seconds a detected label stays suppressed


class Detector:
    """Feed PCM (int16 bytes or float samples at 16 kHz); get :class:`Detection` events."""

    def __init__(self, model: KWSModel, config: DetectorConfig | None = None, **overrides
                 ) -> None:
        cfg = config or DetectorConfig()
        if overrides:
            cfg = DetectorConfig(**(asdict(cfg) | overrides))
        if not 0.0 <= cfg.threshold <= 1.0:
            raise ValueError("threshold must be in [0, 1]")
        if cfg.window < 1 or cfg.smooth < 1 or cfg.refractory < 0:
            raise ValueError("window and smooth must be ≥ 1 frame, refractory ≥ 0 s")
        self.model, self.config = model, cfg
        self.labels = list(model.labels)
        self.keyword_idx = [i for i, lab in enumerate(self.labels) if lab not in (UNKNOWN, SILENCE)]
        c = len(self.labels)
        fe = model.config.frontend
        self.hop, self.n_fft = fe.hop_length, fe.n_fft
        self.refractory_frames = round(cfg.refractory * SAMPLE_RATE / self.hop)
        leak = model.net.params.readout_leak
        # weight of the current pushed k frames ago (ring slot order is handled in _logits)
        self.leak_pow = torch.tensor([leak**k for k in range(cfg.window)], dtype=torch.float32)
        self.leaky = leak != 1.0
        self.currents = torch.zeros(cfg.window, c)
        self.posteriors = torch.zeros(cfg.smooth, c)
        self.zero_m = torch.zeros(1, c)
        self.reset()

    def reset(self) -> None:
        """Start a new stream (front end, encoder and network state from zero)."""
        self.stream = self.model.init_stream()
        self.net_state = self.model.net.init_state(1)
        self.currents.zero_()
        self.posteriors.zero_()
        self.frame = 0  # frames processed
        self.odd = b""  # a dangling byte of an int16 sample split across messages
        self.suppressed_until = dict.fromkeys(self.keyword_idx, 0)
        self.last_posterior = torch.zeros(len(self.labels))

    @property
    def seconds(self) -> float:
        return self.frame * self.hop / SAMPLE_RATE

    def _samples(self, pcm: bytes | bytearray | memoryview | torch.Tensor) -> torch.Tensor:
        if isinstance(pcm, torch.Tensor):
            return pcm.to(torch.float32).reshape(-1)
        data = self.odd + bytes(pcm)
        n = len(data) // 2 * 2
        self.odd = data[n:]
        a = np.frombuffer(data[:n], dtype="<i2").astype(np.float32) / 32768.0
        return torch.from_numpy(a)

    def _logits(self) -> torch.Tensor:
        w = self.config.window
        if not self.leaky:
            return self.currents.sum(0)
        slot = (self.frame - 1) % w  # where the newest current sits
        ages = (slot - torch.arange(w)) % w
        return self.leak_pow[ages] @ self.currents

    @torch.no_grad()
    def feed(self, pcm: bytes | bytearray | memoryview | torch.Tensor) -> list[Detection]:
        """Consume samples (int16 little-endian bytes, or a float tensor in [-1, 1])."""
        samples = self._samples(pcm)
        if samples.numel() == 0:
            return []
        x, self.stream = self.model.stream_inputs(samples, self.stream)
        net, cfg = self.model.net, self.config
        out: list[Detection] = []
        for t in range(x.shape[1]):
            # m is reset each step, so the returned readout is this frame's current s @ W_outᵀ
            cur, self.net_state = net.step(x[:, t], self.net_state._replace(m=self.zero_m))
            self.currents[self.frame % cfg.window] = cur[0]
            self.frame += 1
            p = torch.softmax(self._logits(), dim=0)
            self.posteriors[self.frame % cfg.smooth] = p
            smoothed = self.posteriors.sum(0) / min(self.frame, cfg.smooth)
            self.last_posterior = smoothed
            best, best_p = None, cfg.threshold
            for k in self.keyword_idx:
                pk = float(smoothed[k])
                if pk > best_p and self.frame >= self.suppressed_until[k]:
                    best, best_p = k, pk
            if best is not None:
                self.suppressed_until[best] = self.frame + self.refractory_frames
                end = ((self.frame - 1) * self.hop + self.n_fft) / SAMPLE_RATE
                out.append(Detection(self.labels[best], round(best_p, 4), round(end, 3)))
        return out

    def state_bytes(self) -> int:
        """Bytes of per-stream state (bounded; for tests and monitoring)."""
        ts = [self.currents, self.posteriors, *self.net_state.hidden, self.net_state.m]
        fe = self.stream.frontend
        ts += [fe.tail] + [t for t in (fe.hist, fe.dhist) if t is not None]
        if self.stream.encoder.u is not None:
            ts.append(self.stream.encoder.u)
        return sum(t.numel() * t.element_size() for t in ts)
