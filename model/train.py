"""Pretraining on a folder in GSC layout (surrogate-gradient BPTT by default).

Speaker-disjoint split, class-balanced sampling, noise / time-shift / gain / SpecAugment
augmentation, cosine-decayed Adam, a checkpoint after every epoch (``--resume`` continues
from it), the best-on-validation model saved to ``--out`` with a PNG of the curves beside it.
``--arch dscnn`` trains the non-spiking baseline (model/cnn.py) through the same loop, data,
split and augmentation; under ``torchrun`` the loop is data-parallel (model/distributed.py).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from . import augment
from .data import Clip, load_waves, noise_recordings, scan, split
from .distributed import Dist, from_env
from .encoder import EncoderConfig, encode
from .encoder import init_state as encoder_init
from .neurons import LIFParams
from .pipeline import KEYWORDS, LABELS, SILENCE, UNKNOWN, KWSModel, ModelConfig, batched


@dataclass
class TrainConfig:
    data: str
    out: str
    epochs: int = 45
    batch: int = 64
    lr: float = 1e-3
    hidden: int = 450
    encoder: str = "sigma-delta"
    threshold: float = 0.5
    levels: int = 2
    surrogate_k: float = 1.0
    dropout: float = 0.0
    label_smoothing: float = 0.1
    val_percent: int = 20
    seed: int = 0
    threads: int = 2
    resume: bool = False
    rule: str = "bptt"
    readout_lr_scale: float = 0.02
    center_inputs: bool = True
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (10.0, 30.0)
    time_mask: int = 5
    mel_mask: int = 4
    extra_data: tuple[str, ...] = ()  # more folders for training only (e.g. `data synth`)
    room_prob: float = 0.0  # share of training clips sent through a simulated room
    room_pool: int = 64  # rooms drawn for training (seeds apart from the benchmarks' rooms)
    room_extra: bool = True  # False: rooms for the --data clips only, never the extra folders'
    # how batches are balanced: "label" (every class equally often) or "source" (every pair of
    # class and folder equally often, so an --extra-data folder adds to a class's share instead
    # of diluting the real clips of that class)
    balance: str = "label"
    tp_aux: float = 0.0  # weight of TP's layer loss (all-classes contrast) beside the CE
    tp_aux_every: int = 10  # frames between two terms of that loss
    tp_aux_temperature: float = 100.0  # ⟨ε, ε̃⟩ are O(10³): scaled before the softmax
    tp_aux_skip_unknown: bool = False  # leave _unknown_ clips out of the TP layer loss
    limit_steps: int = 0  # >0: stop each epoch after this many batches (smoke tests)
    # keywords removed from the data entirely (not even as _unknown_): the new-word benchmark's
    # backbone, which must never have heard the words it is asked to enrol
    holdout_words: tuple[str, ...] = ()
    arch: str = "snn"  # or "dscnn": the non-spiking baseline (model/cnn.py; never shipped)
    # share of the training speakers used (a data-size curve): the first F of them in a
    # fixed hashed order, so 25 % ⊂ 50 % ⊂ 100 %; validation speakers are never touched
    train_fraction: float = 1.0
    steps_per_epoch: int = 0  # >0: batches per epoch whatever the data size (0: one pass)
    ema: float = 0.0  # >0: validate and ship an exponential moving average of the weights
    speed: float = 0.0  # >0: each clip played at a speed in [1 − speed, 1 + speed]
    # start from this model file (weights, normalisation, labels) instead of from scratch:
    # fine-tuning with a new augmentation or loss without paying for a whole pretraining
    init: str = ""
    # adaptation-aware normalisation: this share of the training clips is standardised with
    # the statistics KWSModel.adapt_normalisation would reach after hearing that clip's
    # environment — its simulated room, or (dry) its speaker — for a random pooling weight
    # w ~ U(0, adapt_norm_weight) of the environment against the training statistics. The
    # service adapts the normalisation to every user; a network that has only ever seen the
    # training statistics meets shifted inputs exactly when it has been personalised.
    adapt_norm_prob: float = 0.0
    adapt_norm_weight: float = 0.75


TRAIN_ROOM_SEED = 10**9  # training rooms: sample_room(seed) for seeds from here on


@dataclass
class Prepared:
    model: KWSModel
    train_waves: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    noise: list[torch.Tensor]
    rooms: list = field(default_factory=list)  # model.room.RoomSimulator pool
    room_ok: torch.Tensor | None = None  # (clips,) bool: may go through a room (None: all)
    source: torch.Tensor | None = None  # (clips,) int: 0 for --data, i + 1 for extra folder i
    # adaptation-aware normalisation (TrainConfig.adapt_norm_prob): front-end frame moments
    # (mean, E[f²]) per speaker (rows of ``speaker``) and per room of ``rooms``
    speaker: torch.Tensor | None = None  # (clips,) int: row of speaker_moments
    speaker_moments: torch.Tensor | None = None  # (speakers, 2, n_feat)
    room_moments: torch.Tensor | None = None  # (rooms, 2, n_feat)


def frame_moments(frames: torch.Tensor) -> torch.Tensor:
    """(2, n_feat): mean and mean square of front-end frames (..., T, n_feat)."""
    f = frames.reshape(-1, frames.shape[-1]).double()
    return torch.stack([f.mean(0), (f**2).mean(0)]).float()


def pooled_normalise(model: KWSModel, frames: torch.Tensor, moments: torch.Tensor,
                     weight: torch.Tensor) -> torch.Tensor:
    """Standardise each clip's frames (B, T, F) with the training statistics pooled with
    its environment's ``moments`` (B, 2, F) at ``weight`` (B,) — where
    :meth:`KWSModel.adapt_normalisation` lands after n user frames, w = n / (prior + n)."""
    w = weight.view(-1, 1)
    m0, s0 = model.mean.view(1, -1), model.std.view(1, -1)
    mean = (1 - w) * m0 + w * moments[:, 0]
    sq = (1 - w) * (s0**2 + m0**2) + w * moments[:, 1]
    std = (sq - mean**2).clamp_min(1e-6).sqrt()
    return (frames - mean[:, None]) / std[:, None]


def sampling_weights(y: torch.Tensor, source: torch.Tensor | None, n_labels: int,
                     balance: str = "label") -> torch.Tensor:
    """Each training clip's draw probability (up to a constant) for class-balanced batches.

    Why "source": 1,000 crops of open speech added to ``_unknown_`` under "label" balancing
    leave the 400 real ``_unknown_`` words under a third of that class's share, and the
    network unlearns them (GSC ``_unknown_`` accuracy 0.87 → 0.62). Balancing over (class,
    folder) pairs keeps each real class's share and gives each extra folder's class one more."""
    if balance not in ("label", "source"):
        raise ValueError(f"--balance must be label or source, got {balance!r}")
    group = y if balance == "label" or source is None else source * n_labels + y
    counts = torch.bincount(group).float().clamp_min(1)
    return (1.0 / counts)[group]


def _labels_of(clips, labels: list[str]) -> torch.Tensor:
    return torch.tensor([labels.index(c.label(labels)) for c in clips])


def training_labels(holdout_words: tuple[str, ...] = ()) -> list[str]:
    """The classes a model trained without ``holdout_words`` has."""
    unknown = [w for w in holdout_words if w not in KEYWORDS]
    if unknown:
        raise ValueError(f"--holdout-words must be keywords ({', '.join(KEYWORDS)}), got {unknown}")
    return [label for label in LABELS if label not in holdout_words]


def speaker_subset(clips: list[Clip], fraction: float) -> list[Clip]:
    """The clips of the first ``fraction`` of the speakers (split units: a ``_silence_``
    window is its own) in the order of sha1("train-fraction:" + speaker): deterministic,
    independent of the validation split's hash, and nested (a smaller fraction's speakers
    are all in a larger one's)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"--train-fraction must be in (0, 1], got {fraction}")
    if fraction == 1:
        return list(clips)
    speakers = sorted({c.speaker for c in clips},
                      key=lambda s: hashlib.sha1(f"train-fraction:{s}".encode()).hexdigest())
    keep = set(speakers[: max(1, round(fraction * len(speakers)))])
    return [c for c in clips if c.speaker in keep]


def prepare(cfg: TrainConfig, progress: bool = True) -> Prepared:
    """Load audio, fit the normalisation on the training speakers, encode the validation set."""
    if cfg.arch not in ("snn", "dscnn"):
        raise ValueError(f"unknown --arch {cfg.arch!r} (snn or dscnn)")
    if cfg.arch == "dscnn" and (cfg.rule != "bptt" or cfg.tp_aux > 0):
        raise ValueError("--arch dscnn trains by backpropagation only (no --rule, no --tp-aux)")
    clips = [c for c in scan(cfg.data) if c.word not in cfg.holdout_words]
    labels = training_labels(cfg.holdout_words)
    train_c, val_c = split(clips, "train", cfg.val_percent), split(clips, "val", cfg.val_percent)
    train_c = speaker_subset(train_c, cfg.train_fraction)
    source = [0] * len(train_c)  # 0: --data; i + 1: extra folder i
    # extra folders are never validation: the validation speakers are real people
    for i, extra in enumerate(cfg.extra_data):
        more = scan(extra)
        train_c += more
        source += [i + 1] * len(more)
    if not train_c:
        raise ValueError(f"no training speakers in {cfg.data} with --val-percent {cfg.val_percent}")
    train_waves = load_waves(train_c, progress=progress)
    val_waves = load_waves(val_c, progress=progress)
    mc = ModelConfig(
        n_hidden=cfg.hidden,
        encoder=EncoderConfig(cfg.encoder, cfg.threshold, cfg.levels),
        lif=LIFParams(k=cfg.surrogate_k),
        labels=labels,
    )
    if cfg.arch == "dscnn":  # same front end and normalisation, features as they are
        from .cnn import DSCNNConfig

        mc.arch, mc.cnn, mc.encoder = "dscnn", DSCNNConfig().to_dict(), EncoderConfig("analog")
    model = KWSModel.load(cfg.init) if cfg.init else KWSModel(mc)
    if cfg.init and (model.labels != labels or model.config.arch != cfg.arch):
        raise ValueError(f"--init {cfg.init}: its labels / architecture differ from this run's")
    with torch.no_grad():
        feats = batched(model.frontend, train_waves)
    if not cfg.init:  # a fine-tune keeps the normalisation its weights were trained with
        model.mean, model.std = feats.mean((0, 1)), feats.std((0, 1)).clamp_min(1e-3)
        if cfg.center_inputs:
            with torch.no_grad():
                model.in_mean = batched(model.inputs, train_waves).mean((0, 1))
    with torch.no_grad():
        val_x = batched(model.inputs, val_waves) if len(val_c) else None
    if model.spiking and not cfg.init:
        with torch.no_grad():
            # variance-preserving input weights for the encoder's actual statistics: binary
            # spike inputs have E[x²] = their rate, far below the 1 of standardised features
            probe = model.inputs(train_waves[:256])
            model.net.w_in.mul_(float(probe.pow(2).mean()) ** -0.5)
    noise = noise_recordings(cfg.data)
    rooms = []
    if cfg.room_prob > 0:
        from .room import RoomSimulator, sample_room

        rooms = [RoomSimulator(sample_room(TRAIN_ROOM_SEED + i), noise)
                 for i in tqdm(range(cfg.room_pool), desc="rooms", disable=not progress,
                               leave=False)]
    source_t = torch.tensor(source, dtype=torch.long)
    room_ok = None if cfg.room_extra else source_t == 0
    p = Prepared(model, train_waves, _labels_of(train_c, labels), val_x,
                 _labels_of(val_c, labels), noise, rooms, room_ok, source_t)
    if cfg.adapt_norm_prob > 0:
        _environment_moments(p, train_c, source, feats, progress)
    return p


def _environment_moments(p: Prepared, clips: list[Clip], source: list[int],
                         feats: torch.Tensor, progress: bool, per_room: int = 24) -> None:
    """Frame moments of every training speaker (over their clips, dry) and of every training
    room (over ``per_room`` random clips heard through it), for adaptation-aware
    normalisation. ``_silence_`` windows have no speaker: they count as one \"speaker\" each."""
    keys = [(s, c.speaker or str(c.path)) for c, s in zip(clips, source, strict=True)]
    rows = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    p.speaker = torch.tensor([rows[k] for k in keys])
    sums = torch.zeros(len(rows), 2, feats.shape[-1], dtype=torch.float64)
    counts = torch.zeros(len(rows), dtype=torch.float64)
    f = feats.double()
    sums.index_add_(0, p.speaker, torch.stack([f.sum(1), (f**2).sum(1)], 1))
    counts.index_add_(0, p.speaker, torch.full((len(clips),), float(f.shape[1]),
                                               dtype=torch.float64))
    p.speaker_moments = (sums / counts.view(-1, 1, 1)).float()
    if p.rooms:
        gen = torch.Generator().manual_seed(7)
        speech = (p.train_y != p.model.labels.index(SILENCE)).nonzero().flatten()
        if p.room_ok is not None:
            speech = speech[p.room_ok[speech]]
        moments = []
        for r, sim in enumerate(tqdm(p.rooms, desc="room statistics", disable=not progress,
                                     leave=False)):
            pick = speech[torch.randperm(len(speech), generator=gen)[:per_room]]
            heard = torch.stack([sim.apply(p.train_waves[i], f"moments:{r}:{int(i)}")
                                 for i in pick.tolist()])
            with torch.no_grad():
                moments.append(frame_moments(p.model.frontend(heard)))
        p.room_moments = torch.stack(moments)


def augmented_batch(
    p: Prepared, idx: torch.Tensor, gen: torch.Generator, cfg: TrainConfig
) -> torch.Tensor:
    """Encoded inputs for a batch of training clips, freshly augmented."""
    model = p.model
    waves = p.train_waves[idx].clone()
    y = p.train_y[idx]
    n = waves.shape[1]
    sil = (y == model.labels.index(SILENCE)).nonzero().flatten()
    if len(sil) and p.noise:  # half the silence draws: a fresh window of long background noise
        fresh = sil[torch.rand(len(sil), generator=gen) < 0.5]
        if len(fresh):
            gain = torch.empty(len(fresh), 1).uniform_(0.0, 1.0, generator=gen) ** 2
            waves[fresh] = augment.noise_windows(p.noise, len(fresh), n, gen) * gain
    waves = augment.speed_perturb(waves, cfg.speed, gen)
    waves = augment.time_shift(waves, 1600, gen)
    if p.rooms:  # the device in a room: reverberation, band-pass, noise at 5-20 dB
        use = torch.rand(len(idx), generator=gen) < cfg.room_prob
        if p.room_ok is not None:
            use &= p.room_ok[idx]
        use = use.nonzero().flatten()
        room_of = torch.full((len(idx),), -1, dtype=torch.long)
        for i in use.tolist():
            room_of[i] = int(torch.randint(len(p.rooms), (1,), generator=gen))
            sim = p.rooms[int(room_of[i])]
            key = str(int(torch.randint(2**62, (1,), generator=gen)))
            waves[i] = sim.apply(waves[i], key, speech=bool(y[i] != model.labels.index(SILENCE)))
    waves = waves * torch.empty(len(idx), 1).uniform_(0.5, 1.5, generator=gen)
    noise = augment.noise_windows(p.noise, len(idx), n, gen)
    if not p.noise:  # no noise recordings in the folder: white noise
        noise = torch.randn(len(idx), n, generator=gen)
    waves = augment.mix_noise(waves, noise, tuple(cfg.snr_db), cfg.noise_prob, gen)
    with torch.no_grad():
        frames = model.frontend(waves)
        feats = model.normalise(frames)
        if p.speaker_moments is not None:  # adaptation-aware normalisation
            pick = (torch.rand(len(idx), generator=gen) < cfg.adapt_norm_prob).nonzero().flatten()
            if len(pick):
                moments = p.speaker_moments[p.speaker[idx[pick]]]
                if p.rooms:
                    in_room = room_of[pick] >= 0
                    moments[in_room] = p.room_moments[room_of[pick][in_room]]
                w = torch.rand(len(pick), generator=gen) * cfg.adapt_norm_weight
                feats[pick] = pooled_normalise(model, frames[pick], moments, w)
        n_mels = model.config.frontend.n_mels
        feats = augment.spec_mask(feats, n_mels, cfg.time_mask, cfg.mel_mask, gen)
        x, _ = encode(feats, encoder_init(), model.config.encoder)
    return x - model.in_mean


@torch.no_grad()
def accuracy(model: KWSModel, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    model.net.eval()
    pred = batched(lambda xb: model.net(xb)[0].argmax(1), x, batch)
    return float((pred == y).float().mean())


def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [h["loss"] for h in history], label="train loss")
    a.set_xlabel("epoch"), a.set_ylabel("cross-entropy"), a.legend(), a.grid(alpha=0.3)
    b.plot(ep, [h["train_acc"] for h in history], label="train (augmented)")
    b.plot(ep, [h["val_acc"] for h in history], label="validation (unseen speakers)")
    b.set_xlabel("epoch"), b.set_ylabel("accuracy"), b.set_ylim(0, 1), b.legend(), b.grid(alpha=0.3)
    fig.suptitle(path.stem)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_best(
    model: KWSModel, p: Prepared, cfg: TrainConfig, epoch: int, val_acc: float, out: Path
) -> None:
    """Save the model with its training metadata and a readout replay bank."""
    from .adapt import build_replay

    model.config.meta = {"training": asdict(cfg) | {"best_epoch": epoch + 1,
                                                    "train_clips": len(p.train_y)},
                         "val_accuracy": val_acc}
    if model.spiking:  # the readout replay bank holds spike counts; the CNN has none
        model.replay = build_replay(model, p.train_waves, p.train_y)
    model.save(out)


class TPAuxLoss:
    """TP's layer loss (all-classes contrast, rules/tp.py) on the hidden traces, as a
    pretraining term: it shapes the hidden layer so that each clip's traces point towards
    its class's fixed label path — the structure TP's update looks for when it adapts.

    ε_t = β ε_{t−1} + s_t is computed from the recorded spikes (with autograd); every
    ``tp_aux_every`` frames from frame 20 on, z = ⟨ε_t, ε̃_k,t⟩ / temperature against the
    rule's soft targets y = softmax_k(−‖ε̃₀[c*] − ε̃₀[k]‖).
    """

    def __init__(self, net, frames: int, cfg: TrainConfig,
                 labels: list[str] | None = None) -> None:
        from .rules.tp import label_path_traces

        self.eps_lab, self.traces = label_path_traces(net, frames)
        self.beta, self.every, self.temp = net.params.beta, cfg.tp_aux_every, \
            cfg.tp_aux_temperature
        # _unknown_ (other words, running speech) has no one direction a label path could give
        self.skip = (labels or LABELS).index(UNKNOWN) if cfg.tp_aux_skip_unknown else None

    def __call__(self, spikes: list[torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        from .neurons import trace_step
        from .rules.tp import contrast_targets

        if self.skip is not None:
            keep = y != self.skip
            if not bool(keep.any()):
                return spikes[0].new_zeros(())
            spikes, y = [s[keep] for s in spikes], y[keep]
        eps = torch.zeros_like(spikes[0])
        terms = []
        for t, s in enumerate(spikes):
            eps = trace_step(s, eps, self.beta)
            if t >= 20 and (t % self.every == 0 or t == len(spikes) - 1):
                tt = min(t, len(self.eps_lab) - 1)
                z = eps @ self.eps_lab[tt].T / self.temp
                target = contrast_targets(self.traces[tt], y)
                terms.append(-(target * torch.log_softmax(z, 1)).sum(1).mean())
        return torch.stack(terms).mean() if terms else spikes[0].new_zeros(())


class WeightAverage:
    """Exponential moving average of the network's weights (Polyak averaging), validated and
    saved in place of the last step's weights.

    Why: with ~3k training clips the last step's weights wander from epoch to epoch by about a
    point of validation accuracy (the shipped run: 0.890–0.903 over its last 15 epochs); the
    average sits in the middle of where they wander. The decay warms up as (1+n)/(10+n) so the
    random initial weights leave the average within the first epochs."""

    def __init__(self, net: torch.nn.Module, decay: float) -> None:
        self.decay, self.n = decay, 0
        self.avg = {k: v.detach().clone() for k, v in net.state_dict().items()}

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        self.n += 1
        d = min(self.decay, (1 + self.n) / (10 + self.n))
        for k, v in net.state_dict().items():
            if v.dtype.is_floating_point:
                self.avg[k].lerp_(v, 1 - d)
            else:
                self.avg[k].copy_(v)

    @contextmanager
    def swapped_in(self, net: torch.nn.Module):
        """The averaged weights in ``net`` for the duration of the block."""
        saved = {k: v.detach().clone() for k, v in net.state_dict().items()}
        net.load_state_dict(self.avg)
        try:
            yield
        finally:
            net.load_state_dict(saved)

    def state_dict(self) -> dict:
        return {"avg": self.avg, "n": self.n}

    def load_state_dict(self, st: dict) -> None:
        self.avg, self.n = st["avg"], st["n"]


class _BPTTLearner:
    """Backpropagation through time: Adam on the whole clip, cosine schedule, optional TP
    layer loss beside the cross-entropy."""

    def __init__(self, p: Prepared, cfg: TrainConfig, total: int) -> None:
        net = self.net = p.model.net  # train() may put a DDP wrapper here
        self.cfg = cfg
        self.opt = torch.optim.Adam(self.param_groups(net, cfg))
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt,
            lambda i: 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(i, total) / total)))
        self.lossf = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.tp_aux = TPAuxLoss(net, p.val_x.shape[1] if p.val_x is not None else 98, cfg,
                                p.model.labels) if cfg.tp_aux > 0 else None

    @staticmethod
    def param_groups(net: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
        # The readout integrates ~100 frames of ~450 neurons, so an Adam step on W_out moves the
        # logits ~100x more than one on W_in; give it a proportionally smaller rate.
        return [{"params": [net.w_in, net.w_rec], "lr": cfg.lr},
                {"params": [net.w_out], "lr": cfg.lr * cfg.readout_lr_scale}]

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
        self.net.train()
        spikes: list[torch.Tensor] | None = [] if self.tp_aux else None
        m, _, _ = self.net(x, dropout=self.cfg.dropout, spikes=spikes)
        loss = self.lossf(m, y)
        if self.tp_aux is not None:
            loss = loss + self.cfg.tp_aux * self.tp_aux(spikes, y)
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 5.0)
        self.opt.step()
        self.sched.step()
        return m.detach(), float(loss.detach())

    def state_dict(self) -> dict:
        return {"opt": self.opt.state_dict(), "sched": self.sched.state_dict()}

    def load_state_dict(self, st: dict) -> None:
        self.opt.load_state_dict(st["opt"])
        self.sched.load_state_dict(st["sched"])


class _CNNLearner(_BPTTLearner):
    """The DS-CNN baseline: the same Adam, cosine schedule, label smoothing and clipping as
    BPTT, one learning rate for every weight (a CNN has no long readout integration)."""

    @staticmethod
    def param_groups(net: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
        return [{"params": list(net.parameters()), "lr": cfg.lr}]


class _LocalLearner:
    """A local rule (TP as in the paper: batch contrast, Adam every frame): the rule sees each
    batch frame by frame and updates the weights at every frame."""

    def __init__(self, p: Prepared, cfg: TrainConfig, total: int) -> None:
        from .rules import make_rule
        from .rules.base import PRETRAINING

        frames = p.val_x.shape[1] if p.val_x is not None else 98
        hp = PRETRAINING | {"lr": cfg.lr, "lr_out": cfg.lr * cfg.readout_lr_scale,
                            "total_steps": total * frames}
        if cfg.rule == "tp":
            hp |= {"contrast": "batch", "readout": "frame"}
        self.rule = make_rule(cfg.rule, p.model.net, **hp)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
        m = self.rule.run(x, y)
        return m, float(getattr(self.rule, "last_loss", float("nan")))

    def state_dict(self) -> dict:
        return {}  # the rule's optimiser restarts on resume (its state is per-run)

    def load_state_dict(self, st: dict) -> None:
        pass


def _on_cpu(model: KWSModel, dist: Dist) -> KWSModel:
    """The model whose network validation and saving read: itself on CPU, else a CPU copy of
    the network trained on the GPU (the SNN's inference path runs numpy at small batch)."""
    if dist.device.type == "cpu":
        return model
    view = copy.copy(model)
    view.net = copy.deepcopy(model.net).cpu()
    return view


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Run pretraining (BPTT, the CNN baseline, or a local rule with ``cfg.rule``): one loop
    for all, with the same data, split, augmentation, checkpoints (``--resume``), history and
    curves. Under ``torchrun`` (``WORLD_SIZE`` > 1) it is data-parallel: every rank draws and
    augments the same global batch and trains on its shard (model/distributed.py).

    Returns a summary (best validation accuracy, epochs, paths, history)."""
    dist = from_env()
    progress = progress and dist.main
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    out = Path(cfg.out).with_suffix(".safetensors")
    ckpt_path = out.with_name(out.stem + "-checkpoint.pt")
    p = prepare(cfg, progress)
    net = p.model.net
    steps = cfg.steps_per_epoch or max(1, len(p.train_y) // cfg.batch)
    if cfg.limit_steps:
        steps = min(steps, cfg.limit_steps)
    if dist.active and cfg.rule != "bptt":
        raise ValueError("torchrun: local rules update the weights inside the rule; "
                         "data-parallel training supports --rule bptt (SNN or --arch dscnn)")
    net.to(dist.device)
    kind = _LocalLearner if cfg.rule != "bptt" else \
        _CNNLearner if cfg.arch == "dscnn" else _BPTTLearner
    learner = kind(p, cfg, steps * cfg.epochs)
    shard = dist.shard(cfg.batch)
    weights = sampling_weights(p.train_y, p.source, len(p.model.labels), cfg.balance)
    history: list[dict] = []
    best, start = -1.0, 0
    ema = WeightAverage(net, cfg.ema) if cfg.ema > 0 else None
    if cfg.resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, weights_only=False, map_location=dist.device)
        net.load_state_dict(ck["net"])
        learner.load_state_dict(ck["learner"])
        if ema is not None and "ema" in ck:
            ema.load_state_dict(ck["ema"])
        gen.set_state(ck["gen"].cpu())
        history, best, start = ck["history"], ck["best"], ck["epoch"]
    if dist.active:
        learner.net = dist.wrap(net)
    for epoch in range(start, cfg.epochs):
        t0 = time.time()
        tot_loss, tot_ok, tot_n = 0.0, 0, 0
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   leave=False)
        for _ in bar:
            idx = torch.multinomial(weights, cfg.batch, replacement=True, generator=gen)
            x, y = augmented_batch(p, idx, gen, cfg), p.train_y[idx]
            x, y = x[shard].to(dist.device), y[shard].to(dist.device)
            m, loss = learner.step(x, y)
            if ema is not None:
                ema.update(net)
            tot_loss += loss * len(y)
            tot_ok += int((m.argmax(1) == y).sum())
            tot_n += len(y)
            bar.set_postfix(loss=f"{tot_loss / tot_n:.3f}")
        tot_loss, tot_ok, tot_n = dist.sum([tot_loss, tot_ok, tot_n])
        if dist.main:
            best = _end_epoch(p, cfg, learner, dist, gen, history, best, epoch, out, ckpt_path,
                              {"epoch": epoch + 1, "loss": tot_loss / tot_n,
                               "train_acc": tot_ok / tot_n}, t0, progress, ema)
        dist.barrier()  # every rank starts the next epoch after rank 0's checkpoint
    dist.close()
    return {"best_val_accuracy": best, "epochs": cfg.epochs, "model": str(out),
            "history": history, "rank": dist.rank, "world_size": dist.world}


def _end_epoch(p: Prepared, cfg: TrainConfig, learner, dist: Dist, gen: torch.Generator,
               history: list[dict], best: float, epoch: int, out: Path, ckpt_path: Path,
               h: dict, t0: float, progress: bool, ema: WeightAverage | None = None) -> float:
    """Rank 0 at the end of an epoch: validate, keep the best model, write the checkpoint,
    history and curves. With ``ema`` the averaged weights are validated and saved.
    Returns the best validation accuracy so far."""
    with ema.swapped_in(p.model.net) if ema is not None else nullcontext():
        model = _on_cpu(p.model, dist)
        val_acc = accuracy(model, p.val_x, p.val_y) if p.val_x is not None else float("nan")
        h |= {"val_acc": val_acc, "seconds": time.time() - t0}
        if isinstance(learner, _BPTTLearner):
            h["lr"] = learner.sched.get_last_lr()[0]
        if p.val_x is not None and model.spiking:
            from .rules.tp import tp_scores

            h["val_tp_class_score"] = tp_scores(model.net, p.val_x,
                                                p.val_y)["class_score_accuracy"]
        history.append(h)
        if progress:
            tqdm.write(json.dumps(h))
        if val_acc > best or math.isnan(val_acc):
            best = val_acc
            save_best(model, p, cfg, epoch, val_acc, out)
    torch.save({"net": p.model.net.state_dict(), "learner": learner.state_dict(),
                "gen": gen.get_state(), "history": history, "best": best,
                "epoch": epoch + 1} | ({"ema": ema.state_dict()} if ema else {}), ckpt_path)
    out.with_name(out.stem + "-history.json").write_text(json.dumps(history, indent=1))
    plot_curves(history, out.with_name(out.stem + "-curves.png"))
    return best
