"""The streaming silero-vad that cuts /adapt recordings, and the boundary benchmark's metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _clips import GSC, wave
from tracekws.model.adapt import AdaptSession, NoSpeechError, Segmenter
from tracekws.model.audio import SAMPLE_RATE, load
from tracekws.model.bench import vad as bench
from tracekws.model.frontend import FrontEnd
from tracekws.model.pipeline import KWSModel, ModelConfig
from tracekws.model.vad import HANG, LOUD, THRESHOLD, SileroVAD


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    """A real GSC background-noise window tiled to ``seconds``, unit RMS."""
    clip = load(sorted((GSC / "_silence_").glob("*.flac"))[0]).double().numpy()
    x = bench._tile(clip, int(seconds * SAMPLE_RATE), np.random.default_rng(seed))
    return x / np.sqrt(np.mean(x**2))


def planted(words: list[tuple[str, int, float]], seconds: float = 8.0, snr_db: float = 10.0
            ) -> bench.Recording:
    """Keyword clips (word, index, start second) in noise at ``snr_db``, their extents known."""
    level = bench.REF_SPEECH_RMS
    y = noise(seconds) * level / 10 ** (snr_db / 20)
    utts = []
    for word, i, at in words:
        clip = wave(word, i).double().numpy()
        s, e = bench.speech_extent(torch.from_numpy(clip))
        pos = int(at * SAMPLE_RATE)
        y[pos : pos + len(clip)] += clip * level / bench.active_rms(clip)
        utts.append(bench.Utterance(pos + s, pos + e, word, f"{word}/{i}"))
    return bench.Recording(torch.from_numpy(y).float(), utts, snr_db, "_silence_")


def detect(rec: bench.Recording) -> bench.Windows:
    """AdaptSession's detector on a recording: streaming silero-vad → the segmenter."""
    f = bench.features(rec, FrontEnd(), 40, ["silero"])
    return bench.runner("silero+energy", {"threshold": THRESHOLD, "loud": LOUD, "hang": HANG})(f)


def test_planted_utterances_are_found():
    rec = planted([("yes", 0, 1.5), ("stop", 0, 4.0)])
    m = bench.score([rec], [detect(rec)])
    assert m["hits"] == 2 and m["false_windows"] == 0 and m["misplaced"] == 0


def test_noise_alone_gives_no_window():
    rec = bench.Recording(torch.from_numpy(noise(10.0) * 0.05).float(), [], 0.0, "_silence_")
    assert detect(rec).centres == []


def test_adapt_session_uses_the_vad():
    """Two words in real noise are two utterances; the noise alone is "no speech"."""
    torch.manual_seed(0)
    model = KWSModel(ModelConfig(n_hidden=32))
    rec = planted([("yes", 0, 1.5), ("yes", 1, 4.0)]).wave
    sess = AdaptSession(model.clone(), "yes")
    for i in range(0, rec.numel(), 3000):
        sess.feed(rec[i : i + 3000])
    assert sess.finish().utterances == 2
    sess = AdaptSession(model.clone(), "yes")
    sess.feed(torch.from_numpy(noise(5.0) * 0.02).float())
    with pytest.raises(NoSpeechError):
        sess.finish()


def test_streaming_is_chunk_size_free_and_frame_aligned():
    x = planted([("no", 0, 0.5)], seconds=3.0).wave
    whole = SileroVAD().probabilities(x)
    vad = SileroVAD()
    parts = torch.cat([vad.probabilities(x[i : i + 777]) for i in range(0, x.numel(), 777)])
    assert torch.allclose(whole, parts, atol=1e-5)
    assert len(whole) == FrontEnd()(x).shape[0]  # one decision per front-end frame
    assert vad.tail.numel() < 512  # bounded: under one chunk of audio kept


def test_streams_do_not_share_state():
    a, b = planted([("yes", 0, 0.5)], 2.0).wave, torch.zeros(2 * SAMPLE_RATE)
    alone = SileroVAD().probabilities(a)
    va, vb = SileroVAD(), SileroVAD()
    mixed = []
    for i in range(0, a.numel(), 4000):
        mixed.append(va.probabilities(a[i : i + 4000]))
        vb.probabilities(b[i : i + 4000])
    assert torch.allclose(alone, torch.cat(mixed), atol=1e-6)


def test_metrics_on_a_hand_made_case():
    sr = SAMPLE_RATE
    utts = [bench.Utterance(2 * sr, int(2.6 * sr), "yes", "a"),  # centre 2.3 s
            bench.Utterance(6 * sr, int(6.4 * sr), "no", "b"),  # centre 6.2 s
            bench.Utterance(9 * sr, int(9.5 * sr), "up", "c")]  # centre 9.25 s: missed
    rec = bench.Recording(torch.zeros(12 * sr), utts, 5.0, "_silence_")
    centres = [2.4 * sr,  # hit (100 ms off)
               2.35 * sr,  # a second hit of the same utterance: duplicate
               6.6 * sr,  # overlaps "no" but 400 ms off-centre: misplaced
               4.3 * sr]  # over no utterance: false
    segs = [(1.95 * sr, 2.7 * sr), (2.0 * sr, 2.7 * sr), (6.5 * sr, 6.7 * sr),
            (4.2 * sr, 4.4 * sr)]
    m = bench.score([rec], [bench.Windows(centres, segs, 0.12)])
    assert (m["hits"], m["duplicates"], m["misplaced"], m["false_windows"]) == (1, 1, 1, 1)
    assert m["recall"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["false_per_min"] == pytest.approx(5.0)  # 1 window in 12 s
    assert m["centre_err_ms_median"] == pytest.approx(100.0)
    assert m["start_err_ms_median"] == pytest.approx(50.0)
    assert m["end_err_ms_median"] == pytest.approx(100.0)
    assert m["net"] == pytest.approx((1 - 3) / 3, abs=1e-4)
    assert m["cpu_s_per_audio_s"] == pytest.approx(0.01)
    assert m["recall_by_snr_db"]["5-10"] == pytest.approx(1 / 3, abs=1e-3)


def test_speech_extent_of_a_clean_clip():
    w = wave("yes", 0)
    s, e = bench.speech_extent(w)
    assert 0 <= s < e <= w.numel() and e - s < 0.9 * SAMPLE_RATE
    assert bench.speech_extent(torch.zeros(SAMPLE_RATE)) is None


def test_causal_frame_mapping():
    """Frame i takes the latest block complete with it (block 0 ends at sample 512 = the end
    of frame 0.2 → frame 1 ends at 640): no decision comes from the future."""
    vals = np.array([1.0, 2.0, 3.0])
    got = bench.to_frames(vals, 512, 8)
    ends = np.arange(8) * 160 + 480
    for i, v in enumerate(got):
        k = ends[i] // 512 - 1
        assert v == (0.0 if k < 0 else vals[min(k, 2)])


def test_a_frame_far_above_the_floor_is_speech_whatever_the_vad_says():
    """With decisions, the energy rule only adds frames ``loud`` nats above the floor."""
    energy = torch.cat([torch.zeros(50), torch.full((30,), 7.0), torch.zeros(60)])
    x = bench.frame_index(len(energy))
    never = [False] * len(energy)
    seg = Segmenter(hang=35, loud=5.5)
    assert len(seg.push(energy, x, never)) == 1
    assert Segmenter(hang=35).push(energy, x, never) == []  # loud off: the VAD alone
    assert Segmenter(hang=35, loud=8.0).push(energy, x, never) == []
    with pytest.raises(ValueError):
        Segmenter().push(energy, x, never[:-1])
