#!/usr/bin/env bash
# npm run bench: sets up the loopback test environment, builds, and runs bench/bench.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/npm-deps.sh
bash scripts/testenv/setup.sh
# moto is stopped at the end only when this run started it (a kept test environment's stays up).
# (moto.sh itself tells a moto it started before, by its pid file and command line, from a new one)
moto_was_up=0
moto_out="$(bash scripts/testenv/moto.sh start 2>&1)" || { printf '%s\n' "$moto_out" >&2; exit 1; }
printf '%s\n' "$moto_out" >&2
case "$moto_out" in *"moto: already running"*) moto_was_up=1 ;; esac
trap 'bash scripts/testenv/vm.sh stop bench; [ "$moto_was_up" = 1 ] || bash scripts/testenv/moto.sh stop' EXIT
bash scripts/testenv/vm.sh start bench 2280
npm run build
mkdir -p bench/tmp
npx esbuild bench/bench.ts --bundle --platform=node --target=node20 --outfile=bench/tmp/bench.js --log-level=warning --external:cpu-features '--external:*.node'
node bench/tmp/bench.js
