set -u
cd /work/main
data=../shared/data/speech_commands; out=runs/remeasure; tk=.venv/bin/tracekws
run() { local name=$1; shift; echo "== $name $(date +%T)"; "$tk" "$@" > "$out/$name.json" 2> "$out/$name.err"; echo "rc=$?"; }
export OMP_NUM_THREADS=1
run evaluate-val evaluate --data "$data" --split val --json
run infer bench infer --json
run memory-tp bench memory --rule tp --seconds 1 30 --json
for cond in clean room; do for rule in tp readout; do for shots in 1 all; do
  run "personalize-$rule-$shots-$cond" bench personalize --data "$data" --rule "$rule" --shots "$shots" --speakers report --condition "$cond" --json
done; done; done
run evaluate-val-room evaluate --data "$data" --split val --condition room --json
run service bench service --json
echo DONE $(date +%T)
