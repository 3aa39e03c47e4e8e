"""Every learning rule on one bench, and how their adaptation state scales with the classes.

``bench_rules``: for each rule, the personalisation protocol (:func:`personalize.bench_personalize`,
1-shot and all-shot: query accuracy before/after and retention on the other held-out speakers)
and, from the same run, the peak memory and the cost of adapting on streamed audio
(:func:`memory.bench_memory`, a fresh process per measurement), all with the rule's defaults
(each rule's config, :func:`rules.defaults`).

``bench_classes``: the adaptation state a rule keeps (its :meth:`Rule.state_tensors`, peak over
a 1 s utterance) as the readout grows to 12, 36, 100, 1000 classes, at batch 1 and 16, split
into per-sample state, fixed matrices (random feedback, local readouts, label projections:
regenerable from a seed) and the optimiser's summed update. It checks the TP paper's claim that
TP scales better than TESS (and e-prop) once the classes outnumber the batch.
"""

from __future__ import annotations

import time

import torch

from ..adapt import DEFAULT_EPOCHS
from ..rules import NAMES, defaults

ALL_RULES = list(NAMES)
CLASS_RULES = ["tp", "tp-batch", "tess", "eprop"]  # tp-batch: TP with the paper's B×B contrast


def _summary(res: dict) -> dict:
    keys = ("mean_before", "mean_after", "gain", "retention_before", "retention_after",
            "false_accepts_before", "false_accepts_after", "false_accepts_pooled_before",
            "false_accepts_pooled_after", "sign_test_p")
    out = {k: None if res[k] is None else round(res[k], 4) for k in keys}
    out |= {k: res[k] for k in ("query_clips", "query_fixed", "query_broken", "n_query_negative")}
    out["retention_change"] = round(res["retention_after"] - res["retention_before"], 4)
    out["seconds"] = res["seconds"]
    return out


def bench_rules(
    model,
    data: str,
    rules: list[str] | None = None,
    max_speakers: int = 0,
    seconds: list[str] | None = None,
    model_path: str | None = None,
    epochs: int = DEFAULT_EPOCHS,
    val_percent: int | None = None,
    progress: bool = False,
    speakers: str = "val",
    condition: str = "clean",
    seed: int = 0,
) -> dict:
    """One row per rule: 1-shot and all-shot personalisation, peak memory, ms per second."""
    from .memory import bench_memory
    from .personalize import bench_personalize

    rules = rules or ALL_RULES
    seconds = seconds or ["1", "30"]
    rows, n_speakers, t0 = [], 0, time.time()
    for rule in rules:
        row: dict = {"rule": rule, "hyperparameters": defaults(rule)}
        for shots, key in (("1", "one_shot"), ("all", "all_shot")):
            res = bench_personalize(model, data, rule, shots, val_percent, epochs=epochs,
                                    progress=progress, speakers=speakers, condition=condition,
                                    seed=seed, max_speakers=max_speakers)
            n_speakers = len(res["speakers"])
            row[key] = _summary(res)
        mem = bench_memory(None, rule, seconds, model_path=model_path)
        row["peak_bytes"] = mem["peak_bytes"]
        row["ms_per_second_of_audio"] = mem["ms_per_second_of_audio"]
        row["cost_vs_inference"] = mem["cost_vs_inference"]
        rows.append(row)
    return {
        "rules": rows,
        "speakers": n_speakers,
        "speaker_set": speakers,
        "condition": condition,
        "epochs": epochs,
        "data": str(data),
        "memory_seconds": seconds,
        "memory_threads": 1,
        "seconds": round(time.time() - t0, 1),
    }


# ---- class scaling -------------------------------------------------------------------------
def state_breakdown(rule) -> dict[str, int]:
    """Bytes of the rule's kept state: per-sample, fixed matrices, optimiser, total."""

    def size(ts) -> int:
        return sum(t.numel() * t.element_size() for t in ts)

    state = {id(t): t for t in rule.state_tensors()}
    fixed = {id(t) for t in rule.fixed_tensors()} & state.keys()
    opt = {id(t) for t in rule.optimiser_tensors()} & state.keys()
    dynamic = state.keys() - fixed - opt
    return {"dynamic": size(state[i] for i in dynamic), "fixed": size(state[i] for i in fixed),
            "optimiser": size(state[i] for i in opt), "total": size(state.values())}


def measure_classes(rule: str, n_classes: int, batch: int, frames: int = 98,
                    n_in: int = 480, n_hidden: int = 450, seed: int = 0) -> dict:
    """Peak state of ``rule`` over ``frames`` frames of random input spikes (the sizes of the
    state do not depend on the values), and its cost per frame."""
    from ..network import SNN
    from ..rules import make_rule

    name, extra = ("tp", {"contrast": "batch"}) if rule == "tp-batch" else (rule, {})
    torch.manual_seed(seed)
    net = SNN(n_in, n_hidden, n_classes)
    r = make_rule(name, net, **extra)
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(frames, batch, n_in, generator=gen) < 0.05).float()
    r.begin(torch.arange(batch) % n_classes)
    peak = {"dynamic": 0, "fixed": 0, "optimiser": 0, "total": 0}
    elapsed = 0.0
    for t in range(frames):
        t0 = time.perf_counter()
        r.step(x[t])
        elapsed += time.perf_counter() - t0
        b = state_breakdown(r)
        if b["total"] > peak["total"]:
            peak = b
    t0 = time.perf_counter()
    r.end()
    elapsed += time.perf_counter() - t0
    return {"rule": rule, "classes": n_classes, "batch": batch, **peak,
            "ms_per_frame": round(elapsed * 1000 / frames, 3)}


def _crossing(xs: list[int], a: list[int], b: list[int]) -> float | None:
    """Where a − b changes sign (linear interpolation between measured class counts)."""
    d = [ai - bi for ai, bi in zip(a, b, strict=True)]
    for i in range(1, len(xs)):
        if (d[i - 1] > 0) != (d[i] > 0):
            return round(xs[i - 1] + (xs[i] - xs[i - 1]) * d[i - 1] / (d[i - 1] - d[i]), 1)
    return None


def bench_classes(classes: list[int] | None = None, batches: list[int] | None = None,
                  rules: list[str] | None = None, frames: int = 98, threads: int = 1,
                  n_in: int = 480, n_hidden: int = 450) -> dict:
    """The class-scaling table and, per batch, where TP's state crosses the others'."""
    torch.set_num_threads(threads)
    classes = classes or [12, 36, 100, 1000]
    batches = batches or [1, 16]
    rules = rules or CLASS_RULES
    rows = [measure_classes(r, c, b, frames, n_in, n_hidden)
            for b in batches for r in rules for c in classes]

    def series(rule: str, b: int, key: str) -> list[int]:
        return [next(x[key] for x in rows if (x["rule"], x["classes"], x["batch"]) == (rule, c, b))
                for c in classes]

    crossovers = []
    for b in batches:
        for tp in (r for r in rules if r.startswith("tp")):
            for other in (r for r in rules if not r.startswith("tp")):
                for key in ("total", "dynamic"):
                    a, o = series(tp, b, key), series(other, b, key)
                    crossovers.append({
                        "batch": b, "tp": tp, "vs": other, "measure": key,
                        "tp_smaller_at": [c for c, x, y in zip(classes, a, o, strict=True)
                                          if x < y],
                        "crossover_classes": _crossing(classes, a, o)})
    return {"rows": rows, "crossovers": crossovers, "frames": frames, "threads": threads,
            "sizes": {"n_in": n_in, "n_hidden": n_hidden}}
