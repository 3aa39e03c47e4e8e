"""Seconds to rebuild the word spotter of the shipped model (its cohort bank and templates).

A profile with words of its own needs the spotter for every version (each /adapt makes one,
loaded from its bytes) and again when the hidden weights change (model/words.py: the
templates follow the backbone). /adapt builds it before it answers; a version loaded from
storage builds it on its first /predict. One thread; the median of ``--repeats`` builds.

    .venv/bin/python scripts/bench-spotter-rebuild.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from tracekws.model.pipeline import KWSModel
from tracekws.model.words import WordSpotter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(1)
    m = KWSModel.load(a.model) if a.model else KWSModel.load()
    if m.words is None:
        raise SystemExit("the model has no word bank")
    times = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        WordSpotter(m.words, m.net, m.in_mean)
        times.append(time.perf_counter() - t0)
    print(json.dumps({"bank_recordings": len(m.words.bank), "repeats": a.repeats,
                      "seconds_median": round(statistics.median(times), 3),
                      "seconds": [round(t, 3) for t in times]}))


if __name__ == "__main__":
    main()
