"""The DS-CNN baseline goes through the SNN's commands unchanged: trained by `train --arch
dscnn`, saved and loaded from the model file's config, evaluated, timed and counted; and the
data-size option picks nested, deterministic subsets of the training speakers."""

import json

import torch
from _clips import GSC, wave
from tracekws.model.cnn import DSCNN
from tracekws.model.data import scan, split
from tracekws.model.encoder import EncoderConfig
from tracekws.model.pipeline import KWSModel, ModelConfig
from tracekws.model.train import speaker_subset

from tracekws.cli import main


def _cnn_model() -> KWSModel:
    torch.manual_seed(0)
    m = KWSModel(ModelConfig(arch="dscnn", encoder=EncoderConfig("analog")))
    m.mean, m.std = torch.randn(120), torch.rand(120) + 0.5
    return m


def test_dscnn_is_the_size_of_ds_cnn_s_and_round_trips(tmp_path):
    m = _cnn_model()
    assert isinstance(m.net, DSCNN) and not m.spiking
    assert 20_000 <= m.net.parameter_count() <= 40_000  # Hello Edge's DS-CNN-S: 38.6k
    m.save(tmp_path / "cnn")
    cfg = json.loads((tmp_path / "cnn.json").read_text())
    assert cfg["arch"] == "dscnn" and cfg["cnn"]["channels"] == 64
    m2 = KWSModel.load(tmp_path / "cnn.safetensors")
    w = wave("go", 0)
    assert torch.equal(m.logits(w), m2.logits(w)) and m2.logits(w).shape == (12,)


def test_snn_config_keeps_its_bytes():
    """An SNN's config carries no arch key, so existing model files keep their sha256."""
    assert "arch" not in json.loads(ModelConfig().to_json())
    assert KWSModel(ModelConfig(n_hidden=8)).spiking


def test_cli_train_evaluate_and_bench_a_dscnn(tmp_path, capsys):
    out = tmp_path / "cnn"
    assert main(["train", "--arch", "dscnn", "--data", str(GSC), "--out", str(out),
                 "--epochs", "1", "--batch", "8", "--val-percent", "10", "--threads", "1",
                 "--limit-steps", "2", "--quiet"]) == 0
    capsys.readouterr()
    model = str(out.with_suffix(".safetensors"))
    assert KWSModel.load(model).config.arch == "dscnn"
    assert main(["evaluate", "--data", str(GSC), "--model", model, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["arch"] == "dscnn" and res["tp_readiness"] is None
    assert sum(map(sum, res["confusion"])) == res["n"] > 0
    assert main(["bench", "infer", "--json", "--repeats", "3", "--model", model]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["arch"] == "dscnn" and res["real_time_factor"] > 0 and res["hidden"] is None
    assert main(["bench", "macs", "--json", "--model", model]) == 0
    res = json.loads(capsys.readouterr().out)
    # a 1 s clip: 50×20 positions after the stride-2 first convolution (98 frames × 40 bands)
    net = KWSModel.load(model).net
    first = 50 * 20 * 64 * 3 * 10 * 4
    blocks = 4 * 50 * 20 * 64 * (9 + 64)
    assert res["predict_ops"]["convolution"] == 2 * (first + blocks)
    assert res["adapt_tp_flop"] is None and net.parameter_count() > 0


def test_train_fraction_takes_nested_speaker_subsets():
    clips = split(scan(GSC), "train", 10)
    speakers = {c.speaker for c in clips}
    quarter, half = speaker_subset(clips, 0.25), speaker_subset(clips, 0.5)
    q, h = {c.speaker for c in quarter}, {c.speaker for c in half}
    assert q < h < speakers
    assert len(h) == round(0.5 * len(speakers))
    assert all(c in half for c in quarter)  # whole speakers, nested
    assert speaker_subset(clips, 0.5) == half  # deterministic
    assert speaker_subset(clips, 1.0) == clips
