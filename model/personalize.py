"""Per-speaker personalisation benchmark (DESIGN §5, the TP paper's protocol on 12 classes).

For each held-out speaker (validation side of the model's speaker split) with at least
``min_clips`` keyword clips: support = the first K clips (by utterance number) of every keyword
the speaker has at least K+1 of (``shots="all"``: all but the last of each); query = every
other clip of the speaker. Each speaker starts from the given model. Retention is the
accuracy on the other held-out speakers' clips after adapting.
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch
from tqdm import tqdm

from .adapt import DEFAULT_EPOCHS, adapt_inputs
from .data import Clip, load_waves, scan, split
from .evaluate import class_index
from .pipeline import KEYWORDS, KWSModel


def support_query(clips: list[Clip], shots: str) -> tuple[list[Clip], list[Clip]]:
    by_word: dict[str, list[Clip]] = defaultdict(list)
    for c in sorted(clips, key=lambda c: (c.word, c.utt)):
        if c.word in KEYWORDS:
            by_word[c.word].append(c)
    support = []
    for cs in by_word.values():
        k = len(cs) - 1 if shots == "all" else int(shots)
        if k >= 1 and len(cs) >= k + 1:
            support += cs[:k]
    chosen = {c.path for c in support}
    return support, [c for c in clips if c.path not in chosen]


def eligible_speakers(clips: list[Clip], min_clips: int = 20) -> list[str]:
    count: dict[str, int] = defaultdict(int)
    for c in clips:
        if c.word in KEYWORDS:
            count[c.speaker] += 1
    return sorted(s for s, n in count.items() if n >= min_clips)


def encode_clips(model: KWSModel, clips: list[Clip]) -> tuple[torch.Tensor, torch.Tensor]:
    """Network inputs (N, T, n_in) of whole clips and their class indices, in chunks of 256."""
    waves = load_waves(clips, progress=False)
    x = torch.cat([model.inputs(waves[i : i + 256]) for i in range(0, len(waves), 256)])
    return x, torch.tensor([class_index(c, model.labels) for c in clips])


@torch.no_grad()
def predict_inputs(model: KWSModel, x: torch.Tensor) -> torch.Tensor:
    """Predicted class index of each encoded clip."""
    model.net.eval()
    return torch.cat([model.net(x[i : i + 256])[0].argmax(1) for i in range(0, len(x), 256)])


def _acc(model: KWSModel, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict_inputs(model, x) == y).float().mean())


def bench_personalize(
    model: KWSModel,
    data: str,
    rule: str = "tp",
    shots: str = "1",
    val_percent: int | None = None,
    epochs: int = DEFAULT_EPOCHS,
    retention_clips: int = 400,
    min_clips: int = 20,
    progress: bool = True,
    **hp,
) -> dict:
    if val_percent is None:
        val_percent = int(model.config.meta.get("training", {}).get("val_percent", 20))
    held_out = split(scan(data), "val", val_percent)
    speakers = eligible_speakers(held_out, min_clips)
    rows = []
    t0 = time.time()
    for spk in tqdm(speakers, desc=f"{rule} {shots}-shot", disable=not progress):
        mine = [c for c in held_out if c.speaker == spk]
        support, query = support_query(mine, shots)
        others = [c for c in held_out if c.speaker != spk]
        step = max(1, len(others) // retention_clips)
        xs, ys = encode_clips(model, support)
        xq, yq = encode_clips(model, query)
        xr, yr = encode_clips(model, others[::step][:retention_clips])
        m = model.clone()
        wrong, ret_before = predict_inputs(m, xq) != yq, _acc(m, xr, yr)
        # query clips of a class the support never shows (the speaker's other words, which
        # are all `_unknown_`): adapting can only fix their errors indirectly
        shown = torch.isin(yq, ys)
        before = 1.0 - float(wrong.float().mean())
        wrong_shown = float((wrong & shown).float().mean())
        adapt_inputs(m, xs, ys, rule=rule, epochs=epochs, **hp)
        rows.append({"speaker": spk, "before": before, "after": _acc(m, xq, yq),
                     "n_support": len(support), "n_query": len(query),
                     "n_query_class_not_in_support": int((~shown).sum()),
                     "errors_before_class_in_support": wrong_shown,
                     "retention_before": ret_before, "retention_after": _acc(m, xr, yr)})

    def mean(key: str) -> float:
        return sum(r[key] for r in rows) / len(rows) if rows else float("nan")

    return {
        "rule": rule,
        "shots": shots,
        "epochs": epochs,
        "hyperparameters": hp,
        "speakers": rows,
        "mean_before": mean("before"),
        "mean_after": mean("after"),
        "gain": mean("after") - mean("before"),
        # the largest gain any rule could show: every query clip right after adapting
        "headroom": 1.0 - mean("before"),
        # ... and its part on query clips of classes the support shows
        "headroom_class_in_support": mean("errors_before_class_in_support"),
        "retention_before": mean("retention_before"),
        "retention_after": mean("retention_after"),
        "seconds": round(time.time() - t0, 1),
        "data": str(data),
        "val_percent": val_percent,
    }
