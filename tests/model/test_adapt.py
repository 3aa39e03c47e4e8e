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


def test_orthogonal_readout_step_leaves_the_average_utterance_alone():
    """readout_orth: teaching one utterance moves W_out only orthogonally to the replay bank's
    mean spike counts, so the average utterance's logits stay put; the plain step moves them."""
    from tracekws.model.adapt import make

    torch.manual_seed(0)
    m = KWSModel(ModelConfig(n_hidden=32))
    counts = torch.rand(40, 32) * 5 + 1.0  # non-negative, mostly shared, like spike counts
    labels = torch.randint(12, (40,))
    m.replay = (counts, labels)
    mean = counts.mean(0)
    x = m.inputs(wave("yes", 0)[None])
    moved = {}
    for orth in (False, True):
        net = m.clone()
        rule = make(net, "tp", readout_orth=orth, lr_out=1.0)
        before = mean @ net.net.w_out.detach().T
        rule.run(x, torch.tensor([net.labels.index("_unknown_")]))
        moved[orth] = float((mean @ net.net.w_out.detach().T - before).abs().max())
        if orth:
            assert rule.readout.reference is not None
            assert torch.allclose(rule.readout.reference.norm(), torch.tensor(1.0))
    assert moved[True] < 1e-4 < moved[False]


@pytest.mark.parametrize("rule_name", ["tp", "readout", "eprop"])
def test_protected_readout_keeps_a_keyword_from_lowering_unknown_and_silence(rule_name):
    """readout_protect: a keyword's utterance raises its own row and lowers the other
    keywords' rows, but leaves the `_unknown_` and `_silence_` rows as they were; an
    `_unknown_` utterance still moves the `_unknown_` row."""
    from tracekws.model.adapt import make

    torch.manual_seed(0)
    m = KWSModel(ModelConfig(n_hidden=32))
    x = m.inputs(wave("yes", 0)[None])
    neg = [m.labels.index("_unknown_"), m.labels.index("_silence_")]
    yes, no = m.labels.index("yes"), m.labels.index("no")
    for protect in (False, True):
        net = m.clone()
        rule = make(net, rule_name, readout_protect=protect, lr_out=1.0, lr=0.0)
        w0 = net.net.w_out.detach().clone()
        rule.run(x, torch.tensor([yes]))
        dw = (net.net.w_out.detach() - w0).abs().sum(1)
        assert dw[yes] > 0 and dw[no] > 0
        assert (float(dw[neg].max()) == 0.0) == protect
    net = m.clone()
    rule = make(net, rule_name, readout_protect=True, lr_out=1.0, lr=0.0)
    w0 = net.net.w_out.detach().clone()
    rule.run(x, torch.tensor([neg[0]]))
    dw = (net.net.w_out.detach() - w0).abs().sum(1)
    assert dw[neg[0]] > 0 and dw[neg[1]] == 0 and dw[yes] > 0
