"""Meta-training for personalisation: starting weights and TP rates chosen so that one online
TP pass over a new speaker's recordings raises that speaker's accuracy on their other clips.

First-order MAML with TP as the inner learner. An episode takes one *training* speaker s
(validation speakers are never touched) and splits s's clips as the personalisation bench
does (:func:`model.speakers.support_query`, 1-shot or all-shot at random), clean or
through a simulated room of s's own (``room_prob``)::

    θ'  = TP(θ; support, η)       one online pass, clip by clip, exactly what /adapt runs
                                  (model.adapt.adapt_inputs: the rule's defaults, normalisation
                                  prior included) at the rates η = (η_hidden, η_readout)
    L_q = CE(f_θ'(query))          s's other clips: keywords, other words, as s says them
    L_0 = CE(f_θ(other clips))     a batch of the other training speakers' clips (all classes)
    θ  ← θ − Adam(∇_θ' L_q + λ ∇_θ L_0)      first order: ∇_θ' L_q stands in for ∇_θ L_q
    log η_l ← log η_l − Adam(⟨∇_θ' L_q, θ' − θ⟩_l)   θ' − θ is ∝ η_l to first order

Why: TP's hidden update helps only on a network whose weights sit where a small local step
moves a speaker's accuracy, and the rates that work depend on the network; both are learned
here from the very thing the product does (one pass over a user's recordings), instead of
swept. The inner loop is TP itself, so nothing here is stored per frame at adaptation time;
meta-training (BPTT on the query) is the only place that keeps activations.

The output is an ordinary model file (same network); its rates are written beside it in the
JSON log and are passed to ``bench personalize`` / the sweep as ``lr`` / ``lr_out``.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from .pipeline import KWSModel, batched

# The episode machinery (adapt, data, bench protocol, rooms) is imported where it is used:
# the CLI builds `meta-train`'s flags from MetaConfig at every start, and must not pay for it.


@dataclass
class MetaConfig:
    data: str
    out: str
    model: str | None = None  # starting model (default: the shipped one)
    episodes: int = 400
    lr: float = 3e-5  # Adam on θ (the pretraining rate is 2e-3: this is fine-tuning)
    rate_lr: float = 0.05  # Adam on log η
    hidden_rate: float = 3e-5  # initial η_hidden (TP's lr, SGD summed over 10 frames)
    readout_rate: float = 0.1  # initial η_readout (TP's lr_out)
    keep_weight: float = 1.0  # λ: the other speakers' cross-entropy beside the query's
    keep_batch: int = 32
    room_prob: float = 0.5  # episodes heard through the speaker's own simulated room
    room_seed: int = 7_000_000  # rooms of training speakers: apart from the benches' seeds
    val_percent: int = 20
    seed: int = 0
    threads: int = 1
    eval_every: int = 100  # episodes between two checkpoints (model + log)


RATE_BOUNDS = {"hidden": (1e-7, 1e-3), "readout": (1e-3, 2.0)}


def _frames(model: KWSModel, waves: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return batched(model.frontend, waves)


def _episode_grads(model: KWSModel, f_s: torch.Tensor, y_s: torch.Tensor, f_q: torch.Tensor,
                   y_q: torch.Tensor, rates: dict[str, float]
                   ) -> tuple[list[torch.Tensor], dict[str, float], float, float]:
    """Adapt a copy of ``model`` on the support (TP, one pass), then the query loss's gradient
    at the adapted weights, its projections on the update of each layer, and accuracies."""
    from .adapt import adapt_inputs

    m = model.clone()
    params = [m.net.w_in, m.net.w_rec, m.net.w_out]
    start = [p.detach().clone() for p in params]
    adapt_inputs(m, m.encode_frames(f_s), y_s, rule="tp", frames=f_s,
                 lr=rates["hidden"], lr_out=rates["readout"])
    with torch.no_grad():
        before = float((model.net(model.encode_frames(f_q))[0].argmax(1) == y_q).float().mean())
    m.net.train()
    for p in params:
        p.grad = None
    out, _, _ = m.net(m.encode_frames(f_q))
    loss = torch.nn.functional.cross_entropy(out, y_q)
    loss.backward()
    grads = [p.grad.detach().clone() for p in params]
    delta = [p.detach() - s for p, s in zip(params, start, strict=True)]
    proj = {"hidden": float(sum((g * d).sum() for g, d in zip(grads[:2], delta[:2], strict=True))),
            "readout": float((grads[2] * delta[2]).sum())}
    after = float((out.argmax(1) == y_q).float().mean())
    return grads, proj, before, after


def meta_train(cfg: MetaConfig, progress: bool = True) -> dict:
    """Meta-train from ``cfg.model``; writes ``cfg.out`` (.safetensors + -meta.json log)."""
    from .data import load_waves, noise_recordings, scan, split
    from .evaluate import class_index
    from .room import RoomSimulator, speaker_room
    from .speakers import eligible_speakers, support_query

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model = KWSModel.load(cfg.model)
    labels = model.labels
    clips = split(scan(cfg.data), "train", cfg.val_percent)
    speakers = eligible_speakers(clips)
    waves = load_waves(clips, progress=progress)
    frames = _frames(model, waves)
    y = torch.tensor([class_index(c, labels) for c in clips])
    by_speaker = {s: [i for i, c in enumerate(clips) if c.speaker == s] for s in speakers}
    noise = noise_recordings(cfg.data)
    room_frames: dict[str, torch.Tensor] = {}

    def speaker_frames(s: str, room: bool) -> torch.Tensor:
        idx = by_speaker[s]
        if not room:
            return frames[idx]
        if s not in room_frames:
            sim = RoomSimulator(speaker_room(cfg.room_seed, s), noise)
            room_frames[s] = _frames(model, sim.apply_clips(waves[idx], [clips[i] for i in idx]))
        return room_frames[s]

    net = model.net
    params = [net.w_in, net.w_rec, net.w_out]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    log_rates = torch.tensor([math.log(cfg.hidden_rate), math.log(cfg.readout_rate)],
                             requires_grad=True)
    rate_opt = torch.optim.Adam([log_rates], lr=cfg.rate_lr)
    history: list[dict] = []
    out = Path(cfg.out).with_suffix(".safetensors")
    log_path = out.with_name(out.stem + "-meta.json")
    window: list[dict] = []
    t0 = time.time()
    bar = tqdm(range(1, cfg.episodes + 1), desc="meta", disable=not progress)
    for ep in bar:
        s = rng.choice(speakers)
        shots = rng.choice(["1", "all"])
        room = rng.random() < cfg.room_prob
        own = [clips[i] for i in by_speaker[s]]
        support, query = support_query(own, shots)
        pos = {c.path: k for k, c in enumerate(own)}
        fs_all = speaker_frames(s, room)
        si = torch.tensor([pos[c.path] for c in support])
        qi = torch.tensor([pos[c.path] for c in query])
        if not len(si) or not len(qi):
            continue
        ys_all = y[by_speaker[s]]
        rates = {k: math.exp(float(v))
                 for k, v in zip(RATE_BOUNDS, log_rates.detach(), strict=True)}
        grads, proj, before, after = _episode_grads(model, fs_all[si], ys_all[si], fs_all[qi],
                                                    ys_all[qi], rates)
        # what the network must keep: other speakers' clips, every class, at θ
        others = [i for i in range(len(clips)) if clips[i].speaker != s]
        kb = torch.tensor(rng.sample(others, min(cfg.keep_batch, len(others))), dtype=torch.long)
        net.train()
        opt.zero_grad()
        keep = torch.zeros(())
        if len(kb):
            keep = torch.nn.functional.cross_entropy(net(model.encode_frames(frames[kb]))[0],
                                                     y[kb])
            (cfg.keep_weight * keep).backward()
        for p, g in zip(params, grads, strict=True):
            p.grad = g if p.grad is None else p.grad + g
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        rate_opt.zero_grad()
        log_rates.grad = torch.tensor([proj["hidden"], proj["readout"]])
        rate_opt.step()
        with torch.no_grad():
            for k, (lo, hi) in enumerate(RATE_BOUNDS.values()):
                log_rates[k].clamp_(math.log(lo), math.log(hi))
        window.append({"gain": after - before, "keep": float(keep.detach()), "room": room,
                       "shots": shots})
        bar.set_postfix(gain=f"{sum(w['gain'] for w in window[-50:]) / len(window[-50:]):+.3f}",
                        h=f"{rates['hidden']:.1e}", o=f"{rates['readout']:.2g}")
        if ep % cfg.eval_every == 0 or ep == cfg.episodes:
            history.append({
                "episode": ep, "seconds": round(time.time() - t0),
                "mean_query_gain": round(sum(w["gain"] for w in window) / len(window), 4),
                "mean_keep_loss": round(sum(w["keep"] for w in window) / len(window), 4),
                "hidden_rate": math.exp(float(log_rates.detach()[0])),
                "readout_rate": math.exp(float(log_rates.detach()[1]))})
            window = []
            sha = model.save(out)
            log_path.write_text(json.dumps({"config": asdict(cfg), "sha256": sha,
                                            "history": history}, indent=1) + "\n")
    return {"model": str(out), "log": str(log_path), **history[-1]}
