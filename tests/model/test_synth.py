"""``tracekws data synth`` (model/synth.py): a handful of clips per installed engine.

espeak-ng and sox are required (CI installs them); flite, festival and piper are tested when
installed and skipped otherwise.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import pytest
import soundfile as sf
from tracekws.model import synth as S
from tracekws.model.data import is_validation, scan
from tracekws.model.pipeline import UNKNOWN

WORDS = ["yes", "no"]


def _make(out: Path, engine: str, seed: int = 0, unknown: int = 0) -> dict:
    # 2 words x 2 voices (piper has one voice: 2 settings of it)
    two_voices = len(S.ENGINE_CLASSES[engine]().voices()) >= 2
    return S.synth(out, seed=seed, engines=[engine], words=WORDS, voices=2,
                   variants=1 if two_voices else 2, unknown_words=unknown, per_unknown=1,
                   progress=False)


def _manifest(out: Path) -> tuple[list[str], list[dict]]:
    with (out / "manifest.csv").open(newline="") as f:
        rows = csv.DictReader(f)
        return list(rows.fieldnames or []), list(rows)


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def espeak(tmp_path_factory) -> tuple[Path, dict]:
    assert S.Espeak().missing() is None, "espeak-ng is required: apt-get install espeak-ng"
    assert S.shutil.which("sox"), "sox is required: apt-get install sox"
    out = tmp_path_factory.mktemp("synth") / "a"
    return out, _make(out, "espeak-ng", unknown=2)


def _check_folder(out: Path, summary: dict, engine: str) -> None:
    fields, rows = _manifest(out)
    assert fields == S.MANIFEST_FIELDS
    assert (out / "README.md").read_text().startswith("# Synthetic speech")
    assert summary["engines"] == [engine] and not summary["failed"]
    assert summary["clips"] == len(rows) >= 4
    audio = sorted(str(p.relative_to(out)) for p in out.glob("*/*.wav"))
    assert audio == sorted(r["file"] for r in rows)
    for r in rows:
        word, name = r["file"].split("/")
        assert word == r["label"] and name == f"{r['speaker']}_nohash_0.wav"
        assert r["engine"] == engine and r["seed"] == str(summary["seed"])
        info = sf.info(out / r["file"])
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (
            16000, 1, 16000, "PCM_16")
        x, _ = sf.read(out / r["file"], dtype="float32")
        assert 0.05 < abs(x).max() <= 1.0  # levelled to -20..-1 dBFS, not silent
    for w in WORDS:
        assert len([r for r in rows if r["label"] == w]) == 2


def test_espeak_layout_audio_manifest(espeak):
    out, summary = espeak
    _check_folder(out, summary, "espeak-ng")
    assert summary["unknown_words"] == 2


def test_scan_reads_synthetic_speakers(espeak):
    out, _ = espeak
    _, rows = _manifest(out)
    clips = scan(out)
    assert len(clips) == len(rows)  # no clip is a duplicate of another
    by_file = {r["file"]: r["speaker"] for r in rows}
    for c in clips:
        assert c.speaker == by_file[f"{c.word}/{c.path.name}"]
        assert c.speaker.startswith("tts-") and "_" not in c.speaker
        assert not re.fullmatch(r"[0-9a-f]{8}", c.speaker)
        assert not is_validation(c.speaker, 20) and not is_validation(c.speaker, 100)
        assert c.label() == (c.word if c.word in WORDS else UNKNOWN)


def test_same_seed_same_bytes_other_seed_other_clips(espeak, tmp_path):
    out, _ = espeak
    _make(tmp_path / "b", "espeak-ng", unknown=2)
    assert _files(tmp_path / "b") == _files(out)
    _make(tmp_path / "c", "espeak-ng", seed=1, unknown=2)
    assert _files(tmp_path / "c")["manifest.csv"] != _files(out)["manifest.csv"]


@pytest.mark.parametrize("engine", ["flite", "festival", "piper"])
def test_other_engines(engine, tmp_path):
    why = S.ENGINE_CLASSES[engine]().missing()
    if why:
        pytest.skip(f"{engine}: {why}")
    out = tmp_path / engine
    summary = _make(out, engine)
    _check_folder(out, summary, engine)
    assert {c.speaker for c in scan(out)} == {r["speaker"] for r in _manifest(out)[1]}
    if engine == "piper":  # VITS samples noise: seeded per speaker, so still reproducible
        _make(tmp_path / "again", engine)
        assert _files(tmp_path / "again") == _files(out)


def test_speaker_ids_distinct_per_setting():
    settings, ids = set(), set()
    for name, cls in S.ENGINE_CLASSES.items():
        voices = cls().voices() if name != "flite" else S.FLITE_VOICES
        for s in S.make_speakers(name, voices, 8, seed=0):
            settings.add((s.engine, s.voice, s.pitch, s.rate, s.vtlp))
            ids.add(s.id)
            assert s.id == S.speaker_id(s.engine, s.voice, s.pitch, s.rate, s.vtlp)
            assert "_" not in s.id and not is_validation(s.id, 100)
    assert len(ids) == len(settings) >= 64 * 8
    espeak = S.make_speakers("espeak-ng", ["en-us+f3"], 4, seed=0)
    assert (espeak[0].pitch, espeak[0].rate, espeak[0].vtlp) == (0, 1.0, 1.0)
    assert espeak == S.make_speakers("espeak-ng", ["en-us+f3"], 4, seed=0)
    assert espeak != S.make_speakers("espeak-ng", ["en-us+f3"], 4, seed=1)


def test_unknown_vocabulary(tmp_path):
    vocab = S.unknown_vocabulary()
    assert len(vocab) >= 300
    assert not set(vocab) & (set(S.GSC_WORDS) | S.SOUNDALIKES)
    f = tmp_path / "words"
    f.write_text("Alpha\nbeta\nnine\nknow\ngamma's\nok\ndelta\n")
    assert S.unknown_vocabulary(f) == ["beta", "delta"]


def test_cli_and_skipped_engine(tmp_path, monkeypatch, capsys):
    p = argparse.ArgumentParser()
    S.add_parser(p.add_subparsers(dest="cmd"))
    out = tmp_path / "cli"
    a = p.parse_args(["synth", "--out", str(out), "--engines", "espeak-ng", "--words", "go",
                      "--voices", "1", "--variants", "1", "--unknown-words", "0", "--quiet"])
    assert a.func(a) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["clips"] == 1 and (out / "go").is_dir()
    with pytest.raises(FileExistsError):
        a.func(a)
    with pytest.raises(ValueError, match="unknown engine"):
        S.synth(tmp_path / "x", engines=["sam"], progress=False)

    real_which = S.shutil.which
    monkeypatch.setattr(S.shutil, "which", lambda b: None if b == "flite" else real_which(b))
    with pytest.warns(UserWarning, match="skipping flite"):
        res = S.synth(tmp_path / "skip", engines=["flite", "espeak-ng"], words=["go"],
                      voices=1, variants=1, unknown_words=0, progress=False)
    assert res["engines"] == ["espeak-ng"] and "flite" in res["skipped"] and res["clips"] == 1


def test_domain_gap_reports_per_engine(espeak):
    out, _ = espeak
    res = S.domain_gap(out)
    assert set(res) == {"espeak-ng", "all"}
    assert res["all"]["n"] == 4 and set(res["all"]["per_class"]) == set(WORDS)
    assert res["all"]["as_shipped"]["n"] == 4  # variants=1: each voice as shipped
    assert 0.0 <= res["all"]["accuracy"] <= 1.0


def test_train_uses_synthetic_speech_for_training_only(tmp_path):
    """`tracekws train --extra-data` adds a synthetic folder to the training side."""
    from tracekws.model.pipeline import KWSModel

    from tracekws.cli import main

    synth_dir = tmp_path / "synth"
    S.synth(synth_dir, seed=1, engines=["espeak-ng"], words=["yes", "no"], unknown_words=0,
            speakers_per_engine=2, progress=False)
    n_synth = len(scan(synth_dir))
    runs = {}
    for name, extra in (("plain", []), ("synth", ["--extra-data", str(synth_dir)])):
        out = tmp_path / name
        assert main(["train", "--data", "tests/data/gsc", "--out", str(out), "--epochs", "1",
                     "--hidden", "16", "--batch", "4", "--val-percent", "10", "--threads",
                     "1", "--limit-steps", "1", "--quiet", *extra]) == 0
        meta = KWSModel.load(out.with_suffix(".safetensors")).config.meta
        runs[name] = meta["training"]["train_clips"]
        assert json.loads(json.dumps(meta))  # JSON-safe
    assert runs["synth"] == runs["plain"] + n_synth
