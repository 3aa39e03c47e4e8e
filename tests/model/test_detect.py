"""Streaming detector: chunk-size invariant, bounded state, smoothing and suppression; the
per-keyword settings (checked, carried by a model file) and their precedence."""

import pytest
import torch
from _clips import wave
from tracekws.model.detect import (
    Detector,
    DetectorConfig,
    DetectorSettings,
    DetectorSettingsError,
    detector_config,
)
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


# ---- per-keyword thresholds and refractory time: the settings, and where they come from ----
KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def test_settings_are_checked_field_by_field():
    ok = DetectorSettings.parse({"thresholds": {"yes": 1, "no": 0.25}, "refractory": 0},
                                KEYWORDS)
    assert ok == DetectorSettings({"yes": 1.0, "no": 0.25}, 0.0)
    assert ok.to_dict() == {"thresholds": {"yes": 1.0, "no": 0.25}, "refractory": 0.0}
    assert DetectorSettings.parse({"refractory": 2}, KEYWORDS).thresholds is None
    with pytest.raises(DetectorSettingsError) as e:
        DetectorSettings.parse({"thresholds": {"yes": 0, "no": 1.01, "up": True, "down": "0.5",
                                               "left": float("nan"), "lights": 0.5,
                                               "_unknown_": 0.5},
                                "refractory": 11, "threshold": 0.5}, KEYWORDS)
    locs = {loc: msg for loc, msg in e.value.errors}
    assert set(locs) == {("thresholds", w) for w in ("yes", "no", "up", "down", "left",
                                                     "lights", "_unknown_")} | {
        ("refractory",), ("threshold",)}
    assert "not a keyword" in locs[("thresholds", "_unknown_")]
    assert "not one of the keywords" in locs[("thresholds", "lights")]
    for bad in ({}, [], {"thresholds": [0.5]}, {"refractory": None}):
        with pytest.raises(DetectorSettingsError):
            DetectorSettings.parse(bad, KEYWORDS)
    # a model's entry may record how it was calibrated; a version's settings may not
    entry = {"thresholds": {"yes": 0.9}, "command": "tracekws bench stream ..."}
    assert DetectorSettings.parse(entry, KEYWORDS, extra_ok=True).thresholds == {"yes": 0.9}
    with pytest.raises(DetectorSettingsError):
        DetectorSettings.parse(entry, KEYWORDS)


def test_a_decomposed_label_is_the_stored_one():
    assert DetectorSettings.parse({"thresholds": {"cafe\u0301": 0.5}}, ["caf\u00e9"]
                                  ).thresholds == {"caf\u00e9": 0.5}


def _with_entry(model: KWSModel, tmp_path, entry: dict) -> KWSModel:
    """``model`` saved with ``entry`` as its config's detector entry, and loaded again."""
    m = model.clone()
    m.config.detector = entry
    m.save(tmp_path / "m")
    return KWSModel.load(tmp_path / "m.safetensors")


def test_the_model_file_carries_its_settings(model, tmp_path):
    assert model.config.detector == {} and DetectorSettings.of_model(model) is None
    assert b"detector" not in model.to_bytes()  # a model without them keeps its bytes
    m = _with_entry(model, tmp_path, {"thresholds": {"yes": 0.8}, "refractory": 2.0,
                                      "target_fa_per_hour": 0.5})
    assert DetectorSettings.of_model(m) == DetectorSettings({"yes": 0.8}, 2.0)
    assert '"detector"' in (tmp_path / "m.json").read_text()
    bad = _with_entry(model, tmp_path, {"thresholds": {"yes": 5}})
    with pytest.raises(ValueError, match="detector entry"):
        DetectorSettings.of_model(bad)


def test_precedence_version_over_model_over_defaults(model, tmp_path):
    defaults = DetectorConfig(threshold=0.4, refractory=1.5)
    plain = detector_config(model, None, defaults)
    assert plain.config == defaults
    assert plain.sources == {"thresholds": "default", "refractory": "default"}
    m = _with_entry(model, tmp_path, {"thresholds": {"yes": 0.8, "no": 0.7}, "refractory": 2.0})
    c = detector_config(m, None, defaults)
    assert (c.config.thresholds, c.config.refractory, c.config.threshold) == (
        {"yes": 0.8, "no": 0.7}, 2.0, 0.4)
    assert c.sources == {"thresholds": "model", "refractory": "model"}
    # a version's own part replaces the model's part (the whole mapping), part by part
    c = detector_config(m, {"thresholds": {"go": 0.9}}, defaults)
    assert (c.config.thresholds, c.config.refractory) == ({"go": 0.9}, 2.0)
    assert c.sources == {"thresholds": "version", "refractory": "model"}
    assert c.public(m.labels)["thresholds"] == {k: 0.9 if k == "go" else 0.4 for k in KEYWORDS}
    # a connection's threshold is for every keyword; its refractory replaces the rest
    c = detector_config(m, {"thresholds": {"go": 0.9}}, defaults, threshold=0.6, refractory=0.5)
    assert (c.config.thresholds, c.config.threshold, c.config.refractory) == ({}, 0.6, 0.5)
    assert c.sources == {"thresholds": "request", "refractory": "request"}


def test_a_keyword_threshold_of_one_silences_only_that_keyword(model, audio):
    m = _rigged(model, "yes")
    choice = detector_config(m, {"thresholds": {"yes": 1.0}}, DetectorConfig())
    assert Detector(m, choice.config).feed(audio) == []
    choice = detector_config(m, {"thresholds": {"no": 1.0}}, DetectorConfig())
    assert {d.label for d in Detector(m, choice.config).feed(audio)} == {"yes"}


def test_a_keyword_re_arms_only_after_its_posterior_falls():
    """Refractory time alone re-fires on a posterior that stays high (one long utterance);
    the trigger waits until the posterior has dropped to the threshold, then fires again."""
    import numpy as np
    from tracekws.model.detect import Trigger

    post = np.array([[0.2], [0.9], [0.9], [0.9], [0.9], [0.9], [0.4], [0.8], [0.3]])
    assert [f for f, _, _ in Trigger(np.array([0.5]), 2)(post, 1)] == [2, 8]
    # the refractory time still counts when the posterior falls and rises at once
    assert [f for f, _, _ in Trigger(np.array([0.5]), 7)(post, 1)] == [2]
    # chunk by chunk equals all at once, with the re-arm point in a later chunk
    rng = np.random.default_rng(0)
    many = rng.uniform(0, 1, (400, 3)) ** 0.3
    whole = Trigger(np.array([0.6, 0.7, 0.8]), 5)(many, 1)
    for size in (1, 7, 64):
        t, got = Trigger(np.array([0.6, 0.7, 0.8]), 5), []
        for i in range(0, len(many), size):
            got += t(many[i : i + size], i + 1)
        assert got == whole and len(got) > 10


def test_a_real_clip_fires_once_even_with_a_short_refractory_time(shipped_model_path):
    """Each test keyword clip in 1 s of silence either side; with only 0.5 s of refractory
    time the old trigger fired twice on every one of them (scripts/double-firing.py)."""
    m = KWSModel.load(shipped_model_path)
    pad = torch.zeros(16_000)
    for word in ("yes", "on", "off", "go"):
        dets = Detector(m, refractory=0.5).feed(torch.cat([pad, wave(word, 0), pad, pad]))
        assert [d.label for d in dets] == [word]
