"""Streaming keyword detection on a live 16 kHz PCM stream (the service's WebSocket).

Audio goes through the same streaming front end, encoder and SNN as a clip, one frame (10 ms)
at a time, and the network never resets. A clip's prediction is the readout integrated over
the clip, so for a stream the logits at frame t are the readout currents ``s_t @ W_outᵀ``
integrated over a sliding window of the last ``window`` frames (~1 s, the training clip
length, with the readout leak); posteriors are the softmax of those logits, smoothed by a
moving average over the last ``smooth`` frames. A keyword (any label but ``_unknown_`` and
``_silence_``) whose smoothed posterior exceeds its threshold (``thresholds[label]``, else
``threshold``) is reported once, and that label is then suppressed for ``refractory`` seconds.
That decision is :class:`Trigger`, shared with the stream benchmark (model/bench/stream.py),
which computes a stream's posteriors once (:meth:`Detector.posterior_frames`) and re-runs
only the trigger over a threshold sweep.

State is bounded: the stream state of the front end/encoder/network, a ring of ``window``
readout currents and a ring of ``smooth`` posteriors; nothing grows with the stream length.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

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
    # per-label thresholds (calibrated, e.g. by `tracekws bench stream`); labels not given use
    # ``threshold``, labels the model lacks are ignored (a profile may not have them yet)
    thresholds: Mapping[str, float] = field(default_factory=dict)


class Trigger:
    """The thresholding and refractory logic of the detector, on smoothed posteriors.

    One implementation for the live detector and for offline threshold sweeps: a frame fires
    the keyword with the highest posterior among those above their own threshold and not
    suppressed; that keyword is then suppressed for ``refractory_frames`` frames. State (when
    each keyword may fire again) carries over between calls, so feeding a stream in chunks
    equals feeding it whole.
    """

    def __init__(self, thresholds: np.ndarray, refractory_frames: int) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.refractory_frames = int(refractory_frames)
        self.suppressed_until = np.zeros(len(self.thresholds), dtype=np.int64)

    def reset(self) -> None:
        self.suppressed_until[:] = 0

    def __call__(self, posteriors: np.ndarray, first_frame: int) -> list[tuple[int, int, float]]:
        """(frame, keyword column, posterior) of each firing; ``posteriors`` (n, keywords) are
        frames ``first_frame`` .. ``first_frame + n - 1`` (frame numbers count from 1)."""
        post = np.asarray(posteriors, dtype=np.float64)  # compare as float64, like float(p) > t
        over = post > self.thresholds
        out = []
        for r in np.flatnonzero(over.any(axis=1)).tolist():
            frame = first_frame + r
            ok = over[r] & (frame >= self.suppressed_until)
            if not ok.any():
                continue
            k = int(np.argmax(np.where(ok, post[r], -np.inf)))
            self.suppressed_until[k] = frame + self.refractory_frames
            out.append((frame, k, float(post[r, k])))
        return out


class Detector:
    """Feed PCM (int16 bytes or float samples at 16 kHz); get :class:`Detection` events."""

    def __init__(self, model: KWSModel, config: DetectorConfig | None = None, **overrides
                 ) -> None:
        cfg = config or DetectorConfig()
        if overrides:
            cfg = DetectorConfig(**(asdict(cfg) | overrides))
        if not all(0.0 <= t <= 1.0 for t in (cfg.threshold, *cfg.thresholds.values())):
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
        self.trigger = Trigger(np.array([cfg.thresholds.get(self.labels[k], cfg.threshold)
                                         for k in self.keyword_idx]), self.refractory_frames)
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
        self.trigger.reset()
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
    def posterior_frames(self, pcm: bytes | bytearray | memoryview | torch.Tensor) -> torch.Tensor:
        """Consume samples; the smoothed posteriors (frames, labels) of each new frame."""
        samples = self._samples(pcm)
        if samples.numel() == 0:
            return torch.zeros(0, len(self.labels))
        x, self.stream = self.model.stream_inputs(samples, self.stream)
        net, cfg = self.model.net, self.config
        out = torch.zeros(x.shape[1], len(self.labels))
        for t in range(x.shape[1]):
            # m is reset each step, so the returned readout is this frame's current s @ W_outᵀ
            cur, self.net_state = net.step(x[:, t], self.net_state._replace(m=self.zero_m))
            self.currents[self.frame % cfg.window] = cur[0]
            self.frame += 1
            p = torch.softmax(self._logits(), dim=0)
            self.posteriors[self.frame % cfg.smooth] = p
            out[t] = self.posteriors.sum(0) / min(self.frame, cfg.smooth)
        if len(out):
            self.last_posterior = out[-1].clone()
        return out

    def frame_end(self, frame: int) -> float:
        """Seconds from the stream's start to the end of frame ``frame`` (counted from 1)."""
        return ((frame - 1) * self.hop + self.n_fft) / SAMPLE_RATE

    def feed(self, pcm: bytes | bytearray | memoryview | torch.Tensor) -> list[Detection]:
        """Consume samples (int16 little-endian bytes, or a float tensor in [-1, 1])."""
        smoothed = self.posterior_frames(pcm)
        first = self.frame - len(smoothed) + 1
        fired = self.trigger(smoothed[:, self.keyword_idx].numpy(), first)
        return [Detection(self.labels[self.keyword_idx[k]], round(p, 4),
                          round(self.frame_end(f), 3)) for f, k, p in fired]

    def state_bytes(self) -> int:
        """Bytes of per-stream state (bounded; for tests and monitoring)."""
        ts = [self.currents, self.posteriors, *self.net_state.hidden, self.net_state.m]
        fe = self.stream.frontend
        ts += [fe.tail] + [t for t in (fe.hist, fe.dhist) if t is not None]
        if self.stream.encoder.u is not None:
            ts.append(self.stream.encoder.u)
        return sum(t.numel() * t.element_size() for t in ts)
