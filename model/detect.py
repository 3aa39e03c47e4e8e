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

Per-keyword thresholds and the refractory time can come with the model (a ``detector`` entry
in its config, written by ``tracekws bench stream --calibrated-out``) or with a profile
version (the service stores them): :class:`DetectorSettings` is their one format and
validation, :meth:`DetectorSettings.apply` turns them into a :class:`DetectorConfig`.

Words of the user's own (model/words.py) are not readout classes: they are heard per
utterance, as a clip is. When the model has any, the detector also runs /adapt's segmenter
(silero-vad and the energy rule, model/adapt.py ``Segmenter``) on the stream's front-end frames;
each utterance it closes (350 ms after the speech ends) is a 1 s window of frames that goes
through :meth:`KWSModel.predict_frames`, the path of ``/predict``, from a fresh network state.
A word is detected when it is that window's top label, so a word fires in a stream exactly when
``/predict`` on the utterance would name it, and once per utterance. The detection comes with
the chunk that closes the utterance (``time`` is the end of that chunk).

State is bounded: the stream state of the front end/encoder/network, a ring of ``window``
readout currents and a ring of ``smooth`` posteriors (with words: the VAD's state and the
segmenter's ring of 1.6 s of frames); nothing grows with the stream length.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from .adapt import frame_energy, vad_segmenter
from .audio import SAMPLE_RATE
from .pipeline import SILENCE, UNKNOWN, KWSModel
from .vad import SileroVAD


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
    # words of the user's own that may fire (None: every word the model has; () : none)
    words: tuple[str, ...] | None = None


MAX_REFRACTORY = 10.0  # s; longer would swallow a keyword said again a few seconds later


class DetectorSettingsError(ValueError):
    """Settings that cannot be used; ``errors`` holds (location, message) per problem, the
    location a path into the JSON (``("thresholds", "yes")``)."""

    def __init__(self, errors: list[tuple[tuple[str, ...], str]]) -> None:
        super().__init__("; ".join(f"{'.'.join(loc)}: {msg}" if loc else msg
                                   for loc, msg in errors))
        self.errors = errors


def _number(value: object) -> float | None:
    """``value`` as a finite float, or None if it is not a JSON number (a bool is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class DetectorSettings:
    """Per-keyword thresholds and/or a refractory time, for one model or one profile version.

    Either part may be absent (``thresholds is None``, ``refractory is None``): the next source
    of settings then decides it (a version's settings over its model's, the model's over the
    caller's defaults; see :meth:`apply`). A keyword without a threshold of its own uses the
    global ``threshold`` of the :class:`DetectorConfig`.
    """

    thresholds: Mapping[str, float] | None = None
    refractory: float | None = None

    @classmethod
    def parse(cls, data: object, keywords: Sequence[str], extra_ok: bool = False
              ) -> DetectorSettings:
        """Checked settings from JSON-like ``data``: an object with ``thresholds`` (keyword →
        number in (0, 1]) and/or ``refractory`` (seconds in [0, ``MAX_REFRACTORY``]); every
        threshold names one of ``keywords`` (Unicode NFC, as the service stores labels).
        ``extra_ok``: other keys are allowed (a model's entry also records how it was
        calibrated). Raises :class:`DetectorSettingsError` listing every problem."""
        if not isinstance(data, Mapping):
            raise DetectorSettingsError([((), "detector settings are a JSON object")])
        errors: list[tuple[tuple[str, ...], str]] = []
        if not extra_ok:
            errors += [((str(k),), "unknown field (allowed: thresholds, refractory)")
                       for k in data if k not in ("thresholds", "refractory")]
        if "thresholds" not in data and "refractory" not in data:
            errors.append(((), "give thresholds and/or refractory"))
        thresholds = None
        if "thresholds" in data:
            raw = data["thresholds"]
            if not isinstance(raw, Mapping):
                errors.append((("thresholds",), "an object of keyword: threshold"))
            else:
                thresholds = {}
                for key, value in raw.items():
                    label = unicodedata.normalize("NFC", str(key))
                    loc = ("thresholds", str(key))
                    if label not in keywords:
                        why = ("is not a keyword (it is never detected)"
                               if label in (UNKNOWN, SILENCE) else
                               f"is not one of the keywords ({', '.join(keywords)})")
                        errors.append((loc, f"{label!r} {why}"))
                        continue
                    v = _number(value)
                    if v is None or not 0.0 < v <= 1.0:
                        errors.append((loc, "a threshold is a number in (0, 1]"))
                        continue
                    thresholds[label] = v
        refractory = None
        if "refractory" in data:
            refractory = _number(data["refractory"])
            if refractory is None or not 0.0 <= refractory <= MAX_REFRACTORY:
                errors.append((("refractory",),
                               f"seconds, a number in [0, {MAX_REFRACTORY:g}]"))
        if errors:
            raise DetectorSettingsError(errors)
        return cls(thresholds, refractory)

    @classmethod
    def of_model(cls, model: KWSModel) -> DetectorSettings | None:
        """The settings the model file carries (its config's ``detector`` entry), or None."""
        entry = model.config.detector
        if not entry:
            return None
        try:
            return cls.parse(entry, keywords(model.labels), extra_ok=True)
        except DetectorSettingsError as exc:
            raise ValueError(f"the model's detector entry is invalid: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (only the parts that are set), as stored and as :meth:`parse` reads."""
        out: dict[str, Any] = {}
        if self.thresholds is not None:
            out["thresholds"] = dict(self.thresholds)
        if self.refractory is not None:
            out["refractory"] = self.refractory
        return out

    def apply(self, config: DetectorConfig) -> DetectorConfig:
        """``config`` with the parts these settings set replaced."""
        changes: dict[str, Any] = {}
        if self.thresholds is not None:
            changes["thresholds"] = dict(self.thresholds)
        if self.refractory is not None:
            changes["refractory"] = self.refractory
        return replace(config, **changes)


def keywords(labels: Sequence[str]) -> list[str]:
    """The labels a detector can report (and a wake program offers): all but ``_unknown_``
    and ``_silence_``."""
    return [lab for lab in labels if lab not in (UNKNOWN, SILENCE)]


@dataclass(frozen=True)
class DetectorChoice:
    """The detector configuration a version is heard with, and where each part came from
    (``request``, ``version``, ``model`` or ``default``)."""

    config: DetectorConfig
    sources: dict[str, str] = field(default_factory=dict)

    def public(self, labels: list[str]) -> dict[str, Any]:
        """JSON for clients: the threshold every keyword is heard with (its own, else the
        global one), the global threshold, the refractory time and the sources."""
        c = self.config
        return {"thresholds": {k: c.thresholds.get(k, c.threshold) for k in keywords(labels)},
                "threshold": c.threshold, "refractory": c.refractory,
                "sources": dict(self.sources)}


def detector_config(model: KWSModel, stored: Mapping[str, Any] | None,
                    defaults: DetectorConfig, threshold: float | None = None,
                    refractory: float | None = None) -> DetectorChoice:
    """The detector configuration of one version: its own settings (``stored``, the
    version's ``detector`` column) over its model's (the model file's ``detector`` entry)
    over ``defaults``, part by part (thresholds, refractory). A ``threshold`` given for this
    connection (``/stream?threshold=``, ``--threshold``) applies to every keyword, so it
    replaces the per-keyword thresholds; a given ``refractory`` replaces the refractory time.

    The one place this precedence lives: /stream, ``tracekws wyoming`` and ``tracekws listen``
    all call it (the service passes a version's own settings; a model file alone has none)."""
    cfg = defaults
    sources = {"thresholds": "default", "refractory": "default"}
    own = None if stored is None else DetectorSettings.parse(stored, keywords(model.labels))
    for source, settings in (("model", DetectorSettings.of_model(model)), ("version", own)):
        if settings is None:
            continue
        cfg = settings.apply(cfg)
        if settings.thresholds is not None:
            sources["thresholds"] = source
        if settings.refractory is not None:
            sources["refractory"] = source
    if threshold is not None:
        cfg = replace(cfg, threshold=threshold, thresholds={})
        sources["thresholds"] = "request"
    if refractory is not None:
        cfg = replace(cfg, refractory=refractory)
        sources["refractory"] = "request"
    return DetectorChoice(cfg, sources)


class Trigger:
    """The thresholding and refractory logic of the detector, on smoothed posteriors.

    One implementation for the live detector and for offline threshold sweeps: a frame fires
    the keyword with the highest posterior among those above their own threshold and *armed*;
    that keyword is then disarmed until both ``refractory_frames`` frames have passed and its
    posterior has dropped to its threshold or below (re-arming). Why both: one word keeps the
    posterior of a ~1 s integration window high for up to 1.3 s, so a refractory time alone
    either fires twice on one utterance (1.0 s: 9 of the 50 test keyword clips) or swallows a word
    said again soon after; a posterior that has not fallen since the detection is still the
    same utterance. State (when each keyword may fire again) carries over between calls, so
    feeding a stream in chunks equals feeding it whole.
    """

    def __init__(self, thresholds: np.ndarray, refractory_frames: int) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.refractory_frames = int(refractory_frames)
        n = len(self.thresholds)
        self.suppressed_until = np.zeros(n, dtype=np.int64)
        self.rearmed_at = np.zeros(n, dtype=np.float64)  # frame it re-arms; inf: not yet known

    def reset(self) -> None:
        self.suppressed_until[:] = 0
        self.rearmed_at[:] = 0.0

    def __call__(self, posteriors: np.ndarray, first_frame: int) -> list[tuple[int, int, float]]:
        """(frame, keyword column, posterior) of each firing; ``posteriors`` (n, keywords) are
        frames ``first_frame`` .. ``first_frame + n - 1`` (frame numbers count from 1)."""
        post = np.asarray(posteriors, dtype=np.float64)  # compare as float64, like float(p) > t
        n = len(post)
        over = post > self.thresholds
        # next_below[r, k]: the first row ≥ r where keyword k is at or below its threshold (n:
        # none in this chunk); a fired keyword re-arms there
        rows = np.where(over, n, np.arange(n)[:, None])
        next_below = np.minimum.accumulate(rows[::-1], axis=0)[::-1]
        next_below = np.vstack([next_below, np.full((1, over.shape[1]), n)])
        pending = np.isinf(self.rearmed_at)
        if pending.any() and n:
            at = next_below[0, pending]
            self.rearmed_at[pending] = np.where(at < n, first_frame + at, np.inf)
        out = []
        for r in np.flatnonzero(over.any(axis=1)).tolist():
            frame = first_frame + r
            ok = over[r] & (frame >= self.suppressed_until) & (frame >= self.rearmed_at)
            if not ok.any():
                continue
            k = int(np.argmax(np.where(ok, post[r], -np.inf)))
            self.suppressed_until[k] = frame + self.refractory_frames
            below = int(next_below[r + 1, k])
            self.rearmed_at[k] = first_frame + below if below < n else np.inf
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
        enrolled = model.enrolled_words()
        self.words = [w for w in enrolled if cfg.words is None or w in cfg.words]
        self.n_mels = fe.n_mels
        self.vad = SileroVAD(frontend=fe) if self.words else None
        self.utterances: list[torch.Tensor] = []  # closed, not yet heard (front-end frames)
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
        if self.vad is not None:
            self.vad.reset()
            self.segmenter = vad_segmenter()
            self.utterances.clear()

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
        if self.vad is None:
            x, self.stream = self.model.stream_inputs(samples, self.stream)
        else:
            speech = self.vad.speech(samples)
            frames, x, self.stream = self.model.stream(samples, self.stream)
            if frames.shape[1]:
                energy = frame_energy(frames[0], self.n_mels)
                self.utterances += self.segmenter.push(energy, frames[0], speech)
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
                          round(self.frame_end(f), 3)) for f, k, p in fired] + self._words()

    def flush(self) -> list[Detection]:
        """End of the stream (a file, a Wyoming audio-stop): hear an utterance still open."""
        if self.vad is None:
            return []
        self.utterances += self.segmenter.flush()
        return self._words()

    def _words(self) -> list[Detection]:
        """Hear each closed utterance as a clip; a word that tops it is detected."""
        found = []
        for frames in self.utterances:
            label, p = self.model.predict_frames(frames.unsqueeze(0))[0][0]
            if label in self.words:
                found.append(Detection(label, round(p, 4), round(self.seconds, 3)))
        self.utterances.clear()
        return found

    def state_bytes(self) -> int:
        """Bytes of per-stream state (bounded; for tests and monitoring)."""
        ts = [self.currents, self.posteriors, *self.net_state.hidden, self.net_state.m]
        fe = self.stream.frontend
        ts += [fe.tail] + [t for t in (fe.hist, fe.dhist) if t is not None]
        if self.stream.encoder.u is not None:
            ts.append(self.stream.encoder.u)
        if self.vad is not None:
            ts += [xt for _, xt in self.segmenter.ring] + self.utterances
            ts += [t for t in vars(self.vad).values() if isinstance(t, torch.Tensor)]
        return sum(t.numel() * t.element_size() for t in ts)
