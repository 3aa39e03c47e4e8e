"""``tracekws`` command line: train, evaluate, predict, bench, data, serve, wyoming."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tracekws.model.pipeline import PRETRAINED
from tracekws.model.rules import NAMES as RULES


def _model(path: str | None):
    from tracekws.model.pipeline import KWSModel

    return KWSModel.load(path or PRETRAINED)


def _settings(items: list[str]) -> dict:
    """NAME=VALUE pairs as a dict of typed values (a rule's settings)."""
    from tracekws.model.rules import parse_value

    out: dict = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"expected NAME=VALUE, got {item!r}")
        out[name] = parse_value(value)
    return out


def cmd_train(a: argparse.Namespace) -> int:
    from tracekws.model.train import TrainConfig, train

    cfg = TrainConfig(
        data=a.data, out=a.out, epochs=a.epochs, batch=a.batch, lr=a.lr, hidden=a.hidden,
        encoder=a.encoder, threshold=a.threshold, levels=a.levels, val_percent=a.val_percent,
        seed=a.seed, threads=a.threads, resume=a.resume, rule=a.rule, limit_steps=a.limit_steps,
        room_prob=a.room_prob, tp_aux=a.tp_aux, extra_data=tuple(a.extra_data),
        holdout_words=tuple(w for w in a.holdout_words.split(",") if w), arch=a.arch,
        train_fraction=a.train_fraction, steps_per_epoch=a.steps_per_epoch, ema=a.ema,
        speed=a.speed, room_extra=not a.no_room_extra, balance=a.balance,
        tp_aux_skip_unknown=a.tp_aux_skip_unknown, init=a.init or "",
        adapt_norm_prob=a.adapt_norm_prob, adapt_norm_weight=a.adapt_norm_weight,
    )
    summary = train(cfg, progress=not a.quiet)
    summary.pop("history", None)
    if summary.get("rank", 0) == 0:  # under torchrun: one summary, from rank 0
        print(json.dumps(summary))
    return 0


def cmd_meta_train(a: argparse.Namespace) -> int:
    from dataclasses import fields

    from tracekws.model.meta import MetaConfig, meta_train

    cfg = MetaConfig(**{f.name: getattr(a, f.name) for f in fields(MetaConfig)})
    print(json.dumps(meta_train(cfg, progress=not a.quiet)))
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from tracekws.model.evaluate import evaluate

    res = evaluate(_model(a.model), a.data, a.split, a.val_percent, progress=not a.json,
                   condition=a.condition, seed=a.seed)
    if a.json:
        print(json.dumps(res))
    else:
        print(f"accuracy {res['accuracy']:.4f} on {res['n']} clips ({res['split']} split, "
              f"{res['condition']})")
        for lab, pc in res["per_class"].items():
            print(f"  {lab:>10}  {pc['accuracy']:.3f}  (n={pc['n']})")
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    from tracekws.model.audio import AudioError, load

    model = _model(a.model)
    status = 0
    for f in a.files:
        try:
            label, prob = model.predict(load(f))[0]
        except AudioError as exc:
            print(f"{f}\terror\t{exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{f}\t{label}\t{prob:.3f}")
    return status


def cmd_bench(a: argparse.Namespace) -> int:
    if a.what == "infer":
        from tracekws.model.bench.infer import bench_infer

        res = bench_infer(_model(a.model), repeats=a.repeats, threads=a.threads)
    elif a.what == "personalize":
        from tracekws.model.bench.personalize import bench_personalize

        res = bench_personalize(_model(a.model), a.data, a.rule, a.shots, a.val_percent,
                                epochs=a.epochs, progress=not a.json, speakers=a.speakers,
                                condition=a.condition, seed=a.seed, min_clips=a.min_clips,
                                max_speakers=a.max_speakers)
    elif a.what == "service":
        from tracekws.service.bench.service import bench_service

        res = bench_service(model_path=a.model, requests=a.requests, clients=a.clients)
    elif a.what == "memory":
        from tracekws.model.bench.memory import bench_memory

        res = bench_memory(None, a.rule, a.seconds, model_path=a.model)
    elif a.what == "rules":
        from tracekws.model.bench.rules import bench_rules

        res = bench_rules(_model(a.model), a.data, [r for r in a.rules.split(",") if r],
                          a.max_speakers, a.seconds, a.model, a.epochs, a.val_percent,
                          progress=not a.json, speakers=a.speakers, condition=a.condition,
                          seed=a.seed)
    elif a.what == "enrol" and a.protocol == "other-speakers":
        from tracekws.model.bench.enrol import bench_enrol

        res = bench_enrol(_model(a.model), a.data, int(a.shots), [w for w in a.words.split(",")
                                                                  if w], a.rule, a.val_percent,
                          a.epochs, progress=not a.json)
    elif a.what == "enrol":
        from tracekws.model.bench.enrol import HOLDOUT, bench_enrol_words, holdout_backbone

        backbone = holdout_backbone(a.data, HOLDOUT, a.backbone, progress=not a.json)
        speakers = "report" if a.speakers == "val" else a.speakers
        res = {"command": " ".join(["tracekws", *sys.argv[1:]]), "runs": [
            bench_enrol_words(backbone, a.data, int(k), HOLDOUT, speakers, a.condition, a.seed,
                              progress=not a.json, stream=a.stream)
            for k in a.shots.split(",")]}
    elif a.what == "macs":
        from tracekws.model.bench.macs import bench_macs

        res = bench_macs(_model(a.model))
    elif a.what == "vad":
        from tracekws.model.bench.vad import bench_vad

        res = bench_vad(a.data, _model(a.model), a.recordings, a.seed, progress=not a.json)
    elif a.what == "stream":
        from tracekws.model.bench.stream import bench_stream

        res = bench_stream(_model(a.model), a.data, hours=a.hours, seed=a.seed,
                           condition=a.condition, target_fa=a.target_fa,
                           val_percent=a.val_percent, cache=a.cache, teach_n=a.teach,
                           plot=a.det_plot, progress=not a.json,
                           calibrated_out=a.calibrated_out,
                           teach_hp=_settings(a.teach_set))
        if a.json_out:
            Path(a.json_out).parent.mkdir(parents=True, exist_ok=True)
            Path(a.json_out).write_text(json.dumps(res, indent=1) + "\n")
    elif a.what == "classes":
        from tracekws.model.bench.rules import bench_classes

        res = bench_classes([int(c) for c in a.classes.split(",")],
                            [int(b) for b in a.batches.split(",")])
    else:  # pragma: no cover - argparse restricts choices
        raise SystemExit(f"unknown benchmark {a.what}")
    print(json.dumps(res) if a.json else json.dumps(res, indent=2))
    return 0


def cmd_words_bank(a: argparse.Namespace) -> int:
    """Give a model file the cohort bank that words of the user's own are judged against."""
    from tracekws.model.words import WordConfig, with_bank

    model = _model(a.model)
    if model.words is not None and model.enrolled_words():
        raise SystemExit(f"{a.model}: has enrolled words {model.enrolled_words()}; a bank is "
                         "added to a base model")
    model.words = with_bank(model, a.data, a.size, seed=a.seed, cfg=WordConfig())
    sha = model.save(a.out)
    print(json.dumps({"model": str(Path(a.out).with_suffix(".safetensors")), "sha256": sha,
                      "bank": len(model.words.bank), "bytes": len(model.to_bytes())}))
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def cmd_serve(a: argparse.Namespace) -> int:
    import signal

    import uvicorn

    # After its graceful shutdown uvicorn re-raises SIGTERM under the handler it found. With
    # the default handler, a container's PID 1 ignores it (fine natively), but under qemu-user
    # (an arm64 image on x86-64) the emulated default action waits forever for a signal the
    # kernel drops for PID 1, and `docker stop` ends in SIGKILL (measured by
    # deploy/verify-arm64.sh). A handler that exits makes the stop clean everywhere.
    from tracekws.service.server import (
        uvicorn_config,  # timeouts and size limits (service/server.py)
    )

    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run("tracekws.service.main:create_app", factory=True, host=a.host, port=a.port,
                workers=1, **uvicorn_config())
    return 0


def cmd_wyoming(a: argparse.Namespace) -> int:
    # lazily: the wyoming package and the service's store are only needed here
    from tracekws.service.wyoming import serve

    return serve(a.uri, a.profile, a.threshold, a.refresh)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tracekws", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    t = sub.add_parser("train", help="pretrain on a folder in GSC layout (data-parallel "
                                     "under torchrun)")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True, help="model path (.safetensors; .json beside)")
    t.add_argument("--rule", default="bptt",
                   choices=[r for r in RULES if r != "readout"],
                   help="bptt (default), tp (Traces Propagation as in the paper) or a local rule")
    t.add_argument("--epochs", type=int, default=45)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--hidden", type=int, default=450)
    t.add_argument("--encoder", default="sigma-delta", choices=["sigma-delta", "level", "analog"])
    t.add_argument("--threshold", type=float, default=0.5)
    t.add_argument("--levels", type=int, default=2)
    t.add_argument("--val-percent", type=int, default=20)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    t.add_argument("--extra-data", nargs="*", default=[],
                   help="more folders in GSC layout used for training only (e.g. synthetic "
                        "speech from `tracekws data synth`)")
    t.add_argument("--room-prob", type=float, default=0.0,
                   help="share of training clips sent through simulated rooms")
    t.add_argument("--tp-aux-skip-unknown", action="store_true",
                   help="leave _unknown_ clips out of the TP layer loss")
    t.add_argument("--no-room-extra", action="store_true",
                   help="rooms for the --data clips only, never for --extra-data (e.g. open "
                        "speech as _unknown_ stays dry)")
    t.add_argument("--balance", default="label", choices=["label", "source"],
                   help="batches balanced over classes, or over (class, folder) pairs so "
                        "--extra-data adds to a class instead of diluting its real clips")
    t.add_argument("--tp-aux", type=float, default=0.0,
                   help="weight of TP's layer loss beside the cross-entropy (TP readiness)")
    t.add_argument("--holdout-words", default="",
                   help="comma-separated keywords removed from the data entirely (the new-word "
                        "benchmark's backbone; see `tracekws bench enrol`)")
    t.add_argument("--arch", default="snn", choices=["snn", "dscnn"],
                   help="snn (default; what the service runs) or dscnn: the non-spiking "
                        "DS-CNN baseline, evaluated and benchmarked by the same commands")
    t.add_argument("--train-fraction", type=float, default=1.0,
                   help="use this share of the training speakers (fixed hashed order, nested)")
    t.add_argument("--steps-per-epoch", type=int, default=0,
                   help="batches per epoch whatever the data size (default: one pass)")
    t.add_argument("--ema", type=float, default=0.0,
                   help="validate and save an exponential moving average of the weights with "
                        "this decay per step (e.g. 0.995); 0: the last step's weights")
    t.add_argument("--speed", type=float, default=0.0,
                   help="speed perturbation: each training clip played at a random speed in "
                        "[1 - S, 1 + S] (e.g. 0.1); 0: off")
    t.add_argument("--init", default=None,
                   help="start from this model file (weights and normalisation): fine-tune it")
    t.add_argument("--adapt-norm-prob", type=float, default=0.0,
                   help="share of clips standardised as after personalisation: statistics "
                        "pooled with the clip's room (or dry, its speaker); 0: off")
    t.add_argument("--adapt-norm-weight", type=float, default=0.75,
                   help="largest pooling weight of that environment (drawn uniformly below it)")
    t.add_argument("--limit-steps", type=int, default=0, help=argparse.SUPPRESS)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    from dataclasses import fields

    from tracekws.model.meta import MetaConfig

    mt = sub.add_parser("meta-train", help="fine-tune a model and its TP rates so that one TP "
                                           "pass over a speaker's clips helps that speaker "
                                           "(first-order MAML on training speakers)")
    for f in fields(MetaConfig):
        if f.name in ("data", "out"):
            mt.add_argument("--" + f.name, required=True)
        else:
            mt.add_argument("--" + f.name.replace("_", "-"), default=f.default,
                            type=str if f.name == "model" else type(f.default))
    mt.add_argument("--quiet", action="store_true")
    mt.set_defaults(func=cmd_meta_train)

    e = sub.add_parser("evaluate", help="accuracy and confusion on a folder in GSC layout")
    e.add_argument("--data", required=True)
    e.add_argument("--model")
    e.add_argument("--split", default="all", choices=["all", "train", "val"])
    e.add_argument("--val-percent", type=int, default=20)
    e.add_argument("--json", action="store_true")
    e.add_argument("--condition", default="clean", choices=["clean", "room"],
                   help="room: each speaker's clips through a simulated room (the "
                        "personalisation benchmark's)")
    e.add_argument("--seed", type=int, default=0, help="room seed")
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="label and probability per audio file")
    pr.add_argument("files", nargs="+")
    pr.add_argument("--model")
    pr.set_defaults(func=cmd_predict)

    b = sub.add_parser("bench", help="benchmarks that print JSON")
    b.add_argument("what", choices=["infer", "personalize", "memory", "service", "rules",
                                    "classes", "macs", "enrol", "vad", "stream"])
    b.add_argument("--model")
    b.add_argument("--json", action="store_true")
    b.add_argument("--repeats", type=int, default=50)
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--data", default=str(Path("..") / "shared" / "data" / "speech_commands"))
    b.add_argument("--rule", default="tp", choices=RULES)
    b.add_argument("--rules", default="", help="rules: comma-separated subset (default: all)")
    b.add_argument("--max-speakers", type=int, default=0,
                   help="personalize, rules: first N speakers only")
    b.add_argument("--speakers", default="val", choices=["val", "tune", "report", "train", "all"],
                   help="personalize, rules: who is new (tune/report: the two halves of the "
                        "validation speakers; all: every eligible speaker of the folder)")
    b.add_argument("--condition", default="clean", choices=["clean", "room"],
                   help="personalize, rules: clips as recorded, or through a simulated room")
    b.add_argument("--seed", type=int, default=0, help="personalize, rules: room seed")
    b.add_argument("--min-clips", type=int, default=10,
                   help="personalize: keyword clips a speaker needs to be benchmarked")
    b.add_argument("--classes", default="12,36,100,1000", help="classes: readout sizes")
    b.add_argument("--words", default="",
                   help="enrol --protocol other-speakers: comma-separated words (default: digits)")
    b.add_argument("--protocol", default="held-out", choices=["held-out", "other-speakers"],
                   help="enrol: a word the backbone never heard, enrolled and queried by the same "
                        "speaker (--shots 1,3,5; --speakers report by default); or a digit "
                        "enrolled by the shipped model and queried on other speakers")
    b.add_argument("--backbone", default=None,
                   help="enrol: the held-out backbone (default: the cached one under "
                        "~/.cache/tracekws/enrol, trained by the shipped recipe if absent)")
    b.add_argument("--stream", action="store_true",
                   help="enrol: also feed each speaker's recordings, with gaps, to the streaming "
                        "detector (what /stream, wyoming and listen run) and score its detections")
    b.add_argument("--batches", default="1,16", help="classes: batch sizes")
    b.add_argument("--shots", default="1")
    b.add_argument("--val-percent", type=int, default=None,
                   help="speaker split of the model (default: the one it was trained with)")
    b.add_argument("--epochs", type=int, default=1, help="passes over the support set")
    b.add_argument("--seconds", nargs="+", default=["1", "30"])
    b.add_argument("--requests", type=int, default=400, help="service: /predict requests")
    b.add_argument("--clients", type=int, default=8, help="service: concurrent clients")
    b.add_argument("--recordings", type=int, default=100,
                   help="vad: synthetic recordings per half (tune, check)")
    b.add_argument("--hours", type=float, default=1.0,
                   help="stream: hours of keyword-free audio in each stream (tune, report)")
    b.add_argument("--target-fa", type=float, default=0.5,
                   help="stream: false accepts/hour the per-keyword thresholds aim at (tune)")
    b.add_argument("--teach", type=int, default=3,
                   help="stream: false triggers of the report stream taught as _unknown_")
    b.add_argument("--teach-set", nargs="*", default=[], metavar="NAME=VALUE",
                   help="stream: the teaching rule's settings where they differ from its "
                        "defaults (e.g. readout_orth=true lr_out=0.5), as /adapt's parameters")
    b.add_argument("--cache", default=None,
                   help="stream: cache of synthesised speech (default ~/.cache/tracekws/stream)")
    b.add_argument("--det-plot", default=None, help="stream: write the DET plot (PNG) here")
    b.add_argument("--json-out", default=None, help="stream: also write the JSON here")
    b.add_argument("--calibrated-out", default=None, metavar="MODEL",
                   help="stream: write a copy of the model whose config carries the "
                        "tune-calibrated per-keyword thresholds and refractory time "
                        "(MODEL.safetensors + .json; used by /stream, wyoming and listen)")
    b.set_defaults(func=cmd_bench)

    wd = sub.add_parser("words", help="words of the user's own (templates matched on the "
                                      "hidden layer; see docs/enrol.md)")
    wsub = wd.add_subparsers(dest="words_cmd", required=True)
    wb = wsub.add_parser("bank", help="write a copy of a model with a cohort bank of its "
                                      "training speakers' words (what /adapt needs to enrol a "
                                      "new word as templates)")
    wb.add_argument("--data", required=True)
    wb.add_argument("--model")
    wb.add_argument("--out", required=True)
    wb.add_argument("--size", type=int, default=400)
    wb.add_argument("--seed", type=int, default=0)
    wb.set_defaults(func=cmd_words_bank)

    dt = sub.add_parser("data", help="make data folders (synth: speech from offline TTS)")
    from tracekws.model.synth import add_parser as add_synth_parser

    add_synth_parser(dt.add_subparsers(dest="data_cmd", required=True))

    from tracekws.service.listen import add_parser as add_listen_parser

    add_listen_parser(sub)  # `tracekws listen`: microphone or file, no server needed

    s = sub.add_parser("serve", help="run the HTTP service")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.set_defaults(func=cmd_serve)

    w = sub.add_parser("wyoming", help="wake word service for Home Assistant (Wyoming protocol)")
    w.add_argument("--uri", default="tcp://0.0.0.0:10400", help="tcp://host:port or unix://path")
    w.add_argument("--profile", default="default",
                   help="whose model: 'default' (the shipped one) or a stored profile")
    w.add_argument("--threshold", type=float, default=None,
                   help="detection threshold in (0, 1] (default: TRACEKWS_STREAM_THRESHOLD)")
    w.add_argument("--refresh", type=float, default=5.0,
                   help="seconds after which the profile's active version is looked up again")
    w.set_defaults(func=cmd_wyoming)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
