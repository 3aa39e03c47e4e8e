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

from dataclasses import asdict, dataclass

import numpy as np
import torch

N_ENERGY = 40  # log-mel bands at the front of a front-end frame (the rest are deltas)


@dataclass(frozen=True)
class WordConfig:
    smooth: int = 8  # frames of box smoothing of the hidden spikes
    hop: int = 4  # frames between two pooled steps (40 ms)
    trim_nats: float = 3.0  # speech = frames within this of the loudest frame's log-mel energy
    margin: int = 5  # frames kept around the speech
    cohort: int = 1  # nearest bank entries averaged for the normalisation
    threshold: float = 0.8  # ratio (template distance / cohort distance) below which it fires
    max_templates: int = 8  # recordings kept per word (the newest)
    max_frames: int = 200  # frames of one recording kept (2 s)

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
