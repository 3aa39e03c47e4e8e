"""Choose the feature-normalisation prior (``norm_prior``) from two sweeps on the `tune` speakers.

With ``--reference``, any swept setting: e.g. TP's rates (``--reference lr=0 lr_out=0.25``,
the current defaults), judged the same way against the reference row.

One default has to serve both a quiet room and a reverberant, noisy one, so the two sweeps of
``scripts/sweep-personalize.py --grid norm_prior=...`` (``--condition clean`` and ``room``)
are judged together: among the settings with retention down at most 1 point and false accepts
no higher than with the normalisation left alone (norm_prior 0, the previous default) in each
of the four cells (clean/room × 1-shot/all-shot), the one with the best mean gain over the four.

    .venv/bin/python scripts/choose-norm-prior.py docs/bench/norm/sweep-tp-clean.json \\
        docs/bench/norm/sweep-tp-room.json --out docs/bench/norm/chosen.json
    .venv/bin/python scripts/choose-norm-prior.py docs/bench/sweep-tp.json \\
        docs/bench/room/sweep-tp.json --reference lr=0 lr_out=0.25 \\
        --out docs/bench/room/joint-tp.json
"""

from __future__ import annotations

import argparse
import json
import sys

from tracekws.model.bench.personalize import sweep_settings
from tracekws.model.rules import parse_value

CELLS = [(cond, shots) for cond in ("clean", "room") for shots in ("1", "all")]


def choose(logs: dict[str, dict], max_retention_drop: float = 0.01,
           measure: str = "speaker-mean", reference: dict | None = None) -> dict:
    """``measure``: false accepts as each speaker's share averaged (``speaker-mean``, the
    committed choices) or pooled over all their non-keyword clips (``pooled``: the sweep logs
    need its ``fa_pooled_*`` fields). ``reference``: the settings whose rows bound the false
    accepts (default ``norm_prior`` 0); the rows are matched on those settings' names."""
    reference = reference or {"norm_prior": 0}
    names = list(reference)
    for cond, log in logs.items():  # rows are matched on ``names``: a setting varied beside
        extra = set(sweep_settings(log["rows"])[1]) - set(names)  # them would collide
        if extra:
            raise SystemExit(f"the {cond} sweep varies {sorted(extra)}: name it in --reference")
    fa = "fa_pooled_after" if measure == "pooled" else "fa_after"
    rows = {c: {tuple(r[n] for n in names): r for r in log["rows"]} for c, log in logs.items()}
    settings = sorted(set.intersection(*(set(r) for r in rows.values())))
    ref_key = tuple(reference.values())
    if ref_key not in settings:
        raise SystemExit(f"both sweeps need the reference row {reference}")
    table = []
    for key in settings:
        row: dict = dict(zip(names, key, strict=True))
        ok = True
        for cond, shots in CELLS:
            r, ref = rows[cond][key], rows[cond][ref_key]
            row[f"gain_{cond}_{shots}"] = r[f"gain_{shots}"]
            row[f"ret_{cond}_{shots}"] = r[f"ret_{shots}"]
            row[f"fa_{cond}_{shots}"] = r[f"{fa}_{shots}"]
            ok &= r[f"ret_{shots}"] >= -max_retention_drop
            ok &= r[f"{fa}_{shots}"] <= ref[f"{fa}_{shots}"] + 1e-9
        row["score"] = round(sum(row[f"gain_{c}_{s}"] for c, s in CELLS) / len(CELLS), 4)
        row["meets_bounds"] = bool(ok)
        table.append(row)
    best = max((r for r in table if r["meets_bounds"]), key=lambda r: r["score"])
    return {"rows": table, "chosen": best}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clean", help="sweep log, --condition clean")
    ap.add_argument("room", help="sweep log, --condition room")
    ap.add_argument("--fa-measure", default="speaker-mean", choices=["speaker-mean", "pooled"])
    ap.add_argument("--reference", nargs="+", default=["norm_prior=0"],
                    help="name=value of the reference setting (the current default)")
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    logs = {}
    for cond, path in (("clean", a.clean), ("room", a.room)):
        log = json.load(open(path))
        if log["speakers"] != "tune" or log["condition"] != cond:
            raise SystemExit(f"{path}: not a {cond} sweep on the tune speakers")
        logs[cond] = log
    reference = {kv.split("=")[0]: parse_value(kv.split("=")[1]) for kv in a.reference}
    res = choose(logs, measure=a.fa_measure, reference=reference)
    out = {"command": "python scripts/choose-norm-prior.py " + " ".join(sys.argv[1:]),
           "sweeps": {c: log["command"] for c, log in logs.items()},
           "criterion": "best mean gain over clean/room x 1-shot/all-shot, retention drop <= 1 "
                        "point and false accepts <= those of the reference "
                        f"{reference}, in every cell",
           "false_accepts": a.fa_measure,
           "reference": reference,
           **res}
    text = json.dumps(out, indent=1)
    if a.out:
        open(a.out, "w").write(text + "\n")
    print(json.dumps(res["chosen"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
