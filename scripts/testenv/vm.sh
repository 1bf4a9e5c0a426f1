#!/usr/bin/env bash
# A throwaway loopback sshd that plays a remote "VM" for the integration tests.
#
#   bash scripts/testenv/vm.sh start NAME PORT   # idempotent
#   bash scripts/testenv/vm.sh stop NAME
#
# Logs in as the dedicated user `rchvm` (created if missing: home dir, /bin/bash,
# group docker, an empty .bashrc so remote commands stay fast). The "VM" uses the
# machine's dockerd (rchvm is in group docker). State, 0700, in .testenv/vm-NAME/:
#   ssh_host_ed25519_key  host key        id_ed25519     client key (0600)
#   known_hosts           "[127.0.0.1]:PORT ssh-ed25519 ..."
#   sshd_config sshd.pid sshd.log         ssh_config     (Host rch-vm-NAME, for humans)
#   env                   VM_HOST VM_PORT VM_USER VM_IDENTITY VM_KNOWN_HOSTS VM_WORKROOT VM_PID
# The remote work root is /var/tmp/rch-vm-NAME/work (owned by rchvm, emptied at
# each fresh start). VM_FORCE_COMMAND=FILE makes this sshd run FILE for every command
# (it gets the command in SSH_ORIGINAL_COMMAND): the adversarial tests' hostile VM. The authorized key lives in ~rchvm/.ssh/authorized_keys.rch-vm-NAME
# (sshd reads it as rchvm, so it cannot sit in the root-only .testenv dir).
set -euo pipefail
# shellcheck source=scripts/testenv/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

VM_USER=$RCHVM_USER

usage() { echo "usage: $0 start NAME PORT | stop NAME" >&2; exit 2; }

check_name() { [[ "${1:-}" =~ ^[a-z0-9][a-z0-9-]*$ ]] || die "bad VM name '${1:-}' (use [a-z0-9-])"; }

ssh_check() { # D PORT CMD...
  local d="$1" port="$2"
  shift 2
  ssh -F /dev/null -i "$d/id_ed25519" -o IdentitiesOnly=yes \
    -o UserKnownHostsFile="$d/known_hosts" -o GlobalKnownHostsFile=/dev/null \
    -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10 -o LogLevel=ERROR \
    -p "$port" "$VM_USER@127.0.0.1" "$@" </dev/null
}

start_vm() {
  local name="$1" port="$2"
  check_name "$name"
  if ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    die "bad port '$port'"
  fi
  require_root "vm.sh start"
  local d="$TESTENV_DIR/vm-$name" remote="/var/tmp/rch-vm-$name" t0 pid
  local work="/var/tmp/rch-vm-$name/work"
  t0="$(now_s)"
  mkdir -p "$TESTENV_DIR"
  install -d -m 700 "$d"

  if [ -f "$d/sshd.pid" ]; then
    pid="$(cat "$d/sshd.pid")"
    if pid_is "$pid" "$d/sshd_config"; then
      if port_open "$port" && grep -qx "Port $port" "$d/sshd_config" && [ -s "$d/env" ]; then
        log "vm $name: already running (pid $pid, port $port)"
        return 0
      fi
      log "vm $name: pid $pid runs but not as wanted on port $port; restarting"
    fi
    stop_sshd "$d" "vm $name"
  fi
  port_open "$port" && die "vm $name: port 127.0.0.1:$port is already in use by another process"

  ensure_rchvm_user

  [ -s "$d/ssh_host_ed25519_key" ] ||
    ssh-keygen -q -t ed25519 -N '' -C "rch-vm-$name-host" -f "$d/ssh_host_ed25519_key"
  [ -s "$d/id_ed25519" ] ||
    ssh-keygen -q -t ed25519 -N '' -C "rch-vm-$name-client" -f "$d/id_ed25519"
  chmod 600 "$d/ssh_host_ed25519_key" "$d/id_ed25519"

  install_machine "$d/id_ed25519.pub" "rch-vm-$name" "$remote"
  write_sshd_config "$d" "$port" "$d/ssh_host_ed25519_key" "$MACHINE_AK" "throwaway test VM $name"

  printf '[127.0.0.1]:%s %s\n' "$port" "$(cut -d' ' -f1,2 "$d/ssh_host_ed25519_key.pub")" >"$d/known_hosts"
  chmod 600 "$d/known_hosts"
  cat >"$d/ssh_config" <<EOF
# ssh -F $d/ssh_config rch-vm-$name CMD
Host rch-vm-$name
  HostName 127.0.0.1
  Port $port
  User $VM_USER
  IdentityFile $d/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile $d/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
EOF

  printf '\n=== %s start on port %s\n' "$(date -Is)" "$port" >>"$d/sshd.log"
  launch_sshd "$d" "$port" "vm $name"
  pid=$SSHD_PID

  write_env "$d/env" \
    "VM_NAME=$name" \
    "VM_HOST=127.0.0.1" \
    "VM_PORT=$port" \
    "VM_USER=$VM_USER" \
    "VM_IDENTITY=$d/id_ed25519" \
    "VM_KNOWN_HOSTS=$d/known_hosts" \
    "VM_WORKROOT=$work" \
    "VM_PID=$pid"

  local out
  if ! out="$(ssh_check "$d" "$port" docker ps 2>&1)"; then
    printf '%s\n' "$out" >&2
    tail -n 20 "$d/sshd.log" >&2
    stop_sshd "$d" "vm $name"
    die "vm $name: 'ssh $VM_USER@127.0.0.1 -p $port docker ps' failed"
  fi
  log "vm $name: sshd pid $pid on 127.0.0.1:$port, user $VM_USER, work root $work ($(elapsed "$t0") s)"
}

stop_vm() {
  local name="$1"
  check_name "$name"
  local d="$TESTENV_DIR/vm-$name"
  if [ ! -f "$d/sshd.pid" ]; then
    log "vm $name: not running (no $d/sshd.pid)"
    return 0
  fi
  stop_sshd "$d" "vm $name"
  # the VM is gone: its work root too (each keeps a ~95 MB externals copy), and the key it let in
  rm -rf "/var/tmp/rch-vm-$name"
  local home
  home="$(getent passwd "$RCHVM_USER" | cut -d: -f6)"
  [ -n "$home" ] && rm -f "$home/.ssh/authorized_keys.rch-vm-$name"
  return 0
}

case "${1:-}" in
  start) [ $# -eq 3 ] || usage; start_vm "$2" "$3" ;;
  stop) [ $# -eq 2 ] || usage; stop_vm "$2" ;;
  *) usage ;;
esac
