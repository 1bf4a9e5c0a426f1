#!/usr/bin/env bash
# npm run bench: sets up the loopback test environment, builds, and runs bench/bench.ts.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci
bash scripts/testenv/setup.sh
bash scripts/testenv/moto.sh start
bash scripts/testenv/vm.sh start bench 2280
trap 'bash scripts/testenv/vm.sh stop bench' EXIT
npm run build
mkdir -p bench/tmp
npx esbuild bench/bench.ts --bundle --platform=node --target=node20 --outfile=bench/tmp/bench.js --log-level=warning --external:cpu-features '--external:*.node'
node bench/tmp/bench.js
