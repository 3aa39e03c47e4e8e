"""Chunked audio decoding gives what whole-file decoding gives, with the same typed errors."""

import io
import random

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
from _clips import clip_path, wave
from tracekws.model.audio import AudioError, decode, encode_wav
from tracekws.model.stream_decode import StreamDecoder, StreamResampler, decode_chunks


def _wav(x: np.ndarray, rate: int, subtype: str) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def _chunks(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(data):
        k = rng.choice([1, 3, 44, 100, 1000, 4097])
        out.append(data[i : i + k])
        i += k
    return out


def reference(data: bytes) -> torch.Tensor:
    """The whole-file decode, written independently: libsndfile, mean of channels,
    torchaudio's resampler (what StreamResampler must reproduce)."""
    x, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    x = torch.from_numpy(np.ascontiguousarray(x.mean(axis=1)))
    return x if rate == 16_000 else AF.resample(x, rate, 16_000)


@pytest.fixture(scope="module")
def clip() -> torch.Tensor:
    return wave("yes", 0)


@pytest.mark.parametrize("rate", [16_000, 44_100, 8_000, 22_050, 48_000])
@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT", "PCM_24", "PCM_32", "PCM_U8"])
@pytest.mark.parametrize("channels", [1, 2])
def test_chunked_wav_equals_whole(clip, rate, subtype, channels):
    x = clip if rate == 16_000 else AF.resample(clip, 16_000, rate)
    x = x.numpy()
    if channels == 2:
        x = np.stack([x, 0.5 * x], axis=1)
    data = _wav(x, rate, subtype)
    ref = reference(data)
    got = decode_chunks(_chunks(data, seed=rate + channels))
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


def test_samples_arrive_before_the_end(clip):
    data = encode_wav(clip)
    dec = StreamDecoder()
    first = dec.feed(data[: len(data) // 2])
    assert first.numel() > 0.4 * clip.numel()  # emitted as bytes arrive, not at close


def test_resampler_state_is_bounded():
    r = StreamResampler(44_100)
    for _ in range(50):
        r.feed(torch.randn(4410))
        assert r.buf.numel() <= r.span + r.orig + 4410


def test_odd_rate_without_common_divisor_is_snapped_not_exploded():
    x = np.random.default_rng(0).standard_normal(44_099).astype(np.float32) * 0.1
    out = decode_chunks(_chunks(_wav(x, 44_099, "PCM_16"), 0))
    assert abs(out.numel() - 16_000) <= 2


def test_flac_is_spooled_and_decoded_at_close():
    data = clip_path("no", 0).read_bytes()
    dec = StreamDecoder()
    parts = [dec.feed(c) for c in _chunks(data, 1)]
    assert sum(p.numel() for p in parts) == 0
    assert dec.spool is not None and dec.spool.tell() == len(data)  # on disk, not in memory
    got = torch.cat(list(dec.close_blocks()))
    torch.testing.assert_close(got, reference(data), rtol=0, atol=1e-6)


def test_flac_44k_stereo_via_spool(clip):
    x = AF.resample(clip, 16_000, 44_100).numpy()
    buf = io.BytesIO()
    sf.write(buf, np.stack([x, x], axis=1), 44_100, format="FLAC")
    data = buf.getvalue()
    torch.testing.assert_close(decode_chunks(_chunks(data, 2)), reference(data), rtol=0, atol=1e-5)


def test_ogg_via_spool(clip):
    buf = io.BytesIO()
    sf.write(buf, clip.numpy(), 16_000, format="OGG", subtype="VORBIS")
    data = buf.getvalue()
    torch.testing.assert_close(decode_chunks(_chunks(data, 3)), reference(data), rtol=0, atol=1e-5)


def test_max_seconds_stops_early(clip):
    data = encode_wav(torch.cat([clip] * 5))
    dec = StreamDecoder(max_seconds=2.0)
    with pytest.raises(AudioError) as e:
        for c in _chunks(data, 0):
            dec.feed(c)
    assert e.value.code == "too-long"
    flac = io.BytesIO()
    sf.write(flac, torch.cat([clip] * 5).numpy(), 16_000, format="FLAC")
    with pytest.raises(AudioError) as e:
        decode_chunks([flac.getvalue()], max_seconds=2.0)
    assert e.value.code == "too-long"


def _code(chunks) -> str:
    with pytest.raises(AudioError) as e:
        decode_chunks(chunks)
    return e.value.code


def test_empty_input():
    assert _code([]) == "empty-audio"
    assert _code([b""]) == "empty-audio"


def test_random_bytes_are_not_audio():
    rng = np.random.default_rng(0)
    assert _code([rng.bytes(5000)]) == "not-audio"
    assert _code([b"ab"]) == "not-audio"
    assert _code([b"fLaC" + rng.bytes(3000)]) == "not-audio"  # FLAC magic, garbage body


def test_truncated_wav(clip):
    data = encode_wav(clip)
    assert _code(_chunks(data[: len(data) // 2], 0)) == "truncated-audio"
    assert _code([data[:30]]) == "truncated-audio"  # header without a data chunk
    assert _code([data[:8]]) == "not-audio"  # not even a RIFF header


def test_truncated_flac():
    data = clip_path("no", 0).read_bytes()
    assert _code([data[: len(data) // 2]]) in ("truncated-audio", "not-audio")


def test_non_finite_float_wav():
    x = np.zeros(1600, dtype=np.float32)
    x[100] = np.nan
    assert _code([_wav(x, 16_000, "FLOAT")]) == "non-finite-audio"


def test_bad_rate():
    x = np.zeros(1600, dtype=np.float32)
    assert _code([_wav(x, 4_000, "PCM_16")]) == "bad-rate"
    assert _code([_wav(x, 96_000, "PCM_16")]) == "bad-rate"


def test_wav_with_no_samples():
    assert _code([_wav(np.zeros(0, dtype=np.float32), 16_000, "PCM_16")]) == "empty-audio"


def test_whole_file_decode_is_the_stream_decoder(clip):
    cases = {b"": "empty-audio", b"\x00" * 100: "not-audio",
             encode_wav(clip)[:5000]: "truncated-audio"}
    for data, code in cases.items():
        with pytest.raises(AudioError) as whole:
            decode(data)
        assert whole.value.code == _code([data]) == code
    data = encode_wav(clip)
    torch.testing.assert_close(decode(data), decode_chunks(_chunks(data, seed=3)), rtol=0,
                               atol=0)


def test_other_wav_encodings_go_through_libsndfile(clip):
    for subtype in ("ULAW", "ALAW", "IMA_ADPCM"):
        data = _wav(clip.numpy(), 8_000 if subtype == "IMA_ADPCM" else 16_000, subtype)
        got = decode_chunks(_chunks(data, 4))
        torch.testing.assert_close(got, reference(data), rtol=0, atol=1e-6)
