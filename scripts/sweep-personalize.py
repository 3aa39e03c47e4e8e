"""Hyper-parameter sweep of an adaptation rule on *tuning* speakers, never the reported ones.

The personalisation benchmark reports the held-out speakers with >= 20 keyword clips. To
choose defaults without tuning on them, this sweep runs the same protocol on the other
held-out speakers, those with 10-19 keyword clips (15 of them in ../shared/data), and prints
one JSON line per configuration: 1-shot and all-shot gain and retention change.

    .venv/bin/python scripts/sweep-personalize.py --rule tp --grid lr=1e-6,1e-5 epochs=1,3
"""

from __future__ import annotations

import argparse
import itertools
import json

import torch

from model import personalize
from model.pipeline import KWSModel

ELIGIBLE = personalize.eligible_speakers  # kept: main() replaces the module attribute


def tuning_speakers(clips, min_clips: int = 20, low: int = 10) -> list[str]:
    """Held-out speakers with ``low`` to ``min_clips`` − 1 keyword clips."""
    return sorted(set(ELIGIBLE(clips, low)) - set(ELIGIBLE(clips, min_clips)))


def parse(v: str):
    for f in (int, float):
        try:
            return f(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v.lower(), v)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/speech_commands")
    ap.add_argument("--rule", default="tp")
    ap.add_argument("--model")
    ap.add_argument("--grid", nargs="+", default=[], help="name=v1,v2,...")
    ap.add_argument("--reported", action="store_true",
                    help="run on the reported speakers instead (to confirm a choice once)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    model = KWSModel.load(a.model) if a.model else KWSModel.load()
    if not a.reported:
        personalize.eligible_speakers = tuning_speakers
    names = [g.split("=")[0] for g in a.grid]
    values = [[parse(v) for v in g.split("=")[1].split(",")] for g in a.grid]
    for combo in itertools.product(*values) if values else [()]:
        hp = dict(zip(names, combo, strict=True))
        epochs = hp.pop("epochs", 1)
        row = {"rule": a.rule, "epochs": epochs, **hp}
        for shots in ("1", "all"):
            r = personalize.bench_personalize(model, a.data, a.rule, shots, epochs=epochs,
                                              progress=False, **hp)
            row[f"gain_{shots}"] = round(r["gain"], 4)
            row[f"ret_{shots}"] = round(r["retention_after"] - r["retention_before"], 4)
            row["speakers"] = len(r["speakers"])
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
