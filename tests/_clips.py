"""Paths to the real Speech Commands clips shipped under tests/data (CC BY 4.0)."""

from pathlib import Path

import torch
from tracekws.model.audio import load

GSC = Path(__file__).parent / "data" / "gsc"


def clip_path(word: str = "yes", i: int = 0) -> Path:
    return sorted((GSC / word).glob("*.flac"))[i]


def wave(word: str = "yes", i: int = 0) -> torch.Tensor:
    return load(clip_path(word, i))
