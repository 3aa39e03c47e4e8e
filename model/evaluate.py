"""Accuracy, per-class accuracy and confusion matrix of a model on a folder in GSC layout."""

from __future__ import annotations

import torch
from tqdm import tqdm

from .data import Clip, load_waves, noise_recordings, scan, split
from .pipeline import UNKNOWN, KWSModel
from .rules.tp import label_path_traces, tp_scores


def class_index(clip: Clip, labels: list[str]) -> int:
    """Label index of a clip; words outside the model's classes count as ``_unknown_``."""
    lab = clip.label(labels)
    return labels.index(lab if lab in labels else UNKNOWN)


@torch.no_grad()
def room_waves(clips: list[Clip], waves: torch.Tensor, noise: list[torch.Tensor], seed: int
               ) -> torch.Tensor:
    """``waves`` as heard through each speaker's simulated room (:mod:`model.room`), the
    rooms of the personalisation benchmark's ``--condition room`` for the same seed."""
    from .room import RoomSimulator, speaker_room

    out = waves.clone()
    for spk in sorted({c.speaker for c in clips}):
        idx = [i for i, c in enumerate(clips) if c.speaker == spk]
        sim = RoomSimulator(speaker_room(seed, spk), noise)
        out[idx] = sim.apply_clips(waves[idx], [clips[i] for i in idx])
    return out


def evaluate_clips(model: KWSModel, clips: list[Clip], progress: bool = False,
                   waves: torch.Tensor | None = None) -> dict:
    labels = model.labels
    y = torch.tensor([class_index(c, labels) for c in clips])
    if waves is None:
        waves = load_waves(clips, progress=progress)
    preds, tp_right, tp_loss, paths = [], 0.0, 0.0, None
    model.net.eval()
    for i in tqdm(range(0, len(waves), 128), desc="evaluating", disable=not progress, leave=False):
        with torch.no_grad():
            x = model.inputs(waves[i : i + 128])
            preds.append(model.net(x)[0].argmax(-1))
        if not model.spiking:  # TP readiness reads hidden spike traces; a CNN has none
            continue
        paths = paths or label_path_traces(model.net, x.shape[1])  # every clip has T frames
        tp = tp_scores(model.net, x, y[i : i + 128], label_paths=paths)
        tp_right += tp["class_score_accuracy"] * len(x)
        tp_loss += tp["layer_loss"] * len(x)
    pred = torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)
    c = len(labels)
    conf = torch.zeros(c, c, dtype=torch.long)
    for t, p in zip(y.tolist(), pred.tolist(), strict=True):
        conf[t, p] += 1
    per_class = {
        labels[i]: {"accuracy": float(conf[i, i] / conf[i].sum()), "n": int(conf[i].sum())}
        for i in range(c)
        if conf[i].sum() > 0
    }
    return {
        "accuracy": float((pred == y).float().mean()) if len(y) else float("nan"),
        "n": len(y),
        "labels": labels,
        "per_class": per_class,
        "confusion": conf.tolist(),
        # TP readiness: TP's own class score and layer loss at the last frame (rules/tp.py)
        "tp_readiness": {"class_score_accuracy": tp_right / max(1, len(y)),
                         "layer_loss": tp_loss / max(1, len(y))} if model.spiking else None,
        "arch": model.config.arch,
    }


def evaluate(
    model: KWSModel, data: str, which: str = "all", val_percent: int = 20, progress: bool = False,
    condition: str = "clean", seed: int = 0,
) -> dict:
    """Accuracy on a split of ``data``; ``condition="room"``: each speaker's clips through
    that speaker's simulated room (seeded)."""
    clips = split(scan(data), which, val_percent)
    waves = None
    if condition == "room":
        waves = room_waves(clips, load_waves(clips, progress=progress), noise_recordings(data),
                           seed)
    elif condition != "clean":
        raise ValueError(f"unknown condition {condition!r}")
    out = evaluate_clips(model, clips, progress, waves)
    out.update({"condition": condition, "seed": seed if condition == "room" else None})
    out.update({"data": str(data), "split": which, "val_percent": val_percent,
                "speakers": len({c.speaker for c in clips if "_nohash_" in c.path.name})})
    return out
