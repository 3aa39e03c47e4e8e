"""How often one keyword utterance fires the streaming detector twice.

Every keyword clip under tests/data/gsc, with 1 s of silence before and 2 s after, is fed to
the shipped model's detector 10 ms at a time (threshold 0.5), at three refractory times, with
the trigger as it is (re-arm when the posterior falls back to the threshold) and as it was
before (refractory time only: the re-arm state is cleared after every frame). Prints JSON.

    .venv/bin/python scripts/double-firing.py --json-out docs/bench/double-firing.json
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch
from tracekws.model.audio import load
from tracekws.model.detect import Detector, keywords
from tracekws.model.pipeline import KWSModel

DATA = Path("tests/data/gsc")
FRAME = 160


def run(model: KWSModel, clips: list[tuple[str, torch.Tensor]], refractory: float,
        rearm: bool) -> dict:
    found = twice = others = 0
    for word, w in clips:
        wave = torch.cat([torch.zeros(16_000), w, torch.zeros(32_000)])
        det, dets = Detector(model, refractory=refractory), []
        for i in range(0, len(wave), FRAME):
            dets += det.feed(wave[i : i + FRAME])
            if not rearm:
                det.trigger.rearmed_at[:] = 0.0
        same = [d for d in dets if d.label == word]
        found += bool(same)
        twice += len(same) >= 2
        others += len(dets) - len(same)
    return {"refractory": refractory, "trigger": "re-arm" if rearm else "refractory only",
            "clips": len(clips), "detected": found, "fired_twice": twice, "other_labels": others}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json-out")
    args = ap.parse_args()
    model = KWSModel.load()
    kw = keywords(model.labels)
    with open(DATA / "manifest.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["label"] in kw]
    clips = [(r["label"], load(DATA / r["file"])) for r in rows]
    out = {"what": __doc__.splitlines()[0], "data": str(DATA), "threshold": 0.5,
           "command": "python scripts/double-firing.py",
           "runs": [run(model, clips, ref, rearm) for rearm in (False, True)
                    for ref in (0.5, 1.0, 1.5)]}
    text = json.dumps(out, indent=1)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")


if __name__ == "__main__":
    main()
