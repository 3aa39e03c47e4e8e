"""Data-parallel pretraining under torchrun: two CPU processes (gloo) train the same weights
as one process at the same global batch, and --resume continues a two-process run.

Every rank draws and augments the same global batch and keeps its half; DDP averages the two
halves' gradients, which is the whole batch's gradient up to float summation order. After 3
epochs of 3 steps at lr 1e-2 (two epochs, then --resume for the third) the weights agree to
1e-5 (measured: at most 1.6e-6, on w_in) while training moved every matrix by 7e-4 (w_out,
whose rate is 0.02 lr) to 0.037 (w_in, w_rec).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from _clips import GSC

from tracekws.cli import main

TOLERANCE = 1e-5  # max |Δw| between the one- and two-process weights
TINY = ["--hidden", "16", "--lr", "1e-2", "--batch", "8", "--val-percent", "10", "--threads", "1",
        "--limit-steps", "3", "--quiet"]


def _torchrun(data: Path, out: Path, epochs: int, *extra: str) -> list[str]:
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "tracekws.cli",
           "train", "--data", str(data), "--out", str(out), "--epochs", str(epochs), *TINY,
           *extra]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env,
                         cwd=out.parent)
    assert res.returncode == 0, res.stderr[-3000:]
    return [line for line in res.stdout.splitlines() if line.startswith("{")]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    ck = out.with_name(out.name + "-checkpoint.pt")
    return torch.load(ck, weights_only=False)["net"]


def test_two_processes_train_what_one_does_and_resume(tmp_path, capsys):
    data = tmp_path / "gsc"
    shutil.copytree(GSC, data)
    one, two = tmp_path / "one", tmp_path / "two"

    from tracekws.model.train import TrainConfig, prepare

    torch.manual_seed(0)  # as train() does before building the network
    init = prepare(TrainConfig(data=str(data), out="", hidden=16, val_percent=10),
                   progress=False).model.net.state_dict()

    # both: 2 epochs, then --resume to 3 (the cosine schedule follows --epochs, so a resumed
    # run is compared with a resumed run); two processes resume from rank 0's checkpoint
    for epochs, extra in ((2, []), (3, ["--resume"])):
        assert main(["train", "--data", str(data), "--out", str(one), "--epochs", str(epochs),
                     *TINY, *extra]) == 0
    capsys.readouterr()
    summaries = _torchrun(data, two, 2)
    assert len(summaries) == 1  # only rank 0 prints
    assert json.loads(summaries[0])["world_size"] == 2
    _torchrun(data, two, 3, "--resume")
    hist = json.loads((tmp_path / "two-history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert (tmp_path / "two-curves.png").is_file() and (tmp_path / "two.safetensors").is_file()

    w1, w2 = _weights(one), _weights(two)
    for k in ("w_in", "w_rec", "w_out"):
        diff = float((w1[k] - w2[k]).abs().max())
        moved = float((w1[k] - init[k]).abs().max())
        assert diff <= TOLERANCE, (k, diff)
        assert moved > 50 * TOLERANCE, (k, moved)  # training did change the weights
    h1 = json.loads((tmp_path / "one-history.json").read_text())
    for a, b in zip(h1, hist, strict=True):  # the epoch totals are summed over the ranks
        assert abs(a["loss"] - b["loss"]) < 1e-4 and a["train_acc"] == b["train_acc"]
