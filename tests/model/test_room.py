"""The simulated room of the benchmarks: seeded, within its stated ranges, and audibly a room."""

import math

import numpy as np
import torch
from _clips import wave
from tracekws.model.bench.personalize import bench_personalize
from tracekws.model.pipeline import KWSModel
from tracekws.model.room import DISTANCE, RT60, RoomSimulator, active_rms, sample_room, speaker_room


def test_rooms_are_seeded_and_within_the_ranges():
    rooms = [sample_room(s) for s in range(20)]
    assert sample_room(3) == rooms[3] and speaker_room(0, "a") == speaker_room(0, "a")
    assert speaker_room(0, "a") != speaker_room(0, "b") != speaker_room(1, "b")
    for r in rooms:
        assert RT60[0] <= r.rt60 <= RT60[1]
        horizontal = math.dist(r.mic[:2], r.source[:2])
        assert DISTANCE[0] <= horizontal <= DISTANCE[1] + 1e-9
        assert all(0 < c < d for p in (r.mic, r.source) for c, d in zip(p, r.dims, strict=True))


def test_room_reverberates_and_adds_noise_deterministically():
    dry = wave("yes", 0)
    sim = RoomSimulator(sample_room(7))
    wet = sim.apply(dry, "yes/0")
    assert wet.shape == dry.shape and torch.equal(wet, sim.apply(dry, "yes/0"))
    assert not torch.equal(wet, sim.apply(dry, "yes/1"))  # another clip, other noise
    # the word keeps its level (within the band-pass), the quiet parts fill with noise
    x, y = dry.numpy(), wet.numpy()
    assert 0.3 < active_rms(y) / active_rms(x) < 1.5
    quiet = slice(0, 1600)
    assert np.sqrt(np.mean(y[quiet] ** 2)) > 3 * np.sqrt(np.mean(x[quiet] ** 2))
    # the impulse response decays: most of its energy after the direct path
    rir = sim.rir
    assert len(rir) > 0.1 * 16000 and np.abs(rir).argmax() < len(rir) // 4


def test_bench_personalize_room_condition(small_model_path):
    m = KWSModel.load(small_model_path)
    clean = bench_personalize(m, "tests/data/gsc", "tp", "1", val_percent=100, min_clips=20,
                              progress=False)
    room = bench_personalize(m, "tests/data/gsc", "tp", "1", val_percent=100, min_clips=20,
                             progress=False, condition="room", seed=1)
    assert clean["condition"] == {"name": "clean"}
    assert room["condition"]["name"] == "room" and room["condition"]["seed"] == 1
    (row,) = room["speakers"]
    assert set(row["room"]) >= {"rt60", "distance", "dims", "seed"}
    for key in ("false_accepts_before", "false_accepts_after", "per_class", "mean_before",
                "mean_after", "retention_before", "retention_after"):
        assert key in room
    assert room["mean_before"] != clean["mean_before"]


def test_evaluate_room_condition(small_model_path):
    from tracekws.model.evaluate import evaluate

    m = KWSModel.load(small_model_path)
    clean = evaluate(m, "tests/data/gsc", "all")
    room = evaluate(m, "tests/data/gsc", "all", condition="room", seed=2)
    assert clean["condition"] == "clean" and room["condition"] == "room" and room["seed"] == 2
    assert room["n"] == clean["n"] and room["confusion"] != clean["confusion"]
    assert room == evaluate(m, "tests/data/gsc", "all", condition="room", seed=2)
