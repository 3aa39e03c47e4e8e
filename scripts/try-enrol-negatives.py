"""Does a word of one's own survive a room if the speaker's own other words join its cohort?

The held-out-word benchmark (``bench_enrol_words``, 3 recordings) on the held-out backbone's
*training* speakers (never reported), with ``negatives`` of the speaker's other words (seeded
pick, then never scored) added to the cohort the template distance is divided by: what a user
would give by recording a few other words where they enrol. One JSON line per condition and
number of negatives, with (detection, own other words taken, others' clips taken) at each
threshold from 0.5 to 1.0.

    python scripts/try-enrol-negatives.py room,clean 0,3,6 > docs/bench/enrol/negatives.jsonl
"""

from __future__ import annotations

import json
import sys
import time

import torch
from tracekws.model.bench.enrol import HOLDOUT, bench_enrol_words, holdout_backbone

DATA = "../shared/data/speech_commands"
THRESHOLDS = tuple(round(0.40 + 0.02 * i, 2) for i in range(31))


def main() -> None:
    torch.set_num_threads(1)
    model = holdout_backbone(DATA)
    for cond in sys.argv[1].split(","):
        for neg in (int(x) for x in sys.argv[2].split(",")):
            t = time.time()
            r = bench_enrol_words(model, DATA, 3, HOLDOUT, "train", cond, bank_size=400,
                                  others_clips=200, thresholds=THRESHOLDS, progress=False,
                                  negatives=neg)
            sw = r["sweep"]
            pts = {th: [round(sw[f"{th:g}"][k] or 0.0, 3) for k in (
                "detection", "false_accepts_own", "false_accepts_others")]
                for th in THRESHOLDS if 0.5 <= th <= 1.0}
            print(json.dumps({"who": "train", "cond": cond, "neg": neg, "pairs": r["n_pairs"],
                              "s": round(time.time() - t), "pts": pts}), flush=True)


if __name__ == "__main__":
    main()
