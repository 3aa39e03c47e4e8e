"""The personalisation benchmark's protocol (DESIGN §5) on real clips of one speaker."""

import math

from model.data import scan
from model.personalize import bench_personalize, eligible_speakers, support_query
from model.pipeline import KEYWORDS, KWSModel

DATA = "tests/data/gsc"
SPEAKER = "4c6167ca"  # four clips of each keyword under tests/data/gsc


def test_support_is_the_first_k_clips_of_each_keyword():
    mine = [c for c in scan(DATA) if c.speaker == SPEAKER]
    support, query = support_query(mine, "1")
    assert sorted(c.word for c in support) == sorted(KEYWORDS)
    for c in support:  # the earliest utterance of its word
        assert c.utt == min(o.utt for o in mine if o.word == c.word)
    assert {c.path for c in support}.isdisjoint(c.path for c in query)
    assert len(support) + len(query) == len(mine)
    s_all, q_all = support_query(mine, "all")
    assert len(s_all) == 3 * len(KEYWORDS)  # all but the last clip of each keyword
    assert sum(c.word in KEYWORDS for c in q_all) == len(KEYWORDS)


def test_bench_personalize_json(small_model_path):
    m = KWSModel.load(small_model_path)
    w_before = m.net.w_out.clone()
    res = bench_personalize(m, DATA, "tp", "1", val_percent=100, min_clips=20, progress=False)
    (row,) = res["speakers"]
    assert row["speaker"] == SPEAKER == eligible_speakers(scan(DATA))[0]
    assert row["n_support"] == len(KEYWORDS) and row["n_query"] == 30
    assert row["n_query_class_not_in_support"] == 0  # this speaker recorded keywords only
    assert math.isclose(res["gain"], res["mean_after"] - res["mean_before"])
    assert math.isclose(res["headroom"], 1 - row["before"])
    # every query clip's class is in the support, so all the headroom is there
    assert math.isclose(res["headroom_class_in_support"], res["headroom"], abs_tol=1e-6)
    assert (m.net.w_out == w_before).all()  # each speaker adapts a clone
