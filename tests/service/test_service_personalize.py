"""Personalisation through HTTP: a held-out speaker's support clips adapt a profile; rollback
restores the earlier predictions exactly."""

import pytest
from _clips import clip_path
from tracekws.model.pipeline import KEYWORDS

AUDIO = {"content-type": "audio/wav"}  # a body needs a Content-Type (CSRF rule)

SPEAKER = "4c6167ca"  # validation-side speaker with four clips of each keyword (tests/data)


def _clip(word: str, i: int) -> bytes:
    p = clip_path(word, i + 1)  # index 0 is another speaker's clip
    assert p.name.startswith(SPEAKER)
    return p.read_bytes()


def _predict_all(client, profile, clips) -> list[dict]:
    out = []
    for data in clips:
        r = client.post("/predict", params={"profile": profile}, content=data,
                        headers={"content-type": "audio/flac"})
        assert r.status_code == 200, r.text
        out.append(r.json())
    return out


def _adapt_support(client, profile, shots=1) -> list[dict]:
    out = []
    for w in KEYWORDS:
        for i in range(shots):
            r = client.post("/adapt", params={"profile": profile, "label": w},
                            content=_clip(w, i), headers={"content-type": "audio/flac"})
            assert r.status_code == 201, r.text
            out.append(r.json())
    return out


def test_rollback_restores_earlier_predictions_exactly(client):
    query = [_clip(w, 3) for w in KEYWORDS]
    assert client.post("/profiles", json={"name": "spk"}).status_code == 201
    before = _predict_all(client, "spk", query)
    adapted = _adapt_support(client, "spk")
    assert adapted[-1]["version"] == 11
    after = _predict_all(client, "spk", query)
    assert [p["scores"] for p in after] != [p["scores"] for p in before]
    assert client.post("/profiles/spk/versions/1/activate").status_code == 200
    rolled = _predict_all(client, "spk", query)
    assert [p["scores"] for p in rolled] == [p["scores"] for p in before]
    assert {p["version"] for p in rolled} == {1}
    assert client.post("/profiles/spk/versions/11/activate").status_code == 200
    assert [p["scores"] for p in _predict_all(client, "spk", query)] == [
        p["scores"] for p in after]
    # a pinned version reads the same whatever is active
    pinned = client.post("/predict", params={"profile": "spk", "version": 1}, content=query[0],
                         headers=AUDIO)
    assert pinned.json()["scores"] == before[0]["scores"]


def test_held_out_speaker_adapts_through_http(make_client, shipped_model_path):
    """1-shot TP personalisation of a held-out speaker through /adapt (shipped model)."""
    client = make_client(model_path=shipped_model_path, adapt_hyperparameters={})
    query = [(w, _clip(w, i)) for w in KEYWORDS for i in (1, 2)]

    def accuracy(profile: str) -> float:
        preds = _predict_all(client, profile, [d for _, d in query])
        return sum(p["label"] == w for p, (w, _) in zip(preds, query, strict=True)) / len(query)

    assert client.post("/profiles", json={"name": "held-out"}).status_code == 201
    acc_before = accuracy("held-out")
    results = _adapt_support(client, "held-out")
    acc_after = accuracy("held-out")
    gain = sum(r["prob_after"] - r["prob_before"] for r in results) / len(results)
    print(f"held-out speaker {SPEAKER}: query accuracy {acc_before:.3f} -> {acc_after:.3f}, "
          f"mean support-label probability gain {gain:+.3f}")
    assert gain > 0  # TP moved each support clip toward its label
    assert acc_after >= acc_before - 1 / len(query)
    client.post("/profiles/held-out/versions/1/activate")
    assert accuracy("held-out") == pytest.approx(acc_before)
