#!/usr/bin/env bash
# Installs what the browser test (tests/e2e/test_ui_browser.py) needs: Debian's chromium and a
# font. The test drives chromium over the DevTools protocol with the `websockets` package the
# service already depends on, so there is no separate driver to install.
# Non-interactive and idempotent; needs root (or sudo) and apt-get (Debian/Ubuntu).
#   bash scripts/install-browser.sh
set -euo pipefail

find_chromium() {
  for c in "${TRACEKWS_CHROMIUM:-}" chromium chromium-browser google-chrome-stable google-chrome; do
    [ -n "$c" ] || continue
    p="$(command -v "$c" 2>/dev/null)" || continue
    # Ubuntu's chromium-browser is a snap wrapper that cannot run headless in CI: skip it.
    if "$p" --version >/dev/null 2>&1; then echo "$p"; return 0; fi
  done
  return 1
}

# grep -c reads all of fc-list's output (grep -q would exit early and, under pipefail, a
# SIGPIPE'd fc-list would turn a match into a miss)
if p="$(find_chromium)" && fc-list 2>/dev/null | grep -ci -e liberation -e dejavu >/dev/null; then
  echo "browser already installed: $("$p" --version)"
  exit 0
fi

if ! command -v apt-get >/dev/null; then
  echo "install-browser.sh: no apt-get; install chromium yourself (or set TRACEKWS_CHROMIUM)" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "install-browser.sh: run as root" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 update -qq
# Debian names the package chromium; on Ubuntu the same name is a transitional snap package,
# so fall back to what is there.
pkgs=(fonts-liberation fonts-dejavu-core)
if apt-cache show chromium >/dev/null 2>&1; then pkgs+=(chromium); fi
"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
p="$(find_chromium)" || { echo "install-browser.sh: chromium did not install" >&2; exit 1; }
echo "browser installed: $("$p" --version)"
