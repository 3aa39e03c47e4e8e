"""Per-speaker personalisation benchmark: the TP paper's protocol on 12 classes, judged on
people nobody tuned on.

For each speaker of the chosen set with at least ``min_clips`` keyword clips and a keyword
said at least twice: support = the first K clips (by utterance number) of every keyword the
speaker has at least K+1 of (``shots="all"``: all but the last of each); query = every other
clip of the speaker (duplicate recordings were dropped by :func:`data.scan`, so no query clip
equals a support clip). Each speaker starts from the given model. Retention is the accuracy
on up to ``retention_clips`` clips of the other speakers of the pool after adapting.

Who is new (``speakers``):

- ``val``: every eligible speaker on the validation side of the model's speaker split;
- ``tune`` / ``report``: two fixed, disjoint halves of those: defaults are chosen on ``tune``
  and numbers are reported on ``report`` (:func:`tracekws.model.speakers.halves`);
- ``all``: every eligible speaker of the folder (how any other folder of clips is judged).

``condition="room"`` sends each speaker's support, query and retention clips through that
speaker's simulated room (:mod:`model.room`), seeded by ``seed``.

Beside accuracy the JSON reports false accepts — the share of query clips whose true class is
``_unknown_`` or ``_silence_`` that the model calls a keyword — before and after adapting,
and the accuracy per class.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict

import torch
from tqdm import tqdm

from ..adapt import DEFAULT_EPOCHS, adapt_inputs, negatives
from ..data import Clip, load_waves, noise_recordings, scan
from ..evaluate import class_index
from ..pipeline import KWSModel, batched
from ..speakers import MIN_CLIPS, speaker_pool, support_query

CONDITIONS = ("clean", "room")

# A row of a sweep log (scripts/sweep-personalize.py) holds one setting's hyper-parameters,
# a few bookkeeping fields, and this benchmark's results per shots under these prefixes.
SWEEP_RESULT_PREFIXES = ("gain_", "ret_", "fa_", "before_", "fixed_", "broken_", "p_")
SWEEP_BOOKKEEPING = ("rule", "speakers", "score")


def sweep_settings(rows: list[dict]) -> tuple[list[str], list[str]]:
    """A sweep log's setting names (hyper-parameters and ``epochs``, in row order) and those
    it tried more than one value of: what a table shows, and what the sweep decided."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    keys = [k for k in keys if k not in SWEEP_BOOKKEEPING
            and not k.startswith(SWEEP_RESULT_PREFIXES)]
    varied = [k for k in keys if len({json.dumps(row.get(k)) for row in rows}) > 1]
    return keys, varied


def frame_clips(model: KWSModel, clips: list[Clip], room=None, cache: dict | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Front-end frames (N, T, n_feat) of whole clips and their class indices, through ``room``
    (a :class:`model.room.RoomSimulator`) if given.

    ``cache`` (a dict the caller keeps) holds frames already computed, keyed by clip and room,
    so a sweep over many settings loads, simulates and transforms each clip once.
    """
    labels = torch.tensor([class_index(c, model.labels) for c in clips], dtype=torch.long)
    tag = None if room is None else room.room.seed
    todo = [c for c in clips if cache is None or (str(c.path), tag) not in cache]
    if todo:
        waves = load_waves(todo, progress=False)
        if room is not None:
            waves = room.apply_clips(waves, todo)
        with torch.no_grad():
            f = batched(model.frontend, waves)
        if cache is None:
            return f, labels
        cache.update({(str(c.path), tag): fi for c, fi in zip(todo, f, strict=True)})
    if not clips:
        return torch.zeros(0), labels
    return torch.stack([cache[(str(c.path), tag)] for c in clips]), labels


def encode_clips(model: KWSModel, clips: list[Clip], room=None, cache: dict | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Network inputs (N, T, n_in) of whole clips (see :func:`frame_clips`) and their classes."""
    f, labels = frame_clips(model, clips, room, cache)
    return (model.encode_frames(f) if len(f) else f), labels


@torch.no_grad()
def predict_inputs(model: KWSModel, x: torch.Tensor) -> torch.Tensor:
    """Predicted class index of each encoded clip."""
    model.net.eval()
    if not len(x):
        return torch.zeros(0, dtype=torch.long)
    return batched(lambda xb: model.net(xb)[0].argmax(1), x)


def false_accept_count(pred: torch.Tensor, y: torch.Tensor, neg: torch.Tensor) -> int:
    """Clips of a non-keyword class that are called a keyword."""
    return int((~torch.isin(pred[torch.isin(y, neg)], neg)).sum())


def false_accepts(pred: torch.Tensor, y: torch.Tensor, neg: torch.Tensor) -> float | None:
    """Share of clips of a non-keyword class that are called a keyword (None: no such clip)."""
    n = int(torch.isin(y, neg).sum())
    return false_accept_count(pred, y, neg) / n if n else None


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _pooled(rows: list[dict], when: str) -> float | None:
    n = sum(r["n_query_negative"] for r in rows)
    return sum(r[f"false_accept_clips_{when}"] for r in rows) / n if n else None


def _tally(counts: dict, y: torch.Tensor, before: torch.Tensor, after: torch.Tensor) -> None:
    """Per true class: clips, right before adapting, right after (``counts[k]``, in place)."""
    for t, a, b in zip(y.tolist(), (before == y).tolist(), (after == y).tolist(), strict=True):
        counts[t][0] += 1
        counts[t][1] += int(a)
        counts[t][2] += int(b)


def _per_class(counts: dict, labels: list[str], change: str) -> dict:
    return {labels[k]: {"n": n, "before": a / n, "after": b / n, change: (b - a) / n}
            for k, (n, a, b) in sorted(counts.items())}


def spread(clips: list, n: int) -> list:
    """``n`` clips evenly spaced over the whole list (all of them when there are fewer). The
    pool is in folder order, class by class, so its first ``n`` clips would hold only the
    classes whose folders come first (before session 14 retention had no `yes`, `up`, `right`
    or `stop` clip and 17 % `_silence_`)."""
    if len(clips) <= n:
        return list(clips)
    return [clips[i * len(clips) // n] for i in range(n)]


def sign_test(fixed: int, broken: int) -> float:
    """Two-sided exact sign test: the chance of a split at least this uneven between query
    clips adapting fixed and clips it broke, were each change a fair coin. The gain in points
    is (fixed − broken) clips spread over a few hundred clips; this says whether it is more
    than the noise of which clips happened to flip."""
    n = fixed + broken
    if n == 0:
        return 1.0
    k = min(fixed, broken)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


def bench_personalize(
    model: KWSModel,
    data: str,
    rule: str = "tp",
    shots: str = "1",
    val_percent: int | None = None,
    epochs: int = DEFAULT_EPOCHS,
    retention_clips: int = 400,
    min_clips: int = MIN_CLIPS,
    progress: bool = True,
    speakers: str = "val",
    condition: str = "clean",
    seed: int = 0,
    max_speakers: int = 0,
    cache: dict | None = None,
    **hp,
) -> dict:
    """Query accuracy, false accepts and retention before/after adapting, per speaker.

    ``cache``: see :func:`frame_clips`; it also keeps
    the rooms' simulators.
    """
    if val_percent is None:
        val_percent = int(model.config.meta.get("training", {}).get("val_percent", 20))
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; choose from {CONDITIONS}")
    chosen, pool = speaker_pool(scan(data), speakers, val_percent, min_clips)
    if max_speakers:
        chosen = chosen[:max_speakers]
    noise = noise_recordings(data) if condition == "room" else []
    neg = negatives(model)
    labels = model.labels
    by_class: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])  # n, right before, after
    by_class_ret: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])  # same, retention
    rows = []
    t0 = time.time()
    for spk in tqdm(chosen, desc=f"{rule} {shots}-shot {condition}", disable=not progress):
        mine = [c for c in pool if c.speaker == spk]
        support, query = support_query(mine, shots)
        others = [c for c in pool if c.speaker != spk]
        retention = spread(others, retention_clips)
        room = None
        if condition == "room":
            from ..room import RoomSimulator, speaker_room

            # a caller's cache also keeps the simulators (an impulse response costs up to 2 s)
            room = (cache or {}).get(("room", seed, spk)) or RoomSimulator(
                speaker_room(seed, spk), noise)
            if cache is not None:
                cache[("room", seed, spk)] = room
        fs, ys = frame_clips(model, support, room, cache)
        fq, yq = frame_clips(model, query, room, cache)
        fr, yr = frame_clips(model, retention, room, cache)
        m = model.clone()
        pq0, pr0 = predict_inputs(m, m.encode_frames(fq)), predict_inputs(m, m.encode_frames(fr))
        adapt_inputs(m, m.encode_frames(fs), ys, rule=rule, epochs=epochs, frames=fs, **hp)
        # encoded again: adapting may have moved the feature normalisation
        pq1, pr1 = predict_inputs(m, m.encode_frames(fq)), predict_inputs(m, m.encode_frames(fr))
        wrong = pq0 != yq
        # query clips of a class the support never shows (the speaker's other words, which
        # are all `_unknown_`): adapting can only fix their errors indirectly
        shown = torch.isin(yq, ys)
        _tally(by_class, yq, pq0, pq1)
        _tally(by_class_ret, yr, pr0, pr1)
        row = {"speaker": spk, "before": 1.0 - float(wrong.float().mean()),
               "after": float((pq1 == yq).float().mean()),
               "n_support": len(support), "n_query": len(query),
               "query_fixed": int((wrong & (pq1 == yq)).sum()),
               "query_broken": int((~wrong & (pq1 != yq)).sum()),
               "n_query_class_not_in_support": int((~shown).sum()),
               "n_query_negative": int(torch.isin(yq, neg).sum()),
               "errors_before_class_in_support": float((wrong & shown).float().mean()),
               "false_accepts_before": false_accepts(pq0, yq, neg),
               "false_accepts_after": false_accepts(pq1, yq, neg),
               "false_accept_clips_before": false_accept_count(pq0, yq, neg),
               "false_accept_clips_after": false_accept_count(pq1, yq, neg),
               "retention_before": float((pr0 == yr).float().mean()),
               "retention_after": float((pr1 == yr).float().mean()),
               "retention_false_accepts_before": false_accepts(pr0, yr, neg),
               "retention_false_accepts_after": false_accepts(pr1, yr, neg)}
        if room is not None:
            row["room"] = room.room.to_dict()
        rows.append(row)

    def mean(key: str) -> float | None:
        return _mean([r[key] for r in rows]) if rows else None

    fixed, broken = (sum(r[k] for r in rows) for k in ("query_fixed", "query_broken"))
    cond: dict = {"name": condition}
    if condition == "room":
        from ..room import ROOM_SPEC

        cond |= {"seed": seed, **ROOM_SPEC}
    before, after = mean("before"), mean("after")
    return {
        "rule": rule,
        "shots": shots,
        "epochs": epochs,
        "hyperparameters": hp,
        "speaker_set": speakers,
        "condition": cond,
        "speakers": rows,
        "mean_before": before,
        "mean_after": after,
        "gain": after - before if rows else None,
        # the gain in clips: query clips adapting fixed and broke, and the sign test's p
        "query_clips": sum(r["n_query"] for r in rows),
        "query_fixed": fixed,
        "query_broken": broken,
        "sign_test_p": sign_test(fixed, broken),
        # the largest gain any rule could show: every query clip right after adapting
        "headroom": 1.0 - before if rows else None,
        # ... and its part on query clips of classes the support shows
        "headroom_class_in_support": mean("errors_before_class_in_support"),
        "false_accepts_before": mean("false_accepts_before"),
        "false_accepts_after": mean("false_accepts_after"),
        # pooled over every speaker's non-keyword query clips: the mean above weighs a speaker
        # with one such clip like one with fourteen, so one clip can move it by 10 points
        "false_accepts_pooled_before": _pooled(rows, "before"),
        "false_accepts_pooled_after": _pooled(rows, "after"),
        "n_query_negative": sum(r["n_query_negative"] for r in rows),
        "retention_before": mean("retention_before"),
        "retention_after": mean("retention_after"),
        "retention_false_accepts_before": mean("retention_false_accepts_before"),
        "retention_false_accepts_after": mean("retention_false_accepts_after"),
        "per_class": _per_class(by_class, labels, "gain"),
        # where retention is lost (e.g. `_silence_` windows after a normalisation move)
        "retention_per_class": _per_class(by_class_ret, labels, "change"),
        "seconds": round(time.time() - t0, 1),
        "data": str(data),
        "val_percent": val_percent,
        "min_clips": min_clips,
    }
