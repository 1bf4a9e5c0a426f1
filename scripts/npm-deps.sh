#!/usr/bin/env bash
# Installs the npm dependencies when node_modules is missing or older than package-lock.json (an
# interrupted `npm ci`, a pull that changed the lock file): the one check of scripts/test.sh (in the
# background), demo, bench and soak. A node_modules that is a link (a shared install) is left alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -L node_modules ]; then
  echo "[deps] node_modules is a link ($(readlink node_modules)): not reinstalling" >&2
  exit 0
fi
if [ ! -f package-lock.json ]; then
  [ -d node_modules ] || npm install --no-audit --no-fund
  exit 0
fi
if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[deps] npm ci" >&2
  npm ci --no-audit --no-fund
fi
