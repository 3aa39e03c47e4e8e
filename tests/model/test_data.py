"""Clean data: speakers from the manifest, repeated recordings kept once, splits and the
personalisation protocol free of duplicates."""

import csv
import shutil
from pathlib import Path

import soundfile as sf
from tracekws.model.data import content_key, scan, split
from tracekws.model.speakers import support_query

DATA = Path("tests/data/gsc")
SPEAKER = "4c6167ca"


def _folder(tmp_path: Path) -> Path:
    """A small GSC folder: real clips of two speakers, a planted duplicate recording (same
    samples, another name and container) and a ``_v001`` re-release whose manifest speaker
    differs from what its file name would give a naive parser."""
    root = tmp_path / "gsc"
    rows = []
    for c in scan(DATA, dedupe=False):  # the folder's own six repeats included
        if c.speaker in (SPEAKER, "0ea0e2f4") or c.word == "_silence_":
            rel = c.path.relative_to(DATA)
            (root / rel.parent).mkdir(parents=True, exist_ok=True)
            shutil.copy(c.path, root / rel)
            rows.append({"label": c.word, "file": str(rel), "speaker": c.speaker})
    # the duplicate: yes/4c6167ca_nohash_0 again as a WAV under a later utterance number
    data, rate = sf.read(DATA / "yes" / f"{SPEAKER}_nohash_0.flac", dtype="int16")
    sf.write(root / "yes" / f"{SPEAKER}_nohash_9.wav", data, rate, subtype="PCM_16")
    rows.append({"label": "yes", "file": f"yes/{SPEAKER}_nohash_9.wav", "speaker": SPEAKER})
    # the re-release: a new recording named like another person's, same speaker per manifest
    other, _ = sf.read(DATA / "bed" / "0ea0e2f4_nohash_1.flac", dtype="int16")
    sf.write(root / "no" / "abcdef01_nohash_2_v001.flac", other[::-1].copy(), rate)
    rows.append({"label": "no", "file": "no/abcdef01_nohash_2_v001.flac", "speaker": SPEAKER})
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["label", "file", "speaker"])
        w.writeheader()
        w.writerows(rows)
    return root


def test_manifest_speaker_wins_over_the_file_name(tmp_path):
    root = _folder(tmp_path)
    clips = {c.path.name: c for c in scan(root)}
    v001 = clips["abcdef01_nohash_2_v001.flac"]
    assert v001.speaker == SPEAKER and v001.utt == 2
    (root / "manifest.csv").unlink()  # without a manifest: the file name, suffix stripped
    assert {c.path.name: c for c in scan(root)}["abcdef01_nohash_2_v001.flac"].speaker == \
        "abcdef01"


def test_duplicate_recordings_are_kept_once(tmp_path):
    root = _folder(tmp_path)
    raw, clean = scan(root, dedupe=False), scan(root)
    keys = [content_key(c.path) for c in clean]
    assert len(set(keys)) == len(keys)  # no recording twice
    assert len(raw) - len(clean) == len(raw) - len({content_key(c.path) for c in raw}) >= 7
    names = {c.path.name for c in clean}
    assert f"{SPEAKER}_nohash_9.wav" not in names  # the later copy goes
    assert f"{SPEAKER}_nohash_0.flac" in names


def test_no_duplicate_across_split_or_support_and_query(tmp_path):
    root = _folder(tmp_path)
    clips = scan(root)
    for pct in (20, 50, 80):
        train = {content_key(c.path) for c in split(clips, "train", pct)}
        val = {content_key(c.path) for c in split(clips, "val", pct)}
        assert not train & val
    mine = [c for c in clips if c.speaker == SPEAKER]
    for shots in ("1", "all"):
        support, query = support_query(mine, shots)
        assert support and query
        assert not {content_key(c.path) for c in support} & {content_key(c.path) for c in query}
    # without the scan's de-duplication the planted copy would leak into the query
    raw = [c for c in scan(root, dedupe=False) if c.speaker == SPEAKER]
    support, query = support_query(raw, "1")
    assert {content_key(c.path) for c in support} & {content_key(c.path) for c in query}


def test_silence_windows_keep_their_own_split_unit(tmp_path):
    """`_silence_` clips have no speaker: a manifest's placeholder id does not move them."""
    root = _folder(tmp_path)
    with (root / "manifest.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    for i, r in enumerate(rows):
        if r["label"] == "_silence_":
            r["speaker"] = f"silence-{i}.wav"  # what ../shared's manifest holds for them
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["label", "file", "speaker"])
        w.writeheader()
        w.writerows(rows)
    silence = [c for c in scan(root) if c.word == "_silence_"]
    assert silence and all(c.speaker == f"_silence_-{c.path.stem}" for c in silence)
