"""Speech Commands (GSC) layout: listing, the 12-class mapping, speaker-disjoint splits.

Layout: ``<word>/<speaker>_nohash_<n>[_v<k>].(wav|flac)``; ``_silence_/`` holds 1 s noise
windows and ``_background_noise_/`` long noise recordings. Splits hash the speaker id, so a
speaker is always on one side whatever else is in the folder.

Who spoke a clip comes from the folder's ``manifest.csv`` (columns ``file``, ``speaker``) when
it has one: file names are not the truth (a re-released ``*_v001`` copy of a clip is the same
person). ``_silence_`` windows have no speaker; each is split on its own, by folder and file
name (a manifest's placeholder ids for them are ignored, so their split does not move).

A recording that appears twice (the same decoded samples under two names) is kept once, so a
duplicate can never sit on both sides of a split, nor in both the support and the query of
one speaker.
"""

from __future__ import annotations

import csv
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
MANIFEST = "manifest.csv"
_NAME = re.compile(r"^(?P<speaker>[^_]+)_nohash_(?P<utt>\d+)(?P<version>_v\d+)?$")


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


def _manifest_speakers(root: Path) -> dict[str, str]:
    """``file`` (relative path) → ``speaker`` from the folder's manifest, if it has one."""
    path = root / MANIFEST
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = csv.DictReader(f)
        if not rows.fieldnames or not {"file", "speaker"} <= set(rows.fieldnames):
            raise ValueError(f"{path} needs the columns 'file' and 'speaker'")
        return {r["file"]: r["speaker"] for r in rows if r["speaker"]}


def content_key(path: Path) -> str:
    """sha1 of the decoded samples: equal for two names of one recording, whatever the
    container or file name (FLAC and WAV of the same PCM agree)."""
    import soundfile as sf

    data, rate = sf.read(path, dtype="int16", always_2d=True)
    return hashlib.sha1(data.tobytes() + str(rate).encode()).hexdigest()


def drop_duplicates(clips: list[Clip]) -> list[Clip]:
    """Keep the first clip (in order: original release before ``_v`` re-release, then by path)
    of every group of clips with the same decoded audio."""
    seen: set[str] = set()
    keep = []
    for c in sorted(clips, key=lambda c: ("_v" in c.path.stem.rsplit("_nohash_", 1)[-1],
                                          str(c.path))):
        key = content_key(c.path)
        if key not in seen:
            seen.add(key)
            keep.append(c)
    return sorted(keep, key=lambda c: str(c.path))


def scan(root: str | Path, dedupe: bool = True) -> list[Clip]:
    """Every clip under ``root`` in GSC layout (background-noise recordings excluded).

    Speakers come from ``manifest.csv`` when the folder has one, else from the file names;
    ``dedupe`` drops repeated recordings (:func:`drop_duplicates`).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    truth = _manifest_speakers(root)
    clips = []
    for p in sorted(root.glob("*/*")):
        if p.suffix.lower() not in AUDIO_EXT or p.parent.name == NOISE_DIR:
            continue
        m = _NAME.match(p.stem)
        speaker, utt = (m["speaker"], int(m["utt"])) if m else (f"{p.parent.name}-{p.stem}", 0)
        if p.parent.name != SILENCE:  # noise windows have no speaker: each is its own unit
            speaker = truth.get(f"{p.parent.name}/{p.name}", speaker)
        clips.append(Clip(p, p.parent.name, speaker, utt))
    if not clips:
        raise FileNotFoundError(f"no audio clips in GSC layout under {root}")
    return drop_duplicates(clips) if dedupe else clips


SYNTHETIC = "tts-"  # speaker ids of `tracekws data synth` voices


def is_validation(speaker: str, val_percent: int = 20) -> bool:
    """Speaker-level split: sha1(speaker) mod 100 < val_percent. A synthetic voice is never a
    validation speaker (it says nothing about people)."""
    if speaker.startswith(SYNTHETIC):
        return False
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
