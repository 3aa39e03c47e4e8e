"""Words of the user's own (model/words.py): the matching maths and the held-out-word bench."""

import itertools

import numpy as np
import pytest
import torch
from tracekws.model.bench.enrol import bench_enrol_words, build_bank
from tracekws.model.data import scan
from tracekws.model.pipeline import KWSModel
from tracekws.model.words import Recordings, WordConfig, dtw, pack, sequence, speech_span, unpack

DATA = "tests/data/gsc"


def naive_dtw(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook recursion, written apart from the vectorised one it checks."""
    def cos(u, v):
        return 1 - float(u @ v) / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-6)

    n, m = len(a), len(b)
    d = np.full((n + 1, m + 1), np.inf)
    d[0, 0] = 0
    for i, j in itertools.product(range(1, n + 1), range(1, m + 1)):
        d[i, j] = cos(a[i - 1], b[j - 1]) + min(d[i - 1, j], d[i, j - 1], d[i - 1, j - 1])
    return d[n, m] / (n + m)


def test_dtw_matches_the_textbook_recursion_for_references_of_different_lengths():
    rng = np.random.default_rng(0)
    q = rng.random((7, 5)).astype(np.float32)
    refs = [rng.random((m, 5)).astype(np.float32) for m in (3, 9, 7)]
    got = dtw(q, refs)
    want = [naive_dtw(q, r) for r in refs]
    assert np.allclose(got, want, atol=1e-5)


def test_dtw_is_zero_for_a_copy_and_tolerates_a_slower_copy():
    rng = np.random.default_rng(1)
    q = rng.random((6, 4)).astype(np.float32)
    slow = np.repeat(q, 2, axis=0)  # the same word said twice as slowly
    other = rng.random((6, 4)).astype(np.float32)
    d_same, d_slow, d_other = dtw(q, [q, slow, other])
    assert d_same < 1e-5 and d_slow < 1e-5 and d_other > 0.05


def test_packed_bits_round_trip():
    x = (torch.rand(13, 480) > 0.7).float()
    assert torch.equal(unpack(pack(x), 480), x)


def test_speech_span_finds_the_loud_part():
    frames = torch.zeros(100, 120)
    frames[:, :40] = -10.0
    frames[40:60, :40] = 0.0
    cfg = WordConfig(margin=5)
    assert speech_span(frames, cfg) == (35, 65)


def test_sequence_pools_and_pads_short_sounds():
    cfg = WordConfig(smooth=8, hop=4)
    spikes = torch.ones(50, 3)
    assert sequence(spikes, (0, 40), cfg).shape == (9, 3)
    assert sequence(spikes, (10, 12), cfg).shape == (1, 3)  # shorter than one window


def test_recordings_keep_the_newest_and_are_bounded():
    r = Recordings.empty(480)
    for t in (5, 9, 7):
        r = r.add(torch.full((t, 480), float(t % 2)), (0, t), keep=2)
    assert len(r) == 2 and r.span[:, 0].tolist() == [9, 7]
    (x9, s9), (x7, _) = r.inputs(480)
    assert x9.shape == (9, 480) and s9 == (0, 9) and bool(x9.all()) and x7.shape == (7, 480)


def test_bank_excludes_held_out_words_and_spreads_over_words():
    clips = scan(DATA)
    bank = build_bank(clips, 20, exclude=("no", "yes"))
    words = {c.word for c in bank}
    assert len(bank) == 20 and not words & {"no", "yes", "_silence_"} and len(words) >= 10


def test_held_out_word_bench_on_real_clips(small_model_path):
    """Speaker 4c6167ca says "no" four times in tests/data: one enrols, three are queries."""
    m = KWSModel.load(small_model_path)
    res = bench_enrol_words(m, DATA, shots=1, words=("no",), speakers="all", progress=False,
                            val_percent=0, bank_size=10, thresholds=(0.5, 1000.0))
    pair = next(p for p in res["pairs"] if p["speaker"] == "4c6167ca")
    assert pair["n_support"] == 1 and pair["n_query"] == 3 and pair["n_own_other_words"] > 20
    at = pair["at"]
    # a threshold above every possible ratio fires on everything; monotone in the threshold
    assert at["1000"]["detection"] == 1.0 and at["1000"]["false_accepts_own"] == 1.0
    mid = at[f"{WordConfig().threshold:g}"]["detection"]
    assert at["0.5"]["detection"] <= mid <= at["1000"]["detection"]
    assert res["held_out_words"] == ["no"] and res["shots"] == 1


def test_held_out_word_bench_through_the_streaming_detector(shipped_model_path):
    """--stream: two takes of 4c6167ca's "no" enrolled, the other two and their 30 other
    words streamed with gaps; the class "no" of the shipped model is not the enrolled word."""
    m = KWSModel.load(shipped_model_path)
    res = bench_enrol_words(m, DATA, shots=2, words=("no",), speakers="all", progress=False,
                            val_percent=0, bank_size=30, stream=True)
    (pair,) = [p for p in res["pairs"] if p["speaker"] == "4c6167ca"]
    assert pair["n_query"] == 2 and pair["n_own_other_words"] == 30
    s = pair["stream"]
    assert s["detection"] == 1.0 and s["false_accepts_own"] <= 0.1 and s["duplicates"] == 0
    assert s["stream_seconds"] == pytest.approx(32 * 2.0, abs=1.0)
    assert res["stream"]["detection"] == 1.0


def test_held_out_word_bench_refuses_a_backbone_that_knows_the_word(small_model_path):
    from tracekws.model.bench.enrol import holdout_backbone

    with pytest.raises(ValueError, match="trained with"):
        holdout_backbone(DATA, ("no",), path=str(small_model_path))


# ---- the product path: a model file with a word bank, /adapt's session, predict ----------------
def _clip(word: str, utt: int) -> torch.Tensor:
    from tracekws.model.audio import load

    return load(f"{DATA}/{word}/4c6167ca_nohash_{utt}.flac")


@pytest.fixture(scope="module")
def banked(shipped_model_path) -> bytes:
    """The shipped network with a bank of the tests' training-side clips (not speaker
    4c6167ca's "no", which the tests enrol)."""
    from tracekws.model.words import with_bank

    m = KWSModel.load(shipped_model_path)
    m.words = with_bank(m, DATA, size=30, exclude=("no",), val_percent=0)
    return m.to_bytes()


def _enrol(model: KWSModel, word: str, clips: list[torch.Tensor]):
    from tracekws.model.adapt import AdaptSession

    s = AdaptSession(model, word)
    for c in clips:
        s.feed(c)
    return s.finish()


def test_a_new_label_on_a_banked_model_is_enrolled_as_templates_and_detected(banked):
    m = KWSModel.from_bytes(banked)
    labels = list(m.labels)
    res = _enrol(m, "marvin", [_clip("no", u) for u in range(3)])
    assert res.new_label and res.utterances == 3 and res.hyperparameters["enrolment"] == "templates"
    assert m.labels == labels and m.enrolled_words() == ["marvin"]  # no readout class grown
    # the same voice saying it a fourth time is the word; their other words are not
    assert m.predict(_clip("no", 3))[0][0] == "marvin"
    for word in ("yes", "up", "left", "stop", "go"):
        assert m.predict(_clip(word, 0))[0][0] == word
    # the version carries the word, its recordings and threshold through its bytes
    again = KWSModel.from_bytes(m.to_bytes())
    assert again.config.words["words"]["marvin"]["recordings"] == 3
    assert again.predict(_clip("no", 3))[0][0] == "marvin"
    probs = dict(again.predict(_clip("no", 3)))
    assert abs(sum(probs.values()) - 1.0) < 1e-5


def test_a_model_without_a_bank_still_grows_the_readout(small_model_path):
    m = KWSModel.load(small_model_path)
    res = _enrol(m, "marvin", [_clip("no", 0)])
    assert res.new_label and "marvin" in m.labels and m.words is None


def test_the_decision_of_combine_is_word_wins():
    from tracekws.model.words import combine, word_wins

    rng = np.random.default_rng(0)
    for _ in range(200):
        probs = rng.dirichlet(np.ones(4)).tolist()
        r = float(rng.uniform(0.3, 1.3))
        ranked = combine(["a", "b", "c", "d"], probs, {"w": r}, {"w": 0.8}, 0.05)
        assert (ranked[0][0] == "w") == bool(word_wins(r, max(probs), 0.8, 0.05))
        assert abs(sum(p for _, p in ranked) - 1) < 1e-9


def test_the_spotter_follows_a_change_of_the_hidden_weights(banked):
    m = KWSModel.from_bytes(banked)
    _enrol(m, "marvin", [_clip("no", 0)])
    before = m.word_ratios(m.frontend(_clip("no", 1)[None]))[0]["marvin"]
    spotter = m._spotter
    with torch.no_grad():
        m.net.w_rec.mul_(0.5)
    after = m.word_ratios(m.frontend(_clip("no", 1)[None]))[0]["marvin"]
    assert m._spotter is not spotter and after != before


def test_word_defaults_are_the_ones_the_tune_sweep_chose():
    """docs/bench/enrol/sweep.json (scripts/sweep-enrol.py, training speakers of the held-out
    backbone; never the reported ones) chose the cohort, bank size and threshold."""
    import json
    from pathlib import Path

    chosen = json.loads(Path("docs/bench/enrol/sweep.json").read_text())["chosen"]
    cfg = WordConfig()
    assert (cfg.cohort, cfg.threshold) == (chosen["cohort"], chosen["threshold"])
    m = KWSModel.load()
    assert len(m.words.bank) == chosen["bank_size"]
    assert m.words.cfg.threshold == chosen["threshold"] and m.words.cfg.cohort == chosen["cohort"]


# ---- words in the streaming detector (model/detect.py) ----------------------------------------
def test_the_stream_detector_hears_a_word_once_per_utterance_as_predict_would(banked):
    from tracekws.model.detect import Detector

    m = KWSModel.from_bytes(banked)
    _enrol(m, "marvin", [_clip("no", u) for u in range(3)])
    gap = torch.zeros(16_000)
    said = ["no", "yes", "up", "stop"]  # only the first is the enrolled word's fourth take
    parts, ends = [gap], []
    for word in said:
        parts += [_clip(word, 3), gap]
        ends.append(sum(len(p) for p in parts) / 16_000)
    wave = torch.cat(parts)
    det = Detector(m, threshold=1.0)  # no class keyword fires: only words are left
    found = [d for i in range(0, len(wave), 1600) for d in det.feed(wave[i : i + 1600])]
    found += det.flush()
    assert [d.label for d in found] == ["marvin"]
    # heard after the utterance closes (350 ms of non-speech), before the next word starts
    assert ends[0] - 1.0 < found[0].time < ends[0] + 0.2
    assert 0.5 < found[0].probability <= 1.0
    # the same stream with the word switched off; a model without words runs no VAD at all
    off = Detector(m, threshold=1.0, words=())
    assert not [d for i in range(0, len(wave), 1600) for d in off.feed(wave[i : i + 1600])]
    assert off.vad is None and Detector(KWSModel.from_bytes(banked)).vad is None


def test_an_utterance_still_open_at_the_end_is_heard_on_flush(banked):
    from tracekws.model.detect import Detector

    m = KWSModel.from_bytes(banked)
    _enrol(m, "marvin", [_clip("no", u) for u in range(3)])
    det = Detector(m, threshold=1.0)
    assert det.feed(torch.cat([torch.zeros(8000), _clip("no", 3)])) == []
    assert [d.label for d in det.flush()] == ["marvin"]
    assert det.flush() == []
