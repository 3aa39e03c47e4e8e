"""Streaming adaptation sessions: utterance segmentation, enrolment, no-speech errors."""

import pytest
import torch
from _clips import wave
from tracekws.model.adapt import AdaptSession, NoSpeechError
from tracekws.model.pipeline import KWSModel, ModelConfig


@pytest.fixture(scope="module")
def model() -> KWSModel:
    torch.manual_seed(0)
    return KWSModel(ModelConfig(n_hidden=32))


def test_each_clip_of_a_recording_is_one_utterance(model):
    clips = [wave("yes", i) for i in range(3)]
    gap = torch.zeros(8000)
    rec = torch.cat([torch.cat([c, gap]) for c in clips])
    sess = AdaptSession(model.clone(), "yes")
    for i in range(0, rec.numel(), 1234):  # chunks of any size, as an upload arrives
        sess.feed(rec[i : i + 1234])
    res = sess.finish()
    assert res.utterances == 3 and not res.new_label
    assert 0 <= res.prob_before <= 1 and 0 <= res.prob_after <= 1


def test_unknown_label_enrols_a_new_keyword(model):
    m = model.clone()
    sess = AdaptSession(m, "seven", lr_out=3.0)
    sess.feed(wave("yes", 0))
    res = sess.finish()
    assert res.new_label and m.labels[-1] == "seven" and m.net.w_out.shape[0] == 13
    assert res.prob_after > res.prob_before


@pytest.mark.parametrize("audio", [torch.zeros(16000), torch.zeros(100)])
def test_silence_or_too_short_is_no_speech(model, audio):
    sess = AdaptSession(model.clone(), "yes")
    sess.feed(audio)
    with pytest.raises(NoSpeechError) as e:
        sess.finish()
    assert e.value.code == "no-speech"


def test_memory_is_bounded_for_a_long_recording(model):
    """A 30 s recording keeps at most the segmenter's ring of frames."""
    sess = AdaptSession(model.clone(), "no")
    w = wave("no", 0)
    for _ in range(20):
        sess.feed(torch.cat([w, torch.zeros(8000)]))
    assert len(sess.segmenter.ring) <= sess.segmenter.ring.maxlen
    assert sess.finish().utterances == 20
