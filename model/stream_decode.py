"""Incremental audio decoding: bytes arriving in chunks → 16 kHz mono float32 as they arrive.

:class:`StreamDecoder` is the streaming twin of :func:`model.audio.decode` (same typed
:class:`~model.audio.AudioError` codes, same output to float tolerance):

- **WAV** (RIFF; PCM 8/16/24/32-bit int, 32/64-bit float, WAVE_FORMAT_EXTENSIBLE; mono or
  multi-channel, downmixed by averaging; any rate 8–48 kHz): the header is parsed as bytes
  arrive and samples are emitted at once, resampled block-wise by a polyphase version of
  torchaudio's windowed-sinc resampler that keeps only ``2·width + orig`` samples of history,
  so its state is bounded whatever the length of the stream.
- **FLAC / OGG / AIFF** (anything else libsndfile reads): bytes are spooled to a temporary
  file on disk (not memory) and decoded block by block at :meth:`StreamDecoder.close` /
  :meth:`StreamDecoder.close_blocks`.

Optional ``max_seconds`` stops a stream as soon as it holds more audio than allowed
(``AudioError`` code ``"too-long"``), before the rest is decoded.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator

import numpy as np
import soundfile as sf
import torch

from .audio import MAX_RATE, MIN_RATE, SAMPLE_RATE, AudioError, safe_rate

WAV_MAGIC = b"RIFF"
SPOOL_MAGICS = (b"fLaC", b"OggS", b"FORM", b"RIFX", b"RF64")  # decoded by libsndfile at close
FMT_PCM, FMT_FLOAT, FMT_EXTENSIBLE = 1, 3, 0xFFFE
BLOCK_FRAMES = 16_000  # frames per block when decoding a spooled file


# ---- resampling ---------------------------------------------------------------------------
def sinc_kernel(orig: int, new: int, width_zeros: int = 6, rolloff: float = 0.99
                ) -> tuple[torch.Tensor, int]:
    """Windowed-sinc (Hann) polyphase kernel (new, 1, 2·width + orig) for reduced rates.

    The same formula as ``torchaudio.functional.resample`` (default arguments), computed here
    so the streaming resampler does not depend on a private torchaudio function.
    """
    base = min(orig, new) * rolloff
    width = math.ceil(width_zeros * orig / base)
    idx = torch.arange(-width, width + orig, dtype=torch.float64)[None, None] / orig
    t = torch.arange(0, -new, -1, dtype=torch.float64)[:, None, None] / new + idx
    t = (t * base).clamp_(-width_zeros, width_zeros)
    window = torch.cos(t * math.pi / width_zeros / 2) ** 2
    t = t * math.pi
    kernel = torch.where(t == 0, torch.ones_like(t), t.sin() / t) * window * (base / orig)
    return kernel.to(torch.float32), width


class StreamResampler:
    """Block-wise resampling to 16 kHz with bounded state.

    Output block i (``new`` samples) depends on input samples [i·orig − width,
    i·orig + orig + width); the resampler emits every block whose inputs have arrived and
    keeps only the samples later blocks still need. At :meth:`close` the end is zero-padded
    and the output is cut to ceil(new·n/orig) samples, exactly as the whole-clip function.
    """

    def __init__(self, rate: int, target: int = SAMPLE_RATE) -> None:
        if rate != target:
            rate = safe_rate(rate, target)
            g = math.gcd(rate, target)
        self.identity = rate == target
        self.n_in = 0
        self.n_out = 0
        if self.identity:
            return
        self.orig, self.new = rate // g, target // g
        self.kernel, self.width = sinc_kernel(self.orig, self.new)
        self.span = self.kernel.shape[-1]  # 2·width + orig
        self.buf = torch.zeros(self.width)  # the left zero padding

    def _emit(self) -> torch.Tensor:
        n = 0 if self.buf.numel() < self.span else (self.buf.numel() - self.span) // self.orig + 1
        if n == 0:
            return torch.zeros(0)
        seg = self.buf[: (n - 1) * self.orig + self.span]
        out = torch.nn.functional.conv1d(seg[None, None], self.kernel, stride=self.orig)
        self.buf = self.buf[n * self.orig :]
        return out[0].transpose(0, 1).reshape(-1)

    def feed(self, x: torch.Tensor) -> torch.Tensor:
        self.n_in += x.numel()
        if self.identity:
            self.n_out += x.numel()
            return x
        self.buf = torch.cat([self.buf, x.to(torch.float32)])
        out = self._emit()
        self.n_out += out.numel()
        return out

    def close(self) -> torch.Tensor:
        if self.identity:
            return torch.zeros(0)
        self.buf = torch.cat([self.buf, torch.zeros(self.width + self.orig)])
        out = self._emit()
        target = math.ceil(self.new * self.n_in / self.orig)
        out = out[: max(0, target - self.n_out)]
        self.n_out += out.numel()
        return out


# ---- WAV ------------------------------------------------------------------------------------
def _pcm_to_float(raw: bytes, fmt: int, bits: int, channels: int) -> np.ndarray:
    """Little-endian interleaved frames → (frames, channels) float32 in [-1, 1]."""
    if fmt == FMT_FLOAT:
        a = np.frombuffer(raw, dtype="<f4" if bits == 32 else "<f8").astype(np.float32)
    elif bits == 8:
        a = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif bits == 16:
        a = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif bits == 24:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        a = v.astype(np.float32) / float(1 << 23)
    else:  # 32-bit int
        a = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    return a.reshape(-1, channels)


class _OtherWav(Exception):
    """A WAV encoding this parser does not stream (µ-law, A-law, ADPCM...): libsndfile gets it."""


class _Wav:
    """Incremental RIFF/WAVE parser: header → fmt → (skipped chunks) → data samples."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.stage = "riff"  # riff → chunk → skip/data → done
        self.skip = 0
        self.fmt: tuple[int, int, int, int, int] | None = None  # fmt, channels, rate, block, bits
        self.data_left: int | None = None  # None: until end of stream
        self.declared = 0
        self.received = 0

    @property
    def rate(self) -> int:
        assert self.fmt is not None
        return self.fmt[2]

    def _parse_fmt(self, body: bytes) -> None:
        if len(body) < 16:
            raise AudioError("the WAV fmt chunk is too short", "not-audio")
        fmt, channels = int.from_bytes(body[0:2], "little"), int.from_bytes(body[2:4], "little")
        rate = int.from_bytes(body[4:8], "little")
        block, bits = int.from_bytes(body[12:14], "little"), int.from_bytes(body[14:16], "little")
        if fmt == FMT_EXTENSIBLE and len(body) >= 26:
            fmt = int.from_bytes(body[24:26], "little")  # first two bytes of the sub-format GUID
        ok = (fmt == FMT_PCM and bits in (8, 16, 24, 32)) or (fmt == FMT_FLOAT and bits in (32, 64))
        if not ok:
            raise _OtherWav(f"format {fmt}, {bits} bits")
        if channels < 1 or block != channels * bits // 8:
            raise AudioError("the WAV fmt chunk is inconsistent", "not-audio")
        if not MIN_RATE <= rate <= MAX_RATE:
            raise AudioError(f"sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz",
                             "bad-rate")
        self.fmt = (fmt, channels, rate, block, bits)

    def feed(self, data: bytes) -> np.ndarray | None:
        """Consume bytes; return newly completed frames (frames, channels) or None."""
        self.buf += data
        frames: list[np.ndarray] = []
        while True:
            if self.stage == "riff":
                if len(self.buf) < 12:
                    break
                if self.buf[8:12] != b"WAVE":
                    raise AudioError("a RIFF file that is not WAVE", "not-audio")
                del self.buf[:12]
                self.stage = "chunk"
            elif self.stage == "chunk":
                if len(self.buf) < 8:
                    break
                cid, size = bytes(self.buf[:4]), int.from_bytes(self.buf[4:8], "little")
                if cid == b"data":
                    if self.fmt is None:
                        raise AudioError("the WAV data chunk comes before its fmt chunk",
                                         "not-audio")
                    del self.buf[:8]
                    self.declared = size
                    self.data_left = None if size in (0, 0xFFFFFFFF) else size
                    self.stage = "data"
                elif cid == b"fmt ":
                    if size > 4096:
                        raise AudioError("the WAV fmt chunk is too large", "not-audio")
                    if len(self.buf) < 8 + size:
                        break
                    self._parse_fmt(bytes(self.buf[8 : 8 + size]))
                    del self.buf[: 8 + size + (size & 1)]
                else:
                    del self.buf[:8]
                    self.skip = size + (size & 1)
                    self.stage = "skip"
            elif self.stage == "skip":
                n = min(self.skip, len(self.buf))
                del self.buf[:n]
                self.skip -= n
                if self.skip:
                    break
                self.stage = "chunk"
            elif self.stage == "data":
                assert self.fmt is not None
                block = self.fmt[3]
                avail = len(self.buf) if self.data_left is None else min(len(self.buf),
                                                                         self.data_left)
                n = avail // block * block
                if n:
                    frames.append(_pcm_to_float(bytes(self.buf[:n]), self.fmt[0], self.fmt[4],
                                                self.fmt[1]))
                    del self.buf[:n]
                    self.received += n
                    if self.data_left is not None:
                        self.data_left -= n
                if self.data_left is not None and self.data_left < block:
                    self.stage = "done"
                    self.buf.clear()
                break
            else:  # done: ignore trailing chunks
                self.buf.clear()
                break
        if not frames:
            return None
        return frames[0] if len(frames) == 1 else np.concatenate(frames)

    def close(self) -> None:
        """Raise if the stream ended before the header or the declared data were complete."""
        if self.stage == "riff":
            raise AudioError("not a readable WAV/FLAC/OGG file (RIFF header cut short)",
                             "not-audio")
        if self.stage in ("chunk", "skip"):
            raise AudioError("the audio is truncated: the WAV file has no complete data chunk",
                             "truncated-audio")
        if self.stage == "data" and self.data_left:
            raise AudioError(
                f"the audio is truncated: the WAV data chunk declares {self.declared} bytes "
                f"but {self.received + len(self.buf)} are present", "truncated-audio")


# ---- the decoder ------------------------------------------------------------------------------
class StreamDecoder:
    """Feed audio file bytes in chunks of any size; get 16 kHz mono float32 samples.

    ``feed(data)`` returns the samples the new bytes complete (WAV) or an empty tensor
    (spooled formats); ``close()`` returns the rest (a spooled file decoded whole) and checks
    the stream was complete; ``close_blocks()`` is ``close()`` as an iterator of blocks, so a
    long spooled file never sits in memory at once. Errors are :class:`AudioError`.
    """

    def __init__(self, max_seconds: float | None = None, spool_dir: str | None = None) -> None:
        self.max_samples = None if max_seconds is None else int(max_seconds * SAMPLE_RATE)
        self.spool_dir = spool_dir
        self.head = bytearray()  # first bytes, until the format is known
        self.kind: str | None = None  # "wav" | "spool"
        self.wav: _Wav | None = None
        self.resampler: StreamResampler | None = None
        self.spool = None
        self.prefix: bytearray | None = bytearray()  # WAV bytes until the fmt chunk is parsed
        self.bytes_in = 0
        self.samples_out = 0
        self.closed = False

    # -- helpers
    def _check_length(self, n_new: int) -> None:
        self.samples_out += n_new
        if self.max_samples is not None and self.samples_out > self.max_samples:
            raise AudioError(
                f"the audio is longer than the limit of {self.max_samples / SAMPLE_RATE:g} s",
                "too-long")

    def _mono(self, frames: np.ndarray) -> torch.Tensor:
        if not np.isfinite(frames).all():
            raise AudioError("the audio holds NaN or infinite samples", "non-finite-audio")
        mono = frames.mean(axis=1) if frames.shape[1] > 1 else frames[:, 0]
        return torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))

    def _start(self) -> torch.Tensor:
        magic = bytes(self.head[:4])
        if magic == WAV_MAGIC:
            self.kind, self.wav = "wav", _Wav()
        elif magic in SPOOL_MAGICS:
            self._to_spool(b"")
        else:
            raise AudioError("not a readable WAV/FLAC/OGG file (unknown file signature)",
                             "not-audio")
        data, self.head = bytes(self.head), bytearray()
        return self._route(data)

    def _to_spool(self, data: bytes) -> None:
        self.kind, self.wav = "spool", None
        self.spool = tempfile.TemporaryFile(dir=self.spool_dir)  # noqa: SIM115
        self.spool.write(data)

    def _route(self, data: bytes) -> torch.Tensor:
        if self.kind == "spool":
            self.spool.write(data)
            return torch.zeros(0)
        assert self.wav is not None
        if self.prefix is not None:
            self.prefix += data
        try:
            frames = self.wav.feed(data)
        except _OtherWav as exc:
            if self.prefix is None:
                raise AudioError(f"unsupported WAV encoding ({exc})", "not-audio") from None
            self._to_spool(bytes(self.prefix))  # libsndfile decodes it at close
            self.prefix = None
            return torch.zeros(0)
        if self.wav.fmt is not None or (self.prefix is not None and len(self.prefix) > 65536):
            self.prefix = None
        if self.resampler is None and self.wav.fmt is not None:
            self.resampler = StreamResampler(self.wav.rate)
        if frames is None or frames.shape[0] == 0:
            return torch.zeros(0)
        out = self.resampler.feed(self._mono(frames))
        self._check_length(out.numel())
        return out

    # -- API
    def feed(self, data: bytes | bytearray | memoryview) -> torch.Tensor:
        if self.closed:
            raise RuntimeError("feed() after close()")
        if not data:
            return torch.zeros(0)
        self.bytes_in += len(data)
        if self.kind is None:
            self.head += data
            if len(self.head) < 4:
                return torch.zeros(0)
            return self._start()
        return self._route(bytes(data))

    def close_blocks(self) -> Iterator[torch.Tensor]:
        """End of stream: yield the remaining samples in blocks; raise if the audio is bad."""
        if self.closed:
            return
        self.closed = True
        if self.kind is None:
            if self.bytes_in == 0:
                raise AudioError("the request body is empty", "empty-audio")
            raise AudioError("not a readable WAV/FLAC/OGG file (too short)", "not-audio")
        if self.kind == "wav":
            assert self.wav is not None
            self.wav.close()
            if self.wav.received == 0 or self.resampler is None:
                raise AudioError("the audio holds no samples", "empty-audio")
            tail = self.resampler.close()
            self._check_length(tail.numel())
            yield tail
            return
        try:
            yield from self._decode_spool()
        finally:
            self.spool.close()

    def _decode_spool(self) -> Iterator[torch.Tensor]:
        self.spool.flush()
        self.spool.seek(0)
        try:
            f = sf.SoundFile(self.spool)
        except Exception as exc:  # LibsndfileError, RuntimeError, TypeError...
            raise AudioError(f"not a readable WAV/FLAC/OGG file ({exc})", "not-audio") from exc
        with f:
            rate, expected = f.samplerate, f.frames
            if not MIN_RATE <= rate <= MAX_RATE:
                raise AudioError(f"sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz",
                                 "bad-rate")
            if self.max_samples is not None and expected > 0:
                if math.ceil(expected * SAMPLE_RATE / rate) > self.max_samples:
                    raise AudioError(f"the audio is longer than the limit of "
                                     f"{self.max_samples / SAMPLE_RATE:g} s", "too-long")
            res = StreamResampler(rate)
            got = 0
            while True:
                try:
                    block = f.read(BLOCK_FRAMES, dtype="float32", always_2d=True)
                except Exception as exc:
                    raise AudioError(f"not a readable WAV/FLAC/OGG file ({exc})",
                                     "not-audio") from exc
                if block.shape[0] == 0:
                    break
                got += block.shape[0]
                out = res.feed(self._mono(block))
                self._check_length(out.numel())
                yield out
            if got == 0:
                raise AudioError("the audio holds no samples", "empty-audio")
            if expected > 0 and got < expected:
                raise AudioError(
                    f"the audio is truncated: header says {expected} frames, found {got}",
                    "truncated-audio")
            tail = res.close()
            self._check_length(tail.numel())
            yield tail

    def close(self) -> torch.Tensor:
        """End of stream: the remaining samples as one tensor (see :meth:`close_blocks`)."""
        parts = list(self.close_blocks())
        return torch.cat(parts) if parts else torch.zeros(0)

    def abort(self) -> None:
        """Drop the stream (e.g. the client went away): remove the spool file."""
        self.closed = True
        if self.spool is not None:
            self.spool.close()


def decode_chunks(chunks, max_seconds: float | None = None) -> torch.Tensor:
    """Decode an iterable of byte chunks into one 16 kHz waveform (tests, CLI)."""
    dec = StreamDecoder(max_seconds)
    parts = [dec.feed(c) for c in chunks]
    parts.append(dec.close())
    return torch.cat(parts)
