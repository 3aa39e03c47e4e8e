"""Who is new: the speaker sets and the support / query episodes that every personalisation
measurement and meta-training share.

An episode is one speaker: support = the first K clips (by utterance number) of every keyword
the speaker has at least K+1 of (``shots="all"``: all but the last of each); query = every
other clip of that speaker. Speaker sets (``val``, ``tune``, ``report``, ``all``) are fixed by
the speaker ids alone, never by results, so a default chosen on ``tune`` cannot have seen
``report``. They live in the core, not in the benchmarks, because meta-training builds its
episodes the same way the benchmark judges them.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from .data import Clip, split
from .pipeline import KEYWORDS

SPEAKER_SETS = ("val", "tune", "report", "all")
MIN_CLIPS = 10  # keyword clips a speaker needs to be benchmarked


def support_query(clips: list[Clip], shots: str) -> tuple[list[Clip], list[Clip]]:
    by_word: dict[str, list[Clip]] = defaultdict(list)
    for c in sorted(clips, key=lambda c: (c.word, c.utt, str(c.path))):
        if c.word in KEYWORDS:
            by_word[c.word].append(c)
    support = []
    for cs in by_word.values():
        k = len(cs) - 1 if shots == "all" else int(shots)
        if k >= 1 and len(cs) >= k + 1:
            support += cs[:k]
    chosen = {c.path for c in support}
    return support, [c for c in clips if c.path not in chosen]


def keyword_counts(clips: list[Clip]) -> dict[str, dict[str, int]]:
    """speaker → keyword → clips."""
    count: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for c in clips:
        if c.word in KEYWORDS:
            count[c.speaker][c.word] += 1
    return count


def eligible_speakers(clips: list[Clip], min_clips: int = MIN_CLIPS) -> list[str]:
    """Speakers with ``min_clips`` keyword clips, one keyword at least twice (a 1-shot support
    and a query of it)."""
    return sorted(s for s, words in keyword_counts(clips).items()
                  if sum(words.values()) >= min_clips and max(words.values()) >= 2)


def halves(speakers: list[str], clips: list[Clip]) -> tuple[list[str], list[str]]:
    """(tune, report): a fixed split of ``speakers`` into two halves of similar sizes.

    Speakers are ranked by their number of keyword clips and taken in pairs; within a pair a
    hash of the id decides who tunes, so both halves hold as many talkative speakers and the
    split never depends on results.
    """
    n = {s: sum(w.values()) for s, w in keyword_counts(clips).items()}
    ranked = sorted(speakers, key=lambda s: (-n.get(s, 0), s))
    tune, report = [], []
    for i in range(0, len(ranked), 2):
        pair = sorted(ranked[i : i + 2], key=lambda s: hashlib.sha1(f"tune:{s}".encode()).digest())
        tune.append(pair[0])
        report += pair[1:]
    return sorted(tune), sorted(report)


def speaker_pool(clips: list[Clip], which: str, val_percent: int,
                 min_clips: int = MIN_CLIPS) -> tuple[list[str], list[Clip]]:
    """The speakers to benchmark and the pool of clips they and the retention clips come from."""
    if which not in SPEAKER_SETS:
        raise ValueError(f"unknown speaker set {which!r}; choose from {SPEAKER_SETS}")
    pool = clips if which == "all" else split(clips, "val", val_percent)
    speakers = eligible_speakers(pool, min_clips)
    if which in ("tune", "report"):
        tune, report = halves(speakers, pool)
        speakers = tune if which == "tune" else report
    return speakers, pool
