#!/usr/bin/env bash
# A user's install: `pip install .` (not editable) into a fresh virtual environment, then, from
# a folder that holds no checkout, `tracekws evaluate` and `tracekws serve` must find the shipped
# model (package data of tracekws.pretrained). Used by CI; takes a few minutes (torch from cache).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/tracekws-wheel.XXXXXX)"
trap 'kill "${spid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
# a copy of the checkout, so the build writes nothing into it
git -C "$repo" ls-files -z --cached --others --exclude-standard \
  | (cd "$repo" && xargs -0 cp --parents -t "$work" 2>/dev/null || true)
mkdir -p "$work/src" && (cd "$work" && find . -maxdepth 1 -mindepth 1 ! -name src \
  -exec mv {} src/ \;)
TRACEKWS_VENV="$work/venv" TRACEKWS_EDITABLE=0 bash "$work/src/scripts/install.sh"
rm -rf "$work/src"   # nothing of the checkout is left: the install must stand on its own
cd "$work"
"$work/venv/bin/python" - <<'PY'
import tracekws.model.pipeline as p, tracekws.service.main as m
assert "site-packages" in p.__file__ and "site-packages" in m.__file__, (p.__file__, m.__file__)
assert p.PRETRAINED.is_file(), p.PRETRAINED
print("installed:", p.__file__, "\nshipped model:", p.PRETRAINED)
PY
mkdir -p clips/yes && cp "$repo"/tests/data/gsc/yes/*.flac clips/yes/
"$work/venv/bin/tracekws" evaluate --data clips --json | tee eval.json
port="$("$work/venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
TRACEKWS_DATA_DIR="$work/data" "$work/venv/bin/tracekws" serve --port "$port" >serve.log 2>&1 &
spid=$!
for _ in $(seq 120); do
  if curl -fsS "http://127.0.0.1:$port/readyz" >ready.json 2>/dev/null; then break; fi
  sleep 1
done
cat ready.json; echo
"$work/venv/bin/python" -c "import json; r = json.load(open('ready.json')); assert r.get('model_sha256'), r"
echo "check-wheel: PASSED"
