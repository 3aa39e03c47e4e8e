"""Long-stream benchmark: false accepts per hour and misses of the live detector.

Clip accuracy says little about a device that listens all day: what users feel is how often
it fires when nobody said a keyword, and how often it misses one. This benchmark builds long
seeded streams and runs the service's own streaming detector (:class:`Detector`, the code
behind the WebSocket ``/stream``) over them.

- **Streams.** At least ``hours`` of audio that holds no keyword — the folder's non-keyword
  words (``_unknown_``, validation-side speakers only: the model trained on the others), its
  ``_silence_`` windows, its ``_background_noise_`` recording(s) cut into 5-15 s pieces, and
  open speech: espeak-ng (8 accents x 8 voices, 140-190 words/min) reading passages of the
  King James Bible (1611, public domain; the text of the Debian package ``bible-kjv-text``,
  read with its ``bible`` program, ``apt-get install bible-kjv``), verses that contain a
  keyword or an inflection of one (``goes``, ``stopped``...) left out — shuffled and
  concatenated with 5 ms fades. Every keyword clip of the chosen speakers is spliced in at a
  seeded random time, at least ``MIN_GAP`` s of negative audio between two. The synthesised
  passages are cached (``cache``, not in git). A pink-noise floor at -60 dBFS runs under the
  whole stream (espeak-ng's pauses are digital zeros). ``condition="room"`` passes every
  piece through one simulated room (model/room.py; reverberation, band-pass, noise).
- **Halves.** The ``tune`` stream holds the keywords of the ``tune`` speakers
  (:func:`~tracekws.model.speakers.halves`), the ``report`` stream those of the
  ``report`` speakers; their negative audio is disjoint too (other ``_unknown_`` speakers,
  other ``_silence_`` windows, the other half of each noise recording, other verses and
  voices). Every threshold and the refractory time are chosen on ``tune`` only.
- **Scoring.** Posteriors are computed once per stream (:meth:`Detector.posterior_frames`);
  the sweep re-runs only :class:`~tracekws.model.detect.Trigger`, the detector's own
  thresholding and refractory logic. A detection at time t (end of its frame) *hits* a
  keyword clip spliced at [s, e) if the label matches and s <= t < e + ``TOLERANCE``; a
  second detection of the same clip is a duplicate (neither hit nor false accept); every
  other detection is a false accept. False accepts per hour are counted over the hours of
  negative audio (the stream minus its keyword clips).
- **Calibration.** Per-keyword thresholds and one refractory time (from ``REFRACTORIES``) are
  chosen on the tune stream for ``target_fa`` false accepts per hour overall: each keyword's
  curve is measured alone, thresholds start at the top of the grid and a greedy step lowers
  the keyword whose next step gains the most hits per false accept within the budget
  (``floor(target_fa x hours)`` false accepts on tune). The set is then run jointly on tune and
  on report. ``calibrated_out`` writes a copy of the model whose config carries them (a
  ``detector`` entry: thresholds, refractory time, the target, the report stream's result and
  the command), which /stream, ``tracekws wyoming`` and ``tracekws listen`` then use for every
  profile version without settings of its own (:func:`write_calibrated`).
- **Teaching false triggers.** Three false triggers of the report stream (the calibrated
  setting's, topped up with the most confident ones at the service's default threshold 0.5 if
  it has fewer) are each sent, as the 2 s of stream around them, through /adapt's own path
  (:class:`~tracekws.model.adapt.AdaptSession` with label ``_unknown_``, rule ``tp`` and its
  defaults: the service's default rule and hyper-parameters), one after another; both streams
  are scored again with the adapted model.
"""

from __future__ import annotations

import hashlib
import math
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..audio import SAMPLE_RATE, load
from ..data import Clip, is_validation, noise_recordings, scan, split
from ..detect import Detector, DetectorConfig, DetectorSettings, Trigger
from ..pipeline import KEYWORDS, PRETRAINED, SILENCE, UNKNOWN, KWSModel
from ..speakers import MIN_CLIPS, eligible_speakers, halves

MIN_GAP = 4.0  # s of negative audio between two keyword clips, at least
TOLERANCE = 1.0  # s after a clip's end a detection of it still counts
FADE = 80  # samples (5 ms) of fade at each piece's edges
FLOOR_RMS = 1e-3  # pink noise under the whole stream (-60 dBFS)
TTS_LEVEL_DB = (-6.0, 3.0)  # synthesised speech, dB around REF_SPEECH_RMS (active RMS)
NOISE_PIECE = (5.0, 15.0)  # s, pieces of the background-noise recordings
REFRACTORIES = (1.0, 0.5, 1.5, 2.0)  # s; ties go to the first (the service's default)
SWEEP = [round(float(t), 4) for t in np.concatenate(
    [np.linspace(0.05, 0.45, 9), 1 - np.geomspace(0.5, 1e-3, 46)])]
CAL_GRID = [t for t in SWEEP if t >= 0.3]
TEXT_SOURCE = ("King James Bible (1611, public domain), text of the Debian package "
               "bible-kjv-text, read with `bible` (Debian package bible-kjv)")
ESPEAK_ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
ESPEAK_VARIANTS = ["m1", "m3", "m5", "m7", "f1", "f2", "f3", "f4"]
TEACH_WINDOW = (1.7, 0.3)  # s before and after a false trigger sent to /adapt
_SUFFIXES = ("", "s", "es", "ed", "ing", "ped", "ping", "ger")


def _h(*parts: object) -> int:
    return int(hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()[:12], 16)


def _half_of(key: str, half: str) -> bool:
    return (_h("stream-half", key) % 2 == 0) == (half == "tune")


# ---- open speech ----------------------------------------------------------------------------
def keyword_free(text: str) -> bool:
    """True if no word of ``text`` is a keyword or an inflection of one."""
    banned = {k + s for k in KEYWORDS for s in _SUFFIXES}
    return not any(w in banned for w in re.findall(r"[a-z]+", text.lower()))


def kjv_verses() -> list[str]:
    """Every verse of the King James Bible, from the Debian package ``bible-kjv``."""
    exe = shutil.which("bible")
    if exe is None:
        raise RuntimeError("the stream benchmark reads its open speech from the Debian "
                           "package bible-kjv: apt-get install bible-kjv")
    out = subprocess.run([exe, "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True,
                         check=True).stdout
    return [ln.split(" ", 1)[1].strip() for ln in out.splitlines() if " " in ln.strip()]


def passages(verses: list[str], half: str, seed: int, per: int = 4) -> list[str]:
    """Keyword-free runs of ``per`` consecutive verses of one half of the text, shuffled."""
    keep = [v for v in verses if keyword_free(v)]
    groups = [" ".join(keep[i : i + per]) for i in range(0, len(keep) - per + 1, per)]
    groups = [g for i, g in enumerate(groups) if (i % 2 == 0) == (half == "tune")]
    rng = np.random.default_rng(_h("passages", half, seed))
    return [groups[i] for i in rng.permutation(len(groups))]


def espeak_version() -> str:
    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng not found: apt-get install espeak-ng")
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    return out.strip().split("\n")[0]


def synthesise(text: str, voice: str, wpm: int, cache: Path) -> torch.Tensor:
    """espeak-ng speech of ``text`` at 16 kHz, cached as FLAC under ``cache``."""
    import soundfile as sf

    key = hashlib.sha1(f"{espeak_version()}|{voice}|{wpm}|{text}".encode()).hexdigest()
    path = cache / "tts" / key[:2] / f"{key}.flac"
    if not path.is_file():
        from scipy.signal import resample_poly

        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "a.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), text],
                           check=True, capture_output=True)
            x, rate = sf.read(raw, dtype="float64")
        g = math.gcd(SAMPLE_RATE, rate)
        y = resample_poly(x, SAMPLE_RATE // g, rate // g)
        part = path.with_suffix(".part.flac")
        sf.write(part, np.clip(y, -1, 1), SAMPLE_RATE, subtype="PCM_16")
        part.replace(path)
    return load(path)


# ---- streams --------------------------------------------------------------------------------
@dataclass
class Stream:
    """A built stream: its audio and where its keyword clips sit."""

    name: str
    audio: torch.Tensor  # float32, 16 kHz
    keywords: list[tuple[int, int, str, str]]  # (start, end) samples, word, clip path
    negative_seconds: dict[str, float]  # source → seconds of negative audio
    speakers: list[str] = field(default_factory=list)
    # where each negative piece starts in negative-audio time (samples), and its source
    piece_starts: list[int] = field(default_factory=list)
    piece_sources: list[str] = field(default_factory=list)

    def source_at(self, t: float) -> str:
        """What the stream holds at ``t`` seconds: a negative source or ``keyword:<word>``
        (a keyword clip or the ``TOLERANCE`` after it)."""
        pos = int(t * SAMPLE_RATE)
        inserted = 0
        for s, e, w, _ in self.keywords:
            if s > pos:
                break
            if pos < e + TOLERANCE * SAMPLE_RATE:
                return f"keyword:{w}"
            inserted += e - s
        if not self.piece_starts:
            return "unknown"
        i = int(np.searchsorted(self.piece_starts, pos - inserted, side="right")) - 1
        return self.piece_sources[max(i, 0)]

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    @property
    def negative_hours(self) -> float:
        return sum(self.negative_seconds.values()) / 3600

    def summary(self) -> dict:
        words: dict[str, int] = {}
        for _, _, w, _ in self.keywords:
            words[w] = words.get(w, 0) + 1
        return {"seconds": round(self.seconds, 2),
                "negative_seconds": {k: round(v, 2) for k, v in self.negative_seconds.items()},
                "negative_hours": round(self.negative_hours, 4),
                "keyword_clips": len(self.keywords), "keyword_clips_per_word": words,
                "speakers": len(self.speakers)}


def _fade(x: torch.Tensor) -> torch.Tensor:
    n = min(FADE, len(x) // 2)
    if n:
        ramp = torch.linspace(0, 1, n)
        x = x.clone()
        x[:n] *= ramp
        x[-n:] *= ramp.flip(0)
    return x


def _level(x: torch.Tensor, db: float) -> torch.Tensor:
    from ..room import REF_SPEECH_RMS, active_rms

    rms = active_rms(x.double().numpy())
    return x * (REF_SPEECH_RMS * 10 ** (db / 20) / (rms + 1e-9))


def build_stream(
    name: str,
    keyword_clips: list[Clip],
    negative_clips: list[Clip],
    noises: list[torch.Tensor],
    texts: list[str],
    hours: float,
    seed: int,
    cache: Path,
    room=None,
    progress: bool = False,
) -> Stream:
    """A stream of ``hours`` of negative audio (``negative_clips``, then ``noises`` cut into
    pieces, then synthesised ``texts`` until long enough) with ``keyword_clips`` spliced in."""
    rng = np.random.default_rng(_h("stream", name, seed))
    pieces: list[tuple[str, torch.Tensor, str]] = []  # (source, audio, key)
    for c in negative_clips:
        pieces.append((c.label(), load(c.path), str(c.path)))
    for i, rec in enumerate(noises):
        pos = 0
        while pos < len(rec):
            n = int(rng.uniform(*NOISE_PIECE) * SAMPLE_RATE)
            piece = rec[pos : pos + n]
            if len(piece) >= SAMPLE_RATE:
                pieces.append(("_background_noise_", piece, f"noise{i}:{pos}"))
            pos += n
    have = sum(len(p) for _, p, _ in pieces) / SAMPLE_RATE
    want = hours * 3600
    voices = [f"{a}+{v}" for a in ESPEAK_ACCENTS for v in ESPEAK_VARIANTS]
    voices = [v for i, v in enumerate(voices) if (i % 2 == 0) == (name != "report")]
    it = iter(texts)
    while have < want:
        text = next(it, None)
        if text is None:
            raise RuntimeError(f"not enough text for {hours} h of speech")
        voice = voices[int(rng.integers(len(voices)))]
        wpm = int(rng.integers(140, 191))
        x = _level(synthesise(text, voice, wpm, cache), rng.uniform(*TTS_LEVEL_DB))
        pieces.append(("tts", x, f"tts:{voice}:{wpm}:{text[:40]}"))
        have += len(x) / SAMPLE_RATE
        if progress and len(pieces) % 50 == 0:
            print(f"{name}: {have / 60:.1f} of {want / 60:.0f} min", flush=True)
    order = rng.permutation(len(pieces))
    pieces = [pieces[i] for i in order]

    def heard(x: torch.Tensor, key: str, speech: bool) -> torch.Tensor:
        return x if room is None else room.apply(x, key, speech=speech)

    negative: dict[str, float] = {}
    neg, piece_starts, at = [], [], 0
    for source, x, key in pieces:
        piece_starts.append(at)
        at += len(x)
        neg.append(_fade(heard(x, key, source != SILENCE and source != "_background_noise_")))
        negative[source] = negative.get(source, 0.0) + len(x) / SAMPLE_RATE
    neg_audio = torch.cat(neg)
    # keyword positions in negative-audio time, at least MIN_GAP apart
    kws = [keyword_clips[i] for i in rng.permutation(len(keyword_clips))]
    gap = int(MIN_GAP * SAMPLE_RATE)
    spare = len(neg_audio) - gap * (len(kws) + 1)
    if spare < 0:
        raise ValueError(f"{len(kws)} keyword clips need more than {hours} h of audio")
    cuts = np.sort(rng.integers(0, spare + 1, len(kws))) + gap * (np.arange(len(kws)) + 1)
    out, marks, prev, pos = [], [], 0, 0
    for c, cut in zip(kws, cuts.tolist(), strict=True):
        out.append(neg_audio[prev:cut])
        pos += cut - prev
        x = _fade(heard(load(c.path), str(c.path), True))
        out.append(x)
        marks.append((pos, pos + len(x), c.word, str(c.path)))
        pos += len(x)
        prev = cut
    out.append(neg_audio[prev:])
    audio = torch.cat(out).float()
    from ..room import coloured_noise

    floor = coloured_noise(len(audio), "pink", np.random.default_rng(_h("floor", name, seed)))
    audio = (audio + torch.from_numpy(floor * FLOOR_RMS).float()).clamp(-1, 1)
    return Stream(name, audio, marks, negative, sorted({c.speaker for c in keyword_clips}),
                  piece_starts, [src for src, _, _ in pieces])


# ---- detector and scoring -------------------------------------------------------------------
@torch.no_grad()
def stream_posteriors(model: KWSModel, audio: torch.Tensor, chunk: float = 10.0
                      ) -> tuple[np.ndarray, Detector]:
    """The detector's smoothed keyword posteriors (frames, keywords) over the whole stream."""
    det = Detector(model)
    n = int(chunk * SAMPLE_RATE)
    parts = [det.posterior_frames(audio[i : i + n])[:, det.keyword_idx].numpy()
             for i in range(0, len(audio), n)]
    return np.concatenate(parts), det


@dataclass
class Scored:
    hits: np.ndarray  # per keyword column
    false: np.ndarray  # false accepts labelled with each keyword
    duplicates: int
    false_events: list[tuple[float, str, float]]  # (time s, label, posterior)


def score(fired: list[tuple[int, int, float]], stream: Stream, det: Detector) -> Scored:
    """Match detections (frame, keyword column, posterior) to the stream's keyword clips."""
    kw = [det.labels[k] for k in det.keyword_idx]
    starts = np.array([s for s, _, _, _ in stream.keywords], dtype=np.float64) / SAMPLE_RATE
    ends = np.array([e for _, e, _, _ in stream.keywords], dtype=np.float64) / SAMPLE_RATE
    words = [w for _, _, w, _ in stream.keywords]
    hits, false = np.zeros(len(kw), dtype=int), np.zeros(len(kw), dtype=int)
    seen: set[int] = set()
    dup = 0
    events = []
    for frame, k, p in fired:
        t = det.frame_end(frame)
        i = int(np.searchsorted(starts, t, side="right")) - 1
        if i >= 0 and t < ends[i] + TOLERANCE and words[i] == kw[k]:
            if i in seen:
                dup += 1
            else:
                seen.add(i)
                hits[k] += 1
        else:
            false[k] += 1
            events.append((t, kw[k], p))
    return Scored(hits, false, dup, events)


def run_trigger(post: np.ndarray, thresholds: np.ndarray, refractory: float, det: Detector
                ) -> list[tuple[int, int, float]]:
    frames = round(refractory * SAMPLE_RATE / det.hop)
    return Trigger(thresholds, frames)(post, 1)


def _counts(stream: Stream, det: Detector) -> np.ndarray:
    kw = [det.labels[k] for k in det.keyword_idx]
    return np.array([sum(w == k for _, _, w, _ in stream.keywords) for k in kw])


def by_source(s: Scored, stream: Stream) -> dict[str, int]:
    """False accepts per source of the audio they fired on."""
    out: dict[str, int] = {}
    for t, _, _ in s.false_events:
        src = stream.source_at(t)
        out[src] = out.get(src, 0) + 1
    return dict(sorted(out.items()))


def operating_point(s: Scored, n: np.ndarray, hours: float, labels: list[str]) -> dict:
    """Detection rate and false accepts/hour, overall and per keyword."""
    return {
        "detection": round(float(s.hits.sum() / max(n.sum(), 1)), 4),
        "false_accepts": int(s.false.sum()),
        "fa_per_hour": round(float(s.false.sum() / hours), 3),
        "duplicates": s.duplicates,
        "per_keyword": {lab: {"detection": round(float(s.hits[i] / max(n[i], 1)), 4),
                              "false_accepts": int(s.false[i]),
                              "fa_per_hour": round(float(s.false[i] / hours), 3)}
                        for i, lab in enumerate(labels)},
    }


def sweep(post: np.ndarray, stream: Stream, det: Detector, refractory: float) -> list[dict]:
    """One operating point per global threshold of :data:`SWEEP`."""
    n, labels = _counts(stream, det), [det.labels[k] for k in det.keyword_idx]
    out = []
    for t in SWEEP:
        s = score(run_trigger(post, np.full(len(labels), t), refractory, det), stream, det)
        out.append({"threshold": t} | operating_point(s, n, stream.negative_hours, labels))
    return out


def miss_at(points: list[dict], target: float, label: str | None = None) -> dict | None:
    """Lowest miss rate (and its threshold) among sweep points with at most ``target`` false
    accepts/hour (of ``label``, or overall); None if no point reaches it."""
    def get(p: dict) -> dict:
        return p if label is None else p["per_keyword"][label]

    ok = [p for p in points if get(p)["fa_per_hour"] <= target + 1e-9]
    if not ok:
        return None
    best = max(ok, key=lambda p: (get(p)["detection"], -p["threshold"]))
    return {"miss_rate": round(1 - get(best)["detection"], 4), "threshold": best["threshold"],
            "fa_per_hour": get(best)["fa_per_hour"]}


# ---- calibration ----------------------------------------------------------------------------
def calibrate(post: np.ndarray, stream: Stream, det: Detector, target_fa: float
              ) -> dict:
    """Per-keyword thresholds and a refractory time for ``target_fa`` false accepts/hour on
    ``stream`` (the tune stream): greedy over each keyword's own curve, then checked jointly."""
    labels = [det.labels[k] for k in det.keyword_idx]
    budget = math.floor(target_fa * stream.negative_hours + 1e-9)
    grid = np.array(CAL_GRID)
    best = None
    for ref in REFRACTORIES:
        hit = np.zeros((len(labels), len(grid)), dtype=int)
        fa = np.zeros_like(hit)
        for k in range(len(labels)):
            thr = np.full(len(labels), 2.0)  # never fires
            for g, t in enumerate(grid):
                thr[k] = t
                s = score(run_trigger(post, thr, ref, det), stream, det)
                hit[k, g], fa[k, g] = s.hits[k], s.false[k]
        idx = np.full(len(labels), len(grid) - 1)
        used = int(fa[np.arange(len(labels)), idx].sum())
        while True:
            move, best_ratio = None, -1.0
            for k in range(len(labels)):
                cur = idx[k]
                for j in range(cur - 1, -1, -1):
                    cost = int(fa[k, j] - fa[k, cur])
                    gain = int(hit[k, j] - hit[k, cur])
                    if used + cost > budget or gain <= 0:
                        continue
                    ratio = gain / (cost + 1e-3)
                    if ratio > best_ratio + 1e-12:
                        move, best_ratio = (k, j, cost), ratio
            if move is None:
                break
            k, j, cost = move
            idx[k], used = j, used + cost
        thresholds = grid[idx]
        s = score(run_trigger(post, thresholds, ref, det), stream, det)
        cand = (int(s.false.sum()) <= budget, int(s.hits.sum()), -int(s.false.sum()))
        if best is None or cand > best[0]:
            best = (cand, ref, thresholds)
    _, ref, thresholds = best
    return {"thresholds": {lab: round(float(t), 4) for lab, t in zip(labels, thresholds,
                                                                      strict=True)},
            "refractory": ref, "budget_false_accepts": budget, "target_fa_per_hour": target_fa}


def calibrated_point(post: np.ndarray, stream: Stream, det: Detector, cal: dict) -> tuple[
        dict, Scored]:
    labels = [det.labels[k] for k in det.keyword_idx]
    thr = np.array([cal["thresholds"][lab] for lab in labels])
    s = score(run_trigger(post, thr, cal["refractory"], det), stream, det)
    op = operating_point(s, _counts(stream, det), stream.negative_hours, labels)
    return op | {"false_accepts_by_source": by_source(s, stream)}, s


def point_at(post: np.ndarray, stream: Stream, det: Detector, threshold: float,
             refractory: float) -> dict:
    """One global threshold's operating point, with its false accepts by source."""
    labels = [det.labels[k] for k in det.keyword_idx]
    s = score(run_trigger(post, np.full(len(labels), threshold), refractory, det), stream, det)
    return {"threshold": threshold} | operating_point(
        s, _counts(stream, det), stream.negative_hours, labels) | {
        "false_accepts_by_source": by_source(s, stream)}


def _check_calibrated_out(path: str | Path) -> Path:
    """Where the calibrated copy goes (``.safetensors``); never over the shipped model, whose
    default stays the global threshold (the calibrated thresholds detect far less, see
    docs/stream.md)."""
    out = Path(path).with_suffix(".safetensors")
    if out.resolve() == PRETRAINED.resolve():
        raise ValueError(f"{out} is the shipped model; write the calibrated copy elsewhere "
                         "and point TRACEKWS_MODEL_PATH (or --model) at it")
    return out


def write_calibrated(model: KWSModel, path: str | Path, cal: dict, report: dict,
                     command: str) -> dict:
    """Save a copy of ``model`` whose config's ``detector`` entry holds the calibration
    ``cal`` (thresholds, refractory, target) with the report stream's operating point and
    the command that computed it; the entry is checked as the service will read it. Returns
    where it went and its sha256."""
    out = _check_calibrated_out(path)
    m = model.clone()
    m.config.detector = {
        "thresholds": dict(cal["thresholds"]), "refractory": cal["refractory"],
        "target_fa_per_hour": cal["target_fa_per_hour"],
        "calibrated_on": "tune stream of tracekws bench stream",
        "report": {"detection": report["detection"], "fa_per_hour": report["fa_per_hour"]},
        "command": command,
    }
    DetectorSettings.of_model(m)  # raises if the service could not read it
    return {"path": str(out), "sha256": m.save(out)}


def global_calibration(points: list[dict], target: float) -> float:
    """The lowest global threshold of the tune sweep within ``target`` false accepts/hour."""
    ok = [p["threshold"] for p in points if p["fa_per_hour"] <= target + 1e-9]
    return min(ok) if ok else SWEEP[-1]


def model_sha(model: KWSModel) -> str:
    """sha256 of the model's bytes: which model a calibration was computed on."""
    return hashlib.sha256(model.to_bytes()).hexdigest()


# ---- teaching false triggers ----------------------------------------------------------------
def teach(model: KWSModel, stream: Stream, events: list[tuple[float, str, float]], n: int,
          rule: str = "tp", **hp) -> tuple[KWSModel, list[dict]]:
    """Adapt a copy of ``model`` on ``n`` false triggers as ``_unknown_``, one /adapt-style
    session (:class:`AdaptSession`) per trigger, in turn; triggers without speech are skipped.
    ``hp`` overrides the rule's defaults, as /adapt's query parameters do."""
    from ..adapt import AdaptSession, NoSpeechError

    m = model.clone()
    taught = []
    for t, label, p in events:
        if len(taught) == n:
            break
        lo = max(0, int((t - TEACH_WINDOW[0]) * SAMPLE_RATE))
        hi = int((t + TEACH_WINDOW[1]) * SAMPLE_RATE)
        session = AdaptSession(m.clone(), UNKNOWN, rule, **hp)
        session.feed(stream.audio[lo:hi])
        try:
            res = session.finish()
        except NoSpeechError:
            continue
        m = session.model
        taught.append({"time": round(t, 3), "label": label, "probability": round(p, 4),
                       "utterances": res.utterances, "prob_unknown_before": round(
                           res.prob_before, 4), "prob_unknown_after": round(res.prob_after, 4)})
    return m, taught


# ---- plot -----------------------------------------------------------------------------------
def det_plot(points: list[dict], labels: list[str], path: Path, title: str,
             marks: dict[str, tuple[float, float]] | None = None) -> None:
    """DET curves: miss rate against false accepts/hour, per keyword and overall."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for lab in labels:
        xs = [p["per_keyword"][lab]["fa_per_hour"] for p in points]
        ys = [1 - p["per_keyword"][lab]["detection"] for p in points]
        ax.plot(xs, ys, lw=1, alpha=0.7, label=lab)
    ax.plot([p["fa_per_hour"] for p in points], [1 - p["detection"] for p in points], "k-",
            lw=2.5, label="overall")
    for name, (x, y) in (marks or {}).items():
        ax.plot([x], [y], "r*", ms=12)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_xscale("symlog", linthresh=0.5)
    ax.set_xlim(0, None)
    ax.set_ylim(0, 1)
    ax.axvline(1.0, color="grey", ls=":", lw=1)
    ax.axvline(0.5, color="grey", ls=":", lw=1)
    ax.set_xlabel("false accepts per hour (symlog)")
    ax.set_ylabel("miss rate")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- the benchmark --------------------------------------------------------------------------
def default_cache() -> Path:
    import os

    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tracekws" / "stream"


def stream_sources(root: str | Path, half: str, val_percent: int, min_clips: int = MIN_CLIPS
                   ) -> tuple[list[Clip], list[Clip], list[torch.Tensor], list[str]]:
    """(keyword clips, negative clips, noise recordings, speakers) of one half."""
    clips = scan(root)
    val = split(clips, "val", val_percent)
    tune, report = halves(eligible_speakers(val, min_clips), val)
    chosen = set(tune if half == "tune" else report)
    other = set(report if half == "tune" else tune)
    kws = [c for c in val if c.word in KEYWORDS and c.speaker in chosen]
    neg = []
    for c in clips:
        if c.word == SILENCE and _half_of(str(c.path.name), half):
            neg.append(c)
        elif c.label() == UNKNOWN and is_validation(c.speaker, val_percent) and (
                c.speaker in chosen or (c.speaker not in other and _half_of(c.speaker, half))):
            neg.append(c)
    noises = []
    for rec in noise_recordings(root):
        mid = len(rec) // 2
        noises.append(rec[:mid] if half == "tune" else rec[mid:])
    return kws, neg, noises, sorted(chosen)


def bench_stream(
    model: KWSModel,
    data: str | Path,
    hours: float = 1.0,
    seed: int = 0,
    condition: str = "clean",
    target_fa: float = 0.5,
    val_percent: int | None = None,
    cache: str | Path | None = None,
    teach_n: int = 3,
    plot: str | Path | None = None,
    texts: Callable[[str], list[str]] | None = None,
    min_clips: int = MIN_CLIPS,
    progress: bool = False,
    calibrated_out: str | Path | None = None,
    teach_hp: dict | None = None,
) -> dict:
    """Build the tune and report streams, sweep, calibrate, teach; the JSON result.

    ``texts(half)`` gives the passages to synthesise (default: the King James Bible, split in
    halves); ``min_clips``: keyword clips a speaker needs (as in the personalisation bench);
    ``calibrated_out``: also write the model with the tune-calibrated thresholds there;
    ``teach_hp``: the teaching rule's settings where they differ from its defaults.
    """
    t0 = time.perf_counter()
    if calibrated_out is not None:
        _check_calibrated_out(calibrated_out)  # before the run, not after minutes of it
    cache = Path(cache) if cache else default_cache()
    if val_percent is None:
        val_percent = int(model.config.meta.get("training", {}).get("val_percent", 20))
    room = None
    if condition == "room":
        from ..room import RoomSimulator, sample_room

        room = RoomSimulator(sample_room(_h("stream-room", seed) % 2**32),
                             noise_recordings(data))
    elif condition != "clean":
        raise ValueError("condition must be clean or room")
    if texts is None:
        verses = kjv_verses()

        def texts(half: str) -> list[str]:
            return passages(verses, half, seed)

    streams, posts = {}, {}
    det = None
    for half in ("tune", "report"):
        kws, neg, noises, speakers = stream_sources(data, half, val_percent, min_clips)
        st = build_stream(half, kws, neg, noises, texts(half), hours, seed, cache, room,
                          progress)
        st.speakers = speakers
        streams[half] = st
        posts[half], det = stream_posteriors(model, st.audio)
        if progress:
            print(f"{half}: {st.seconds / 3600:.2f} h scored", flush=True)
    labels = [det.labels[k] for k in det.keyword_idx]
    default = DetectorConfig()
    res: dict = {
        "what": "long-stream false accepts and misses of the streaming detector",
        "data": str(data), "hours": hours, "seed": seed, "condition": condition,
        "val_percent": val_percent, "min_gap_s": MIN_GAP, "tolerance_s": TOLERANCE,
        "text_source": TEXT_SOURCE, "tts": espeak_version(),
        "detector": {"window": default.window, "smooth": default.smooth,
                     "default_threshold": default.threshold,
                     "default_refractory": default.refractory},
        "streams": {h: s.summary() for h, s in streams.items()},
    }
    sweeps = {h: sweep(posts[h], streams[h], det, default.refractory) for h in streams}
    res["sweep"] = sweeps
    res["default_threshold"] = {h: point_at(posts[h], streams[h], det, default.threshold,
                                            default.refractory) for h in streams}
    res["miss_at"] = {h: {f"{fa:g}_per_hour": {"overall": miss_at(sweeps[h], fa)} | {
        lab: miss_at(sweeps[h], fa, lab) for lab in labels} for fa in (1.0, 0.5)}
        for h in streams}
    # calibration on tune, evaluation on report
    cal = calibrate(posts["tune"], streams["tune"], det, target_fa)
    g = global_calibration(sweeps["tune"], target_fa)
    cal_res = {h: calibrated_point(posts[h], streams[h], det, cal) for h in streams}
    glob = {h: next(p for p in sweeps[h] if p["threshold"] == g) for h in streams}
    res["calibration"] = cal | {
        "tune": cal_res["tune"][0], "report": cal_res["report"][0],
        "single_threshold": {"threshold": g, "tune": glob["tune"], "report": glob["report"]},
        "goal": "report: detection >= 0.80 at <= 1 false accept/hour",
        "goal_met": bool(cal_res["report"][0]["detection"] >= 0.8
                         and cal_res["report"][0]["fa_per_hour"] <= 1.0)}
    if calibrated_out is not None:
        command = (f"tracekws bench stream --data {data} --hours {hours:g} --seed {seed} "
                   f"--condition {condition} --target-fa {target_fa:g} "
                   f"--val-percent {val_percent} (model sha256 {model_sha(model)})")
        res["calibrated_model"] = write_calibrated(model, calibrated_out, cal,
                                                   cal_res["report"][0], command)
    # teaching three false triggers of the report stream
    events = sorted(cal_res["report"][1].false_events, key=lambda e: -e[2])
    source = "calibrated"
    if len(events) < teach_n:
        s05 = score(run_trigger(posts["report"], np.full(len(labels), default.threshold),
                                default.refractory, det), streams["report"], det)
        more = sorted(s05.false_events, key=lambda e: -e[2])
        near = {round(e[0], 1) for e in events}
        events += [e for e in more if round(e[0], 1) not in near]
        source = f"calibrated, topped up at threshold {default.threshold}"
    adapted, taught = teach(model, streams["report"], events, teach_n, **(teach_hp or {}))
    after = {h: stream_posteriors(adapted, streams[h].audio)[0] for h in streams}
    teach_res: dict = {"rule": "tp", "settings": dict(teach_hp or {}), "label": UNKNOWN,
                       "source": source, "taught": taught, "window_s": list(TEACH_WINDOW)}
    for h in streams:
        before_cal, _ = cal_res[h]
        after_cal, _ = calibrated_point(after[h], streams[h], det, cal)
        sw_after = sweep(after[h], streams[h], det, default.refractory)
        teach_res[h] = {
            "calibrated": {"before": before_cal, "after": after_cal},
            f"threshold_{default.threshold:g}": {
                x: point_at(p, streams[h], det, default.threshold, default.refractory)
                for x, p in (("before", posts[h]), ("after", after[h]))},
            "miss_at_1_per_hour": {"before": miss_at(sweeps[h], 1.0),
                                   "after": miss_at(sw_after, 1.0)}}
    taught_t = [x["time"] for x in taught]
    after_events = calibrated_point(after["report"], streams["report"], det, cal)[1]
    teach_res["report"]["taught_triggers_still_firing_calibrated"] = sum(
        any(abs(t - e[0]) < 1.0 for e in after_events.false_events) for t in taught_t)
    res["teach"] = teach_res
    if plot:
        cal_pt = cal_res["report"][0]
        det_plot(sweeps["report"], labels, Path(plot),
                 f"report stream ({streams['report'].negative_hours:.2f} h negative audio, "
                 f"{len(streams['report'].keywords)} keyword clips, {condition}); "
                 f"global threshold sweep, refractory {default.refractory:g} s",
                 {"calibrated (tune)": (cal_pt["fa_per_hour"], 1 - cal_pt["detection"])})
        res["plot"] = str(plot)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res
