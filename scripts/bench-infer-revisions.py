"""`bench infer` of two revisions of the code, alternately in one run.

These machines are shared and their speed drifts by 2× within a day, so a speed change is
judged by the ratio of two runs made side by side, never against a number from another day.
Each revision's packages (``tracekws``, ``model``, ``service``, ``pretrained``) are exported
with ``git archive`` (``.`` is the working tree) into a temporary tree laid out as the
installed package, and timed in its own process, rounds alternating; one JSON line per run.

    .venv/bin/python scripts/bench-infer-revisions.py 868c254 . --rounds 3 \\
        > docs/bench/s15/infer-revisions.jsonl
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the package layout of pyproject.toml's [tool.setuptools.package-dir]
LAYOUT = {"tracekws": "tracekws", "model": "tracekws/model", "service": "tracekws/service",
          "pretrained": "tracekws/pretrained"}
TIMER = ("import json, sys, tracekws.model as m; from tracekws.model.bench.infer import "
         "bench_infer; from tracekws.model.pipeline import KWSModel; "
         "r = bench_infer(KWSModel.load(sys.argv[1]), repeats=int(sys.argv[2])); "
         "r['module'] = m.__file__; print(json.dumps(r))")


def export(rev: str, dest: Path) -> None:
    """The revision's package sources under ``dest`` in the installed layout."""
    for src, target in LAYOUT.items():
        out = dest / target
        if rev == ".":
            shutil.copytree(ROOT / src, out, ignore=shutil.ignore_patterns("__pycache__"))
            continue
        blob = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev, src],
                              check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            tar.extractall(dest / "_raw", filter="data")
        shutil.move(dest / "_raw" / src, out)
    shutil.rmtree(dest / "_raw", ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("revisions", nargs=2, help="git revisions; '.' is the working tree")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--model", default=str(ROOT / "pretrained" / "tracekws-gsc12.safetensors"),
                    help="the same weights for both (default: the shipped model)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for i, rev in enumerate(a.revisions):
            trees[rev] = Path(tmp) / str(i)
            export(rev, trees[rev])
        for rnd in range(a.rounds):
            for rev, tree in trees.items():
                env = os.environ | {"PYTHONPATH": str(tree), "TORCH_NUM_THREADS": "1"}
                out = subprocess.run([sys.executable, "-c", TIMER, a.model, str(a.repeats)],
                                     env=env, cwd=tree, check=True, capture_output=True,
                                     text=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                if not r.pop("module").startswith(str(tree)):
                    raise SystemExit(f"{rev}: the installed package was imported, not {tree}")
                print(json.dumps({"round": rnd, "revision": rev,
                                  "ms_per_clip_median": r["ms_per_clip_median"],
                                  "real_time_factor": r["real_time_factor"]}), flush=True)


if __name__ == "__main__":
    main()
