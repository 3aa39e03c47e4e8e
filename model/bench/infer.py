"""Inference benchmark: median milliseconds per 1 s clip and real-time factor."""

from __future__ import annotations

import platform
import statistics
import time

import torch

from ..pipeline import KWSModel


def bench_infer(model: KWSModel, repeats: int = 50, threads: int = 1, seconds: float = 1.0) -> dict:
    """Time the whole data path (front end, encoder, network, readout) on real-length audio:
    the SNN, or the CNN baseline when the model file says so (one path, ``model.logits``)."""
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    wave = torch.randn(int(16_000 * seconds), generator=gen) * 0.05
    for _ in range(5):
        model.logits(wave)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.logits(wave)
        times.append((time.perf_counter() - t0) * 1000)
    med = statistics.median(times)
    return {
        "ms_per_clip_median": round(med, 3),
        "ms_per_clip_p90": round(sorted(times)[int(0.9 * len(times)) - 1], 3),
        "clip_seconds": seconds,
        "real_time_factor": round(med / 1000 / seconds, 5),
        "threads": threads,
        "repeats": repeats,
        "arch": model.config.arch,
        "parameters": sum(p.numel() for p in model.net.parameters()),
        "encoder": model.config.encoder.kind,
        "hidden": model.config.n_hidden if model.spiking else None,
        "torch": torch.__version__,
        "machine": platform.machine(),
    }
