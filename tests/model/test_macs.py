"""The counted work of the Pi estimate matches the network's sizes."""

import torch
from tracekws.model.bench.macs import PI_GFLOPS, bench_macs
from tracekws.model.pipeline import KWSModel


def test_counted_network_work_matches_the_sizes(small_model_path):
    m = KWSModel.load(small_model_path)
    n_in, h, c = m.net.sizes
    res = bench_macs(m)
    t = m.inputs(torch.zeros(16_000)).shape[1]  # frames of a 1 s clip
    assert res["predict_ops"]["addmm"] == 2 * t * h * h  # the recurrence, frame by frame
    network = 2 * t * n_in * h + 2 * t * h * h + 2 * h * c  # input, recurrent, readout
    assert res["predict_breakdown_flop"]["network"] == network
    assert res["predict_macs"] * 2 == res["predict_flop"] > network
    assert res["adapt_tp_flop"] > res["predict_flop"]
    for pi, g in PI_GFLOPS.items():
        assert abs(res["estimate_ms"][pi]["predict"] - res["predict_flop"] / g / 1e6) < 0.1
