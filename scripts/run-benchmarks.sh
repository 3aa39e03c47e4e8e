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
run infer bench infer --json
for rule in tp readout bptt; do
  for shots in 1 all; do
    run "personalize-$rule-$shots" bench personalize --data "$data" --rule "$rule" --shots "$shots" --json
  done
done
run rules bench rules --data "$data" --json   # every rule: 1-shot, all-shot, memory, time
run classes bench classes --json
run classes-batch bench classes --classes 12,1000 --batches 8,32,64 --json
run macs bench macs --json
for k in 1 3 5; do run "enrol-$k" bench enrol --data "$data" --shots "$k" --json; done
run memory-tp bench memory --rule tp --seconds 1 30 --json
run memory-bptt bench memory --rule bptt --seconds 1 30 --json
run service bench service --json
echo "wrote $out" >&2
