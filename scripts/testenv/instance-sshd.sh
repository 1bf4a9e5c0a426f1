#!/usr/bin/env bash
# A loopback sshd that stands in for a booting EC2 instance, for the EC2 provider tests.
#
#   bash scripts/testenv/instance-sshd.sh start NAME PORT AUTHORIZED_PUBKEY_FILE HOSTKEY_PRIVATE_FILE
#   bash scripts/testenv/instance-sshd.sh stop NAME
#   bash scripts/testenv/instance-sshd.sh pause NAME
#
# Like scripts/testenv/vm.sh (user rchvm in group docker, 127.0.0.1 only, the machine's
# dockerd), but it generates no keys: it serves the GIVEN host private key (e.g. ed25519,
# OpenSSH format) and authorizes the GIVEN public key, as a real instance does with the
# keys it got through its user data. A test reads them back from moto
# (DescribeInstanceAttribute userData), starts this, and connects with strict host-key
# checking against the host key it generated itself.
#
# NAME: [a-z0-9][a-z0-9-]* (an instance id fits). Idempotent: start with the same port and
# the same keys while running is a no-op; other keys or another port restart it.
# Optional environment for start (a pool member is one Linux user per machine):
#   INST_USER=rch...     the login user (default rchvm; created like rchvm if missing)
#   INST_WORKROOT=/abs   the work root (default /var/tmp/rch-inst-NAME/work); made fresh, and
#                        removed by stop, as a whole
#   INST_DOCKER_DOWN=1   Docker out of reach for the user (dead DOCKER_HOST, no socket forwarding)
# pause stops the sshd and its sessions but keeps the state, the authorized key and the work
# root (a stopped instance keeps its disk); the next start with the same keys keeps them.
# State, 0700, in .testenv/inst-NAME/:
#   ssh_host_key (+ .pub)  copy of the given host key    authorized_key   copy of the given key
#   known_hosts            "[127.0.0.1]:PORT <host key>"  (for humans; tests should pin their own)
#   sshd_config sshd.pid sshd.log
#   env                    INST_NAME INST_HOST INST_PORT INST_USER INST_KNOWN_HOSTS
#                          INST_WORKROOT INST_HOSTKEY_FINGERPRINT INST_PID (while sshd runs)
#   machine                INST_USER INST_WORKROOT (what stop removes)
# The remote work root (owned by the user) is emptied at each fresh start and removed by stop
# (a terminated instance's disk is gone). The authorized key is installed as
# ~USER/.ssh/authorized_keys.rch-inst-NAME (sshd reads it as the user) and removed by stop.
# stop also removes .testenv/inst-NAME (RCH_KEEP_INST_STATE=1 keeps it, e.g. for sshd.log).
# Needs root.
set -euo pipefail
# shellcheck source=scripts/testenv/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INST_USER="${INST_USER:-$RCHVM_USER}"
valid_machine_user "$INST_USER" || die "bad INST_USER '$INST_USER' (rch[a-z0-9]+)"

usage() {
  echo "usage: $0 start NAME PORT AUTHORIZED_PUBKEY_FILE HOSTKEY_PRIVATE_FILE | stop NAME | pause NAME" >&2
  exit 2
}

# work_root NAME -> INST_WORKROOT or the default; refuses paths a stop must never remove
work_root() {
  local w="${INST_WORKROOT:-/var/tmp/rch-inst-$1/work}"
  [[ "$w" =~ ^(/[A-Za-z0-9._-]+){2,}$ && "/$w/" != *"/../"* && "/$w/" != *"/./"* ]] ||
    die "instance $1: bad INST_WORKROOT '$w' (an absolute path at least two levels deep)"
  printf '%s' "$w"
}

check_name() { [[ "${1:-}" =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "bad instance name '${1:-}' (use [a-z0-9-])"; }

# stop_listener NAME -> stops our sshd for NAME and the sessions it spawned
stop_listener() { stop_sshd "$TESTENV_DIR/inst-$1" "instance $1"; }

start_inst() {
  local name="$1" port="$2" pubfile="$3" hostkey="$4"
  check_name "$name"
  if ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    die "bad port '$port'"
  fi
  require_root "instance-sshd.sh start"
  [ -r "$pubfile" ] || die "instance $name: authorized public key file '$pubfile' not readable"
  [ -r "$hostkey" ] || die "instance $name: host private key file '$hostkey' not readable"
  local d="$TESTENV_DIR/inst-$name" remote="/var/tmp/rch-inst-$name" t0 pid
  local work hostpub authline keytype fp scanned keep=0
  work="$(work_root "$name")"
  [ -n "${INST_WORKROOT:-}" ] && remote="$work"
  t0="$(now_s)"
  mkdir -p "$TESTENV_DIR"
  install -d -m 700 "$d"

  # validate the inputs before touching anything
  hostpub="$(ssh-keygen -y -f "$hostkey" 2>/dev/null)" ||
    die "instance $name: $hostkey is not an unencrypted OpenSSH private key"
  authline="$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$pubfile" | head -n 1)"
  [ -n "$authline" ] || die "instance $name: $pubfile holds no public key"
  ssh-keygen -l -f /dev/stdin <<<"$authline" >/dev/null 2>&1 ||
    die "instance $name: $pubfile is not an OpenSSH public key"
  keytype="${hostpub%% *}"
  fp="$(ssh-keygen -l -E sha256 -f /dev/stdin <<<"$hostpub" | cut -d' ' -f2)"

  if [ -f "$d/sshd.pid" ]; then
    pid="$(cat "$d/sshd.pid")"
    if pid_is "$pid" "$d/sshd_config"; then
      if port_open "$port" && grep -qx "Port $port" "$d/sshd_config" && [ -s "$d/env" ] &&
        cmp -s "$hostkey" "$d/ssh_host_key" && [ "$(cat "$d/authorized_key" 2>/dev/null)" = "$authline" ]; then
        log "instance $name: already running (pid $pid, port $port)"
        return 0
      fi
      log "instance $name: pid $pid runs with another port or other keys; restarting"
    fi
    stop_listener "$name"
  elif [ -f "$d/paused" ] && cmp -s "$hostkey" "$d/ssh_host_key" && [ "$(cat "$d/authorized_key" 2>/dev/null)" = "$authline" ]; then
    keep=1   # started again after pause: same machine, same disk
  fi
  port_open "$port" && die "instance $name: port 127.0.0.1:$port is already in use by another process"

  ensure_machine_user "$INST_USER"

  # copies: the caller's temp dir may go away while sshd runs; sshd wants 0600 host keys
  install -m 600 "$hostkey" "$d/ssh_host_key"
  printf '%s\n' "$hostpub" >"$d/ssh_host_key.pub"
  printf '%s\n' "$authline" >"$d/authorized_key"
  chmod 600 "$d/authorized_key"
  rm -f "$d/paused"
  write_env "$d/machine" "INST_USER=$INST_USER" "INST_WORKROOT=$work"
  KEEP_WORK=$keep install_machine "$d/authorized_key" "rch-inst-$name" "$remote" "$work"
  SSHD_DOCKER_DOWN="${INST_DOCKER_DOWN:-0}" \
    write_sshd_config "$d" "$port" "$d/ssh_host_key" "$MACHINE_AK" "stand-in for EC2 instance $name"

  printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 <<<"$hostpub")" >"$d/known_hosts"
  chmod 600 "$d/known_hosts"

  printf '\n=== %s start on port %s, host key %s\n' "$(date -Is)" "$port" "$fp" >>"$d/sshd.log"
  launch_sshd "$d" "$port" "instance $name"
  pid=$SSHD_PID

  # it must serve exactly the given host key (we hold no client key to log in with)
  local scantype
  case "$keytype" in
    ssh-ed25519) scantype=ed25519 ;;
    ssh-rsa) scantype=rsa ;;
    ecdsa-*) scantype=ecdsa ;;
    *) scantype=rsa,ecdsa,ed25519 ;;
  esac
  scanned="$(ssh-keyscan -T 5 -t "$scantype" -p "$port" 127.0.0.1 2>/dev/null | awk '!/^#/ { print $2 " " $3; exit }')"
  if [ "$scanned" != "$(cut -d' ' -f1,2 <<<"$hostpub")" ]; then
    tail -n 20 "$d/sshd.log" >&2
    stop_listener "$name"
    die "instance $name: sshd on port $port does not serve the given host key (got '${scanned:-nothing}')"
  fi

  write_env "$d/env" \
    "INST_NAME=$name" \
    "INST_HOST=127.0.0.1" \
    "INST_PORT=$port" \
    "INST_USER=$INST_USER" \
    "INST_KNOWN_HOSTS=$d/known_hosts" \
    "INST_WORKROOT=$work" \
    "INST_HOSTKEY_FINGERPRINT=$fp" \
    "INST_PID=$pid"
  log "instance $name: sshd pid $pid on 127.0.0.1:$port, user $INST_USER, host key $fp ($(elapsed "$t0") s)"
}

# machine_of NAME -> sets M_USER and M_WORKROOT from the state start recorded (defaults for
# state written before it recorded them)
machine_of() {
  local f="$TESTENV_DIR/inst-$1/machine" line
  M_USER=$RCHVM_USER
  M_WORKROOT="/var/tmp/rch-inst-$1/work"
  [ -f "$f" ] || return 0
  while IFS= read -r line; do
    case "$line" in
      INST_USER=*) M_USER="${line#INST_USER=}" ;;
      INST_WORKROOT=*) M_WORKROOT="${line#INST_WORKROOT=}" ;;
    esac
  done <"$f"
  valid_machine_user "$M_USER" || die "instance $1: bad user '$M_USER' in $f"
  M_WORKROOT="$(INST_WORKROOT="$M_WORKROOT" work_root "$1")"
}

pause_inst() {
  local name="$1"
  check_name "$name"
  require_root "instance-sshd.sh pause"
  local d="$TESTENV_DIR/inst-$name"
  [ -f "$d/machine" ] || die "instance $name: never started (no $d/machine)"
  if [ -f "$d/sshd.pid" ]; then
    stop_listener "$name"
  else
    log "instance $name: not running (no $d/sshd.pid)"
  fi
  touch "$d/paused"
}

stop_inst() {
  local name="$1"
  check_name "$name"
  require_root "instance-sshd.sh stop"
  local d="$TESTENV_DIR/inst-$name" home
  machine_of "$name"
  if [ -f "$d/sshd.pid" ]; then
    stop_listener "$name"
  else
    log "instance $name: not running (no $d/sshd.pid)"
  fi
  home="$(getent passwd "$M_USER" | cut -d: -f6)" || true
  [ -n "$home" ] && rm -f "$home/.ssh/authorized_keys.rch-inst-$name"
  if [ "$M_WORKROOT" = "/var/tmp/rch-inst-$name/work" ]; then
    rm -rf "/var/tmp/rch-inst-$name"
  else
    rm -rf "$M_WORKROOT"
  fi
  # names are usually instance ids (a new one per test run) and the dir holds a copy of a
  # private host key: remove it, unless asked to keep it (sshd.log) for a post-mortem
  if [ "${RCH_KEEP_INST_STATE:-0}" = 1 ]; then
    rm -f "$d/env"
  else
    rm -rf "$d"
  fi
}

case "${1:-}" in
  start) [ $# -eq 5 ] || usage; start_inst "$2" "$3" "$4" "$5" ;;
  stop) [ $# -eq 2 ] || usage; stop_inst "$2" ;;
  pause) [ $# -eq 2 ] || usage; pause_inst "$2" ;;
  *) usage ;;
esac
