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

import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..adapt import DEFAULT_EPOCHS, adapt_inputs
from ..audio import SAMPLE_RATE
from ..data import Clip, load_waves, noise_recordings, scan, split
from ..pipeline import SILENCE, KWSModel, batched
from ..speakers import eligible_speakers, speaker_pool
from ..words import (
    WordBook,
    WordConfig,
    bank_conditions,
    bank_room_simulators,
    build_bank,
    dtw,
    sequence,
    speech_span,
    with_bank,
    word_wins,
)
from .personalize import CONDITIONS, encode_clips, frame_clips, predict_inputs

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


# ---- the held-out-word protocol (a word of the user's own) ----------------------------------
HOLDOUT = ("yes", "no")  # the two keywords most speakers of the folder say ≥ 5 times (34, 31)
WORD_SPEAKER_SETS = ("tune", "report", "val", "train", "all")


def holdout_backbone_path(words: tuple[str, ...] = HOLDOUT) -> Path:
    """Where the benchmark's backbone (trained without ``words``) is cached; never shipped."""
    return Path.home() / ".cache" / "tracekws" / "enrol" / f"without-{'-'.join(words)}.safetensors"


def holdout_backbone(data: str, words: tuple[str, ...] = HOLDOUT, path: str | None = None,
                     progress: bool = True) -> KWSModel:
    """The backbone pretrained by the shipped recipe with ``words`` removed from its data
    entirely; trained (about 35 min on one core) and cached when absent."""
    target = Path(path) if path else holdout_backbone_path(words)
    if not target.exists():
        from ..train import TrainConfig, train

        train(TrainConfig(data=data, out=str(target), holdout_words=words, threads=1),
              progress=progress)
    model = KWSModel.load(target)
    kept = [w for w in words if w in model.labels]
    if kept:
        raise ValueError(f"backbone {target} was trained with {kept}: not a held-out backbone")
    return model


def word_sequences(model: KWSModel, clips: list[Clip], cfg: WordConfig, room=None,
                   cache: dict | None = None) -> list[np.ndarray]:
    """Template sequences (:func:`model.words.sequence`) of whole clips; ``cache`` (a dict the
    caller keeps) holds them by clip and room."""
    cache = {} if cache is None else cache
    tag = None if room is None else room.room.seed
    todo = [c for c in clips if ("seq", str(c.path), tag) not in cache]
    for i in range(0, len(todo), 128):
        part = todo[i:i + 128]
        f, _ = frame_clips(model, part, room)
        spikes = model.net.spike_trains(model.encode_frames(f))
        for c, s, fi in zip(part, spikes, f, strict=True):
            cache[("seq", str(c.path), tag)] = sequence(s, speech_span(fi, cfg), cfg)
    return [cache[("seq", str(c.path), tag)] for c in clips]


def cohort_distances(model: KWSModel, clips: list[Clip], cfg: WordConfig, bank: list[np.ndarray],
                     bank_speakers: list[str], room=None, cache: dict | None = None
                     ) -> list[np.ndarray]:
    """Each clip's sorted DTW distances to the bank entries of *other* speakers (a user is
    never in the shipped bank, so neither is the clip's own speaker here)."""
    cache = {} if cache is None else cache
    tag = None if room is None else room.room.seed
    out = []
    for c, q in zip(clips, word_sequences(model, clips, cfg, room, cache), strict=True):
        key = ("bank", str(c.path), tag)
        if key not in cache:
            refs = [b for b, s in zip(bank, bank_speakers, strict=True) if s != c.speaker]
            cache[key] = np.sort(dtw(q, refs))
        out.append(cache[key])
    return out


def class_probabilities(model: KWSModel, clips: list[Clip], room=None, cache: dict | None = None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's best-class posterior and its class index for each whole clip."""
    cache = {} if cache is None else cache
    tag = None if room is None else room.room.seed
    todo = [c for c in clips if ("probs", str(c.path), tag) not in cache]
    if todo:
        f, _ = frame_clips(model, todo, room)
        with torch.no_grad():
            model.net.eval()
            probs = batched(lambda xb: model.net(xb)[0].softmax(1), model.encode_frames(f))
        for c, p in zip(todo, probs, strict=True):
            cache[("probs", str(c.path), tag)] = (float(p.max()), int(p.argmax()))
    got = [cache[("probs", str(c.path), tag)] for c in clips]
    return (np.array([g[0] for g in got], dtype=np.float64),
            np.array([g[1] for g in got], dtype=np.int64))


STREAM_GAP_S = 1.0  # digital silence between two clips of a word stream
STREAM_TOLERANCE_S = 0.9  # a detection this long after a clip ends still belongs to it
ENROLLED = "⟨enrolled⟩"  # the name the streamed word is enrolled under: no class has it


def stream_pair(model: KWSModel, book: WordBook, word: str, support: list[Clip],
                query: list[Clip], own: list[Clip], room=None, seed: int = 0) -> dict:
    """The product path for one speaker and word: the word enrolled into a copy of ``model``
    (with the cohort ``book``) from ``support``, then the speaker's ``query`` recordings of it
    and their ``own`` other words in a seeded order, each followed by ``STREAM_GAP_S`` of
    silence, fed 100 ms at a time to the streaming :class:`~tracekws.model.detect.Detector`
    (the code behind /stream, ``tracekws wyoming`` and ``tracekws listen``). A detection of the
    word within a query clip or ``STREAM_TOLERANCE_S`` after it is a hit (a second one for the
    same clip is a duplicate); any other detection of it is a false accept. The word is
    enrolled as :data:`ENROLLED`, so a class of the same name (a backbone that knows it)
    cannot be mistaken for it."""
    from ..detect import Detector
    from ..words import recording

    pm = model.clone()
    pm.words = book
    for f in frame_clips(model, support, room)[0]:
        pm.words = pm.words.enrol(ENROLLED, *recording(pm, f, book.cfg))
    order = [(c, True) for c in query] + [(c, False) for c in own]
    random.Random(f"{seed}/{word}/{support[0].speaker}").shuffle(order)  # str seeds: stable
    clips = [c for c, _ in order]
    waves = load_waves(clips, progress=False)
    if room is not None:
        waves = room.apply_clips(waves, clips)
    gap = torch.zeros(round(STREAM_GAP_S * SAMPLE_RATE))
    parts, spans, t = [], [], 0
    for w in waves:
        parts += [w, gap]
        spans.append((t / SAMPLE_RATE, (t + len(w)) / SAMPLE_RATE))
        t += len(w) + len(gap)
    audio = torch.cat(parts)
    step = SAMPLE_RATE // 10

    def run(det: Detector) -> tuple[list, float]:
        t0 = time.perf_counter()
        out = [d for i in range(0, len(audio), step) for d in det.feed(audio[i:i + step])]
        return out + det.flush(), time.perf_counter() - t0

    found, busy = run(Detector(pm))
    _, busy_classes = run(Detector(pm, words=()))  # the same stream with the word switched off
    found = [d for d in found if d.label == ENROLLED]
    hit = [False] * len(order)
    false = duplicates = 0
    for d in found:
        i = next((i for i, (s, e) in enumerate(spans) if s <= d.time < e + STREAM_TOLERANCE_S),
                 None)
        if i is None or not order[i][1]:
            false += 1
        elif hit[i]:
            duplicates += 1
        else:
            hit[i] = True
    n_query = sum(q for _, q in order)
    return {"detection": sum(hit) / max(1, n_query),
            "false_accepts_own": false / max(1, len(own)) if own else None,
            "duplicates": duplicates, "stream_seconds": round(len(audio) / SAMPLE_RATE, 1),
            # one thread's compute per second of audio, with the word and without it
            "real_time_factor": round(busy * SAMPLE_RATE / len(audio), 4),
            "real_time_factor_without_words": round(busy_classes * SAMPLE_RATE / len(audio), 4)}


def bench_enrol_words(
    model: KWSModel,
    data: str,
    shots: int = 3,
    words: tuple[str, ...] = HOLDOUT,
    speakers: str = "report",
    condition: str = "clean",
    seed: int = 0,
    cfg: WordConfig | None = None,
    bank_size: int = 400,
    others_clips: int = 400,
    val_percent: int = 20,
    progress: bool = True,
    thresholds: tuple[float, ...] = (),
    stream: bool = False,
    negatives: int = 0,
) -> dict:
    """Enrol a held-out word from ``shots`` of one speaker's recordings; detection on that
    speaker's other recordings of it, false accepts on their other words and on other people's
    speech (the word said by others apart), and the accuracy on the model's own classes with
    the word added, before and after.

    ``model`` must never have heard ``words`` (:func:`holdout_backbone`). ``speakers``: the
    personalisation bench's ``tune``/``report`` halves of the validation speakers, or ``train``
    (the backbone's training speakers: they never said ``words`` to it, so they are new to the
    word; for choosing settings) or ``all``. Other people's clips come from the validation side
    (the training side for ``train``), speak in the same room as the enrolling speaker, and
    never include the enrolling speaker. ``thresholds``: also report detection and false
    accepts at these thresholds (a sweep for choosing one). ``stream``: also run each pair
    through the streaming detector (:func:`stream_pair`, at the default threshold).
    """
    cfg = cfg or WordConfig()
    if speakers not in WORD_SPEAKER_SETS:
        raise ValueError(f"unknown speaker set {speakers!r}; choose from {WORD_SPEAKER_SETS}")
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; choose from {CONDITIONS}")
    clips = scan(data)
    train_side = split(clips, "train", val_percent)
    if speakers == "train":
        pool = train_side
        chosen = eligible_speakers(pool)
    else:
        chosen, pool = speaker_pool(clips, speakers, val_percent)
    need = shots + 2
    pairs = []
    for spk in chosen:
        for w in words:
            mine = sorted((c for c in pool if c.speaker == spk and c.word == w),
                          key=lambda c: c.utt)
            if len(mine) >= need:
                pairs.append((spk, w, mine))
    bank_clips = build_bank(train_side, bank_size, words, seed)
    if not bank_clips:
        raise ValueError(f"no training-side speech in {data} for the cohort bank")
    noise = noise_recordings(data) if condition == "room" else []
    cache: dict = {}
    t0 = time.time()
    conditions = bank_conditions(len(bank_clips), cfg.bank_room_share)
    bank_sims = bank_room_simulators(data) if any(c is not None for c in conditions) else []
    bank = [word_sequences(model, [c], cfg, None if k is None else bank_sims[k], cache)[0]
            for c, k in zip(bank_clips, conditions, strict=True)]
    bank_spk = [c.speaker for c in bank_clips]
    book = with_bank(model, data, bank_size, words, seed, cfg, val_percent) if stream else None
    sweep = sorted(set(thresholds) | {cfg.threshold})
    rows = []
    for spk, w, mine in tqdm(pairs, desc=f"enrol {shots}-shot {condition}", disable=not progress):
        room = None
        if condition == "room":
            from ..room import RoomSimulator, speaker_room

            room = cache.get(("room", seed, spk)) or RoomSimulator(speaker_room(seed, spk), noise)
            cache[("room", seed, spk)] = room
        support, query = mine[:shots], mine[shots:]
        own = [c for c in pool if c.speaker == spk and c.word != w and c.word != SILENCE]
        # the speaker's own negatives: other words they recorded where they enrolled, part of
        # the cohort from then on and never scored
        random.Random(f"{seed}/negatives/{spk}/{w}").shuffle(own)
        mine_neg, own = own[:negatives], own[negatives:]
        neg = word_sequences(model, mine_neg, cfg, room, cache)
        others = [c for c in pool if c.speaker != spk]
        others = others[::max(1, len(others) // others_clips)][:others_clips]
        templates = word_sequences(model, support, cfg, room, cache)

        def cohort(q: np.ndarray, d: np.ndarray, neg: list[np.ndarray] = neg) -> float:
            if neg:
                d = np.sort(np.concatenate([d[:cfg.cohort], dtw(q, neg)]))
            return max(float(d[:cfg.cohort].mean()), 1e-6)

        r_query, r_own, r_others = (
            np.array([float(dtw(q, templates).min()) / cohort(q, d)
                      for q, d in zip(word_sequences(model, group, cfg, room, cache),
                                      cohort_distances(model, group, cfg, bank, bank_spk, room,
                                                       cache), strict=True)])
            for group in (query, own, others))
        (p_query, _), (p_own, _), (p_others, pred) = (
            class_probabilities(model, group, room, cache) for group in (query, own, others))
        said = np.array([c.word == w for c in others], dtype=bool)
        known = np.array([c.word not in words for c in others], dtype=bool)  # the model's classes
        y = np.array([model.labels.index(c.label(model.labels)) for c in others])
        right = (pred == y) & known
        row = {"speaker": spk, "word": w, "n_support": len(support), "n_query": len(query),
               "n_own_other_words": len(own), "n_negatives": len(mine_neg),
               "n_others": int((~said).sum()),
               "n_others_said_word": int(said.sum()), "n_accuracy": int(known.sum()),
               "accuracy_before": float(right.sum() / max(1, known.sum())), "at": {}}
        for th in sweep:
            def wins(r: np.ndarray, p: np.ndarray, th: float = th) -> np.ndarray:
                return word_wins(r, p, th, cfg.temperature)

            fires = wins(r_others, p_others)
            row["at"][f"{th:g}"] = {
                "detection": float(wins(r_query, p_query).mean()),
                "false_accepts_own": float(wins(r_own, p_own).mean()) if len(own) else None,
                "false_accepts_others": float(fires[~said].mean()) if (~said).any() else None,
                "detection_others_said_word": float(fires[said].mean()) if said.any() else None,
                "accuracy_after": float((right & ~fires).sum() / max(1, known.sum())),
            }
        if book is not None:
            row["stream"] = stream_pair(model, book, w, support, query, own, room, seed)
        rows.append(row)

    def mean_at(th: float, key: str) -> float | None:
        vals = [r["at"][f"{th:g}"][key] for r in rows if r["at"][f"{th:g}"][key] is not None]
        return sum(vals) / len(vals) if vals else None

    summary = {f"{th:g}": {k: mean_at(th, k) for k in (
        "detection", "false_accepts_own", "false_accepts_others", "detection_others_said_word",
        "accuracy_after")} for th in sweep}
    acc_before = sum(r["accuracy_before"] for r in rows) / len(rows) if rows else None
    if stream:
        def mean_stream(key: str) -> float | None:
            vals = [r["stream"][key] for r in rows if r["stream"][key] is not None]
            return sum(vals) / len(vals) if vals else None

        summary["stream"] = {k: mean_stream(k) for k in ("detection", "false_accepts_own")} | {
            "duplicates": sum(r["stream"]["duplicates"] for r in rows),
            "real_time_factor": mean_stream("real_time_factor"),
            "real_time_factor_without_words": mean_stream("real_time_factor_without_words"),
            "gap_seconds": STREAM_GAP_S, "tolerance_seconds": STREAM_TOLERANCE_S}
    cond: dict = {"name": condition}
    if condition == "room":
        from ..room import ROOM_SPEC

        cond |= {"seed": seed, **ROOM_SPEC}
    return {
        "protocol": "held-out words: enrol from one speaker's recordings, query the same speaker",
        "negatives": negatives,
        "held_out_words": list(words), "shots": shots, "speaker_set": speakers,
        "condition": cond, "method": "templates", "config": cfg.to_dict(),
        "bank": {"size": len(bank_clips), "seed": seed,
                 "source": "training speakers, words other than the held-out ones"},
        "n_pairs": len(rows), "n_speakers": len({r["speaker"] for r in rows}),
        "threshold": cfg.threshold, **summary[f"{cfg.threshold:g}"],
        "accuracy_before": acc_before,
        **({"stream": summary.pop("stream")} if stream else {}),
        "sweep": summary, "pairs": rows,
        "seconds": round(time.time() - t0, 1), "data": str(data), "val_percent": val_percent,
        "backbone_labels": model.labels,
    }
