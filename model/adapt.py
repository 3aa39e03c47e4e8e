"""Adaptation drivers: clips in a batch (benchmarks) and audio streams (the service).

:class:`AdaptSession` consumes a recording as it arrives: front end → encoder → a
voice-activity detector (silero-vad, model/vad.py) that cuts it into utterances → one
learning-rule pass per utterance.
It keeps a ring buffer of at most ``RING`` frames, so its memory does not depend on how long
the recording is.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import torch

from .audio import AudioError
from .pipeline import SILENCE, UNKNOWN, KWSModel
from .rules import Rule, make_rule
from .vad import HANG as VAD_HANG
from .vad import LOUD as VAD_LOUD
from .vad import SileroVAD

WINDOW = 98  # frames in a 1 s utterance window, as in training
RING = 160  # frames of history the segmenter keeps


class NoSpeechError(AudioError):
    """The recording holds no utterance to learn from."""

    def __init__(self, message: str = "no speech found in the recording") -> None:
        super().__init__(message, "no-speech")


# Each rule's defaults live in its config (model/rules/base.py RuleConfig says where they come
# from); one pass over each utterance.
DEFAULT_EPOCHS = 1


def negatives(model: KWSModel) -> torch.Tensor:
    """Class indices that are not keywords (``_unknown_``, ``_silence_``)."""
    return torch.tensor([model.labels.index(x) for x in (UNKNOWN, SILENCE) if x in model.labels],
                        dtype=torch.long)


def make(model: KWSModel, rule: str, **hp) -> Rule:
    """Rule ``rule`` on the model's network (its defaults, overridden by ``hp``), with the
    model's readout replay bank."""
    r = make_rule(rule, model.net, **hp)
    r.replay_bank = model.replay
    readout = getattr(r, "readout", None)  # rules without a ReadoutLearner have none
    if readout is not None and r.config.readout_protect:
        neg = negatives(model)
        readout.protect = neg if len(neg) else None
    return r


@torch.no_grad()
def build_replay(
    model: KWSModel, waves: torch.Tensor, labels: torch.Tensor, per_class: int = 8, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spike sums of ``per_class`` random clips of each class: the readout replay bank."""
    gen = torch.Generator().manual_seed(seed)
    pick = []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        pick.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]])
    idx = torch.cat(pick)
    counts = model.net.spike_counts(model.inputs(waves[idx]))
    return counts, labels[idx].clone()


def adapt_inputs(
    model: KWSModel,
    x: torch.Tensor,
    labels: torch.Tensor,
    rule: str = "tp",
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    frames: torch.Tensor | None = None,
    **hp,
) -> Rule:
    """Adapt ``model`` in place on encoded clips x (N, T, n_in).

    With TP's all-classes contrast (and the other single-sample rules) clips go one at a
    time in a shuffled order each epoch, as a user's recordings would; the paper's batch
    contrast sees the whole support set as one batch. ``frames`` (N, T, n_feat): the clips'
    front-end frames; with the rule's ``norm_prior`` > 0 each clip first moves the feature
    normalisation (:meth:`KWSModel.adapt_normalisation`, once, in the first epoch) and is
    learned as encoded with the updated statistics, as the service does per utterance.
    """
    n = len(x)
    batch = hp.get("contrast") == "batch"
    r = make(model, rule, **hp)
    prior = r.config.norm_prior if frames is not None else 0.0
    if prior > 0 and batch:
        model.adapt_normalisation(frames, prior)
        x = model.encode_frames(frames)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        if batch:
            r.run(x, labels)
            continue
        for i in torch.randperm(n, generator=gen).tolist():
            xi = x[i : i + 1]
            if prior > 0:
                if epoch == 0:
                    model.adapt_normalisation(frames[i], prior)
                xi = model.encode_frames(frames[i : i + 1])
            r.run(xi, labels[i : i + 1])
    return r


@dataclass
class AdaptResult:
    label: str
    utterances: int
    prob_before: float
    prob_after: float
    new_label: bool
    hyperparameters: dict = field(default_factory=dict)


class Segmenter:
    """Streaming segmenter: emits 1 s windows of per-frame data centred on each utterance (the
    session's encoded inputs, or its front-end frames when they are encoded only once learned).

    A frame is speech by the given per-frame decisions (``push(..., speech)``: AdaptSession's
    silero-vad, docs/vad.md), or when its log-energy stands ``loud`` nats above a slowly rising
    noise floor (a word the VAD doubts in a quiet, reverberant room); without decisions, when it
    stands ``on`` nats above it. An utterance ends after ``hang`` frames of non-speech. The
    floor and peak are tracked either way (``finish`` asks whether a short clip is audible).
    """

    def __init__(
        self, on: float = 4.0, hang: int = 35, max_len: int = 120, min_len: int = 5,
        loud: float = math.inf,
    ) -> None:
        # on = 4 nats (~17 dB) and a 350 ms hang: one utterance per Speech Commands clip on
        # 52 of the 54 word clips under tests/data (and none on their noise clips)
        self.on, self.hang, self.max_len, self.min_len = on, hang, max_len, min_len
        self.loud = loud
        self.peak = 0.0  # loudest frame seen, in nats above the noise floor
        self.ring: deque[tuple[float, torch.Tensor]] = deque(maxlen=RING)
        self.floor = math.inf
        self.frame = 0
        self.seg_start: int | None = None
        self.quiet = 0
        self.frames_seen = 0

    def push(
        self, energy: torch.Tensor, x: torch.Tensor, speech: list[bool] | None = None
    ) -> list[torch.Tensor]:
        """Add frames (energies (t,), per-frame data (t, d), optional speech decisions (t,));
        return completed windows (WINDOW, d)."""
        if speech is not None and len(speech) != len(x):
            raise ValueError(f"{len(speech)} speech decisions for {len(x)} frames")
        out = []
        for i, (e, xt) in enumerate(zip(energy.tolist(), x, strict=True)):
            self.ring.append((e, xt))
            self.floor = min(self.floor + 0.005, e)
            self.peak = max(self.peak, e - self.floor)
            if speech is None:
                loud = e > self.floor + self.on
            else:
                loud = speech[i] or e > self.floor + self.loud
            if self.seg_start is None:
                if loud:
                    self.seg_start, self.quiet = self.frame, 0
            else:
                self.quiet = 0 if loud else self.quiet + 1
                if self.quiet >= self.hang or self.frame - self.seg_start >= self.max_len:
                    if self.frame - self.quiet - self.seg_start >= self.min_len:  # not a click
                        out.append(self._window(self.seg_start, self.frame - self.quiet))
                    self.seg_start = None
            self.frame += 1
        return out

    def flush(self) -> list[torch.Tensor]:
        """End of stream: close an open utterance; a short recording with no detected
        utterance (e.g. a 1 s clip recorded close to the microphone) counts as one."""
        start, self.seg_start = self.seg_start, None
        if start is not None and self.frame - 1 - self.quiet - start >= self.min_len:
            return [self._window(start, self.frame - 1 - self.quiet)]
        return []

    def whole(self) -> torch.Tensor | None:
        """All frames of a recording short enough to sit in the ring, or None."""
        if not self.ring or self.frame > RING:
            return None
        return torch.stack([xt for _, xt in self.ring])

    def _window(self, start: int, end: int) -> torch.Tensor:
        """WINDOW frames centred on [start, end] (clamped to what the ring holds)."""
        first = self.frame - len(self.ring) + 1  # frame index of ring[0]
        centre = (start + end) // 2
        lo = max(first, min(centre - WINDOW // 2, self.frame + 1 - WINDOW))
        frames = [xt for i, (_, xt) in enumerate(self.ring) if lo <= first + i < lo + WINDOW]
        return torch.stack(frames)


def frame_energy(frames: torch.Tensor, n_mels: int) -> torch.Tensor:
    """The loudness the segmenter tracks, per front-end frame ((..., t, F) → (..., t)): the log
    of the summed mel energies (logsumexp over the ``n_mels`` log-mel bands)."""
    return torch.logsumexp(frames[..., :n_mels], dim=-1)


def vad_segmenter() -> Segmenter:
    """The segmenter on silero-vad decisions (hang and energy rule chosen in docs/vad.md): the
    one /adapt cuts utterances with, and the stream detector cuts words with, so a word is
    heard in a stream cut as it was cut when it was enrolled."""
    return Segmenter(hang=VAD_HANG, loud=VAD_LOUD)


# Teaching "that was not a keyword" (label _unknown_ / _silence_) takes the readout step
# orthogonal to the average utterance unless the caller says otherwise (RuleConfig.readout_orth).
# Chosen on the tune stream of `tracekws bench stream`: after three false triggers are taught,
# its keyword detection at threshold 0.5 falls 1.9 points with the plain step and 0.8 with this
# one, at the calibrated thresholds 4.2 and 3.0 (docs/bench/orth/README.md). Words keep the
# plain step: on the tune speakers' personalisation sweeps the two gain the same.
NEGATIVE_READOUT_ORTH = True
# ... and moves only the readout (hidden rate 0) unless the caller sets ``lr``: the hidden
# layer learns the user's words, a false trigger is fixed where it was scored. Chosen on the
# tune stream of `tracekws bench stream` with TP's hidden rate 3e-5: after three taught
# triggers its false accepts at 0.5 fall 46 % at −2.3 points of detection with the readout
# alone, 33 % at −1.9 with the hidden update, and at the calibrated thresholds 0 → 0 false
# accepts at −2.3 points against 0 → 2 at −3.8 (docs/bench/negatives/README.md).
NEGATIVE_HIDDEN_LR = 0.0


class AdaptSession:
    """Adapt a model on one streamed recording of one label (in place: pass a clone)."""

    def __init__(
        self, model: KWSModel, label: str, rule: str = "tp", epochs: int = DEFAULT_EPOCHS, **hp
    ) -> None:
        self.model = model
        self.new_label = label not in model.labels and label not in model.enrolled_words()
        # a label the classifier does not have, on a model with a word bank: a word of the
        # user's own, enrolled as templates (model/words.py), not a new readout class
        self.word = model.words is not None and label not in model.labels
        self.index = -1 if self.word else model.add_label(label)
        self.label = label
        self.epochs = epochs
        if label in (UNKNOWN, SILENCE):
            hp = {"readout_orth": NEGATIVE_READOUT_ORTH, "lr": NEGATIVE_HIDDEN_LR} | hp
        self.rule = make(model, rule, **hp)
        self.norm_prior = self.rule.config.norm_prior
        self.before = model.net.__class__(*model.net.sizes, model.net.params)
        self.before.load_state_dict(model.net.state_dict())
        self.stream = model.init_stream()
        self.vad = SileroVAD(frontend=model.config.frontend)
        self.segmenter = vad_segmenter()
        self.n_mels = model.config.frontend.n_mels
        self.p_before: list[float] = []
        self.p_after: list[float] = []

    def hyperparameters(self) -> dict:
        if self.word:
            return {"enrolment": "templates", **self.model.words.to_config()["config"]}
        return self.rule.hyperparameters() | {"epochs": self.epochs}

    def feed(self, samples: torch.Tensor) -> int:
        """Consume audio (1-D float, 16 kHz); returns utterances learned so far."""
        speech = self.vad.speech(samples)
        if self.norm_prior > 0 or self.word:
            # windows of front-end frames: each is encoded when it is learned, after it has
            # moved the normalisation, so the stream's own encoding would be thrown away
            frames, fe = self.model.frontend.step(samples, self.stream.frontend)
            self.stream, data = self.stream._replace(frontend=fe), frames
        else:
            frames, data, self.stream = self.model.stream(samples, self.stream)
        if frames.shape[1]:
            energy = frame_energy(frames[0], self.n_mels)
            for w in self.segmenter.push(energy, data[0], speech):
                self._learn(w)
        return len(self.p_after)

    @torch.no_grad()
    def _prob(self, net, w: torch.Tensor) -> float:
        net.eval()
        m, _, _ = net(w.unsqueeze(0))
        return float(torch.softmax(m, dim=1)[0, self.index])

    def _learn(self, w: torch.Tensor) -> None:
        if self.norm_prior > 0:  # w: front-end frames; move the normalisation, then encode
            self.model.adapt_normalisation(w, self.norm_prior)
        if self.word:
            self._enrol(w)
            return
        if self.norm_prior > 0:
            w = self.model.encode_frames(w.unsqueeze(0))[0]
        self.p_before.append(self._prob(self.before, w))
        lab = torch.tensor([self.index])
        for _ in range(self.epochs):
            self.rule.run(w.unsqueeze(0), lab)
        self.p_after.append(self._prob(self.model.net, w))

    def _enrol(self, frames: torch.Tensor) -> None:
        """One recording of a word of the user's own: p(word) of it against the recordings
        enrolled before (0 for the first: how consistent the recordings are), then stored."""
        from .words import recording, word_probability

        m, book = self.model, self.model.words
        ratio = m.word_ratios(frames.unsqueeze(0))[0].get(self.label)
        th = book.thresholds.get(self.label, book.cfg.threshold)
        self.p_before.append(0.0 if ratio is None else
                             word_probability(ratio, th, book.cfg.temperature))
        m.words = book.enrol(self.label, *recording(m, frames, book.cfg))
        after = m.word_ratios(frames.unsqueeze(0))[0][self.label]
        self.p_after.append(word_probability(after, th, book.cfg.temperature))

    def finish(self) -> AdaptResult:
        for w in self.segmenter.flush():
            self._learn(w)
        if not self.p_after:
            # no utterance found: a short recording is learned whole if anything in it stands
            # out of the noise (or if it is meant as background: the _silence_ class)
            seg = self.segmenter
            whole = seg.whole()
            audible = seg.peak >= seg.on / 2 or self.label == SILENCE
            if whole is None or whole.shape[0] < 10 or not audible:
                raise NoSpeechError()
            self._learn(whole)
        n = len(self.p_after)
        return AdaptResult(self.label, n, sum(self.p_before) / n, sum(self.p_after) / n,
                           self.new_label, self.hyperparameters())
