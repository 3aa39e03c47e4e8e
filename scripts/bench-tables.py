"""Markdown tables from the benchmark JSON under docs/bench/ (what docs/benchmarks.md shows).

    .venv/bin/python scripts/bench-tables.py rules docs/bench/rules-report-clean.json
    .venv/bin/python scripts/bench-tables.py sweep docs/bench/sweep-tp.json
    .venv/bin/python scripts/bench-tables.py stream docs/bench/stream.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tracekws.model.bench.personalize import sweep_settings


def pts(x: float | None, sign: bool = True) -> str:
    if x is None:
        return "–"
    return f"{x * 100:+.1f}" if sign else f"{x * 100:.1f}"


def _flips(shot: dict) -> str:
    """' (+fixed −broken)': the query clips behind a gain (runs from session 14 on)."""
    if "query_fixed" not in shot:
        return ""
    return f" (+{shot['query_fixed']} −{shot['query_broken']})"


def _clips_line(rule: dict) -> str:
    o, a = rule["one_shot"], rule["all_shot"]
    if "query_clips" not in o:
        return ""
    return (f" Query clips: {o['query_clips']} (1-shot) / {a['query_clips']} (all-shot); a "
            "gain's brackets give the clips adapting fixed and broke.")


def rules_table(res: dict) -> str:
    first = res["rules"][0]
    lines = [
        f"{res['speakers']} `{res['speaker_set']}` speakers, condition `{res['condition']}`; "
        f"query accuracy before adapting {first['one_shot']['mean_before']:.3f} (1-shot) / "
        f"{first['all_shot']['mean_before']:.3f} (all-shot), retention before "
        f"{first['one_shot']['retention_before']:.3f}; false accepts before "
        f"{pts(first['one_shot']['false_accepts_before'], False)} % of the speakers' "
        "non-keyword clips." + _clips_line(first),
        "",
        "| rule | 1-shot gain (points) | retention | false accepts after (%) | all-shot gain | "
        "retention | false accepts after (%) | peak memory 1 s / 30 s | adapt ms per s of audio "
        "| × inference |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["rules"]:
        o, a = r["one_shot"], r["all_shot"]
        mem = " / ".join(f"{b / 2**20:.1f}" for b in r["peak_bytes"].values()) + " MiB"
        ms, cost = r["ms_per_second_of_audio"], r["cost_vs_inference"]
        lines.append(
            f"| `{r['rule']}` | {pts(o['gain'])}{_flips(o)} | {pts(o['retention_change'])} | "
            f"{pts(o['false_accepts_after'], False)} | {pts(a['gain'])}{_flips(a)} | "
            f"{pts(a['retention_change'])} | {pts(a['false_accepts_after'], False)} | {mem} | "
            f"{ms:.0f} | {cost:.1f}× |")
    return "\n".join(lines)


def sweep_table(log: dict) -> str:
    keys, varying = sweep_settings(log["rows"])
    head = "| " + " | ".join(varying) + " | 1-shot gain | all-shot gain | retention (1 / all) "
    head += "| false accepts after (1 / all, %) | |"
    lines = [head, "|" + "---|" * (len(varying) + 5)]
    chosen = log.get("chosen") or {}
    for r in log["rows"]:
        mark = "**chosen**" if all(chosen.get(k) == r[k] for k in keys) and chosen else ""
        lines.append("| " + " | ".join(str(r[k]) for k in varying) + f" | {pts(r['gain_1'])} | "
                     f"{pts(r['gain_all'])} | {pts(r['ret_1'])} / {pts(r['ret_all'])} | "
                     f"{pts(r['fa_after_1'], False)} / {pts(r['fa_after_all'], False)} | {mark} |")
    return "\n".join(lines)


def stream_table(res: dict) -> str:
    """Per keyword on the report stream: the default threshold, the report curve's own miss
    rates, and the tune-calibrated setting (what docs/stream.md shows)."""
    at, miss, cal = res["default_threshold"]["report"], res["miss_at"]["report"], \
        res["calibration"]
    rep = cal["report"]
    clips = res["streams"]["report"]["keyword_clips_per_word"]

    def m(key: str, word: str) -> str:
        x = miss[key].get(word)
        return "–" if x is None else f"{x['miss_rate']:.3f} ({x['threshold']})"

    lines = ["| keyword | clips | detection @0.5 | FA/h @0.5 | miss @1 FA/h (thr) | "
             "miss @0.5 FA/h (thr) | calibrated thr (tune) | calibrated detection | "
             "calibrated FA/h |", "|---|---|---|---|---|---|---|---|---|"]
    for w, k in at["per_keyword"].items():
        c = rep["per_keyword"][w]
        lines.append(f"| {w} | {clips[w]} | {k['detection']:.3f} | {k['fa_per_hour']:.0f} | "
                     f"{m('1_per_hour', w)} | {m('0.5_per_hour', w)} | "
                     f"{cal['thresholds'][w]} | {c['detection']:.3f} | {c['fa_per_hour']:.1f} |")
    lines.append(f"| **overall** | {sum(clips.values())} | {at['detection']:.3f} | "
                 f"{at['fa_per_hour']:.0f} | {m('1_per_hour', 'overall')} | "
                 f"{m('0.5_per_hour', 'overall')} | refractory {cal['refractory']} s | "
                 f"**{rep['detection']:.3f}** | **{rep['fa_per_hour']:.1f}** |")
    return "\n".join(lines)


def main() -> None:
    kind, path = sys.argv[1], Path(sys.argv[2])
    data = json.loads(path.read_text())
    print({"rules": rules_table, "sweep": sweep_table, "stream": stream_table}[kind](data))


if __name__ == "__main__":
    main()
