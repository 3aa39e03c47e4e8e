"""Markdown tables from the benchmark JSON under docs/bench/ (what docs/benchmarks.md shows).

    .venv/bin/python scripts/bench-tables.py rules docs/bench/rules-report-clean.json
    .venv/bin/python scripts/bench-tables.py sweep docs/bench/sweep-tp.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def pts(x: float | None, sign: bool = True) -> str:
    if x is None:
        return "–"
    return f"{x * 100:+.1f}" if sign else f"{x * 100:.1f}"


def rules_table(res: dict) -> str:
    first = res["rules"][0]
    lines = [
        f"{res['speakers']} `{res['speaker_set']}` speakers, condition `{res['condition']}`; "
        f"query accuracy before adapting {first['one_shot']['mean_before']:.3f} (1-shot) / "
        f"{first['all_shot']['mean_before']:.3f} (all-shot), retention before "
        f"{first['one_shot']['retention_before']:.3f}; false accepts before "
        f"{pts(first['one_shot']['false_accepts_before'], False)} % of the speakers' "
        "non-keyword clips.",
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
            f"| `{r['rule']}` | {pts(o['gain'])} | {pts(o['retention_change'])} | "
            f"{pts(o['false_accepts_after'], False)} | {pts(a['gain'])} | "
            f"{pts(a['retention_change'])} | {pts(a['false_accepts_after'], False)} | {mem} | "
            f"{ms:.0f} | {cost:.1f}× |")
    return "\n".join(lines)


def sweep_table(log: dict) -> str:
    keys = [k for k in log["rows"][0] if k not in ("rule", "speakers", "score")
            and not k.startswith(("gain_", "ret_", "fa_", "before_"))]
    varying = [k for k in keys if len({json.dumps(r[k]) for r in log["rows"]}) > 1]
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


def main() -> None:
    kind, path = sys.argv[1], Path(sys.argv[2])
    data = json.loads(path.read_text())
    print(rules_table(data) if kind == "rules" else sweep_table(data))


if __name__ == "__main__":
    main()
