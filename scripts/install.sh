#!/usr/bin/env bash
# One install script for the README, CI and the Dockerfile.
# Creates a virtual environment (default .venv; TRACEKWS_VENV=none installs into the current
# interpreter, as the Docker image does) with CPU-only torch pinned per architecture, then
# installs tracekws itself. Extras: pass "dev" to add the test tools.
#   bash scripts/install.sh          # runtime
#   bash scripts/install.sh dev      # runtime + tests
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
venv="${TRACEKWS_VENV:-.venv}"
py="${PYTHON:-python3}"

if [ "$venv" != "none" ]; then
  if [ ! -x "$venv/bin/python" ]; then
    if ! "$py" -m venv "$venv" 2>/dev/null; then
      echo "python3 -m venv failed; installing python3-venv" >&2
      if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
      fi
      rm -rf "$venv"; "$py" -m venv "$venv"
    fi
  fi
  py="$venv/bin/python"
fi
pip=("$py" -m pip install --disable-pip-version-check -q)

arch="$(uname -m)"
case "$arch" in
  x86_64|amd64)
    # docs/design.md §6: pin exactly, or pip may pull a multi-GB CUDA build. Where the CPU wheel is
    # not on a local index, point PIP_EXTRA_INDEX_URL at https://download.pytorch.org/whl/cpu.
    torch_pins=(torch==2.13.0 torchaudio==2.11.0) ;;
  aarch64|arm64)
    # Newest CPU-only aarch64 wheels on PyPI (2.11+ are ~2.8 GB CUDA builds).
    torch_pins=(torch==2.10.0 torchaudio==2.10.0) ;;
  *) echo "unsupported architecture: $arch" >&2; exit 1 ;;
esac

"${pip[@]}" "${torch_pins[@]}"
# torchaudio's x86-64 PyPI wheel carries a CUDA-linked extension that fails to load beside
# CPU torch; the transforms we use are pure Python, so drop the extension (docs/design.md §6).
"$py" - <<'PY'
import importlib.util, pathlib
spec = importlib.util.find_spec("torchaudio")
lib = pathlib.Path(spec.origin).parent / "lib"
for so in lib.glob("*.so"):
    so.unlink()
PY

if [ "$extras" = dev ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] \
   && { ! command -v espeak-ng >/dev/null || ! command -v bible >/dev/null; }; then
  # the speech synthesiser `tracekws data synth` uses in its tests (flite and festival are
  # optional engines: apt-get install flite festival festvox-kallpc16k)
  # bible-kjv: the public-domain text `tracekws bench stream` has espeak-ng read as open speech
  apt-get update -qq && apt-get install -y -qq espeak-ng sox >/dev/null
  apt-get install -y -qq bible-kjv >/dev/null \
    || echo "bible-kjv is not installable here: tracekws bench stream will need it" >&2
fi

# TRACEKWS_EDITABLE=0: a regular (wheel) install, as a user's `pip install .` would do
# (scripts/check-wheel.sh checks that it finds the shipped model from any folder).
editable=(-e)
if [ "${TRACEKWS_EDITABLE:-1}" = 0 ]; then editable=(); fi
if [ -n "$extras" ]; then
  "${pip[@]}" "${editable[@]}" ".[${extras}]"
else
  "${pip[@]}" "${editable[@]}" .
fi
# checked from / (not the checkout), so the installed package is what imports
case "$py" in /*) ;; */*) py="$(pwd)/$py" ;; esac
(cd / && "$py" -c "import torch, torchaudio, tracekws.model, tracekws.service; print('tracekws installed: torch', torch.__version__, 'torchaudio', torchaudio.__version__)")
