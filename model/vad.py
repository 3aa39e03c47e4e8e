"""Streaming voice-activity detection for /adapt: silero-vad, frame by frame as audio arrives.

Why silero and not the log-energy rule the segmenter used before: on synthetic recordings with
known utterance positions (real keyword clips in 0-20 dB of real background noise,
model/bench/vad.py, docs/vad.md) it finds far more of the utterances, most of all at low SNR,
with fewer windows on noise; WebRTC's VAD fired on noise tens of times a minute.

silero-vad (MIT) ships its network inside its wheel (``silero_vad/data/silero_vad.jit``): it is
loaded from the installed package and nothing is downloaded. Only the TorchScript file is
used, found without importing the ``silero_vad`` package, whose import sets torch's global
thread count to 1 as a side effect. The network's recurrent state is kept here, per stream,
and passed to the module's stateless ``forward(x, state)``, so one loaded module serves every
concurrent stream.

Alignment: silero scores 512-sample chunks (32 ms) with 64 samples of context; the front end
emits a frame per 160 samples (a 480-sample window). A frame's decision is the probability of
the latest chunk complete when the frame is (its last sample at or before the frame's), so the
decision for a frame is known exactly when the frame is: the segmenter needs no look-ahead and
no queue. Before the first chunk completes, frames are not speech.
"""

from __future__ import annotations

import importlib.util
import threading
import warnings
from pathlib import Path

import torch

from .audio import SAMPLE_RATE
from .frontend import FrontEndConfig

CHUNK = 512  # samples per silero decision at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous chunk silero sees before each chunk
STATE = (2, 1, 128)  # silero's recurrent state
# Chosen on the benchmark's tune half (clean and reverberant recordings), confirmed on its check
# half (docs/vad.md): a frame is speech at probability >= 0.4, or when its log-energy stands
# 5.5 nats (~24 dB) above the segmenter's noise floor (words silero doubts in quiet,
# reverberant rooms); the segmenter ends an utterance after 350 ms of non-speech.
THRESHOLD = 0.4
LOUD = 5.5
HANG = 35

_lock = threading.Lock()
_module: torch.jit.ScriptModule | None = None


def model_path() -> Path:
    """The TorchScript network inside the installed silero-vad wheel."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("silero-vad is not installed (it is a dependency of tracekws)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.jit"
    if not path.is_file():
        raise FileNotFoundError(f"silero-vad's network is missing: {path}")
    return path


def network() -> torch.jit.ScriptModule:
    """silero's 16 kHz network, loaded once per process (read-only afterwards)."""
    global _module
    with _lock:
        if _module is None:
            with warnings.catch_warnings():  # torch 2.13 marks TorchScript deprecated; it works
                warnings.simplefilter("ignore", DeprecationWarning)
                m = torch.jit.load(str(model_path()), map_location="cpu")
            m.eval()
            _module = m._model  # the 16 kHz network: forward(x (B, 576), state) → (p, state)
        return _module


class SileroVAD:
    """Speech probability per front-end frame of one stream (bounded state: < 512 samples of
    audio, 64 of context, silero's 2×128 recurrent state and the last chunk's probability)."""

    def __init__(self, threshold: float = THRESHOLD, frontend: FrontEndConfig | None = None
                 ) -> None:
        fe = frontend or FrontEndConfig()
        if fe.sample_rate != SAMPLE_RATE:
            raise ValueError(f"silero-vad runs at {SAMPLE_RATE} Hz, not {fe.sample_rate}")
        self.threshold = threshold
        self.fe = fe
        self.net = network()
        self.reset()

    def reset(self) -> None:
        self.state = torch.zeros(STATE)
        self.context = torch.zeros(1, CONTEXT)
        self.tail = torch.zeros(0)
        self.samples = 0  # samples received
        self.chunks = 0  # chunks scored
        self.frames = 0  # frames decided
        self.last = 0.0  # probability of chunk self.chunks - 1

    @torch.no_grad()
    def probabilities(self, samples: torch.Tensor) -> torch.Tensor:
        """Consume audio (1-D float, 16 kHz); return the speech probability of each front-end
        frame that this audio completes (as many as the front end emits for it)."""
        samples = samples.reshape(-1).to(torch.float32)
        buf = torch.cat([self.tail, samples])
        first = self.chunks - 1  # chunk index of probs[0]
        probs = [self.last]
        n = buf.numel() // CHUNK
        # NNPACK off for silero's convolutions: where it cannot start (qemu's arm64 emulation,
        # CPUs it does not support) torch warns on every call, flooding the log; results agree
        with torch.backends.nnpack.flags(enabled=False):
            for i in range(n):
                x = torch.cat([self.context, buf[i * CHUNK : (i + 1) * CHUNK].unsqueeze(0)], 1)
                p, self.state = self.net(x, self.state)
                self.context = x[:, -CONTEXT:]
                probs.append(float(p))
        self.tail = buf[n * CHUNK :].clone()
        self.chunks += n
        self.last = probs[-1]
        self.samples += samples.numel()
        done = self.fe.frames(self.samples)
        out = torch.zeros(max(0, done - self.frames))
        for j, i in enumerate(range(self.frames, done)):
            k = self.fe.samples(i + 1) // CHUNK - 1  # latest chunk done with frame i
            out[j] = probs[k - first] if k >= 0 else 0.0
        self.frames = max(self.frames, done)
        return out

    def speech(self, samples: torch.Tensor) -> list[bool]:
        """Speech decision of each front-end frame this audio completes."""
        return (self.probabilities(samples) >= self.threshold).tolist()
