"""The new-keyword benchmark enrols a word the model does not know, on real clips."""

import math

from tracekws.model.bench.enrol import bench_enrol
from tracekws.model.pipeline import KWSModel

DATA = "tests/data/gsc"


def test_enrol_benchmark_on_real_clips(small_model_path):
    m = KWSModel.load(small_model_path)
    res = bench_enrol(m, DATA, shots=1, words=["bed"], progress=False, val_percent=100)
    (row,) = res["words"]
    assert row["word"] == "bed" and row["n_support"] == 1 and row["n_query"] == 1
    assert 0 <= row["detection"] <= 1 and 0 <= row["false_accepts"] <= 1
    assert row["n_others"] > 40  # every held-out clip of the other words and of silence
    assert math.isclose(res["mean_detection"], row["detection"])
    assert m.labels == KWSModel.load(small_model_path).labels  # the given model is untouched


def test_enrol_refuses_a_word_without_clips(small_model_path):
    import pytest

    with pytest.raises(ValueError, match="no clips"):
        bench_enrol(KWSModel.load(small_model_path), DATA, words=["zebra"], progress=False)
