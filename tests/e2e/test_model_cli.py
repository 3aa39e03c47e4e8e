"""Save/load round trip, the shipped model, and the CLI commands end to end."""

import json
import shutil

import pytest
import torch
from _clips import GSC, clip_path, wave
from tracekws.model.data import scan
from tracekws.model.pipeline import LABELS, PRETRAINED, KWSModel, ModelConfig

from tracekws.cli import main


def test_save_load_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    m = KWSModel(ModelConfig(n_hidden=48))
    m.mean, m.std = torch.randn(120), torch.rand(120) + 0.5
    m.in_mean = torch.rand(480) * 0.3
    m.replay = (torch.rand(24, 48) * 10, torch.arange(24) % 12)
    sha = m.save(tmp_path / "m")
    assert len(sha) == 64 and (tmp_path / "m.json").is_file()
    m2 = KWSModel.load(tmp_path / "m.safetensors")
    w = wave("go", 0)
    assert torch.equal(m.logits(w), m2.logits(w))
    assert m2.labels == m.labels and m2.config.encoder == m.config.encoder
    assert torch.equal(m2.in_mean, m.in_mean) and torch.equal(m2.replay[0], m.replay[0])
    assert torch.equal(KWSModel.from_bytes(m.to_bytes()).logits(w), m.logits(w))


def test_add_label_grows_the_readout():
    m = KWSModel(ModelConfig(n_hidden=16))
    w = wave("yes", 0)
    before = m.logits(w)
    assert m.add_label("seven") == 12
    after = m.logits(w)
    assert after.shape == (13,) and torch.equal(after[:12], before) and after[12] == 0


def test_shipped_model_beats_chance_on_held_out_clips():
    if not PRETRAINED.is_file():
        pytest.skip("no shipped model in this checkout")
    m = KWSModel.load()
    assert m.labels == LABELS and m.config.encoder.kind == "sigma-delta"
    from tracekws.model.data import content_key
    from tracekws.model.evaluate import evaluate_clips

    res = evaluate_clips(m, scan(GSC))
    assert res["n"] == len({content_key(p) for p in GSC.glob("*/*.flac")})  # each recording once
    assert res["accuracy"] > 0.4  # 12 classes: chance is 0.08


def test_cli_train_evaluate_predict(tmp_path, capsys):
    data = tmp_path / "gsc"
    shutil.copytree(GSC, data)
    out = tmp_path / "tiny"
    assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "2",
                 "--hidden", "24", "--batch", "8", "--val-percent", "0", "--threads", "1",
                 "--limit-steps", "2", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (tmp_path / "tiny.safetensors").is_file()
    assert (tmp_path / "tiny-curves.png").stat().st_size > 1000
    assert summary["epochs"] == 2
    # resume continues from the checkpoint instead of starting over
    assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "3",
                 "--hidden", "24", "--batch", "8", "--val-percent", "0", "--threads", "1",
                 "--limit-steps", "2", "--quiet", "--resume"]) == 0
    hist = json.loads((tmp_path / "tiny-history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    capsys.readouterr()

    model = str(out.with_suffix(".safetensors"))
    assert main(["evaluate", "--data", str(data), "--model", model, "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == len(scan(GSC))
    assert 0.0 <= res["accuracy"] <= 1.0
    assert len(res["confusion"]) == 12 and sum(map(sum, res["confusion"])) == res["n"]
    assert set(res["per_class"]) <= set(LABELS)

    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all" * 10)
    assert main(["predict", str(clip_path("up", 0)), str(bad), "--model", model]) == 1
    captured = capsys.readouterr()
    label, prob = captured.out.strip().split("\t")[1:]
    assert label in LABELS and 0 <= float(prob) <= 1
    assert "not-audio" in captured.err or "readable" in captured.err


def test_cli_bench_infer_prints_json(capsys, tmp_path):
    m = KWSModel(ModelConfig(n_hidden=32))
    m.save(tmp_path / "m")
    assert main(["bench", "infer", "--json", "--repeats", "3",
                 "--model", str(tmp_path / "m.safetensors")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["threads"] == 1 and res["real_time_factor"] > 0


def test_train_with_rooms_and_tp_layer_loss(tmp_path, capsys):
    """The v2 recipe's options: clips through simulated rooms and TP's layer loss beside
    the cross-entropy; the history records TP readiness on the validation clips."""
    out = tmp_path / "tiny"
    assert main(["train", "--data", str(GSC), "--out", str(out), "--epochs", "1",
                 "--hidden", "24", "--batch", "8", "--val-percent", "10", "--threads", "1",
                 "--limit-steps", "2", "--quiet", "--room-prob", "1.0", "--tp-aux", "1.0"]) == 0
    (h,) = json.loads((tmp_path / "tiny-history.json").read_text())
    assert 0.0 <= h["val_tp_class_score"] <= 1.0 and h["loss"] > 0


def test_tp_aux_loss_reaches_the_hidden_weights():
    from tracekws.model.network import SNN
    from tracekws.model.train import TPAuxLoss, TrainConfig

    torch.manual_seed(0)
    net = SNN(12, 16, 4)
    aux = TPAuxLoss(net, 40, TrainConfig(data="", out=""))
    spikes: list[torch.Tensor] = []
    x = (torch.rand(3, 40, 12) < 0.4).float() * 3
    net(x, spikes=spikes)
    loss = aux(spikes, torch.tensor([0, 1, 3]))
    loss.backward()
    assert loss > 0 and net.w_in.grad.abs().sum() > 0 and net.w_rec.grad.abs().sum() > 0


def test_train_with_speed_perturbation_and_weight_average(tmp_path, capsys):
    """--speed and --ema: the saved model holds the averaged weights, not the last step's,
    and --resume continues the average from the checkpoint."""
    from safetensors.torch import load_file

    out = tmp_path / "tiny"
    args = ["train", "--data", str(GSC), "--out", str(out), "--hidden", "24", "--batch", "8",
            "--val-percent", "10", "--threads", "1", "--limit-steps", "3", "--quiet",
            "--speed", "0.1", "--ema", "0.9"]
    assert main(args + ["--epochs", "1"]) == 0  # the first epoch is always saved
    ck = torch.load(tmp_path / "tiny-checkpoint.pt", weights_only=False)
    last, avg = ck["net"]["w_in"], ck["ema"]["avg"]["w_in"]
    saved = load_file(str(tmp_path / "tiny.safetensors"))
    w = next(v for k, v in saved.items() if k.endswith("w_in"))
    assert torch.equal(w, avg) and not torch.equal(w, last)
    assert main(args + ["--epochs", "2", "--resume"]) == 0
    ck = torch.load(tmp_path / "tiny-checkpoint.pt", weights_only=False)
    assert ck["ema"]["n"] == 6  # 3 steps per epoch, continued across the resume


def test_weight_average_swaps_in_and_back():
    from tracekws.model.train import WeightAverage

    net = torch.nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    ema = WeightAverage(net, decay=0.5)
    for v in (1.0, 1.0, 1.0):  # warm-up decays 2/11, 3/12, 4/13: the average approaches 1
        with torch.no_grad():
            net.weight.fill_(v)
        ema.update(net)
    expected = 1 - (2 / 11) * (3 / 12) * (4 / 13)
    assert torch.allclose(ema.avg["weight"], torch.full((2, 3), expected))
    with ema.swapped_in(net):
        assert torch.allclose(net.weight, torch.full((2, 3), expected))
    assert torch.equal(net.weight, torch.ones(2, 3))


def test_speed_perturbation_scales_frequency_and_keeps_the_centre():
    from tracekws.model.augment import speed_perturb

    n = 16000
    t = torch.arange(n) / n
    x = torch.sin(2 * torch.pi * 400 * t).repeat(64, 1)
    y = speed_perturb(x, 0.2, torch.Generator().manual_seed(0))
    peaks = torch.fft.rfft(y).abs().argmax(1).float()  # Hz, since the clip is 1 s long
    assert peaks.min() >= 400 * 0.8 - 2 and peaks.max() <= 400 * 1.2 + 2
    assert peaks.std() > 20  # the speeds differ from clip to clip
    assert torch.allclose(y[:, n // 2], x[:, n // 2], atol=1e-4)  # the centre stays put
    assert torch.equal(speed_perturb(x, 0.0, torch.Generator()), x)


def test_rooms_can_leave_the_extra_folders_dry(tmp_path):
    """--no-room-extra: only the --data clips may go through a room, never --extra-data's."""
    from tracekws.model.train import TrainConfig, augmented_batch, prepare

    extra = tmp_path / "extra"
    shutil.copytree(GSC, extra)
    cfg = TrainConfig(data=str(GSC), out=str(tmp_path / "m"), hidden=16, val_percent=10,
                      extra_data=(str(extra),), room_prob=1.0, room_pool=1, room_extra=False)
    p = prepare(cfg, progress=False)
    n_own = int(p.room_ok.sum())
    assert 0 < n_own < len(p.train_y) and bool(p.room_ok[:n_own].all())
    seen = []

    class Recorder:  # stands in for the room pool: which clips were sent into a room
        def apply(self, wave, key, speech):
            seen.append(wave.clone())
            return wave

    p.rooms = [Recorder()]
    idx = torch.arange(len(p.train_y))
    augmented_batch(p, idx, torch.Generator().manual_seed(0), cfg)
    assert len(seen) == n_own


def test_tp_aux_loss_can_leave_unknown_out():
    """--tp-aux-skip-unknown: _unknown_ clips add nothing to the TP layer loss."""
    from tracekws.model.network import SNN
    from tracekws.model.train import TPAuxLoss, TrainConfig

    torch.manual_seed(0)
    net = SNN(12, 16, 12)
    cfg = TrainConfig(data="", out="", tp_aux_skip_unknown=True)
    aux = TPAuxLoss(net, 40, cfg, LABELS)
    unk = LABELS.index("_unknown_")
    spikes: list[torch.Tensor] = []
    x = (torch.rand(3, 40, 12) < 0.4).float() * 3
    net(x, spikes=spikes)
    with_unknown = aux(spikes, torch.tensor([0, unk, 3]))
    without = aux([s[[0, 2]] for s in spikes], torch.tensor([0, 3]))
    assert torch.allclose(with_unknown, without)
    assert float(aux(spikes, torch.full((3,), unk))) == 0.0


def test_source_balancing_keeps_the_real_clips_share(tmp_path):
    """--balance source: an extra folder's clips of a class form a group of their own, so the
    real clips of that class keep the share every other class has; "label" dilutes them."""
    from tracekws.model.train import TrainConfig, prepare, sampling_weights

    extra = tmp_path / "extra"  # "yes" clips and nothing else (copies: scan keeps one each)
    (extra / "yes").mkdir(parents=True)
    for f in sorted((GSC / "yes").iterdir()):
        shutil.copy(f, extra / "yes" / f"x{f.name}")
    cfg = TrainConfig(data=str(GSC), out=str(tmp_path / "m"), hidden=16, val_percent=10,
                      extra_data=(str(extra),))
    p = prepare(cfg, progress=False)
    n_own = int((p.source == 0).sum())
    assert 0 < n_own < len(p.train_y) and bool((p.source[n_own:] == 1).all())
    n, yes = len(p.model.labels), p.model.labels.index("yes")

    def shares(balance: str) -> tuple[torch.Tensor, float]:
        w = sampling_weights(p.train_y, p.source, n, balance)
        w = w / w.sum()
        real = torch.zeros(n).index_add_(0, p.train_y[:n_own], w[:n_own])
        return real, float(w[n_own:].sum())

    real, extra_share = shares("label")  # classes equal: real "yes" squeezed by the copies
    others = real[(real > 0) & (torch.arange(n) != yes)]
    assert torch.allclose(others, others[0]) and real[yes] < others[0] * 0.75
    assert abs(real[yes] + extra_share - others[0]) < 1e-6
    real, extra_share = shares("source")  # groups equal: real "yes" like any other class
    present = real[real > 0]
    assert torch.allclose(present, present[0]) and abs(extra_share - present[0]) < 1e-6
    with pytest.raises(ValueError):
        sampling_weights(p.train_y, p.source, n, "speaker")


def test_pooled_normalisation_is_where_adapting_the_normalisation_lands(small_model_path):
    """Adaptation-aware training standardises a clip as the service would after hearing n
    frames of its environment: the training statistics pooled at w = n / (prior + n)."""
    from tracekws.model.pipeline import KWSModel
    from tracekws.model.train import frame_moments, pooled_normalise

    model = KWSModel.load(small_model_path)
    torch.manual_seed(0)
    heard = torch.randn(3, 50, model.mean.shape[0]) * 2 + 1  # a shifted, louder environment
    clip = torch.randn(1, 40, model.mean.shape[0])
    adapted = model.clone()
    adapted.adapt_normalisation(heard, prior_frames=300.0)
    w = torch.tensor([150.0 / (300.0 + 150.0)])
    got = pooled_normalise(model, clip, frame_moments(heard)[None], w)
    assert torch.allclose(got, adapted.normalise(clip), atol=1e-4)
    assert not torch.allclose(got, model.normalise(clip), atol=1e-2)
    same = pooled_normalise(model, clip, frame_moments(heard)[None], torch.zeros(1))
    assert torch.allclose(same, model.normalise(clip), atol=1e-4)


def test_fine_tune_from_a_model_with_adaptation_aware_normalisation(tmp_path):
    """--init keeps the starting model's normalisation and moves its weights;
    --adapt-norm-prob computes every speaker's and room's frame moments; --init refuses a
    model whose labels differ from the run's."""
    from safetensors.torch import load_file
    from tracekws.model.pipeline import KWSModel
    from tracekws.model.train import TrainConfig, frame_moments, prepare

    base = tmp_path / "base"
    tiny = ["--data", str(GSC), "--hidden", "24", "--batch", "8", "--val-percent", "10",
            "--threads", "1", "--limit-steps", "2", "--quiet", "--epochs", "1"]
    assert main(["train", "--out", str(base), *tiny]) == 0
    tuned = tmp_path / "tuned"
    assert main(["train", "--out", str(tuned), "--init", f"{base}.safetensors", *tiny,
                 "--room-prob", "1.0", "--adapt-norm-prob", "1.0"]) == 0
    a, b = KWSModel.load(f"{base}.safetensors"), KWSModel.load(f"{tuned}.safetensors")
    assert torch.equal(a.mean, b.mean) and torch.equal(a.std, b.std)
    wa, wb = load_file(f"{base}.safetensors"), load_file(f"{tuned}.safetensors")
    assert any(not torch.equal(wa[k], wb[k]) for k in wa if k.endswith("w_in"))

    cfg = TrainConfig(data=str(GSC), out=str(tmp_path / "m"), hidden=16, val_percent=10,
                      init=f"{base}.safetensors", room_prob=1.0, room_pool=2,
                      adapt_norm_prob=1.0)
    p = prepare(cfg, progress=False)
    assert p.room_moments.shape == (2, 2, a.mean.shape[0])
    row = int(p.speaker[0])
    mine = (p.speaker == row).nonzero().flatten()
    frames = p.model.frontend(p.train_waves[mine])
    assert torch.allclose(p.speaker_moments[row], frame_moments(frames), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="labels"):
        prepare(TrainConfig(data=str(GSC), out=str(tmp_path / "n"), init=f"{base}.safetensors",
                            val_percent=10, holdout_words=("yes",)), progress=False)
