"""Speech Commands (GSC) layout: listing, the 12-class mapping, speaker-disjoint splits.

Layout: ``<word>/<speaker>_nohash_<n>.(wav|flac)``; ``_silence_/`` holds 1 s noise windows
and ``_background_noise_/`` long noise recordings. Splits hash the speaker id, so a speaker
is always on one side whatever else is in the folder.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from .audio import SAMPLE_RATE, load
from .pipeline import KEYWORDS, SILENCE, UNKNOWN

AUDIO_EXT = {".wav", ".flac", ".ogg"}
NOISE_DIR = "_background_noise_"
_NAME = re.compile(r"^(?P<speaker>[^_]+)_nohash_(?P<utt>\d+)$")


@dataclass(frozen=True)
class Clip:
    path: Path
    word: str  # folder name
    speaker: str
    utt: int

    def label(self, labels: list[str] | None = None) -> str:
        """Class of this clip: a known label, else ``_silence_`` / ``_unknown_``."""
        labels = labels or [*KEYWORDS, UNKNOWN, SILENCE]
        if self.word in labels:
            return self.word
        return SILENCE if self.word == SILENCE else UNKNOWN


def scan(root: str | Path) -> list[Clip]:
    """Every clip under ``root`` in GSC layout (background-noise recordings excluded)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    clips = []
    for p in sorted(root.glob("*/*")):
        if p.suffix.lower() not in AUDIO_EXT or p.parent.name == NOISE_DIR:
            continue
        m = _NAME.match(p.stem)
        speaker, utt = (m["speaker"], int(m["utt"])) if m else (f"{p.parent.name}-{p.stem}", 0)
        clips.append(Clip(p, p.parent.name, speaker, utt))
    if not clips:
        raise FileNotFoundError(f"no audio clips in GSC layout under {root}")
    return clips


def is_validation(speaker: str, val_percent: int = 20) -> bool:
    """Speaker-level split: sha1(speaker) mod 100 < val_percent."""
    return int(hashlib.sha1(speaker.encode()).hexdigest(), 16) % 100 < val_percent


def split(clips: list[Clip], which: str, val_percent: int = 20) -> list[Clip]:
    """``all``, ``train`` or ``val`` (speaker-disjoint)."""
    if which == "all":
        return list(clips)
    want = which == "val"
    if which not in ("train", "val"):
        raise ValueError(f"unknown split {which!r}")
    return [c for c in clips if is_validation(c.speaker, val_percent) == want]


def fit_length(wave: torch.Tensor, n: int = SAMPLE_RATE) -> torch.Tensor:
    """Zero-pad (centred) or centre-crop to n samples."""
    if wave.numel() >= n:
        start = (wave.numel() - n) // 2
        return wave[start : start + n]
    pad = n - wave.numel()
    return torch.nn.functional.pad(wave, (pad // 2, pad - pad // 2))


def load_waves(clips: list[Clip], n: int = SAMPLE_RATE, progress: bool = True) -> torch.Tensor:
    """(N, n) tensor of 1 s waveforms."""
    it = tqdm(clips, desc="loading audio", disable=not progress, leave=False)
    return torch.stack([fit_length(load(c.path), n) for c in it]) if clips else torch.zeros(0, n)


def noise_recordings(root: str | Path) -> list[torch.Tensor]:
    """Long background-noise recordings of the folder (for silence windows and noise mixing)."""
    d = Path(root) / NOISE_DIR
    return [load(p) for p in sorted(d.glob("*")) if p.suffix.lower() in AUDIO_EXT]
