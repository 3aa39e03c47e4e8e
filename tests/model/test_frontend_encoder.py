"""Streaming front end and spike encoder: chunked input gives the same result as whole."""

import random

import pytest
import torch
from _clips import wave
from tracekws.model.encoder import EncoderConfig, encode, init_state
from tracekws.model.frontend import FrontEnd


@pytest.fixture
def clip_wave() -> torch.Tensor:
    return wave("yes", 0)


def _chunks(n: int, seed: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < n:
        k = rng.choice([1, 7, 160, 333, 480, 1000, 2500])
        out.append((i, min(n, i + k)))
        i += k
    return out


def test_frontend_chunked_equals_whole(clip_wave):
    fe = FrontEnd()
    whole = fe(clip_wave)
    assert whole.shape == (1 + (clip_wave.numel() - 480) // 160, 120)
    for seed in range(3):
        st, parts = fe.init_state(), []
        for a, b in _chunks(clip_wave.numel(), seed):
            f, st = fe.step(clip_wave[a:b], st)
            parts.append(f)
        torch.testing.assert_close(torch.cat(parts, 1)[0], whole, rtol=1e-4, atol=1e-4)


def test_frontend_deltas_are_causal(clip_wave):
    """A frame never depends on samples after it: truncating the clip keeps earlier frames."""
    fe = FrontEnd()
    whole, part = fe(clip_wave), fe(clip_wave[:8000])
    torch.testing.assert_close(part, whole[: part.shape[0]], rtol=1e-4, atol=1e-4)


def test_encoder_chunked_equals_whole():
    x = torch.randn(2, 200, 120)
    cfg = EncoderConfig()
    whole, _ = encode(x, init_state(), cfg)
    st, parts = init_state(), []
    for a, b in [(0, 1), (1, 50), (50, 51), (51, 200)]:
        s, st = encode(x[:, a:b], st, cfg)
        parts.append(s)
    assert torch.equal(torch.cat(parts, 1), whole)


def test_encoder_numpy_path_equals_torch_path():
    """A few clips run the modulator in numpy, a batch in torch: bit-identical spikes and
    residual, whole and chunked (the residual crosses from one path's chunk to the next)."""
    x = torch.randn(6, 150, 40) * 2
    cfg = EncoderConfig()
    batch, st_b = encode(x, init_state(), cfg)  # 6 clips: torch
    for i in range(6):
        one, st_1 = encode(x[i:i + 1], init_state(), cfg)  # 1 clip: numpy
        assert torch.equal(one[0], batch[i]) and torch.equal(st_1.u[0], st_b.u[i])
    head, st = encode(x[:2, :70], init_state(), cfg)
    tail, _ = encode(x[:2, 70:], st, cfg)
    assert torch.equal(torch.cat([head, tail], 1), batch[:2])


def test_encoder_outputs_binary_spikes_that_track_the_input():
    cfg = EncoderConfig(threshold=0.5, levels=2)
    x = torch.full((1, 400, 3), 0.3)
    x[..., 1] = -0.7
    x[..., 2] = 0.0
    s, _ = encode(x, init_state(), cfg)
    assert s.shape == (1, 400, cfg.n_outputs(3))
    assert set(s.unique().tolist()) <= {0.0, 1.0}
    # decode: (ON count − OFF count) · θ, averaged over time ≈ the input (sigma-delta)
    on, off = s[0, :, :6].reshape(400, 3, 2), s[0, :, 6:].reshape(400, 3, 2)
    decoded = (on.sum(2) - off.sum(2)).mean(0) * cfg.threshold
    torch.testing.assert_close(decoded, torch.tensor([0.3, -0.7, 0.0]), atol=0.01, rtol=0)


def test_analog_path_passes_features_through():
    x = torch.randn(1, 10, 120)
    out, _ = encode(x, init_state(), EncoderConfig(kind="analog"))
    assert torch.equal(out, x)


def test_level_encoder_quantises_each_frame_without_memory():
    cfg = EncoderConfig(kind="level", threshold=0.5, levels=4)
    x = torch.tensor([[[0.0, 0.3, -0.8, 5.0]]])
    s, st = encode(x, init_state(), cfg)
    on, off = s[0, 0, :16].reshape(4, 4), s[0, 0, 16:].reshape(4, 4)
    assert (on.sum(1) - off.sum(1)).tolist() == [0.0, 1.0, -2.0, 4.0]  # round(x/θ), clipped
    again, _ = encode(x, st, cfg)
    assert torch.equal(again, s)
