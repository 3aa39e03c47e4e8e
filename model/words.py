"""Words of the user's own: a keyword enrolled from a few recordings of one voice.

Why not the readout: a linear readout of spike counts, grown by one class and trained on three
clips, does not separate a new word (docs/enrol.md: 20 % detection after three clips). The
person who enrols a word is the one who will say it, so this module does what Rhasspy Raven
does with MFCCs, on the spiking network's own hidden layer:

- **templates**: each enrolment recording's hidden spike trains, box-smoothed over ``smooth``
  frames and pooled every ``hop`` frames (40 ms), cut to the speech (frames within
  ``trim_nats`` of the loudest one, ± ``margin``);
- **matching**: dynamic time warping with a cosine local cost, normalised by the path length
  (:func:`dtw`); a clip's distance to a word is its smallest distance to any template;
- **cohort normalisation**: the same voice saying another word is also close to the templates,
  so the distance is divided by the clip's distance to its nearest entry of a *bank* of other
  words (other people's, shipped in the model file): a repetition of the enrolled word is much
  closer to its templates than to any other word, another word is about as close to the bank.
  The ratio is scale-free, so one threshold (chosen on the tune speakers, docs/enrol.md) serves
  every word and voice.

The network runs from a fresh state over the whole recording, and only its spikes are cut, so
the templates are recomputed from the stored input spikes whenever the backbone changes (a
rule that adapts the hidden layer does not leave stale templates). State is bounded: at most
``max_templates`` recordings per word and ``max_frames`` frames each, stored as packed bits.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .data import SILENCE, Clip, load_waves, scan, split

# the largest threshold a word may be given: a ratio above 1 is a clip nearer other words than
# the word's own recordings, so past 2 a word would fire on almost anything said
MAX_THRESHOLD = 2.0
N_ENERGY = 40  # log-mel bands at the front of a front-end frame (the rest are deltas)


@dataclass(frozen=True)
class WordConfig:
    smooth: int = 8  # frames of box smoothing of the hidden spikes
    hop: int = 4  # frames between two pooled steps (40 ms)
    trim_nats: float = 3.0  # speech = frames within this of the loudest frame's log-mel energy
    margin: int = 5  # frames kept around the speech
    cohort: int = 5  # nearest bank entries averaged for the normalisation
    threshold: float = 0.68  # ratio (template distance / cohort distance) at which p(word) = ½
    temperature: float = 0.05  # ratio units per e-fold of p(word)/(1 − p(word))
    max_templates: int = 8  # recordings kept per word (the newest)
    max_frames: int = 200  # frames of one recording kept (2 s)
    bank_room_share: float = 0.0  # bank entries heard through simulated rooms (bank_conditions)

    def to_dict(self) -> dict:
        return asdict(self)


def speech_span(frames: torch.Tensor, cfg: WordConfig) -> tuple[int, int]:
    """[lo, hi) frames of the speech in one recording's front-end frames (T, n_feat)."""
    energy = frames[:, :N_ENERGY].mean(1)
    loud = (energy > energy.max() - cfg.trim_nats).nonzero().flatten()
    return max(0, int(loud.min()) - cfg.margin), min(len(energy), int(loud.max()) + cfg.margin + 1)


def sequence(spikes: torch.Tensor, span: tuple[int, int], cfg: WordConfig) -> np.ndarray:
    """Hidden spikes (T, H) of one recording → its template sequence (T', H), float32."""
    a = spikes[span[0]:span[1]]
    if len(a) < cfg.smooth:  # a very short sound: repeat its last frame up to one step
        a = torch.cat([a, a[-1:].expand(cfg.smooth - len(a), -1)]) if len(a) else \
            spikes.new_zeros(cfg.smooth, spikes.shape[1])
    pooled = torch.nn.functional.avg_pool1d(a.T[None].float(), cfg.smooth, stride=cfg.hop,
                                            ceil_mode=True)
    return pooled.squeeze(0).T.contiguous().numpy()


def _unit(a: np.ndarray) -> np.ndarray:
    return a / (np.linalg.norm(a, axis=-1, keepdims=True) + 1e-6)


def dtw(query: np.ndarray, refs: list[np.ndarray]) -> np.ndarray:
    """Length-normalised DTW distance (cosine local cost) from ``query`` (n, D) to each of
    ``refs`` (m_j, D); vectorised over the references (the loop runs over n·max m cells)."""
    if not refs:
        return np.zeros(0, np.float32)
    n, m_max = len(query), max(len(r) for r in refs)
    padded = np.zeros((len(refs), m_max, query.shape[1]), np.float32)
    for b, r in enumerate(refs):
        padded[b, :len(r)] = _unit(r)
    cost = 1.0 - np.einsum("nd,bmd->nmb", _unit(query).astype(np.float32), padded)
    acc = np.full((n + 1, m_max + 1, len(refs)), np.inf, np.float32)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        prev, row, c = acc[i - 1], acc[i], cost[i - 1]
        diag_up = np.minimum(prev[1:], prev[:-1])  # (m_max, B): from (i-1, j) and (i-1, j-1)
        for j in range(1, m_max + 1):
            row[j] = c[j - 1] + np.minimum(diag_up[j - 1], row[j - 1])
    lens = np.array([len(r) for r in refs])
    return acc[n, lens, np.arange(len(refs))] / (n + lens)


def ratio(query: np.ndarray, templates: list[np.ndarray], bank: list[np.ndarray],
          cohort: int = 1) -> float:
    """A clip's distance to a word (its nearest template) over its distance to other words
    (the mean of its ``cohort`` nearest bank entries): below the word's threshold, it fires."""
    d_word = float(dtw(query, templates).min())
    d_bank = np.sort(dtw(query, bank))[:cohort]
    return d_word / max(float(d_bank.mean()), 1e-6) if len(d_bank) else d_word


def word_probability(ratio_: float, threshold: float, temperature: float) -> float:
    """p(word) = σ((threshold − ratio) / temperature): ½ at the word's threshold."""
    z = (threshold - ratio_) / temperature
    return float(1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0))))


def word_wins(ratio_: np.ndarray, p_class_max: np.ndarray, threshold: float,
              temperature: float) -> np.ndarray:
    """Whether a word takes the clip in :func:`combine`: p(word) above the share left to the
    classifier's best class (vectorised, for benchmarks)."""
    z = np.clip((threshold - np.asarray(ratio_, dtype=np.float64)) / temperature, -50.0, 50.0)
    p = 1.0 / (1.0 + np.exp(-z))
    return p > (1.0 - p) * np.asarray(p_class_max, dtype=np.float64)


def combine(labels: list[str], probs: list[float], ratios: dict[str, float],
            thresholds: dict[str, float], temperature: float) -> list[tuple[str, float]]:
    """The model's class posteriors and its words' ratios → one ranked list of (label, p).

    The most likely word ``b`` takes p(b) (:func:`word_probability`) and the classes share the
    rest in their own proportions, so a word wins only when it is below its threshold *and*
    more likely than the classifier's best class: a clip the classifier is sure is one of its
    keywords is not taken by a word it merely resembles (the same voice saying another word is
    the word detector's hardest negative).
    """
    if not ratios:
        return sorted(zip(labels, probs, strict=True), key=lambda t: -t[1])
    p_words = {w: word_probability(r, thresholds[w], temperature) for w, r in ratios.items()}
    best = max(p_words, key=p_words.__getitem__)
    p_b = p_words[best]
    out = [(lbl, (1.0 - p_b) * p) for lbl, p in zip(labels, probs, strict=True)]
    out.append((best, p_b))
    out += [(w, 0.0) for w in ratios if w != best]
    return sorted(out, key=lambda t: -t[1])


def pack(x: torch.Tensor) -> torch.Tensor:
    """Binary network inputs (T, n_in) → packed bits (T, ceil(n_in / 8)) uint8."""
    return torch.from_numpy(np.packbits(x.numpy().astype(bool), axis=1))


def unpack(bits: torch.Tensor, n_in: int) -> torch.Tensor:
    return torch.from_numpy(np.unpackbits(bits.numpy(), axis=1)[:, :n_in].astype(np.float32))


@dataclass
class Recordings:
    """Stored recordings (as the encoder's binary spikes, before centring) with their speech
    spans: a word's templates or the cohort bank. ``bits`` (N, T_max, ⌈n_in/8⌉) uint8,
    ``span`` (N, 3) int32: length, lo, hi."""

    bits: torch.Tensor
    span: torch.Tensor

    @classmethod
    def empty(cls, n_in: int) -> Recordings:
        return cls(torch.zeros(0, 0, (n_in + 7) // 8, dtype=torch.uint8),
                   torch.zeros(0, 3, dtype=torch.int32))

    def __len__(self) -> int:
        return len(self.span)

    def add(self, spikes: torch.Tensor, span: tuple[int, int], keep: int) -> Recordings:
        """A new set with one more recording (binary spikes (T, n_in)); the oldest go beyond
        ``keep``."""
        b = pack(spikes)
        t_max = max(self.bits.shape[1], len(b))
        grow = torch.zeros(len(self) + 1, t_max, b.shape[1], dtype=torch.uint8)
        grow[:len(self), :self.bits.shape[1]] = self.bits
        grow[-1, :len(b)] = b
        span_t = torch.cat([self.span, torch.tensor([[len(b), *span]], dtype=torch.int32)])
        return Recordings(grow[-keep:], span_t[-keep:])

    def inputs(self, n_in: int) -> list[tuple[torch.Tensor, tuple[int, int]]]:
        """Each recording's binary spikes (T, n_in) and speech span."""
        return [(unpack(self.bits[i, :int(t)], n_in), (int(lo), int(hi)))
                for i, (t, lo, hi) in enumerate(self.span.tolist())]


@dataclass
class WordBook:
    """A model version's words of the user's own and the cohort bank they are judged against.

    Saved in the model file (``words.*`` tensors, the settings in ``ModelConfig.words``), so a
    version carries its words and their thresholds, and a rollback rolls them back. The
    template and bank *sequences* are derived (:class:`WordSpotter`), never stored.
    """

    cfg: WordConfig
    bank: Recordings
    words: dict[str, Recordings]
    thresholds: dict[str, float]

    def enrol(self, word: str, spikes: torch.Tensor, span: tuple[int, int]) -> WordBook:
        """A new book with one more recording of ``word`` (binary inputs (T, n_in)); the
        word's threshold is the tuned default unless one was set."""
        spikes = spikes[: self.cfg.max_frames]
        span = (min(span[0], len(spikes) - 1), min(span[1], len(spikes)))
        old = self.words.get(word) or Recordings.empty(spikes.shape[1])
        words = {**self.words, word: old.add(spikes, span, self.cfg.max_templates)}
        return WordBook(self.cfg, self.bank, words,
                        {**self.thresholds, word: self.thresholds.get(word, self.cfg.threshold)})

    def with_threshold(self, word: str, threshold: float) -> WordBook:
        """A new book in which ``word`` fires below ``threshold`` (a ratio: lower is stricter,
        fewer false accepts and more misses; ``WordConfig.threshold`` is the tuned default)."""
        if word not in self.words:
            raise KeyError(word)
        if not (math.isfinite(threshold) and 0.0 < threshold <= MAX_THRESHOLD):
            raise ValueError(f"a word's threshold is a ratio in (0, {MAX_THRESHOLD:g}]")
        return WordBook(self.cfg, self.bank, self.words, {**self.thresholds, word: threshold})

    def without(self, word: str) -> WordBook:
        """A new book without ``word`` (its recordings and threshold are dropped)."""
        if word not in self.words:
            raise KeyError(word)
        return WordBook(self.cfg, self.bank, {w: r for w, r in self.words.items() if w != word},
                        {w: t for w, t in self.thresholds.items() if w != word})

    def to_config(self) -> dict:
        return {"config": self.cfg.to_dict(), "bank": len(self.bank),
                "words": {w: {"threshold": self.thresholds[w], "recordings": len(r)}
                          for w, r in self.words.items()}}

    def tensors(self) -> dict[str, torch.Tensor]:
        t = {"words.bank.bits": self.bank.bits.contiguous(),
             "words.bank.span": self.bank.span.contiguous()}
        for i, r in enumerate(self.words.values()):  # the order of to_config()["words"]
            t[f"words.{i}.bits"], t[f"words.{i}.span"] = r.bits.contiguous(), r.span.contiguous()
        return t

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor], config: dict) -> WordBook:
        words = {w: Recordings(t[f"words.{i}.bits"], t[f"words.{i}.span"])
                 for i, w in enumerate(config.get("words", {}))}
        return cls(WordConfig(**config["config"]),
                   Recordings(t["words.bank.bits"], t["words.bank.span"]), words,
                   {w: float(v["threshold"]) for w, v in config.get("words", {}).items()})


class WordSpotter:
    """The derived sequences of a :class:`WordBook` for one network, and clip scoring.

    Built from the stored input spikes by running the network from a fresh state (about
    0.1–0.3 s for a bank of 200 recordings on one core), so it follows any change of the
    hidden weights; :meth:`stale` says when the network it was built for has changed.
    """

    def __init__(self, book: WordBook, net, in_mean: torch.Tensor) -> None:
        self.book, self.key = book, _net_key(net, in_mean)
        n_in = net.sizes[0]

        def seqs(rec: Recordings) -> list[np.ndarray]:
            items = rec.inputs(n_in)
            if not items:
                return []
            t_max = max(len(x) for x, _ in items)
            x = torch.stack([torch.nn.functional.pad(xi, (0, 0, 0, t_max - len(xi)))
                             for xi, _ in items]) - in_mean
            spikes = net.spike_trains(x)  # causal: the padding after a recording changes nothing
            return [sequence(s[: len(xi)], span, book.cfg)
                    for s, (xi, span) in zip(spikes, items, strict=True)]

        self.bank = seqs(book.bank)
        self.templates = {w: seqs(r) for w, r in book.words.items()}

    def stale(self, net, in_mean: torch.Tensor, book: WordBook) -> bool:
        return book is not self.book or _net_key(net, in_mean) != self.key

    def ratios(self, spikes: torch.Tensor, frames: torch.Tensor) -> dict[str, float]:
        """One clip's hidden spikes (T, H) and front-end frames (T, F) → ratio per word."""
        cfg = self.book.cfg
        q = sequence(spikes, speech_span(frames, cfg), cfg)
        d_bank = np.sort(dtw(q, self.bank))[: cfg.cohort]
        norm = max(float(d_bank.mean()), 1e-6) if len(d_bank) else 1.0
        return {w: float(dtw(q, t).min()) / norm for w, t in self.templates.items() if t}


def _net_key(net, in_mean: torch.Tensor) -> tuple:
    """Identity and in-place version counters of what a spotter's sequences depend on."""
    return (id(net.w_in), net.w_in._version, id(net.w_rec), net.w_rec._version, id(in_mean),
            in_mean._version)


def build_bank(clips: list[Clip], size: int, exclude: tuple[str, ...],
               seed: int = 0) -> list[Clip]:
    """The cohort bank's recordings: ``size`` speech clips of the training speakers, drawn
    evenly over words, none of ``exclude`` (a benchmark's held-out words)."""
    pool = [c for c in clips if c.word not in exclude and c.word != SILENCE]
    rng = random.Random(seed)
    rng.shuffle(pool)
    by_word: dict[str, list[Clip]] = defaultdict(list)
    for c in pool:
        by_word[c.word].append(c)
    chosen: list[Clip] = []
    while len(chosen) < min(size, len(pool)):
        for w in sorted(by_word):
            if by_word[w] and len(chosen) < size:
                chosen.append(by_word[w].pop())
    return chosen


def recording(model, frames: torch.Tensor, cfg: WordConfig) -> tuple[torch.Tensor, tuple[int, int]]:
    """One recording's front-end frames (T, F) → what a :class:`Recordings` stores: the
    encoder's binary spikes (T, n_in) and the speech span."""
    x = model.encode_frames(frames.unsqueeze(0))[0] + model.in_mean
    return x.round().clamp(0, 1), speech_span(frames, cfg)


BANK_ROOMS = 8  # simulated rooms some bank entries are heard through
BANK_ROOM_SEED = 2 * 10**9  # their seeds: apart from the benchmarks' rooms and training's (10⁹ + i)


def bank_conditions(n: int, room_share: float) -> list[int | None]:
    """For each of ``n`` bank entries, the bank room it is heard through (None: as recorded):
    a share ``room_share`` of them, spread evenly, cycling over the rooms.

    Why: the cohort must sound like the device's audio. A reverberant, noisy utterance is far
    from every clean bank entry, so a clean-only bank makes every word look close in a room
    (a ratio far below the threshold) and the word fires on everything said there.
    """
    out: list[int | None] = []
    k = 0
    for i in range(n):
        if int((i + 1) * room_share) > int(i * room_share):
            out.append(k % BANK_ROOMS)
            k += 1
        else:
            out.append(None)
    return out


def bank_room_simulators(data: str) -> list:
    """The bank's rooms (model.room), with the folder's background noise."""
    from .data import noise_recordings
    from .room import RoomSimulator, sample_room

    noise = noise_recordings(data)
    return [RoomSimulator(sample_room(BANK_ROOM_SEED + j), noise) for j in range(BANK_ROOMS)]


def with_bank(model, data: str, size: int = 200, exclude: tuple[str, ...] = (), seed: int = 0,
              cfg: WordConfig | None = None, val_percent: int | None = None) -> WordBook:
    """A word book for ``model`` with a cohort bank of ``size`` clips of its training speakers
    in ``data`` (never the validation speakers; none of ``exclude``; a share
    ``cfg.bank_room_share`` heard through simulated rooms) and no words yet."""
    cfg = cfg or WordConfig()
    if val_percent is None:
        val_percent = int(model.config.meta.get("training", {}).get("val_percent", 20))
    clips = build_bank(split(scan(data), "train", val_percent), size, exclude, seed)
    if not clips:
        raise ValueError(f"no training-side speech in {data} for a word bank")
    n_in = model.net.sizes[0]
    bank = Recordings.empty(n_in)
    waves = load_waves(clips, progress=False)
    conditions = bank_conditions(len(clips), cfg.bank_room_share)
    if any(c is not None for c in conditions):
        rooms = bank_room_simulators(data)
        for i, c in enumerate(conditions):
            if c is not None:
                waves[i] = rooms[c].apply_clips(waves[i:i + 1], clips[i:i + 1])[0]
    with torch.no_grad():
        frames = model.frontend(waves)
    for f in frames:
        bank = bank.add(*recording(model, f, cfg), keep=len(clips))
    return WordBook(cfg, bank, {}, {})
