"""New-keyword benchmark (docs/design.md §5): enrol a word outside the model's classes from K clips.

For each word (default: the digits found in the data, which the shipped model only knows as
``_unknown_``): support = the first K clips of the word (by speaker, then utterance), one pass
of the rule, one clip at a time, exactly what ``/adapt?label=<new word>`` does; then

- ``detection``: the share of the word's clips from *other* speakers now classified as it;
- ``false_accepts``: the share of held-out clips of every other word and of silence
  classified as it;
- ``accuracy_before`` / ``accuracy_after``: 12-class accuracy on those held-out clips.

Each word starts from the given model.
"""

from __future__ import annotations

import time

import torch
from tqdm import tqdm

from ..adapt import DEFAULT_EPOCHS, adapt_inputs
from ..data import scan, split
from ..pipeline import KWSModel
from .personalize import encode_clips, predict_inputs

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def bench_enrol(
    model: KWSModel,
    data: str,
    shots: int = 3,
    words: list[str] | None = None,
    rule: str = "tp",
    val_percent: int | None = None,
    epochs: int = DEFAULT_EPOCHS,
    progress: bool = True,
    **hp,
) -> dict:
    if val_percent is None:
        val_percent = int(model.config.meta.get("training", {}).get("val_percent", 20))
    clips = scan(data)
    known = set(model.labels)
    present = sorted({c.word for c in clips})
    words = words or [w for w in DIGITS if w in present] or [
        w for w in present if w not in known and not w.startswith("_")]
    missing = [w for w in words if w not in present]
    if missing:
        raise ValueError(f"no clips of {missing} under {data}")
    held_out = split(clips, "val", val_percent)
    t0 = time.time()
    x_held, y_held = encode_clips(model, held_out)
    rows = []
    for word in tqdm(words, desc=f"enrol {rule} {shots}-shot", disable=not progress):
        mine = sorted((c for c in clips if c.word == word), key=lambda c: (c.speaker, c.utt))
        support = mine[:shots]
        speakers = {c.speaker for c in support}
        query = [c for c in mine if c.speaker not in speakers]
        if len(support) < shots or not query:
            continue
        keep = torch.tensor([c.word != word for c in held_out])
        xo, yo = x_held[keep], y_held[keep]
        m = model.clone()
        before = float((predict_inputs(m, xo) == yo).float().mean())
        new = m.add_label(word)
        xs, _ = encode_clips(m, support)
        adapt_inputs(m, xs, torch.full((len(support),), new), rule=rule, epochs=epochs, **hp)
        pq, po = predict_inputs(m, encode_clips(m, query)[0]), predict_inputs(m, xo)
        rows.append({
            "word": word, "n_support": len(support), "n_query": len(query),
            "n_others": len(yo), "detection": float((pq == new).float().mean()),
            "false_accepts": float((po == new).float().mean()),
            "accuracy_before": before, "accuracy_after": float((po == yo).float().mean())})

    def mean(key: str) -> float:
        return sum(r[key] for r in rows) / len(rows) if rows else float("nan")

    return {
        "rule": rule, "shots": shots, "epochs": epochs, "hyperparameters": hp, "words": rows,
        **{f"mean_{k}": mean(k) for k in ("detection", "false_accepts", "accuracy_before",
                                         "accuracy_after")},
        "seconds": round(time.time() - t0, 1), "data": str(data), "val_percent": val_percent,
    }
