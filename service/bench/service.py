"""``tracekws bench service``: the service measured over loopback against a real uvicorn
process (what a client on the same box sees).

- /predict: ``clients`` concurrent clients (threads, one keep-alive httpx connection each)
  send ``requests`` real 1 s Speech Commands clips; throughput and client-side p50/p99.
- /adapt: milliseconds per 1 s clip (sequential, one clip per call).
- memory (optional): peak RSS of a fresh server process during a streamed 1 s and a
  streamed ~60 s /adapt upload (the TP session keeps nothing per frame, so they match).
"""

from __future__ import annotations

import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import torch
from tracekws.model.audio import SAMPLE_RATE, encode_wav, load
from tracekws.model.pipeline import KEYWORDS

from ..process import ServerProcess

ROOT = Path(__file__).resolve().parents[2]  # the checkout (tests/data/gsc: real clips)
CLIPS = ROOT / "tests" / "data" / "gsc"


def _clips() -> list[tuple[str, torch.Tensor]]:
    """Real 1 s GSC clips (CC BY 4.0, tests/data/gsc); noise bursts if they are absent."""
    out = []
    for w in KEYWORDS:
        for p in sorted((CLIPS / w).glob("*.flac")):
            x = load(p)
            x = torch.nn.functional.pad(x, (0, max(0, SAMPLE_RATE - x.numel())))[:SAMPLE_RATE]
            out.append((w, x))
    if not out:
        g = torch.Generator().manual_seed(0)
        out = [(w, torch.randn(SAMPLE_RATE, generator=g) * 0.05) for w in KEYWORDS]
    return out


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def _bench_predict(url: str, payloads: list[bytes], requests: int, clients: int
                   ) -> dict[str, Any]:
    lat: list[float] = []
    server: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(requests))
    barrier = threading.Barrier(clients)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=60) as c:
            c.get("/healthz")  # open the connection before the clock starts
            barrier.wait()
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                body = payloads[rng.randrange(len(payloads))]
                t0 = time.perf_counter()
                r = c.post("/predict", content=body, headers={"content-type": "audio/wav"})
                dt = (time.perf_counter() - t0) * 1000
                with lock:
                    if r.status_code == 200:
                        lat.append(dt)
                        server.append(r.json()["latency_ms"])
                    else:
                        errors[0] += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {
        "requests": requests, "clients": clients, "errors": errors[0],
        "throughput_rps": round(len(lat) / wall, 1),
        "p50_ms": round(_pct(lat, 50), 2), "p90_ms": round(_pct(lat, 90), 2),
        "p99_ms": round(_pct(lat, 99), 2), "max_ms": round(max(lat), 2),
        "mean_ms": round(statistics.fmean(lat), 2),
        "server_p50_ms": round(_pct(server, 50), 2), "server_p99_ms": round(_pct(server, 99), 2),
    }


def _bench_adapt(url: str, clips: list[tuple[str, torch.Tensor]], n: int) -> dict[str, Any]:
    times, last = [], {}
    with httpx.Client(base_url=url, timeout=120) as c:
        for k in range(n + 1):
            w, x = clips[(k * 7) % len(clips)]
            t0 = time.perf_counter()
            r = c.post("/adapt", params={"profile": "bench", "label": w},
                       content=encode_wav(x), headers={"content-type": "audio/wav"})
            dt = (time.perf_counter() - t0) * 1000
            if r.status_code != 201:
                raise RuntimeError(f"/adapt failed: {r.status_code} {r.text}")
            last = r.json()
            if k:  # the first call creates the profile and warms the rule
                times.append(dt)
    return {"clips": n, "clip_seconds": 1.0, "ms_per_clip_median": round(_pct(times, 50), 1),
            "ms_per_clip_mean": round(statistics.fmean(times), 1),
            "ms_per_clip_max": round(max(times), 1), "rule": last.get("rule"),
            "hyperparameters": last.get("hyperparameters")}


def _bench_memory(tmp: Path, model_path: str | None, clips, env) -> dict[str, Any]:
    """Peak RSS of a fresh server over one streamed /adapt upload of 1 s and of ~60 s."""
    out: dict[str, Any] = {}
    for seconds in (1, 59):
        wave = torch.cat([clips[k % len(clips)][1] for k in range(seconds)])
        data = encode_wav(wave)
        srv = ServerProcess(tmp / f"mem{seconds}" / "data", model_path, env,
                            access_log=False).start()
        try:
            with httpx.Client(base_url=srv.url, timeout=300) as c:
                c.post("/predict", content=encode_wav(clips[0][1]))
                base = srv.peak_rss()

                def chunks(data=data):
                    for i in range(0, len(data), 16_384):
                        yield data[i : i + 16_384]

                r = c.post("/adapt", params={"profile": "mem", "label": "yes"},
                           content=chunks(), headers={"content-type": "audio/wav"})
                if r.status_code != 201:
                    raise RuntimeError(f"/adapt failed: {r.status_code} {r.text}")
                peak = srv.peak_rss()
        finally:
            srv.stop()
        out[f"{seconds}s"] = {"peak_rss_bytes": peak, "growth_bytes": peak - base,
                              "utterances": r.json()["utterances"]}
    one, long = out["1s"]["peak_rss_bytes"], out["59s"]["peak_rss_bytes"]
    out["peak_ratio_59s_vs_1s"] = round(long / one, 4)
    return out


def bench_service(model_path: str | None = None, requests: int = 400, clients: int = 8,
                  adapt_clips: int = 10, memory: bool = True, compute_threads: int = 0,
                  env: dict[str, str] | None = None) -> dict[str, Any]:
    """Start a uvicorn process on 127.0.0.1 with a temporary data dir and measure it.

    ``model_path``: the model to serve (default: the shipped one). ``compute_threads``:
    the server's concurrent torch jobs (0: its default, the number of cores). ``env``:
    extra TRACEKWS_* settings for the server. Returns a JSON-ready dict.
    """
    clips = _clips()
    payloads = [encode_wav(x) for _, x in clips]
    env = {"TRACEKWS_TORCH_THREADS": "1", **(env or {})}
    if compute_threads:
        env["TRACEKWS_COMPUTE_THREADS"] = str(compute_threads)
    tmp = Path(tempfile.mkdtemp(prefix="tracekws-bench-"))
    try:
        srv = ServerProcess(tmp / "main" / "data", model_path, env, access_log=False).start()
        try:
            ready = httpx.get(srv.url + "/readyz").json()
            _bench_predict(srv.url, payloads, min(40, requests), clients)  # warm-up
            predict = _bench_predict(srv.url, payloads, requests, clients)
            adapt = _bench_adapt(srv.url, clips, adapt_clips)
        finally:
            srv.stop()
        mem = _bench_memory(tmp, model_path, clips, env) if memory else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    from tracekws.model.pipeline import PRETRAINED, KWSModel

    from ..settings import Settings

    m = KWSModel.load(model_path or PRETRAINED)
    res: dict[str, Any] = {
        "predict": predict,
        "adapt": adapt,
        "model": {"sha256": ready["model_sha256"], "hidden": m.config.n_hidden,
                  "encoder": m.config.encoder.kind, "labels": len(m.labels)},
        "server": {"workers": 1, "compute_threads": compute_threads or Settings(
                       data_dir=tmp).predict_pool_threads,
                   "torch_threads": int(env["TRACEKWS_TORCH_THREADS"])},
        "clip_source": "tests/data/gsc (Speech Commands, CC BY 4.0)" if CLIPS.is_dir()
        else "synthetic noise",
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if mem is not None:
        res["adapt_memory"] = mem
    return res


if __name__ == "__main__":  # pragma: no cover - manual runs
    import json

    print(json.dumps(bench_service(*(sys.argv[1:2] or [None])), indent=2))
