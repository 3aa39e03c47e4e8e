"""Audio decoding: formats, rates, channels, and one typed error per kind of bad input."""

import io

import numpy as np
import pytest
import soundfile as sf
import torch
from _clips import clip_path
from tracekws.model.audio import AudioError, decode, encode_wav, load


def _bytes(data: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, data, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def test_real_flac_clip_decodes_to_16k_mono():
    w = load(clip_path("yes", 0))
    assert w.dtype == torch.float32 and w.dim() == 1 and 8000 <= w.numel() <= 16000


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("WAV", "FLOAT"),
                                             ("WAV", "PCM_24"), ("FLAC", None), ("OGG", None)])
def test_formats_rates_and_stereo(rate, fmt, subtype):
    t = np.arange(rate) / rate
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([tone, tone], axis=1)
    w = decode(_bytes(stereo, rate, fmt, subtype))
    assert abs(w.numel() - 16000) <= 16
    assert 0.15 < float(w.abs().max()) < 0.35


def test_resampled_tone_keeps_its_pitch():
    rate = 44100
    t = np.arange(rate) / rate
    w = decode(_bytes(0.3 * np.sin(2 * np.pi * 1000 * t), rate, "WAV", "PCM_16"))
    spec = torch.fft.rfft(w).abs()
    assert abs(int(spec.argmax()) * 16000 / w.numel() - 1000) < 5


def test_empty_body():
    with pytest.raises(AudioError) as e:
        decode(b"")
    assert e.value.code == "empty-audio"


def test_not_audio():
    with pytest.raises(AudioError) as e:
        decode(np.random.default_rng(0).bytes(5000))
    assert e.value.code == "not-audio"


def test_truncated_wav():
    good = encode_wav(torch.zeros(16000))
    with pytest.raises(AudioError) as e:
        decode(good[:5000])
    assert e.value.code == "truncated-audio"


def test_truncated_flac():
    good = clip_path("no", 0).read_bytes()
    with pytest.raises(AudioError) as e:
        decode(good[: len(good) // 3])
    assert e.value.code in ("truncated-audio", "not-audio")


def test_nan_filled():
    x = np.full(16000, np.nan, dtype=np.float32)
    with pytest.raises(AudioError) as e:
        decode(_bytes(x, 16000, "WAV", "FLOAT"))
    assert e.value.code == "non-finite-audio"


def test_zero_length_wav():
    with pytest.raises(AudioError) as e:
        decode(_bytes(np.zeros(0, dtype=np.float32), 16000, "WAV", "PCM_16"))
    assert e.value.code == "empty-audio"


def test_rate_out_of_range():
    with pytest.raises(AudioError) as e:
        decode(_bytes(np.zeros(4000, dtype=np.float32), 4000, "WAV", "PCM_16"))
    assert e.value.code == "bad-rate"


def test_missing_file(tmp_path):
    with pytest.raises(AudioError):
        load(tmp_path / "nope.wav")


def test_coprime_rate_is_snapped_not_a_huge_kernel():
    """44 099 Hz shares no divisor with 16 kHz: the resampler would need gigabytes."""
    rate = 44099
    t = np.arange(rate) / rate
    w = decode(_bytes(0.3 * np.sin(2 * np.pi * 440 * t), rate, "WAV", "PCM_16"))
    assert abs(w.numel() - 16000) <= 16
