"""One-second crops of open speech, for training ``_unknown_`` on running speech.

flite (Debian package ``flite``; five voices) reads King James Bible verses that the stream
benchmark never reads: the bench uses only keyword-free verses, so these are the others, with
every keyword and its inflections cut out (model/bench/stream.py ``keyword_free``). Each reading
is normalised to a random peak level and cut into 1 s crops every 1.3 s that hold speech. The
folder is in GSC layout under the word ``speech`` (a word outside the classes: ``_unknown_``),
for ``tracekws train --extra-data``. A synthetic voice is never a validation speaker: the
folder is training data only.

    python scripts/synth-open-speech.py --out /tmp/openspeech --clips 1000
"""

from __future__ import annotations

import argparse
import math
import random
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly
from tracekws.model.audio import SAMPLE_RATE
from tracekws.model.bench import stream as S

VOICES = ["kal16", "awb", "rms", "slt", "kal"]
HOP = 21_000  # samples between two crops (1.3 s)


def verses() -> list[str]:
    """Verses the stream bench never reads, keywords cut out."""
    banned = {k + x for k in S.KEYWORDS for x in S._SUFFIXES}

    def strip(v: str) -> str:
        return re.sub(r"[A-Za-z]+", lambda m: "" if m.group(0).lower() in banned
                      else m.group(0), v)

    pool = [strip(v) for v in S.kjv_verses() if not S.keyword_free(v)]
    return [v for v in pool if S.keyword_free(v) and 40 < len(v) < 220]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--clips", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    pool = verses()
    rng.shuffle(pool)
    out = Path(a.out) / "speech"
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for i, text in enumerate(pool):
        if n >= a.clips:
            break
        voice = VOICES[i % len(VOICES)]
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "a.wav"
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(raw)], check=True,
                           capture_output=True)
            x, rate = sf.read(raw, dtype="float64")
        g = math.gcd(SAMPLE_RATE, rate)
        y = resample_poly(x, SAMPLE_RATE // g, rate // g)
        y = y / (np.abs(y).max() + 1e-9) * rng.uniform(0.1, 0.7)
        for s in range(0, len(y) - SAMPLE_RATE, HOP):
            crop = y[s : s + SAMPLE_RATE]
            if n >= a.clips or np.sqrt((crop**2).mean()) < 0.01:
                continue
            sf.write(out / f"{voice}{i:04d}_nohash_{s // HOP}.wav", crop.astype(np.float32),
                     SAMPLE_RATE, subtype="PCM_16")
            n += 1
    print(f"{n} clips under {out}")


if __name__ == "__main__":
    main()
