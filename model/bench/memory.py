"""Peak memory and cost of adapting on S seconds of streamed audio (one utterance).

Each (rule, S) runs in a fresh Python process. Just before adapting, the kernel's RSS
high-water mark is reset (``/proc/self/clear_refs``), so peak_bytes = VmHWM after the
adaptation − VmRSS before it: the memory the adaptation itself needed, not what loading
torch and the model needed. Audio is
generated and fed in 100 ms chunks, the way /adapt receives it, so the audio itself is never
held whole.
"""

from __future__ import annotations

import ctypes
import statistics
import time

import torch

from ..adapt import make
from ..pipeline import KWSModel


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _rss_bytes() -> int:
    return _status_kib("VmRSS") * 1024


def _reset_peak() -> None:
    """Give freed heap back to the OS, then reset the RSS high-water mark (Linux ≥ 4.0),
    so every measurement starts from the same allocator state."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_bytes() -> int:
    return _status_kib("VmHWM") * 1024


def measure_one(model_path: str | None, rule: str, seconds: float) -> dict:
    """Adapt on ``seconds`` of audio in this process; return peak bytes and timings."""
    torch.set_num_threads(1)
    model = KWSModel.load(model_path)
    gen = torch.Generator().manual_seed(0)
    one = torch.randn(16_000, generator=gen) * 0.05
    model.logits(one)  # warm the inference path
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        model.logits(one)
        times.append(time.perf_counter() - t0)
    infer_ms = statistics.median(times) * 1000
    r = make(model, rule)
    stream = model.init_stream()
    _reset_peak()
    base = _rss_bytes()
    t0 = time.perf_counter()
    r.begin(torch.tensor([0]))
    for _ in range(int(seconds * 10)):
        x, stream = model.stream_inputs(torch.randn(1600, generator=gen) * 0.05, stream)
        for t in range(x.shape[1]):
            r.step(x[:, t])
    r.end()
    elapsed = time.perf_counter() - t0
    return {"peak_bytes": max(0, _peak_bytes() - base), "seconds": seconds,
            "ms_per_second_of_audio": elapsed * 1000 / seconds,
            "inference_ms_per_second_of_audio": infer_ms}


def bench_memory(model: KWSModel | None, rule: str, seconds: list[str],
                 model_path: str | None = None) -> dict:
    """Run :func:`measure_one` for each duration in a fresh process (a peak is only clean in a
    process that has not yet held anything bigger); JSON-ready summary."""
    import multiprocessing

    peaks, last = {}, {}
    ctx = multiprocessing.get_context("spawn")
    for s in seconds:
        with ctx.Pool(1, maxtasksperchild=1) as pool:
            last = pool.apply(measure_one, (model_path, rule, float(s)))
        peaks[s] = last["peak_bytes"]
    return {
        "rule": rule,
        "peak_bytes": peaks,
        "ms_per_second_of_audio": round(last["ms_per_second_of_audio"], 2),
        "inference_ms_per_second_of_audio": round(last["inference_ms_per_second_of_audio"], 2),
        "cost_vs_inference": round(last["ms_per_second_of_audio"]
                                   / last["inference_ms_per_second_of_audio"], 2),
        "threads": 1,
    }
