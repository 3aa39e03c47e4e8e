"""Streaming detector: chunk-size invariant, bounded state, smoothing and suppression."""

import pytest
import torch
from _clips import wave
from tracekws.model.detect import Detector
from tracekws.model.pipeline import KWSModel, ModelConfig


@pytest.fixture(scope="module")
def model() -> KWSModel:
    torch.manual_seed(0)
    return KWSModel(ModelConfig(n_hidden=64))


def _pcm(w: torch.Tensor) -> bytes:
    return (w.clamp(-1, 1) * 32767).to(torch.int16).numpy().tobytes()


@pytest.fixture(scope="module")
def audio() -> bytes:
    return _pcm(torch.cat([wave("yes", 0), wave("_silence_", 0), wave("no", 0)]))


def _rigged(model: KWSModel, label: str) -> KWSModel:
    """A model whose readout votes for ``label`` whenever hidden neurons spike."""
    m = model.clone()
    with torch.no_grad():
        m.net.w_out.zero_()
        m.net.w_out[m.labels.index(label)] = 1.0
    return m


def test_chunked_equals_whole(model, audio):
    whole = Detector(model, threshold=0.05).feed(audio)
    for size in (333, 1601, 8000):  # odd sizes split samples across messages
        d = Detector(model, threshold=0.05)
        got = []
        for i in range(0, len(audio), size):
            got += d.feed(audio[i : i + size])
        assert got == whole


def test_detects_and_suppresses(model, audio):
    m = _rigged(model, "yes")
    d = Detector(m, threshold=0.5, refractory=1.0)
    dets = d.feed(audio)
    assert dets and {x.label for x in dets} == {"yes"}
    times = [x.time for x in dets]
    assert all(b - a >= 1.0 - 1e-6 for a, b in zip(times, times[1:], strict=False))
    assert all(0 < t <= len(audio) / 2 / 16_000 + 0.03 for t in times)
    assert all(0.5 < x.probability <= 1.0 for x in dets)


def test_never_reports_unknown_or_silence(model, audio):
    for label in ("_unknown_", "_silence_"):
        assert Detector(_rigged(model, label), threshold=0.3).feed(audio) == []


def test_threshold_one_reports_nothing(model, audio):
    assert Detector(model, threshold=1.0).feed(audio) == []


def test_state_is_bounded(model):
    d = Detector(model)
    noise = _pcm(torch.randn(16_000) * 0.05)
    d.feed(noise)
    size = d.state_bytes()
    for _ in range(5):
        d.feed(noise)
    assert d.state_bytes() == size
    assert d.currents.shape[0] == d.config.window


def test_window_matches_clip_readout(model):
    """With a window as long as the stream, the logits equal the clip readout."""
    w = wave("go", 0)
    d = Detector(model, window=200)
    d.feed(w)
    torch.testing.assert_close(d._logits(), model.logits(w), rtol=1e-4, atol=1e-4)


def test_reset_restarts_time(model, audio):
    d = Detector(_rigged(model, "no"), threshold=0.5)
    first = d.feed(audio)
    d.reset()
    assert d.feed(audio) == first


def test_float_input_and_bad_config(model):
    assert Detector(model).feed(torch.zeros(800)) == []
    with pytest.raises(ValueError):
        Detector(model, threshold=2.0)
