"""Meta-training (model/meta.py): episodes of TP adaptation on training speakers move the
starting weights and the two TP rates, and write a loadable model with its log."""

import json
import math

import torch
from tracekws.model.meta import MetaConfig, meta_train
from tracekws.model.pipeline import KWSModel, ModelConfig

DATA = "tests/data/gsc"


def test_meta_training_moves_weights_and_rates_and_writes_the_model(tmp_path):
    torch.manual_seed(0)
    start = KWSModel(ModelConfig(n_hidden=32))
    start.save(tmp_path / "start")
    # val_percent 0: the test folder's speakers all count as training speakers here
    cfg = MetaConfig(data=DATA, out=str(tmp_path / "meta"),
                     model=str(tmp_path / "start.safetensors"), episodes=3, eval_every=3,
                     val_percent=0, room_prob=0.5, lr=1e-3, hidden_rate=1e-4, readout_rate=0.1)
    summary = meta_train(cfg, progress=False)
    out = KWSModel.load(summary["model"])
    log = json.loads((tmp_path / "meta-meta.json").read_text())
    assert log["history"][-1]["episode"] == 3 and log["config"]["episodes"] == 3
    assert not torch.equal(out.net.w_in, start.net.w_in)
    assert not torch.equal(out.net.w_out, start.net.w_out)
    rates = log["history"][-1]
    assert not math.isclose(rates["hidden_rate"], 1e-4, rel_tol=1e-6)
    assert not math.isclose(rates["readout_rate"], 0.1, rel_tol=1e-6)
    assert out.labels == start.labels
