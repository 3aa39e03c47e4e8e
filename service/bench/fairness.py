"""Fairness benchmark: does a running /adapt starve /predict?

``python -m tracekws.service.bench.fairness --json`` starts a real uvicorn process on 127.0.0.1 (the
launcher of :mod:`service.bench`) with a temporary data dir and, in one run, measures
/predict latency and throughput

1. idle: ``clients`` concurrent clients send ``requests`` 1 s clips;
2. during adaptation: the same loop while another client streams long recordings to /adapt
   (chunked upload, as fast as the server takes them, one call after another, at most
   ``max_adapts`` calls).

It prints p50/p99/throughput of both phases and the ratios (during / idle). Everything is
bounded: a fixed number of predictions, a fixed number of adaptations, loopback only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import torch
from tracekws.model.audio import encode_wav

from ..process import ServerProcess
from .service import _bench_predict, _clips

AUDIO = {"content-type": "audio/wav"}


def _adapt_loop(url: str, profile: str, wav: bytes, stop: threading.Event,
                started: threading.Event, max_adapts: int, out: dict[str, Any]) -> None:
    """Streamed /adapt calls on one profile, back to back, until ``stop`` (or
    ``max_adapts``)."""

    def chunks():
        for i in range(0, len(wav), 16_384):
            if i == 16_384 * 4:
                started.set()  # the server is decoding and learning by now
            yield wav[i : i + 16_384]

    with httpx.Client(base_url=url, timeout=600) as c:
        for _ in range(max_adapts):
            if stop.is_set():
                break
            t0 = time.perf_counter()
            r = c.post("/adapt", params={"profile": profile, "label": "yes"},
                       content=chunks(), headers=AUDIO)
            out["calls"].append({"status": r.status_code,
                                 "seconds": round(time.perf_counter() - t0, 3)})
            if r.status_code != 201:
                out["error"] = r.text[:500]
                break
    started.set()


def _phase(url: str, payloads: list[bytes], requests: int, clients: int) -> dict[str, Any]:
    r = _bench_predict(url, payloads, requests, clients)
    return {k: r[k] for k in ("requests", "clients", "errors", "throughput_rps", "p50_ms",
                              "p90_ms", "p99_ms", "max_ms", "server_p50_ms", "server_p99_ms")}


def bench_fairness(model_path: str | None = None, requests: int = 300, clients: int = 4,
                   adapt_seconds: int = 30, max_adapts: int = 20, adapt_clients: int = 2,
                   env: dict[str, str] | None = None) -> dict[str, Any]:
    """One server; /predict idle, then /predict while /adapt streams. JSON-ready dict."""
    clips = _clips()
    payloads = [encode_wav(x) for _, x in clips]
    long = encode_wav(torch.cat([clips[k % len(clips)][1] for k in range(adapt_seconds)]))
    env = {"TRACEKWS_TORCH_THREADS": "1", **(env or {})}
    tmp = Path(tempfile.mkdtemp(prefix="tracekws-fair-"))
    try:
        srv = ServerProcess(tmp / "data", model_path, env, access_log=False).start()
        try:
            _bench_predict(srv.url, payloads, min(40, requests), clients)  # warm-up
            with httpx.Client(base_url=srv.url, timeout=120) as c:  # warm the adapt path
                r = c.post("/adapt", params={"profile": "fair", "label": "yes"},
                           content=payloads[0], headers=AUDIO)
                if r.status_code != 201:
                    raise RuntimeError(f"/adapt failed: {r.status_code} {r.text}")
            idle = _phase(srv.url, payloads, requests, clients)
            stop = threading.Event()
            adapt: dict[str, Any] = {"calls": []}
            threads, flags = [], []
            for k in range(adapt_clients):  # one profile each: they run concurrently
                flags.append(threading.Event())
                threads.append(threading.Thread(target=_adapt_loop, args=(
                    srv.url, f"fair{k}", long, stop, flags[-1], max_adapts, adapt)))
                threads[-1].start()
            for f in flags:
                f.wait(120)
            t0 = time.perf_counter()
            busy = _phase(srv.url, payloads, requests, clients)
            window = time.perf_counter() - t0
            stop.set()
            for t in threads:
                t.join(600)
        finally:
            srv.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    done = [c for c in adapt["calls"] if c["status"] == 201]
    return {
        "idle": idle,
        "during_adapt": {**busy, "window_s": round(window, 2)},
        "adapt": {"clients": adapt_clients, "calls": len(adapt["calls"]), "ok": len(done),
                  "audio_seconds_per_call": adapt_seconds,
                  "seconds_per_call": [c["seconds"] for c in adapt["calls"]],
                  **({"error": adapt["error"]} if "error" in adapt else {})},
        "ratio": {"p50": round(busy["p50_ms"] / idle["p50_ms"], 2),
                  "p99": round(busy["p99_ms"] / idle["p99_ms"], 2),
                  "throughput": round(busy["throughput_rps"] / idle["throughput_rps"], 3)},
        "target_p50_ratio": 2.0,
        "server_env": {k: v for k, v in env.items() if k.startswith("TRACEKWS_")},
        "cpus": os.cpu_count(),
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tracekws.service.bench.fairness",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model to serve (default: the shipped one)")
    ap.add_argument("--requests", type=int, default=300, help="/predict calls per phase")
    ap.add_argument("--clients", type=int, default=4, help="concurrent /predict clients")
    ap.add_argument("--adapt-seconds", type=int, default=30, help="audio per /adapt call")
    ap.add_argument("--adapt-clients", type=int, default=2,
                    help="concurrent streamed /adapt clients (one profile each)")
    ap.add_argument("--max-adapts", type=int, default=20,
                    help="at most this many /adapt calls per client")
    ap.add_argument("--env", action="append", default=[], metavar="TRACEKWS_X=V",
                    help="a server setting (repeatable)")
    ap.add_argument("--json", action="store_true", help="print the JSON result only")
    a = ap.parse_args(argv)
    if not (1 <= a.requests <= 5000 and 1 <= a.clients <= 64 and 1 <= a.max_adapts <= 200
            and 1 <= a.adapt_seconds <= 60 and 1 <= a.adapt_clients <= 16):
        ap.error("requests 1-5000, clients 1-64, max-adapts 1-200, adapt-seconds 1-60, "
                 "adapt-clients 1-16")
    env = dict(e.split("=", 1) for e in a.env)
    res = bench_fairness(a.model, a.requests, a.clients, a.adapt_seconds, a.max_adapts,
                         a.adapt_clients, env)
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        i, b = res["idle"], res["during_adapt"]
        print(f"/predict idle:         p50 {i['p50_ms']} ms, p99 {i['p99_ms']} ms, "
              f"{i['throughput_rps']} req/s")
        print(f"/predict during adapt: p50 {b['p50_ms']} ms, p99 {b['p99_ms']} ms, "
              f"{b['throughput_rps']} req/s")
        print(f"ratio p50 {res['ratio']['p50']} (target <= 2), throughput "
              f"{res['ratio']['throughput']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
