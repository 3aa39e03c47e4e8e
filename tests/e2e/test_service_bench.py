"""`bench service` runs against a real uvicorn process and reports what the README quotes."""

from tracekws.service.bench.fairness import bench_fairness
from tracekws.service.bench.service import bench_service


def test_bench_service_smoke(small_model_path):
    res = bench_service(str(small_model_path), requests=24, clients=8, adapt_clips=2,
                        memory=False, compute_threads=2)
    p = res["predict"]
    assert p["errors"] == 0 and p["requests"] == 24 and p["clients"] == 8
    assert 0 < p["p50_ms"] <= p["p99_ms"] and p["throughput_rps"] > 0
    assert res["adapt"]["clips"] == 2 and res["adapt"]["ms_per_clip_median"] > 0
    assert res["model"]["hidden"] == 64 and res["clip_source"].startswith("tests/data/gsc")


def test_bench_fairness_smoke(small_model_path):
    res = bench_fairness(str(small_model_path), requests=16, clients=2, adapt_seconds=4,
                         max_adapts=2, adapt_clients=1)
    for phase in ("idle", "during_adapt"):
        p = res[phase]
        assert p["errors"] == 0 and p["requests"] == 16 and 0 < p["p50_ms"] <= p["p99_ms"]
    assert res["adapt"]["ok"] >= 1 and "error" not in res["adapt"]
    assert res["ratio"]["p50"] > 0 and res["target_p50_ratio"] == 2.0
