#!/usr/bin/env bash
# Installs the npm dependencies when node_modules is missing or older than package-lock.json (an
# interrupted `npm ci`, a pull that changed the lock file), as scripts/test.sh does for itself;
# a node_modules that is a link (a shared install) is left alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -L node_modules ] && exit 0
if [ ! -d node_modules ] || [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[deps] npm ci" >&2
  npm ci --no-audit --no-fund
fi
