"""`bench infer` with the spike encoder's loop in torch and in numpy, alternately in one run
(the machine is shared: compare the two within a round, not with other days).

    .venv/bin/python scripts/bench-encoder-loop.py > docs/bench/v4-rerun/infer-encoder-loop.jsonl
"""

from __future__ import annotations

import json

from tracekws.model import encoder
from tracekws.model.bench.infer import bench_infer
from tracekws.model.pipeline import KWSModel


def main() -> None:
    model = KWSModel.load()
    numpy_loop = encoder._sigma_delta_numpy
    try:
        for rnd in range(3):
            for name, loop in (("torch", encoder._sigma_delta), ("numpy", numpy_loop)):
                encoder._sigma_delta_numpy = loop  # what encode() runs for a few clips
                r = bench_infer(model, repeats=100)
                print(json.dumps({"round": rnd, "encoder_loop": name,
                                  "ms_per_clip_median": r["ms_per_clip_median"]}), flush=True)
    finally:
        encoder._sigma_delta_numpy = numpy_loop


if __name__ == "__main__":
    main()
