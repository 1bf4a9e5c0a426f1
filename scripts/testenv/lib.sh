# shellcheck shell=bash
# Shared helpers for scripts/testenv/*.sh (sourced, not executed).
#
# Everything the test environment creates lives under $TESTENV_DIR (default
# <repo>/.testenv, git-ignored). Daemons are only ever stopped by the PID we
# recorded when we started them, and only after checking that the PID still
# belongs to the process we started (its command line names our config file).

RCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck disable=SC2034 # used by the scripts that source this file
TESTENV_DIR="${RCH_TESTENV_DIR:-$RCH_ROOT/.testenv}"

log() { printf '[testenv] %s\n' "$*" >&2; }
die() { printf '[testenv] ERROR: %s\n' "$*" >&2; exit 1; }

require_root() {
  [ "$(id -u)" -eq 0 ] || die "$1 needs root (it creates users, starts daemons, talks to dockerd)"
}

# seconds since the epoch with milliseconds, for timing messages
now_s() { date +%s.%3N; }
elapsed() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }

# pid_state PID -> the one-letter state from /proc/PID/stat (empty if gone)
pid_state() {
  local stat
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
  stat="${stat##*) }"
  printf '%s' "${stat%% *}"
}

# pid_running PID -> true if PID exists and is not a zombie. Use this right
# after starting a process: until it has exec'd, its cmdline is still bash's.
pid_running() {
  local st
  [[ "$1" =~ ^[0-9]+$ ]] || return 1
  st="$(pid_state "$1")"
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# pid_is PID PATTERN -> true if PID runs (not a zombie) and its command line
# contains PATTERN (protects against killing a recycled PID).
pid_is() {
  local pid="$1" pattern="$2" st cmd
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  st="$(pid_state "$pid")"
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ] || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmd" == *"$pattern"* ]]
}

# stop_pid PID PATTERN NAME -> SIGTERM, wait (max 10 s), then SIGKILL. A process
# that is not our child is reaped lazily by init, so a zombie counts as gone.
stop_pid() {
  local pid="$1" pattern="$2" name="$3" i
  if ! pid_is "$pid" "$pattern"; then
    log "$name: not running (pid ${pid:-none})"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    pid_is "$pid" "$pattern" || break
    sleep 0.1
  done
  if pid_is "$pid" "$pattern"; then
    log "$name: pid $pid ignored SIGTERM for 10 s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      pid_is "$pid" "$pattern" || break
      sleep 0.1
    done
  fi
  wait "$pid" 2>/dev/null || true   # reaps it if it happens to be our child
  log "$name: stopped (pid $pid)"
}

# port_open PORT -> true if something accepts TCP connections on 127.0.0.1:PORT
port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# http_status PORT PATH -> the HTTP status code of GET http://127.0.0.1:PORT/PATH
# (pure bash, no curl needed), empty if nothing answers.
http_status() {
  local line=""
  line="$(
    exec 2>/dev/null
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 0
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1:%s\r\nConnection: close\r\n\r\n' "$2" "$1" >&3
    timeout 5 head -n 1 <&3
  )" 2>/dev/null || true
  line="${line#HTTP/* }"
  printf '%s' "${line%% *}"
}

# write_env FILE KEY=VALUE... -> a file of shell-compatible KEY=value lines.
# Values with characters outside a safe set are single-quoted; both
# `source FILE` and test/helpers/testenv.ts read it.
write_env() {
  local file="$1" kv key val tmp
  shift
  tmp="$(mktemp "$file.XXXXXX")"
  for kv in "$@"; do
    key="${kv%%=*}"
    val="${kv#*=}"
    if [[ "$val" =~ ^[A-Za-z0-9_./:@%+,=-]*$ ]]; then
      printf '%s=%s\n' "$key" "$val" >>"$tmp"
    elif [[ "$val" != *"'"* && "$val" != *$'\n'* ]]; then
      printf "%s='%s'\n" "$key" "$val" >>"$tmp"
    else
      rm -f "$tmp"
      die "write_env: value of $key contains a quote or newline: $val"
    fi
  done
  chmod 600 "$tmp"
  mv -f "$tmp" "$file"
}

# docker CLI that never waits forever on a wedged daemon
docker_ok() { timeout 15 docker info >/dev/null 2>&1; }

# ---- loopback sshd "machines" (vm.sh and instance-sshd.sh) ----

RCHVM_USER=rchvm

# ensure_rchvm_user -> the login user of every test machine (home, /bin/bash, group
# docker, key login allowed, an empty .bashrc); sets RCHVM_HOME. Serialized with flock:
# tests start several machines at once.
ensure_rchvm_user() {
  local home
  exec 9>"$TESTENV_DIR/.rchvm-user.lock"
  flock 9
  getent group docker >/dev/null || groupadd --system docker
  if ! id "$RCHVM_USER" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash --groups docker "$RCHVM_USER"
    log "created user $RCHVM_USER"
  fi
  home="$(getent passwd "$RCHVM_USER" | cut -d: -f6)"
  id -nG "$RCHVM_USER" | tr ' ' '\n' | grep -qx docker || usermod -aG docker "$RCHVM_USER"
  [ "$(getent passwd "$RCHVM_USER" | cut -d: -f7)" = /bin/bash ] || usermod -s /bin/bash "$RCHVM_USER"
  # '*' instead of the '!' useradd leaves: with UsePAM no, sshd refuses a
  # '!'-locked account even for key auth ("User rchvm not allowed because account is locked")
  [ "$(getent shadow "$RCHVM_USER" | cut -d: -f2)" = '*' ] || usermod -p '*' "$RCHVM_USER"
  [ -d "$home" ] || install -d -m 755 -o "$RCHVM_USER" -g "$RCHVM_USER" "$home"
  chmod go-w "$home"   # StrictModes
  install -d -m 700 -o "$RCHVM_USER" -g "$RCHVM_USER" "$home/.ssh"
  # Debian's bash sources ~/.bashrc for every command sshd runs: keep it empty
  if [ -s "$home/.bashrc" ] || [ ! -e "$home/.bashrc" ]; then
    printf '# rch-test VM user: intentionally empty (sourced for every ssh command)\n' >"$home/.bashrc"
    chown "$RCHVM_USER:" "$home/.bashrc"
  fi
  flock -u 9
  exec 9>&-
  mkdir -p /run/sshd   # else sshd: "Missing privilege separation directory: /run/sshd"
  chmod 755 /run/sshd
  # shellcheck disable=SC2034 # read by the scripts that source this file
  RCHVM_HOME="$home"
}

# write_sshd_config DIR PORT HOSTKEY AUTHORIZED_KEYS COMMENT -> DIR/sshd_config (0600),
# checked with sshd -t: loopback only, key login as rchvm only, streamlocal forwarding on.
write_sshd_config() {
  local d="$1" port="$2" hostkey="$3" ak="$4" comment="$5"
  cat >"$d/sshd_config" <<EOC
# generated by scripts/testenv: $comment
Port $port
ListenAddress 127.0.0.1
HostKey $hostkey
PidFile $d/sshd.pid
AuthorizedKeysFile $ak
AllowUsers $RCHVM_USER
PermitRootLogin no
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
MaxStartups 200:30:400
MaxSessions 128
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
PrintLastLog no
Subsystem sftp /usr/lib/openssh/sftp-server
LogLevel VERBOSE
EOC
  # A hostile "VM" for the adversarial tests: a wrapper that runs before every remote command (as
  # a start-up file of the SSH user would), for this one sshd only.
  [ -n "${VM_FORCE_COMMAND:-}" ] && printf 'ForceCommand %s\n' "$VM_FORCE_COMMAND" >>"$d/sshd_config"
  chmod 600 "$d/sshd_config"
  /usr/sbin/sshd -t -f "$d/sshd_config" || die "$comment: sshd -t rejected $d/sshd_config"
}

# launch_sshd DIR PORT WHAT -> starts sshd on DIR/sshd_config and waits (max 10 s) until it
# listens; sets SSHD_PID. Dies, leaving nothing running, if it does not come up.
launch_sshd() {
  local d="$1" port="$2" what="$3" i
  # sshd needs its absolute path ("sshd re-exec requires execution with an absolute path")
  /usr/sbin/sshd -D -e -f "$d/sshd_config" >>"$d/sshd.log" 2>&1 </dev/null &
  SSHD_PID=$!
  echo "$SSHD_PID" >"$d/sshd.pid"   # sshd rewrites the same pid via PidFile
  for ((i = 0; i < 100; i++)); do
    port_open "$port" && return 0
    if ! pid_running "$SSHD_PID"; then
      tail -n 20 "$d/sshd.log" >&2
      rm -f "$d/sshd.pid"
      die "$what: sshd exited at startup, see $d/sshd.log"
    fi
    sleep 0.1
  done
  stop_pid "$SSHD_PID" "$d/sshd_config" "$what sshd"
  rm -f "$d/sshd.pid"
  die "$what: sshd did not listen on 127.0.0.1:$port within 10 s"
}

# descendants PID -> all live descendants of PID, parents before children
descendants() {
  ps -e -o pid=,ppid= 2>/dev/null | awk -v root="$1" '
    { parent[$1] = $2; order[NR] = $1 }
    END {
      want[root] = 1
      do {
        changed = 0
        for (i = 1; i <= NR; i++) {
          p = order[i]
          if (!(p in want) && (parent[p] in want)) { want[p] = 1; changed = 1; out = out " " p }
        }
      } while (changed)
      print out
    }'
}

# stop_sshd DIR WHAT -> stops the sshd recorded in DIR/sshd.pid and the sessions it spawned
# (they outlive the listener: only descendants of *our* sshd, collected before it dies).
stop_sshd() {
  local d="$1" what="$2" pid tree="" k n=0
  [ -f "$d/sshd.pid" ] || return 0
  pid="$(cat "$d/sshd.pid")"
  pid_is "$pid" "$d/sshd_config" && tree="$(descendants "$pid")"
  stop_pid "$pid" "$d/sshd_config" "$what sshd"
  for k in $tree; do
    if [ -n "$(pid_state "$k")" ] && [ "$(pid_state "$k")" != Z ]; then
      kill -TERM "$k" 2>/dev/null && n=$((n + 1))
    fi
  done
  [ "$n" -gt 0 ] && log "$what: ended $n leftover session process(es)"
  rm -f "$d/sshd.pid" "$d/env"
}

# install_machine PUBKEY_FILE NAME REMOTE_DIR -> authorizes the key for rchvm as
# ~rchvm/.ssh/authorized_keys.NAME (sshd reads it as rchvm; sets MACHINE_AK) and makes
# REMOTE_DIR/work a fresh, empty work root owned by rchvm (root-owned job containers leave
# files rchvm cannot delete, hence root removes the old one).
install_machine() {
  local pub="$1" name="$2" remote="$3"
  MACHINE_AK="$RCHVM_HOME/.ssh/authorized_keys.$name"
  install -m 600 -o "$RCHVM_USER" -g "$RCHVM_USER" "$pub" "$MACHINE_AK"
  rm -rf "$remote"
  install -d -m 755 "$remote"
  install -d -m 755 -o "$RCHVM_USER" -g "$RCHVM_USER" "$remote/work"
}

# stop_recorded PIDFILE PATTERN WHAT -> stops the daemon whose pid PIDFILE records (if its
# command line still contains PATTERN) and removes PIDFILE and the env file next to it.
stop_recorded() {
  local pidfile="$1" pattern="$2" what="$3"
  if [ ! -f "$pidfile" ]; then
    log "$what: not running (no $pidfile)"
    return 0
  fi
  stop_pid "$(cat "$pidfile")" "$pattern" "$what"
  rm -f "$pidfile" "$(dirname "$pidfile")/env"
}
