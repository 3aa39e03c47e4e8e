"""The personalisation benchmark's protocol on real clips of one speaker (whose folder holds
six repeated recordings, which the scan drops)."""

import math

from tracekws.model.bench.personalize import bench_personalize
from tracekws.model.data import scan
from tracekws.model.pipeline import KEYWORDS, KWSModel
from tracekws.model.speakers import eligible_speakers, support_query

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
    per_word = {w: sum(c.word == w for c in mine) for w in KEYWORDS}
    assert len(s_all) == sum(n - 1 for n in per_word.values())  # all but the last of each
    assert sum(c.word in KEYWORDS for c in q_all) == len(KEYWORDS)


def test_bench_personalize_json(small_model_path):
    m = KWSModel.load(small_model_path)
    w_before = m.net.w_out.clone()
    res = bench_personalize(m, DATA, "tp", "1", val_percent=100, min_clips=20, progress=False)
    (row,) = res["speakers"]
    assert row["speaker"] == SPEAKER == eligible_speakers(scan(DATA))[0]
    n_mine = sum(c.speaker == SPEAKER for c in scan(DATA))
    assert row["n_support"] == len(KEYWORDS) and row["n_query"] == n_mine - len(KEYWORDS)
    assert row["n_query_class_not_in_support"] == 0  # this speaker recorded keywords only
    assert math.isclose(res["gain"], res["mean_after"] - res["mean_before"])
    assert math.isclose(res["headroom"], 1 - row["before"])
    # every query clip's class is in the support, so all the headroom is there
    assert math.isclose(res["headroom_class_in_support"], res["headroom"], abs_tol=1e-6)
    assert (m.net.w_out == w_before).all()  # each speaker adapts a clone


def test_tune_and_report_are_fixed_disjoint_halves():
    from tracekws.model.speakers import halves, speaker_pool

    clips = scan(DATA)
    val, pool = speaker_pool(clips, "val", 100, min_clips=1)
    tune, _ = speaker_pool(clips, "tune", 100, min_clips=1)
    report, _ = speaker_pool(clips, "report", 100, min_clips=1)
    assert not set(tune) & set(report) and sorted(tune + report) == val
    assert abs(len(tune) - len(report)) <= 1
    assert halves(val, pool) == (tune, report)  # the same every time
    assert speaker_pool(clips, "all", 0, min_clips=1)[0] == val  # `all` ignores the split


def test_false_accepts_count_non_keywords_called_keywords():
    import torch
    from tracekws.model.bench.personalize import false_accepts

    neg = torch.tensor([10, 11])  # _unknown_, _silence_
    y = torch.tensor([0, 10, 10, 11, 3])
    pred = torch.tensor([0, 10, 2, 4, 3])
    assert math.isclose(false_accepts(pred, y, neg), 2 / 3, rel_tol=1e-6)
    assert false_accepts(pred, torch.tensor([0, 1, 2, 3, 4]), neg) is None


def test_bench_reports_false_accepts_and_per_class(small_model_path):
    m = KWSModel.load(small_model_path)
    res = bench_personalize(m, DATA, "readout", "1", val_percent=100, min_clips=20,
                            progress=False)
    (row,) = res["speakers"]
    assert row["n_query_negative"] == 0 and res["false_accepts_before"] is None
    assert res["retention_false_accepts_before"] is not None  # others include _silence_
    n = sum(pc["n"] for pc in res["per_class"].values())
    assert n == row["n_query"]
    acc = sum(pc["after"] * pc["n"] for pc in res["per_class"].values()) / n
    assert math.isclose(acc, row["after"], abs_tol=1e-6)
    # the gain in clips: fixed − broken query clips is the change in right answers
    assert res["query_clips"] == row["n_query"]
    right = round((row["after"] - row["before"]) * row["n_query"])
    assert row["query_fixed"] - row["query_broken"] == right
    assert 0.0 < res["sign_test_p"] <= 1.0
    ret = res["retention_per_class"]  # one speaker: every retention clip counted once
    n_ret = sum(pc["n"] for pc in ret.values())
    acc = sum(pc["after"] * pc["n"] for pc in ret.values()) / n_ret
    assert math.isclose(acc, row["retention_after"], abs_tol=1e-6)


def test_sign_test_is_the_exact_two_sided_binomial():
    from tracekws.model.bench.personalize import sign_test

    assert sign_test(0, 0) == 1.0 and sign_test(3, 3) == 1.0 and sign_test(0, 1) == 1.0
    assert sign_test(5, 0) == sign_test(0, 5) == 2 / 32  # 1/32 each way
    assert math.isclose(sign_test(10, 2), 2 * (1 + 12 + 66) / 4096)


def test_pooled_false_accepts_weigh_every_clip_alike():
    """One speaker with a single non-keyword clip moves the speaker mean by 1/speakers; the
    pooled share counts clips, so it moves by 1/clips."""
    import torch
    from tracekws.model.bench.personalize import _pooled, false_accept_count

    neg = torch.tensor([10, 11])
    assert false_accept_count(torch.tensor([0, 10, 2, 4]), torch.tensor([0, 10, 10, 11]), neg) == 2
    rows = [{"n_query_negative": 1, "false_accept_clips_before": 0, "false_accept_clips_after": 1},
            {"n_query_negative": 9, "false_accept_clips_before": 1, "false_accept_clips_after": 1},
            {"n_query_negative": 0, "false_accept_clips_before": 0, "false_accept_clips_after": 0}]
    assert math.isclose(_pooled(rows, "before"), 0.1) and math.isclose(_pooled(rows, "after"), 0.2)
    assert _pooled(rows[2:], "after") is None


def test_retention_spreads_over_the_whole_pool():
    """The pool comes class by class (folder order); retention takes clips evenly over all of
    it, so every class keeps its share instead of the first folders filling the 400."""
    from tracekws.model.bench.personalize import spread

    pool = [label for label in ("_silence_", "down", "go", "yes") for _ in range(300)]
    picked = spread(pool, 400)
    assert len(picked) == 400 and {picked.count(c) for c in set(pool)} == {100}
    assert spread([1, 2, 3], 400) == [1, 2, 3]
    assert spread(list(range(10)), 4) == [0, 2, 5, 7]
