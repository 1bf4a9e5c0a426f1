#!/usr/bin/env bash
# The project's one test command (`npm test`):
#   the Python virtualenvs (moto's, scripts/testenv/moto.sh install; the offline Terraform
#      checks', scripts/testenv/tf-venv.sh), installed in the background from the start: on a fresh
#      clone they are pip's downloads, most of the set-up's time
#   -> npm ci (when node_modules is missing or older than package-lock.json, and is not a link:
#      scripts/npm-deps.sh), in the background beside the set-up below
#   -> scripts/testenv/setup.sh (packages, dockerd, local images)
#   -> once npm ci is done: type check of the whole tree (tsc --noEmit), lint (eslint .) and format
#      check (prettier --check .), in the background beside the rest of the set-up; their output
#      and result are printed before jest starts: each that fails counts as one failure, and the
#      run goes on
#   -> sshd "VMs" a (127.0.0.1:2231) and b (127.0.0.1:2232) + registry (127.0.0.1:5000)
#      + moto's EC2 API server (http://127.0.0.1:5005, scripts/testenv/moto.sh), once its
#      virtualenv is there
#   -> npm run build -> jest (arguments are passed to jest, e.g. a path or -t NAME), run under
#      scripts/testenv/reaped.py, which ends and counts processes the tests leave running
# The VMs, the registry and moto are stopped on exit (by PID); dockerd is left running.
# The last line printed is always "N passed, N failed" (also written to .testenv/summary), after a
# line "[test] N skipped" when tests were skipped; the exit code is jest's, or 1 when jest passed
# but a check above failed, the tests left a process running, or docker tried a registry outside
# loopback (non-zero if anything failed before).
# Env: TESTENV_KEEP=1 leaves the VMs, the registry and moto running after the tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/testenv/lib.sh
. scripts/testenv/lib.sh
ROOT="$PWD"
TESTENV="$ROOT/.testenv"
mkdir -p "$TESTENV"
rm -f "$TESTENV/summary"

SUMMARY=""
SKIPPED=0
STARTED=()

# shellcheck disable=SC2317 # invoked by the EXIT trap
finish() {
  local rc=$? i
  set +e
  # A run that stops before jest ends the checks and the virtualenv installs (each its own process
  # group) and still shows what they printed so far.
  if [ -n "${VENVS_PID:-}" ]; then
    kill -TERM -- "-$VENVS_PID" 2>/dev/null
    wait "$VENVS_PID" 2>/dev/null
    cat "$VENVS_LOG" >&2 2>/dev/null
  fi
  if [ -n "${NPM_PID:-}" ]; then
    kill -TERM -- "-$NPM_PID" 2>/dev/null
    wait "$NPM_PID" 2>/dev/null
    cat "$NPM_LOG" >&2 2>/dev/null
  fi
  if [ -n "${JEST_PID:-}" ]; then
    echo "[test] stopping jest (process group $JEST_PID)" >&2
    kill -TERM -- "-$JEST_PID" 2>/dev/null
    wait "$JEST_PID" 2>/dev/null
  fi
  if [ -n "${CHECKS_PID:-}" ]; then
    kill -TERM -- "-$CHECKS_PID" 2>/dev/null
    wait "$CHECKS_PID" 2>/dev/null
    cat "$CHECKS_LOG" >&2 2>/dev/null
  fi
  if [ "${TESTENV_KEEP:-0}" = 1 ]; then
    [ ${#STARTED[@]} -gt 0 ] && echo "[test] TESTENV_KEEP=1: leaving ${STARTED[*]} running" >&2
  else
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
      case "${STARTED[$i]}" in
        registry) bash scripts/testenv/registry.sh stop ;;
        moto) bash scripts/testenv/moto.sh stop ;;
        vm-*) bash scripts/testenv/vm.sh stop "${STARTED[$i]#vm-}" ;;
      esac
    done
  fi
  if [ -z "$SUMMARY" ]; then
    echo "[test] the test run ended before jest's numbers (exit code $rc); see the errors above" >&2
    SUMMARY="0 passed, 1 failed"
    [ "$rc" -eq 0 ] && rc=1
  fi
  [ "${SKIPPED:-0}" -gt 0 ] && printf '[test] %s skipped\n' "$SKIPPED"
  printf '%s\n' "$SUMMARY" >"$TESTENV/summary"
  printf '%s\n' "$SUMMARY"
  exit "$rc"
}
trap finish EXIT
trap 'echo "[test] interrupted (SIGINT)" >&2; exit 130' INT
trap 'echo "[test] stopped (SIGTERM: a time limit, or CI cancelled the run)" >&2; exit 143' TERM

T0=$(date +%s.%3N)
phase() { echo "[test] $* (+$(awk -v a="$T0" -v b="$(date +%s.%3N)" 'BEGIN { printf "%.1f", b - a }') s)" >&2; }

# await_job VAR LOG WHAT: waits for the background job whose pid is in $VAR (then empties VAR, so
# finish() leaves it alone), shows its output, and stops the run if it failed.
await_job() {
  local -n job_pid="$1"
  local pid="$job_pid" rc=0
  wait "$pid" || rc=$?
  job_pid=""
  cat "$2" >&2
  [ "$rc" -eq 0 ] || { echo "[test] $3 failed (exit code $rc, output above)" >&2; exit 1; }
}

# The packages first (a fresh machine may lack python3's venv); the rest of the set-up later, beside
# the virtualenvs' installs and npm ci.
phase "system packages"
bash scripts/testenv/setup.sh packages

# The two installs run side by side; each is a no-op when its virtualenv already has its pinned
# versions. They need only python3 (with venv) and pip's own configuration, nothing set up below.
VENVS_LOG="$TESTENV/venvs.log"
set -m
(
  bash scripts/testenv/moto.sh install &
  moto=$!
  bash scripts/testenv/tf-venv.sh ensure &
  tf=$!
  rc=0
  wait "$moto" || rc=1
  wait "$tf" || rc=1
  exit "$rc"
) >"$VENVS_LOG" 2>&1 </dev/null &
VENVS_PID=$!
set +m
phase "python virtualenvs started (pid $VENVS_PID, output in $VENVS_LOG)"

# npm ci runs beside the set-up (packages, dockerd, images: a fresh machine's longest wait), in a
# process group of its own that finish() can end.
NPM_LOG="$TESTENV/npm-ci.log"
NPM_PID=""
# scripts/npm-deps.sh: npm ci when node_modules is missing or older than package-lock.json (a link,
# a shared install, is left alone: npm ci would empty it through the link).
phase "npm dependencies started (scripts/npm-deps.sh, output in $NPM_LOG)"
set -m
bash scripts/npm-deps.sh >"$NPM_LOG" 2>&1 </dev/null &
NPM_PID=$!
set +m

phase "test environment"
bash scripts/testenv/setup.sh
if [ -n "$NPM_PID" ]; then
  phase "waiting for the npm dependencies"
  await_job NPM_PID "$NPM_LOG" "npm ci"
fi

# The type check, lint (ESLint, type-aware) and format check (Prettier) of the whole tree run in the
# background while the test environment starts (they need none of it), and Jest starts only once
# they have ended: their result is known, and printed, before any test runs. esbuild and ts-jest
# only transpile, so without tsc a type error in code no test imports would pass. Each check that
# fails counts as one failure; the tests still run, for their own numbers.
CHECKS_LOG="$TESTENV/checks.log"
rm -f "$TESTENV/checks.failed"
# Job control on for this one job: it gets a process group of its own, which finish() can end.
set -m
(
  n=0
  echo "[test] type check (tsc --noEmit)"
  npx --no-install tsc --noEmit || { echo "[test] the type check failed (errors above); counting that as 1 failure"; n=$((n + 1)); }
  echo "[test] lint (eslint)"
  npx --no-install eslint . || { echo "[test] the lint check failed (problems above); counting that as 1 failure"; n=$((n + 1)); }
  echo "[test] format (prettier --check)"
  npx --no-install prettier --check . --log-level warn ||
    { echo "[test] files above are not formatted (npm run format fixes them); counting that as 1 failure"; n=$((n + 1)); }
  echo "$n" >"$TESTENV/checks.failed"
) >"$CHECKS_LOG" 2>&1 </dev/null &
CHECKS_PID=$!
set +m
phase "type check, lint and format check started (pid $CHECKS_PID, output in $CHECKS_LOG)"

# What a killed run left: its VMs hold slot leases of runners that are gone (one-slot hosts would
# make tests wait out their acquire timeout), so they start afresh unless kept on purpose; and the
# EC2 stand-ins its tests did not get to stop (each by the PID it recorded).
if [ "${TESTENV_KEEP:-0}" != 1 ]; then
  bash scripts/testenv/vm.sh stop a
  bash scripts/testenv/vm.sh stop b
fi
for d in "$TESTENV"/inst-*/; do
  [ -d "$d" ] || continue
  d="${d%/}"
  bash scripts/testenv/instance-sshd.sh stop "${d##*/inst-}" >/dev/null 2>&1 || true
done
STARTED+=(vm-a)
bash scripts/testenv/vm.sh start a 2231
STARTED+=(vm-b)
bash scripts/testenv/vm.sh start b 2232
STARTED+=(registry)
bash scripts/testenv/registry.sh start
phase "waiting for the python virtualenvs"
await_job VENVS_PID "$VENVS_LOG" "installing the python virtualenvs"
STARTED+=(moto)
bash scripts/testenv/moto.sh start

phase "npm run build"
npm run build

phase "waiting for the type check, lint and format check"
wait "$CHECKS_PID" || true
CHECKS_PID=""
cat "$CHECKS_LOG" >&2
checks_failed=$(cat "$TESTENV/checks.failed" 2>/dev/null || true)
case "$checks_failed" in
  '' | *[!0-9]*)
    echo "[test] the checks ended without a result; counting that as 1 failure" >&2
    checks_failed=1
    ;;
esac

phase "jest"
rm -f "$TESTENV/jest.json"
# The fleet ledger of the tests' jobs (test/helpers/fake-runner.ts): each run starts from an empty one.
rm -rf "$TESTENV/ledger"
jest_rc=0
# Three test files at a time (every file keeps to its own runner names, work roots, tables and
# regions): with two, two fifths of the 2-core machine's CPU stood idle while files waited
# (boots, lease lapses, moto). Jest and all it starts run niced, below the stand-ins for other
# machines (moto, the VMs' sshds, dockerd, started before), as those machines would have CPU of their
# own: starved, they stall every file. RCH_JEST_WORKERS=1 runs the files one at a time.
# Under reaped.py (a child subreaper): a process a test leaves running, daemonized or not, is named,
# ended by PID and counted as 1 failure, instead of living on reparented to init.
rm -f "$TESTENV/strays"
# a lock left by a killed run (test/helpers/heavy-lock.ts): its pid may name a live process by now
rm -f "$TESTENV"/heavy.lock*
# Docker must never try a registry outside loopback: a dockerd set up as setup.sh does has a dead
# proxy for them, and each attempt leaves a "proxyconnect" line in its log, which is watched from
# here (whoever started that dockerd: its log is found through its stdout).
DOCKERD_LOG=""
if [ "$(docker info --format '{{.HTTPSProxy}}' 2>/dev/null)" = "$RCH_DEAD_PROXY" ]; then DOCKERD_LOG="$(dockerd_log || true)"; fi
log_from=$(stat -c %s "$DOCKERD_LOG" 2>/dev/null || echo 0)
# In a process group of its own, waited for: a TERM or INT (Ctrl-C, CI's timeout) reaches the traps
# at once, and finish() ends the group, instead of both waiting for jest to end.
set -m
python3 scripts/testenv/reaped.py --strays "$TESTENV/strays" -- \
  nice -n 10 npx --no-install jest --json --outputFile="$TESTENV/jest.json" --maxWorkers="${RCH_JEST_WORKERS:-3}" "$@" </dev/null &
JEST_PID=$!
set +m
wait "$JEST_PID" || jest_rc=$?
JEST_PID=""
strays=$(cat "$TESTENV/strays" 2>/dev/null || true)
case "$strays" in
  '' | *[!0-9]*)
    echo "[test] no count of processes left running by the tests; counting that as 1 failure" >&2
    strays=1
    ;;
  0) ;;
  *)
    echo "[test] the tests left processes running ($strays, named above, now ended); counting that as 1 failure" >&2
    strays=1
    ;;
esac

# numbers from jest's JSON report: "passed failed skipped note"
read -r passed failed skipped note < <(node -e '
  const fs = require("fs");
  let r = null;
  try { r = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch (e) {}
  if (!r || typeof r.numPassedTests !== "number" || typeof r.numFailedTests !== "number") {
    console.log("0 1 0 no-report"); process.exit(0);
  }
  // a suite that fails to load (syntax/type error, throw at import) runs no test:
  // count each such suite as one failure
  const failed = r.numFailedTests + (r.numRuntimeErrorTestSuites || 0);
  const skipped = (r.numPendingTests || 0) + (r.numTodoTests || 0);
  console.log(`${r.numPassedTests} ${failed} ${skipped} ok`);
' "$TESTENV/jest.json")
if [ "$note" = no-report ]; then
  echo "[test] jest wrote no usable report to $TESTENV/jest.json (jest exit code $jest_rc)" >&2
  [ "$jest_rc" -eq 0 ] && jest_rc=1
elif [ "$jest_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  # e.g. no tests found, coverage threshold, open handles: not a test, but a failure
  echo "[test] jest exited $jest_rc although no test failed; counting that as 1 failure" >&2
  failed=1
fi
outside_pulls=0
if [ -n "$DOCKERD_LOG" ]; then
  tried=$(tail -c +"$((log_from + 1))" "$DOCKERD_LOG" | grep 'Handler for POST.*proxyconnect' || true)
  if [ -n "$tried" ]; then
    printf '%s\n' "$tried" | head -n 5 >&2
    echo "[test] docker tried a registry outside loopback ($(printf '%s\n' "$tried" | grep -c .) pulls, the first above); counting that as 1 failure" >&2
    outside_pulls=1
  fi
else
  echo "[test] the running dockerd has no dead proxy for registries outside loopback (not started by scripts/testenv/setup.sh), or its log is not a file: pulls outside loopback were not watched" >&2
fi
failed=$((failed + strays + outside_pulls))
summary() { # FAILED: the summary line for these numbers (skipped tests get a line of their own before it)
  printf '%s passed, %s failed' "$passed" "$1"
}
SKIPPED="$skipped"

failed=$((failed + checks_failed))
[ "$failed" -gt 0 ] && [ "$jest_rc" -eq 0 ] && jest_rc=1
SUMMARY="$(summary "$failed")"
phase "done"
exit "$jest_rc"
