"""Bounded audio decoding for /predict: the body is decoded as it arrives, in small pieces,
and a WAV whose header declares more audio than allowed is refused (413) before a single
sample of it is converted.

:class:`model.stream_decode.StreamDecoder` already decodes incrementally; what it cannot know
is how much it may allocate in one call: fed a whole 16 MiB 8-bit WAV at once it converts
and resamples all of it (over a gigabyte of float32) before its running length check fires.
Here the bytes go to it at most ``PIECE`` at a time, ``HEAD_PIECE`` until the WAV header is
parsed, and the header's budget — frames (data bytes / block size) at the file's rate, in
16 kHz samples — is checked against ``max_seconds`` as soon as it is known. Streams without
a usable declared length (0 or 0xFFFFFFFF) and spooled formats (FLAC/OGG, on disk) stay
bounded by the decoder's own running check, piece by piece.
"""

from __future__ import annotations

import math

import torch
from tracekws.model.audio import SAMPLE_RATE, AudioError
from tracekws.model.stream_decode import StreamDecoder

HEAD_PIECE = 4096  # bytes per feed until the WAV header (fmt + data chunk) is known
PIECE = 64 * 1024  # bytes per feed afterwards: ≤ 64 Ki frames → a few MiB of float32 at most


class BoundedDecoder:
    """Feed body chunks as they arrive; :meth:`close` gives the 16 kHz mono waveform."""

    def __init__(self, max_seconds: float, spool_dir: str) -> None:
        self.max_seconds = max_seconds
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        self.dec = StreamDecoder(max_seconds=max_seconds, spool_dir=spool_dir)
        self.parts: list[torch.Tensor] = []
        self.checked = False

    def _check_header(self) -> None:
        """Refuse a WAV whose declared data exceed the budget (once, when it is known)."""
        wav = getattr(self.dec, "wav", None)
        if self.dec.kind != "wav" or wav is None:
            self.checked = self.dec.kind is not None  # spooled: decoder checks frames itself
            return
        fmt, stage = getattr(wav, "fmt", None), getattr(wav, "stage", None)
        if fmt is None or stage not in ("data", "done"):
            return
        self.checked = True
        declared, block, rate = getattr(wav, "declared", 0), fmt[3], fmt[2]
        if declared in (0, 0xFFFFFFFF) or block <= 0 or rate <= 0:
            return  # open-ended stream: the running check bounds it
        frames = declared // block
        if math.ceil(frames * SAMPLE_RATE / rate) > self.max_samples:
            raise AudioError(
                f"the WAV header declares {frames / rate:.1f} s of audio; the limit is "
                f"{self.max_seconds:g} s", "too-long")

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = PIECE if self.checked else HEAD_PIECE
            piece, view = view[:n], view[n:]
            out = self.dec.feed(bytes(piece))
            if not self.checked:
                self._check_header()
            if out.numel():
                self.parts.append(out)

    def close(self, min_samples: int = 0) -> torch.Tensor:
        for block in self.dec.close_blocks():
            if block.numel():
                self.parts.append(block)
        wave = torch.cat(self.parts) if self.parts else torch.zeros(0)
        self.parts = []
        if wave.numel() < min_samples:
            raise AudioError(f"the audio is shorter than one {min_samples / 16:g} ms frame",
                             "too-short")
        return wave

    def abort(self) -> None:
        self.parts = []
        abort = getattr(self.dec, "abort", None)
        if abort is not None:
            abort()
