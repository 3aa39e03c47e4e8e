"""Data-size curve: what more training speakers are worth, for the SNN and the DS-CNN baseline.

For each architecture and share of the training speakers (``tracekws train --train-fraction``:
nested hashed subsets, so 25 % ⊂ 50 % ⊂ 100 %), one training run with the *same number of
optimisation steps* (``--epochs E --steps-per-epoch S``: at 25 % the clips are seen about four
times as often, not fewer times), then ``tracekws evaluate --split val --json`` of its best
model on the same 43 validation speakers. Each cell is written to the JSON as soon as it is
done, with the commands that produced it; a rerun skips finished cells and resumes an
interrupted training run from its checkpoint (``--resume``). The plot is redrawn from the JSON.

    nohup .venv/bin/python scripts/data-size-curve.py --data ../shared/data/speech_commands \\
        --out docs/bench/baseline/data-size.json > runs/data-size.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRACEKWS = str(Path(sys.executable).with_name("tracekws"))


def _run(cmd: list[str]) -> str:
    print("$", shlex.join(cmd), flush=True)
    res = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    return res.stdout


def speakers_and_clips(data: str, fraction: float, val_percent: int) -> tuple[int, int]:
    """Training speakers (split units) and clips at ``fraction``, as the trainer selects them."""
    from tracekws.model.data import scan, split
    from tracekws.model.train import speaker_subset

    clips = speaker_subset(split(scan(data), "train", val_percent), fraction)
    return len({c.speaker for c in clips if "_nohash_" in c.path.name}), len(clips)


def cell(args: argparse.Namespace, arch: str, fraction: float) -> dict:
    """Train (or resume) one run and evaluate its best model on the validation speakers."""
    out = Path(args.runs) / f"{arch}-{int(round(fraction * 100))}"
    train = [TRACEKWS, "train", "--arch", arch, "--data", args.data, "--out", str(out),
             "--train-fraction", str(fraction), "--epochs", str(args.epochs),
             "--steps-per-epoch", str(args.steps_per_epoch), "--threads", str(args.threads),
             "--seed", str(args.seed), "--val-percent", str(args.val_percent), "--quiet",
             *shlex.split(args.train_args)]
    resume = ["--resume"] if out.with_name(out.name + "-checkpoint.pt").is_file() else []
    t0 = time.time()
    summary = json.loads(_run(train + resume).strip().splitlines()[-1])
    seconds = time.time() - t0
    model = str(out.with_suffix(".safetensors"))
    evaluate = [TRACEKWS, "evaluate", "--data", args.data, "--split", "val", "--model", model,
                "--val-percent", str(args.val_percent), "--json"]
    res = json.loads(_run(evaluate))
    history = json.loads(out.with_name(out.name + "-history.json").read_text())
    speakers, clips = speakers_and_clips(args.data, fraction, args.val_percent)
    return {"arch": arch, "train_fraction": fraction, "train_speakers": speakers,
            "train_clips": clips, "steps": args.epochs * args.steps_per_epoch,
            "val_accuracy": round(res["accuracy"], 4), "val_n": res["n"],
            "best_epoch": int(max(history, key=lambda h: h["val_acc"])["epoch"]),
            "final_train_acc": round(history[-1]["train_acc"], 4),
            "train_seconds_this_call": round(seconds), "best_val_accuracy_trainer":
            summary["best_val_accuracy"],
            "commands": [shlex.join(["tracekws", *c[1:]]) for c in (train, evaluate)]}


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for arch, label in (("snn", "SNN (450 LIF, 424k parameters)"),
                        ("dscnn", "DS-CNN-S (28k parameters)")):
        rows = sorted((r for r in doc["rows"] if r["arch"] == arch),
                      key=lambda r: r["train_fraction"])
        if rows:
            ax.plot([r["train_speakers"] for r in rows], [r["val_accuracy"] for r in rows],
                    "o-", label=label)
    ax.set_xlabel("training speakers (25 / 50 / 100 %)")
    ax.set_ylabel("accuracy, 43 validation speakers")
    ax.set_title(f"same {doc['steps']} steps at every size", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", default="docs/bench/baseline/data-size.json")
    ap.add_argument("--runs", default="runs/data-size", help="training runs (not committed)")
    ap.add_argument("--archs", default="dscnn,snn")
    ap.add_argument("--fractions", default="0.25,0.5,1.0")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--steps-per-epoch", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--val-percent", type=int, default=20)
    ap.add_argument("--train-args", default="--lr 0.002",
                    help="more `tracekws train` flags, the same for every cell (default: the "
                         "shipped model's rate)")
    args = ap.parse_args(argv)
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    steps = args.epochs * args.steps_per_epoch
    doc = json.loads(out.read_text()) if out.is_file() else {"rows": []}
    same_args = doc.get("train_args", args.train_args) == args.train_args
    if doc.get("steps", steps) != steps or not same_args:
        raise SystemExit(f"{out} holds a curve at {doc['steps']} steps with train args "
                         f"{doc.get('train_args')!r}, not {steps} / {args.train_args!r}")
    doc |= {"steps": steps, "epochs": args.epochs, "steps_per_epoch": args.steps_per_epoch,
            "batch": 64, "threads": args.threads, "data": args.data,
            "train_args": args.train_args,
            "script": "python scripts/" + Path(__file__).name + " " + shlex.join(
                argv if argv is not None else sys.argv[1:])}
    done = {(r["arch"], r["train_fraction"]) for r in doc["rows"]}
    for fraction in (float(f) for f in args.fractions.split(",")):
        for arch in args.archs.split(","):
            if (arch, fraction) in done:
                continue
            doc["rows"].append(cell(args, arch, fraction))
            out.write_text(json.dumps(doc, indent=1) + "\n")
            plot(doc, out.with_suffix(".png"))
            print(json.dumps(doc["rows"][-1]), flush=True)
    plot(doc, out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
