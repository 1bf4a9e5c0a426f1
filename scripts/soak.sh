#!/usr/bin/env bash
# npm run soak: the long chaos soak (test/soak/cli.ts; SOAK_JOBS, default 200; SOAK_CONCURRENCY,
# default 4; SOAK_SEED replays a run; SOAK_RESULT=FILE writes every job's result as JSON).
# It needs the loopback test environment (VMs a and b, moto): with RCH_TESTENV_DIR pointing at a
# running one it uses that and starts nothing; otherwise it starts them like scripts/test.sh and
# stops what it started on exit (by PID, through the same scripts).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/npm-deps.sh
STARTED=()
stop_started() {
  local i
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    case "${STARTED[$i]}" in
      moto) bash scripts/testenv/moto.sh stop ;;
      vm-*) bash scripts/testenv/vm.sh stop "${STARTED[$i]#vm-}" ;;
    esac
  done
}
trap stop_started EXIT
if [ -z "${RCH_TESTENV_DIR:-}" ]; then
  bash scripts/testenv/setup.sh
  STARTED+=(vm-a)
  bash scripts/testenv/vm.sh start a 2231
  STARTED+=(vm-b)
  bash scripts/testenv/vm.sh start b 2232
  STARTED+=(moto)
  bash scripts/testenv/moto.sh start
fi
npm run build
mkdir -p .testenv/soak
npx esbuild test/soak/cli.ts --bundle --platform=node --target=node20 --outfile=.testenv/soak/soak.js --log-level=warning \
  --external:cpu-features '--external:*.node'
node .testenv/soak/soak.js
