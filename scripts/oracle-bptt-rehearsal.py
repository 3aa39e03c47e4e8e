"""Diagnostic, not a product path: how much could *any* fine-tuning gain on the reported speakers?

Full-gradient BPTT fine-tuning of the shipped model on a speaker's support clips mixed, in every
Adam step, with ``--mix`` random clips of the training speakers (rehearsal, so a one-word batch
cannot collapse the network). Settings are varied on the 8 reported speakers themselves, so the
best row is an optimistic bound (tuned on the test speakers), not a result. One JSON line per
setting: 1-shot and all-shot [gain, retention change] in points, the protocol of
``tracekws bench personalize``.

    .venv/bin/python scripts/oracle-bptt-rehearsal.py --lr 1e-4 3e-4 1e-3 --steps 10 30
"""

from __future__ import annotations

import argparse
import json
import random

import torch
from tracekws.model.bench import personalize as P
from tracekws.model.data import scan, split
from tracekws.model.pipeline import KWSModel
from tracekws.model.speakers import eligible_speakers, support_query


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/speech_commands")
    ap.add_argument("--lr", type=float, nargs="+", default=[1e-4, 3e-4, 1e-3])
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 30])
    ap.add_argument("--mix", type=int, default=32, help="training clips per Adam step")
    ap.add_argument("--rehearsal-clips", type=int, default=600)
    a = ap.parse_args()
    torch.set_num_threads(1)
    m0 = KWSModel.load()
    clips = scan(a.data)
    val_percent = int(m0.config.meta.get("training", {}).get("val_percent", 20))
    held, train = split(clips, "val", val_percent), split(clips, "train", val_percent)
    random.seed(0)
    xt, yt = P.encode_clips(m0, random.sample(train, min(a.rehearsal_clips, len(train))))
    speakers = eligible_speakers(held)
    data: dict[tuple[str, str], tuple[torch.Tensor, ...]] = {}
    for s in speakers:
        mine = [c for c in held if c.speaker == s]
        others = [c for c in held if c.speaker != s]
        xr, yr = P.encode_clips(m0, others[:: max(1, len(others) // 400)][:400])
        for shots in ("1", "all"):
            sup, q = support_query(mine, shots)
            data[s, shots] = (*P.encode_clips(m0, sup), *P.encode_clips(m0, q), xr, yr)

    def acc(m: KWSModel, x: torch.Tensor, y: torch.Tensor) -> float:
        return float((P.predict_inputs(m, x) == y).float().mean())

    for lr in a.lr:
        for steps in a.steps:
            row: dict = {"lr": lr, "steps": steps, "mix": a.mix}
            for shots in ("1", "all"):
                gain = ret = 0.0
                for s in speakers:
                    xs, ys, xq, yq, xr, yr = data[s, shots]
                    m = m0.clone()
                    net = m.net
                    opt = torch.optim.Adam([{"params": [net.w_in, net.w_rec], "lr": lr},
                                            {"params": [net.w_out], "lr": lr * 0.01}])
                    gen = torch.Generator().manual_seed(0)
                    for _ in range(steps):
                        idx = torch.randint(len(yt), (a.mix,), generator=gen)
                        net.train()
                        out, _, _ = net(torch.cat([xs, xt[idx]]))
                        loss = torch.nn.functional.cross_entropy(out, torch.cat([ys, yt[idx]]))
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                    gain += acc(m, xq, yq) - acc(m0, xq, yq)
                    ret += acc(m, xr, yr) - acc(m0, xr, yr)
                n = len(speakers)
                row[f"{shots}-shot"] = [round(100 * gain / n, 1), round(100 * ret / n, 1)]
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
