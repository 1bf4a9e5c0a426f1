#!/usr/bin/env bash
# `npm run demo`: a sample job through the BUILT hook (dist/index.js), on one machine.
# `npm run demo -- --pool`: the same job on a member leased from a pool (moto + loopback members).
#
#   npm ci (if node_modules is missing or older than package-lock.json: scripts/npm-deps.sh)
#   -> scripts/testenv/setup.sh (packages when root, dockerd, local test images)
#   -> a throwaway loopback sshd "VM" named demo-PID on a free 127.0.0.1 port (RCH_DEMO_PORT
#      to choose one; stopped and its work root removed on exit, by PID)
#   -> npm run build -> esbuild scripts/demo.ts -> node .testenv/demo.js
#
# scripts/demo.ts plays the runner (test/helpers/fake-runner.ts): prepare_job with a
# service, a run: step, a JS action, a container action, cleanup_job; it streams the
# hook's output live and ends with a per-phase timing table. Exit code: non-zero if
# any phase failed. dockerd is left running (like scripts/test.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Per run: the VM's name (and so its work root), its port, the runner's name and the bundle, so
# that two demos on one machine neither clash nor prune each other's containers.
DEMO_VM="demo-$$"
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
DEMO_PORT="${RCH_DEMO_PORT:-$(free_port)}"
VM_STARTED=0
MOTO_STARTED=0

# shellcheck disable=SC2317 # invoked by the EXIT trap
finish() {
  local rc=$?
  set +e
  if [ "$VM_STARTED" = 1 ]; then
    bash scripts/testenv/vm.sh stop "$DEMO_VM"
    rm -rf ".testenv/vm-$DEMO_VM" "/var/tmp/rch-vm-$DEMO_VM"
  fi
  # moto only when this run started it (a kept test environment's stays up)
  [ "$MOTO_STARTED" = 1 ] && bash scripts/testenv/moto.sh stop
  rm -f ".testenv/demo-$$.js"
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { printf '[demo] %s\n' "$*" >&2; }

bash scripts/npm-deps.sh

say "test environment (dockerd, local images)"
bash scripts/testenv/setup.sh

if [ "${1:-}" = --pool ]; then
  # The pool variant: moto's EC2 + Auto Scaling APIs on loopback; the demo makes the group and its members.
  say "moto (EC2 and Auto Scaling APIs on loopback)"
  # moto.sh itself tells a moto it started before (its pid file and command line) from a new one
  moto_out="$(bash scripts/testenv/moto.sh start 2>&1)" || { printf '%s\n' "$moto_out" >&2; exit 1; }
  printf '%s\n' "$moto_out" >&2
  case "$moto_out" in *"moto: already running"*) ;; *) MOTO_STARTED=1 ;; esac
  export RCH_DEMO_POOL=1
else
  say "starting the loopback sshd \"VM\" $DEMO_VM on 127.0.0.1:$DEMO_PORT"
  VM_STARTED=1
  bash scripts/testenv/vm.sh start "$DEMO_VM" "$DEMO_PORT"
fi

say "npm run build"
npm run build

say "bundling scripts/demo.ts"
mkdir -p .testenv
# test/helpers/testenv.ts finds the repo (dist/index.js, .testenv) from its own __dirname; in a
# bundle that would be .testenv/, so pin it to where the helper lives in the source tree.
helpers_dir="$(node -p 'JSON.stringify(require("path").resolve("test/helpers"))')"
bundle=".testenv/demo-$$.js"
npx --no-install esbuild scripts/demo.ts --bundle --platform=node --target=node20 \
  "--define:__dirname=$helpers_dir" --outfile="$bundle" --log-level=warning

say "running the sample job"
echo
RCH_DEMO_VM="$DEMO_VM" node "$bundle"
