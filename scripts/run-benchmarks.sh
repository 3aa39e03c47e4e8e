#!/usr/bin/env bash
# Runs every benchmark of the README on the shipped model and writes one JSON file each.
#   bash scripts/run-benchmarks.sh [DATA_DIR] [OUT_DIR]
# DATA_DIR: a folder in Speech Commands layout (default ../shared/data/speech_commands).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/speech_commands}"
out="${2:-runs/bench}"
tk=.venv/bin/tracekws
mkdir -p "$out"
run() { local name=$1; shift; echo "== $name: tracekws $*" >&2; "$tk" "$@" > "$out/$name.json"; }
run evaluate-val evaluate --data "$data" --split val --json
run evaluate-val-room evaluate --data "$data" --split val --condition room --json
run infer bench infer --json
# personalisation: reported on the `report` half of the validation speakers (defaults were
# chosen on the `tune` half: docs/bench/sweep-*.json), clean and through simulated rooms
for cond in clean room; do
  for rule in tp readout bptt; do
    for shots in 1 all; do
      run "personalize-$rule-$shots-$cond" bench personalize --data "$data" --rule "$rule" \
        --shots "$shots" --speakers report --condition "$cond" --json
    done
  done
  run "rules-$cond" bench rules --data "$data" --speakers report --condition "$cond" --json
done
run classes bench classes --json
run classes-batch bench classes --classes 12,1000 --batches 8,32,64 --json
run macs bench macs --json
# words of your own: held-out words, enrolled and queried by the same report speaker, as clips
# and through the streaming detector (docs/enrol.md); the older other-speakers readout protocol
for cond in clean room; do
  run "enrol-report-$cond" bench enrol --data "$data" --shots 1,3,5 --speakers report \
    --condition "$cond" --stream --json
done
for k in 1 3 5; do
  run "enrol-other-speakers-$k" bench enrol --data "$data" --protocol other-speakers --shots "$k" --json
done
run memory-tp bench memory --rule tp --seconds 1 30 --json
run memory-bptt bench memory --rule bptt --seconds 1 30 --json
run service bench service --json
echo "wrote $out" >&2
