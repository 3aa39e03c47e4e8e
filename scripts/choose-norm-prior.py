"""Choose the feature-normalisation prior (``norm_prior``) from two sweeps on the `tune` speakers.

One default has to serve both a quiet room and a reverberant, noisy one, so the two sweeps of
``scripts/sweep-personalize.py --grid norm_prior=...`` (``--condition clean`` and ``room``)
are judged together: among the settings with retention down at most 1 point and false accepts
no higher than with the normalisation left alone (norm_prior 0, the previous default) in each
of the four cells (clean/room × 1-shot/all-shot), the one with the best mean gain over the four.

    .venv/bin/python scripts/choose-norm-prior.py docs/bench/norm/sweep-tp-clean.json \\
        docs/bench/norm/sweep-tp-room.json --out docs/bench/norm/chosen.json
"""

from __future__ import annotations

import argparse
import json
import sys

CELLS = [(cond, shots) for cond in ("clean", "room") for shots in ("1", "all")]


def choose(logs: dict[str, dict], max_retention_drop: float = 0.01,
           measure: str = "speaker-mean") -> dict:
    """``measure``: false accepts as each speaker's share averaged (``speaker-mean``, the
    committed choices) or pooled over all their non-keyword clips (``pooled``: the sweep logs
    need its ``fa_pooled_*`` fields)."""
    fa = "fa_pooled_after" if measure == "pooled" else "fa_after"
    rows = {c: {r["norm_prior"]: r for r in log["rows"]} for c, log in logs.items()}
    priors = sorted(set.intersection(*(set(r) for r in rows.values())))
    if 0 not in priors:
        raise SystemExit("both sweeps need the norm_prior=0 row (the reference)")
    table = []
    for p in priors:
        row: dict = {"norm_prior": p}
        ok = True
        for cond, shots in CELLS:
            r, ref = rows[cond][p], rows[cond][0]
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
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    logs = {}
    for cond, path in (("clean", a.clean), ("room", a.room)):
        log = json.load(open(path))
        if log["speakers"] != "tune" or log["condition"] != cond:
            raise SystemExit(f"{path}: not a {cond} sweep on the tune speakers")
        logs[cond] = log
    res = choose(logs, measure=a.fa_measure)
    out = {"command": "python scripts/choose-norm-prior.py " + " ".join(sys.argv[1:]),
           "sweeps": {c: log["command"] for c, log in logs.items()},
           "criterion": "best mean gain over clean/room x 1-shot/all-shot, retention drop <= 1 "
                        "point and false accepts <= those with norm_prior 0, in every cell",
           "false_accepts": a.fa_measure,
           **res}
    text = json.dumps(out, indent=1)
    if a.out:
        open(a.out, "w").write(text + "\n")
    print(json.dumps(res["chosen"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
