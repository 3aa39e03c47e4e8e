"""How far one TP pass moves each weight matrix: ‖ΔW‖ / ‖W‖ per layer, averaged over speakers.

The issue that asked for hidden-layer learning found TP's hidden update nominal (W_in moved
0.016 % per support set at the old rate 1e-6); this measures it for any rates, on the `tune`
speakers' all-shot support sets (clean), one pass as `/adapt` does.

    .venv/bin/python scripts/tp-weight-change.py --lr 1e-6 3e-5
"""

from __future__ import annotations

import argparse
import json

import torch
from tracekws.model.adapt import adapt_inputs
from tracekws.model.bench.personalize import encode_clips
from tracekws.model.data import scan
from tracekws.model.pipeline import KWSModel
from tracekws.model.speakers import speaker_pool, support_query

LAYERS = ("w_in", "w_rec", "w_out")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/speech_commands")
    ap.add_argument("--lr", type=float, nargs="+", default=[3e-5], help="TP hidden rates")
    ap.add_argument("--shots", default="all", choices=["1", "all"])
    a = ap.parse_args()
    torch.set_num_threads(1)
    base = KWSModel.load()
    speakers, pool = speaker_pool(scan(a.data), "tune", 20)
    for lr in a.lr:
        rel: dict[str, list[float]] = {k: [] for k in LAYERS}
        for spk in speakers:
            support, _ = support_query([c for c in pool if c.speaker == spk], a.shots)
            m = base.clone()
            x, y = encode_clips(m, support)
            before = {k: getattr(m.net, k).detach().clone() for k in LAYERS}
            adapt_inputs(m, x, y, "tp", lr=lr)
            for k in LAYERS:
                d = getattr(m.net, k).detach() - before[k]
                rel[k].append(float(d.norm() / before[k].norm()))
        print(json.dumps({"lr": lr, "shots": a.shots, "speakers": len(speakers),
                          **{f"{k}_relative_change": round(sum(v) / len(v), 6)
                             for k, v in rel.items()}}), flush=True)


if __name__ == "__main__":
    main()
