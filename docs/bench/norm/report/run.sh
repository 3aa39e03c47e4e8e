cd /work/main
for cond in clean room; do for rule in tp readout; do for shots in 1 all; do
  .venv/bin/tracekws bench personalize --data ../shared/data/speech_commands --rule $rule --shots $shots --speakers report --condition $cond --json > runs/norm-report/personalize-$rule-$shots-$cond.json 2>/dev/null
  echo "$cond $rule $shots $?"
done; done; done
echo DONE
