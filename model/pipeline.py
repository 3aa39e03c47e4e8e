"""The keyword spotter as a user sees it: waveform → posteriors over labels.

:class:`KWSModel` ties the front end, per-feature normalisation, spike encoder and SNN
together, and owns their (de)serialisation: one safetensors file whose metadata carries the
JSON config, so a weights blob alone is a complete, loadable model (no pickle).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .encoder import EncoderConfig, EncoderState, encode
from .encoder import init_state as encoder_init
from .frontend import FrontEnd, FrontEndConfig, FrontEndState
from .network import SNN, NetState
from .neurons import LIFParams

if TYPE_CHECKING:
    from .words import WordBook

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
UNKNOWN, SILENCE = "_unknown_", "_silence_"
LABELS = [*KEYWORDS, UNKNOWN, SILENCE]

# package data of tracekws.pretrained: the same file from a wheel, an editable install or a checkout
PRETRAINED = Path(str(resources.files("tracekws.pretrained") / "tracekws-gsc12.safetensors"))


def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, size: int = 256
            ) -> torch.Tensor:
    """``fn`` over ``x`` in slices of ``size`` along the first axis, concatenated: bounded
    memory for the front end, encoder or network over thousands of clips."""
    return torch.cat([fn(x[i : i + size]) for i in range(0, len(x), size)])


@dataclass
class ModelConfig:
    labels: list[str] = field(default_factory=lambda: list(LABELS))
    n_hidden: int = 450
    frontend: FrontEndConfig = field(default_factory=FrontEndConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    lif: LIFParams = field(default_factory=LIFParams)
    meta: dict = field(default_factory=dict)
    # calibrated detection settings that travel with the weights (per-keyword thresholds,
    # refractory time, how they were chosen), read by tracekws.model.detect.DetectorSettings;
    # empty: the detector's defaults. Written only when set, so a model without them keeps
    # the bytes (and sha256) it always had.
    detector: dict = field(default_factory=dict)
    # words of the user's own (model.words.WordBook.to_config): settings, thresholds, counts;
    # written only when the file carries a word bank
    words: dict = field(default_factory=dict)
    # "snn" (every shipped model) or "dscnn": the non-spiking baseline of model/cnn.py, whose
    # sizes are in ``cnn``. Both written only for a CNN, so an SNN file keeps its bytes.
    arch: str = "snn"
    cnn: dict = field(default_factory=dict)

    def to_json(self) -> str:
        d = {
            "labels": self.labels,
            "n_hidden": self.n_hidden,
            "frontend": self.frontend.to_dict(),
            "encoder": self.encoder.to_dict(),
            "lif": self.lif.to_dict(),
            "meta": self.meta,
        }
        if self.detector:
            d["detector"] = self.detector
        if self.words:
            d["words"] = self.words
        if self.arch != "snn":
            d["arch"], d["cnn"] = self.arch, self.cnn
        return json.dumps(d, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        d = json.loads(text)
        return cls(
            labels=list(d["labels"]),
            n_hidden=int(d["n_hidden"]),
            frontend=FrontEndConfig(**d["frontend"]),
            encoder=EncoderConfig(**d["encoder"]),
            lif=LIFParams(**d["lif"]),
            meta=d.get("meta", {}),
            detector=d.get("detector") or {},
            words=d.get("words") or {},
            arch=d.get("arch", "snn"),
            cnn=d.get("cnn") or {},
        )


def _build_net(config: ModelConfig, n_in: int) -> torch.nn.Module:
    """The network a config names: the SNN, or the DS-CNN baseline (model/cnn.py)."""
    if config.arch == "snn":
        return SNN(n_in, config.n_hidden, len(config.labels), config.lif)
    if config.arch == "dscnn":
        from .cnn import DSCNN, DSCNNConfig

        if not config.cnn:  # the file records the sizes it was built with
            config.cnn = DSCNNConfig().to_dict()
        return DSCNN(n_in, len(config.labels), DSCNNConfig.from_dict(config.cnn),
                     config.frontend.n_mels)
    raise ValueError(f"unknown model architecture {config.arch!r}")


class StreamState(NamedTuple):
    """Everything one audio stream carries between chunks (front end, encoder, network)."""

    frontend: FrontEndState
    encoder: EncoderState
    net: NetState


class KWSModel:
    """Front end + normalisation + encoder + SNN, with save/load."""

    def __init__(
        self,
        config: ModelConfig,
        net: SNN | None = None,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
    ) -> None:
        self.config = config
        self.frontend = FrontEnd(config.frontend)
        n_feat = config.frontend.n_features
        self.mean = torch.zeros(n_feat) if mean is None else mean.float()
        self.std = torch.ones(n_feat) if std is None else std.float()
        # mean rate of each encoder output on the training data: the network sees x − μ, i.e.
        # binary spikes plus a constant bias current −W μ per neuron (zero for analog input)
        self.in_mean = torch.zeros(config.encoder.n_outputs(n_feat))
        # frames of a user's own audio absorbed into (mean, std) since training (see
        # adapt_normalisation); saved with the weights, so a version carries its statistics
        self.norm_frames = 0.0
        n_in = config.encoder.n_outputs(n_feat)
        self.net = net or _build_net(config, n_in)
        # replay bank for the readout: spike sums of a few training clips per class and
        # their labels (see model.adapt.build_replay); None if the model has none
        self.replay: tuple[torch.Tensor, torch.Tensor] | None = None
        # words of the user's own and their cohort bank (model.words); None: the file has no
        # bank, so a new label can only grow the readout
        self.words: WordBook | None = None
        self._spotter = None  # model.words.WordSpotter, rebuilt when the network changes

    @property
    def labels(self) -> list[str]:
        return self.config.labels

    @property
    def spiking(self) -> bool:
        """True for the SNN (streaming, personalisation, TP readiness); False for the CNN
        baseline, which only classifies whole clips."""
        return self.config.arch == "snn"

    # ---- data path -------------------------------------------------------------------
    def normalise(self, frames: torch.Tensor) -> torch.Tensor:
        return (frames - self.mean) / self.std

    def inputs(self, wave: torch.Tensor) -> torch.Tensor:
        """Whole clip(s) (n,) or (B, n) → network inputs (B, T, n_in): encoder output − μ."""
        return self.encode_frames(self.frontend(wave if wave.dim() == 2 else wave.unsqueeze(0)))

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Front-end frames (B, T, n_feat) of whole clips → network inputs (B, T, n_in)."""
        x, _ = encode(self.normalise(frames), encoder_init(), self.config.encoder)
        return x - self.in_mean

    @torch.no_grad()
    def adapt_normalisation(self, frames: torch.Tensor, prior_frames: float) -> None:
        """Move the feature normalisation (mean, std) towards the user's own audio.

        A room and a microphone shift every log-mel band (reverberation, the device's band
        pass); the spike encoder sees features standardised with the training statistics, so
        a shifted channel fires the wrong inputs. The statistics are pooled as if the training
        data counted ``prior_frames`` frames plus every user frame absorbed so far (c):

            μ' = (c μ + Σ f) / (c + n)      E'[f²] = (c (σ² + μ²) + Σ f²) / (c + n)
            σ' = √(E'[f²] − μ'²)            c' = c + n

        Label-free and bounded (two vectors and a count), applied per utterance as it is
        learned; ``prior_frames`` ≤ 0 leaves the model unchanged.
        """
        f = frames.reshape(-1, frames.shape[-1]).double()
        n = f.shape[0]
        if prior_frames <= 0 or n == 0:
            return
        c = float(prior_frames) + self.norm_frames
        m0, s0 = self.mean.double(), self.std.double()
        mean = (c * m0 + f.sum(0)) / (c + n)
        sq = (c * (s0**2 + m0**2) + (f**2).sum(0)) / (c + n)
        self.mean = mean.float()
        self.std = (sq - mean**2).clamp_min(1e-6).sqrt().float()
        self.norm_frames += n

    def init_stream(self) -> StreamState:
        return StreamState(self.frontend.init_state(1), encoder_init(), self.net.init_state(1))

    def stream(
        self, chunk: torch.Tensor, state: StreamState
    ) -> tuple[torch.Tensor, torch.Tensor, StreamState]:
        """Chunk of samples → (raw frames (1, t, F), encoded inputs (1, t, n_in), state)."""
        frames, fe = self.frontend.step(chunk, state.frontend)
        x, enc = encode(self.normalise(frames), state.encoder, self.config.encoder)
        return frames, x - self.in_mean, state._replace(frontend=fe, encoder=enc)

    def stream_inputs(
        self, chunk: torch.Tensor, state: StreamState
    ) -> tuple[torch.Tensor, StreamState]:
        """Chunk of samples → the encoded inputs it completes (1, t, n_in); network untouched."""
        _, x, state = self.stream(chunk, state)
        return x, state

    @torch.no_grad()
    def logits(self, wave: torch.Tensor) -> torch.Tensor:
        """Readout at the last frame, (C,) for one clip or (B, C) for a batch."""
        self.net.eval()
        m, _, _ = self.net(self.inputs(wave))
        return m[0] if wave.dim() == 1 else m

    def probabilities(self, wave: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(wave), dim=-1)

    def predict(self, wave: torch.Tensor) -> list:
        """(label, probability) pairs, best first; for a batch (B, n) of clips with the same
        length, one such list per clip. The one prediction path of the CLI, the benchmarks and
        the service (which batches concurrent requests through it). Words of the user's own
        compete with the classes (:func:`model.words.combine`)."""
        batch = wave if wave.dim() == 2 else wave.unsqueeze(0)
        out = self.predict_frames(self.frontend(batch))
        return out[0] if wave.dim() == 1 else out

    @torch.no_grad()
    def predict_frames(self, frames: torch.Tensor) -> list[list[tuple[str, float]]]:
        """Front-end frames (B, T, F) of whole clips → one ranked (label, p) list per clip.

        :meth:`predict` after the front end; the streaming detector calls it on the frames of
        one utterance to hear words of the user's own as a clip would be heard."""
        x = self.encode_frames(frames)
        self.net.eval()
        p = torch.softmax(self.net(x)[0], dim=-1)
        if not self.enrolled_words():
            return [[(self.labels[i], float(row[i])) for i in torch.argsort(row, descending=True)]
                    for row in p]
        from .words import combine

        book = self.words
        return [combine(self.labels, row.tolist(), r, book.thresholds, book.cfg.temperature)
                for row, r in zip(p, self.word_ratios(frames, x), strict=True)]

    # ---- words of the user's own (model/words.py) ------------------------------------------
    def enrolled_words(self) -> list[str]:
        return list(self.words.words) if self.words is not None else []

    def prepare_words(self) -> None:
        """Build the word spotter (the bank and templates through the network, about a second
        for 400 recordings on one core) unless it is current: the first ratio would otherwise
        pay it, so the service builds it after an adaptation instead of in the next /predict."""
        if self.words is None:
            return
        from .words import WordSpotter

        if self._spotter is None or self._spotter.stale(self.net, self.in_mean, self.words):
            self._spotter = WordSpotter(self.words, self.net, self.in_mean)

    def word_ratios(self, frames: torch.Tensor, x: torch.Tensor | None = None
                    ) -> list[dict[str, float]]:
        """Front-end frames (B, T, F) of whole clips → each clip's ratio per enrolled word."""
        if self.words is None:
            return [{} for _ in range(len(frames))]
        self.prepare_words()
        spikes = self.net.spike_trains(self.encode_frames(frames) if x is None else x)
        return [self._spotter.ratios(s, f) for s, f in zip(spikes, frames, strict=True)]

    # ---- growth --------------------------------------------------------------------------
    def add_label(self, label: str) -> int:
        """Grow the readout by one class (zero-initialised row); returns its index."""
        if label in self.labels:
            return self.labels.index(label)
        if not self.spiking:
            raise ValueError(f"a {self.config.arch} model cannot grow new classes")
        with torch.no_grad():
            w = self.net.w_out
            self.net.w_out = torch.nn.Parameter(torch.cat([w, w.new_zeros(1, w.shape[1])]))
        self.config.labels.append(label)
        return len(self.labels) - 1

    # ---- persistence ---------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        t = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        t["norm.mean"], t["norm.std"] = self.mean.contiguous(), self.std.contiguous()
        t["norm.in_mean"] = self.in_mean.contiguous()
        if self.norm_frames:
            t["norm.frames"] = torch.tensor([self.norm_frames], dtype=torch.float64)
        if self.replay is not None:
            t["replay.counts"], t["replay.labels"] = (r.contiguous() for r in self.replay)
        if self.words is not None:
            t.update(self.words.tensors())
        return t

    def to_bytes(self) -> bytes:
        if self.words is not None:
            self.config.words = self.words.to_config()
        return st_save(self.tensors(), metadata={"config": self.config.to_json()})

    @classmethod
    def from_bytes(cls, data: bytes, config: ModelConfig | None = None) -> KWSModel:
        from safetensors import safe_open  # noqa: F401  (import check: format available)

        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        config = config or ModelConfig.from_json(header["__metadata__"]["config"])
        t = st_load(data)
        if config.arch == "snn":
            n_in, n_hidden, n_out = t["w_in"].shape[1], t["w_in"].shape[0], t["w_out"].shape[0]
            net = SNN(n_in, n_hidden, n_out, config.lif)
            net.load_state_dict({k: t[k] for k in ("w_in", "w_rec", "w_out")})
        else:
            net = _build_net(config, config.encoder.n_outputs(config.frontend.n_features))
            net.load_state_dict({k: v for k, v in t.items()
                                 if not k.startswith(("norm.", "replay."))})
        model = cls(config, net, t["norm.mean"], t["norm.std"])
        if "norm.in_mean" in t:
            model.in_mean = t["norm.in_mean"]
        if "norm.frames" in t:
            model.norm_frames = float(t["norm.frames"][0])
        if "replay.counts" in t:
            model.replay = (t["replay.counts"], t["replay.labels"])
        if "words.bank.bits" in t:
            from .words import WordBook

            model.words = WordBook.from_tensors(t, config.words)
        return model

    def save(self, path: str | Path) -> str:
        """Write ``X.safetensors`` and a human-readable ``X.json``; returns the sha256."""
        path = Path(path).with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        data = self.to_bytes()
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        path.with_suffix(".json").write_text(self.config.to_json() + "\n")
        return hashlib.sha256(data).hexdigest()

    @classmethod
    def load(cls, path: str | Path | None = None) -> KWSModel:
        """Load a model file (default: the shipped pretrained model)."""
        path = Path(path or PRETRAINED)
        if path.is_dir():
            path = path / PRETRAINED.name
        if not path.is_file():
            raise FileNotFoundError(f"no model file at {path}")
        return cls.from_bytes(path.read_bytes())

    def clone(self) -> KWSModel:
        return KWSModel.from_bytes(self.to_bytes())
