#!/usr/bin/env bash
# moto's standalone server: a real EC2 Query API on loopback for the EC2 provider tests.
#
#   bash scripts/testenv/moto.sh start     # idempotent
#   bash scripts/testenv/moto.sh stop
#   bash scripts/testenv/moto.sh install   # only the virtualenv (idempotent; starts nothing)
#
# Installs MOTO_SPEC (below) into a virtualenv .testenv/moto-venv (python3 -m venv +
# pip; skipped when the venv already has exactly that version), then runs
# `moto_server -H 127.0.0.1 -p 5005` in the background:
#   .testenv/moto/moto.log     server log        .testenv/moto/moto.pid   its pid
#   .testenv/moto/env          MOTO_ENDPOINT=http://127.0.0.1:5005 MOTO_PORT MOTO_VERSION
#                              MOTO_VALIDATE MOTO_PID
#   .testenv/moto/freeze.txt   `pip freeze` of the venv (what was actually installed)
# moto keeps all state in memory: `POST /moto-api/reset` clears it (test/helpers/ec2-env.ts
# resetMoto()). moto starts no machines and the IPs it invents for instances are not on
# this machine: never connect to them.
# moto is made stricter than its defaults, closer to EC2 (RCH_MOTO_VALIDATE=0 turns it off):
#   MOTO_ENABLE_AMI_VALIDATION=1                 RunInstances with an unknown AMI ->
#                                                InvalidAMIID.NotFound (default: accepted)
#   MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION=1   unknown instance type -> InvalidInstanceType
#                                                (default: accepted)
# Env: RCH_MOTO_PORT (default 5005), RCH_PYTHON (default python3), RCH_MOTO_VALIDATE (1).
# Does not need root (only loopback and files under .testenv).
set -euo pipefail
# shellcheck source=scripts/testenv/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Pinned: the version these scripts and test/integration/moto-smoke.test.ts were verified
# with. Bump deliberately (and re-run that test): moto's EC2 behaviour changes between releases.
MOTO_VERSION=5.2.5
MOTO_SPEC="moto[server]==$MOTO_VERSION"
MOTO_PORT="${RCH_MOTO_PORT:-5005}"
PYTHON="${RCH_PYTHON:-python3}"
VALIDATE="${RCH_MOTO_VALIDATE:-1}"
VENV="$TESTENV_DIR/moto-venv"
D="$TESTENV_DIR/moto"
STAMP="$VENV/.rch-installed"   # holds MOTO_SPEC and the constraints' hash once pip succeeded
# Every dependency pinned too (regenerated from freeze.txt deliberately): a new release of Flask
# or botocore must not change a CI run.
CONSTRAINTS="$RCH_ROOT/scripts/testenv/moto-constraints.txt"
stamp() { printf '%s %s\n' "$MOTO_SPEC" "$(sha256sum "$CONSTRAINTS" | cut -c1-16)"; }

venv_ok() {
  [ -x "$VENV/bin/python" ] && [ -x "$VENV/bin/moto_server" ] &&
    [ "$(cat "$STAMP" 2>/dev/null)" = "$(stamp)" ] &&
    "$VENV/bin/python" -c 'import sys' 2>/dev/null   # the base python may have moved
}

ensure_venv() {
  local t0 rc=0
  venv_ok && return 0
  t0="$(now_s)"
  command -v "$PYTHON" >/dev/null || die "moto: $PYTHON not found (set RCH_PYTHON)"
  mkdir -p "$D"
  # No stamp means no finished install: a venv left half-made (its install killed) may lack pip.
  if [ ! -f "$STAMP" ] || [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" >"$D/pip.log" 2>&1 || {
      cat "$D/pip.log" >&2
      die "moto: '$PYTHON -m venv' failed (Debian: apt-get install python3-venv)"
    }
  fi
  rm -f "$STAMP"
  log "moto: installing $MOTO_SPEC into $VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -c "$CONSTRAINTS" "$MOTO_SPEC" \
    >>"$D/pip.log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -n 30 "$D/pip.log" >&2
    die "moto: pip install $MOTO_SPEC failed (rc $rc), full log: $D/pip.log"
  fi
  [ -x "$VENV/bin/moto_server" ] || die "moto: $VENV/bin/moto_server missing after pip install"
  "$VENV/bin/python" -m pip freeze --disable-pip-version-check >"$D/freeze.txt" 2>/dev/null || true
  stamp >"$STAMP"
  log "moto: installed $MOTO_SPEC ($(elapsed "$t0") s)"
}

# moto answers GET /moto-api/data.json with 200 once it serves requests
moto_up() { [ "$(http_status "$MOTO_PORT" /moto-api/data.json)" = 200 ]; }

start_moto() {
  local t0 pid i
  t0="$(now_s)"
  if ! [[ "$MOTO_PORT" =~ ^[0-9]+$ ]] || [ "$MOTO_PORT" -lt 1 ] || [ "$MOTO_PORT" -gt 65535 ]; then
    die "moto: bad port '$MOTO_PORT'"
  fi
  mkdir -p "$TESTENV_DIR"
  install -d -m 700 "$D"

  if [ -f "$D/moto.pid" ]; then
    pid="$(cat "$D/moto.pid")"
    if pid_is "$pid" "$VENV/bin/moto_server"; then
      if pid_is "$pid" "-p $MOTO_PORT" && venv_ok && moto_up &&
        grep -qx "MOTO_VALIDATE=$VALIDATE" "$D/env" 2>/dev/null; then
        log "moto: already running (pid $pid, http://127.0.0.1:$MOTO_PORT)"
        return 0
      fi
      log "moto: pid $pid runs but not as wanted (port $MOTO_PORT, $MOTO_SPEC); restarting"
      stop_pid "$pid" "$VENV/bin/moto_server" moto
    fi
    rm -f "$D/moto.pid" "$D/env"
  fi
  port_open "$MOTO_PORT" && die "moto: port 127.0.0.1:$MOTO_PORT is already in use by another process"

  ensure_venv

  local moto_env=()
  # moto reads these as bool(os.environ.get(...)): any non-empty value means on, so
  # "off" has to be "unset"
  if [ "$VALIDATE" = 1 ]; then
    moto_env=(MOTO_ENABLE_AMI_VALIDATION=1 MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION=1)
  fi
  printf '\n=== %s start on port %s (validation %s)\n' "$(date -Is)" "$MOTO_PORT" "$VALIDATE" >>"$D/moto.log"
  env -u MOTO_ENABLE_AMI_VALIDATION -u MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION "${moto_env[@]}" \
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >>"$D/moto.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$D/moto.pid"
  for ((i = 0; i < 300; i++)); do
    moto_up && break
    if ! pid_running "$pid"; then
      tail -n 20 "$D/moto.log" >&2
      rm -f "$D/moto.pid"
      die "moto: moto_server exited at startup, see $D/moto.log"
    fi
    sleep 0.1
  done
  if ! moto_up; then
    tail -n 20 "$D/moto.log" >&2
    stop_pid "$pid" "$VENV/bin/moto_server" moto
    rm -f "$D/moto.pid"
    die "moto: http://127.0.0.1:$MOTO_PORT/moto-api/data.json did not answer 200 within 30 s"
  fi

  write_env "$D/env" \
    "MOTO_ENDPOINT=http://127.0.0.1:$MOTO_PORT" \
    "MOTO_PORT=$MOTO_PORT" \
    "MOTO_VERSION=$MOTO_VERSION" \
    "MOTO_VALIDATE=$VALIDATE" \
    "MOTO_PID=$pid"
  log "moto: $MOTO_SPEC pid $pid on http://127.0.0.1:$MOTO_PORT ($(elapsed "$t0") s)"
}

stop_moto() { stop_recorded "$D/moto.pid" "$VENV/bin/moto_server" moto; }

case "${1:-}" in
  start) start_moto ;;
  stop) stop_moto ;;
  install) ensure_venv ;;
  *) echo "usage: $0 start | stop | install" >&2; exit 2 ;;
esac
