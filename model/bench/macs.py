"""Counted work of inference and adaptation, and a Raspberry Pi latency *estimate* from it.

We have no Pi. ``bench_macs`` counts the floating-point work of the real code paths with
``torch.utils.flop_counter.FlopCounterMode`` (matrix products; 1 MAC = 2 FLOP) and turns it
into an estimate with a *stated* sustained single-core throughput per Pi model. The counter
sees torch ops only, so inference is counted on the torch path of the recurrence (the one
used at batch > 4; same maths as the numpy path used at batch ≤ 4) and divided by the batch;
FFTs are added from their textbook cost (5 N log2 N FLOP per real frame of N points / 2).
"""

from __future__ import annotations

import math

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..pipeline import KWSModel

# Assumed sustained float32 throughput of one core on these shapes (GFLOP/s): a 98-step
# recurrence of 450x450 matrix-vector products is memory-bound, far from NEON peak
# (Pi 4 Cortex-A72 1.8 GHz: ~29 GFLOP/s peak; Pi 5 Cortex-A76 2.4 GHz: ~38 GFLOP/s peak).
PI_GFLOPS = {"raspberry-pi-4": 2.0, "raspberry-pi-5": 5.0}
BATCH = 8  # > 4: the torch recurrence, which the counter sees


def _count(fn) -> tuple[int, dict[str, int]]:
    with FlopCounterMode(display=False) as fc:
        fn()
    per_op = {str(k).split(".")[-1]: int(v) for k, v in fc.get_flop_counts()["Global"].items()}
    return int(fc.get_total_flops()), per_op


def fft_flops(model: KWSModel, seconds: float = 1.0) -> int:
    """Textbook cost of the STFT: ~2.5 N log2 N FLOP per real frame of N points."""
    fe = model.config.frontend
    frames = fe.frames(int(seconds * fe.sample_rate))
    return int(frames * 2.5 * fe.n_fft * math.log2(fe.n_fft))


def bench_macs(model: KWSModel | None = None, seconds: float = 1.0) -> dict:
    """Counted FLOP (and MACs) of /predict on one clip and of one TP adaptation pass (SNN;
    the CNN baseline has no adaptation: ``adapt_tp_*`` are None). Convolutions are counted
    by the same counter (a depthwise one as its groups); batch norm and ReLU, like the LIF
    update, are element-wise and not counted."""
    from ..adapt import adapt_inputs

    model = model or KWSModel.load()
    n = int(16_000 * seconds)
    wave = torch.randn(BATCH, n) * 0.1
    model.net.eval()
    total, ops = _count(lambda: model.logits(wave))
    frontend, _ = _count(lambda: model.inputs(wave))
    x = model.inputs(wave[:1])
    fft = fft_flops(model, seconds)
    predict = total / BATCH + fft
    if model.spiking:
        clone = model.clone()
        adapt, adapt_ops = _count(lambda: adapt_inputs(clone, x, torch.tensor([0]), rule="tp"))
    else:  # the CNN baseline classifies only; it has no TP adaptation to count
        adapt, adapt_ops = None, None
    out = {
        "arch": model.config.arch,
        "seconds_of_audio": seconds,
        "predict_flop": round(predict),
        "predict_macs": round(predict / 2),
        "predict_breakdown_flop": {
            "front_end_counted": round(frontend / BATCH),
            "front_end_fft_estimated": fft,
            "network": round((total - frontend) / BATCH),
        },
        "predict_ops": {k: round(v / BATCH) for k, v in ops.items()},
        # + the before/after predictions
        "adapt_tp_flop": None if adapt is None else adapt + round(2 * predict),
        "adapt_tp_ops": adapt_ops,
        "assumed_gflops_per_core": PI_GFLOPS,
        "estimate_ms": {
            pi: {"predict": round(predict / g / 1e6, 1),
                 "adapt_tp": None if adapt is None else round((adapt + 2 * predict) / g / 1e6, 1)}
            for pi, g in PI_GFLOPS.items()},
        "note": "estimate = counted FLOP / assumed throughput; not a measurement on a Pi",
    }
    return out
