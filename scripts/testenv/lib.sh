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

# A loopback port nothing listens on (discard): the proxy setup.sh gives dockerd for every registry
# outside loopback, so that no pull leaves the machine; scripts/test.sh counts the attempts.
# shellcheck disable=SC2034 # used by the scripts that source this file
RCH_DEAD_PROXY=http://127.0.0.1:9

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

# valid_machine_user NAME -> true for the names the test machines may log in as: rchvm, or
# a pool member's own user (rchp0, rchp1 ...). Only such users are ever created.
valid_machine_user() { [[ "${1:-}" =~ ^rch[a-z0-9]{1,29}$ ]]; }

# ensure_machine_user NAME -> the login user of a test machine (home, /bin/bash, group docker,
# key login allowed, an empty .bashrc); sets MACHINE_USER and MACHINE_HOME. Serialized with
# flock: tests start several machines at once. Never removed: another test may be using it.
ensure_machine_user() {
  local user="$1" home
  valid_machine_user "$user" || die "bad machine user '$user' (rch[a-z0-9]+)"
  mkdir -p "$TESTENV_DIR"
  exec 9>"$TESTENV_DIR/.rchvm-user.lock"
  flock 9
  getent group docker >/dev/null || groupadd --system docker
  if ! id "$user" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash --groups docker "$user"
    log "created user $user"
  fi
  home="$(getent passwd "$user" | cut -d: -f6)"
  id -nG "$user" | tr ' ' '\n' | grep -qx docker || usermod -aG docker "$user"
  [ "$(getent passwd "$user" | cut -d: -f7)" = /bin/bash ] || usermod -s /bin/bash "$user"
  # '*' instead of the '!' useradd leaves: with UsePAM no, sshd refuses a
  # '!'-locked account even for key auth ("User rchvm not allowed because account is locked")
  [ "$(getent shadow "$user" | cut -d: -f2)" = '*' ] || usermod -p '*' "$user"
  [ -d "$home" ] || install -d -m 755 -o "$user" -g "$user" "$home"
  chmod go-w "$home"   # StrictModes
  install -d -m 700 -o "$user" -g "$user" "$home/.ssh"
  # Debian's bash sources ~/.bashrc for every command sshd runs: keep it empty
  if [ -s "$home/.bashrc" ] || [ ! -e "$home/.bashrc" ]; then
    printf '# rch-test VM user: intentionally empty (sourced for every ssh command)\n' >"$home/.bashrc"
    chown "$user:" "$home/.bashrc"
  fi
  flock -u 9
  exec 9>&-
  mkdir -p /run/sshd   # else sshd: "Missing privilege separation directory: /run/sshd"
  chmod 755 /run/sshd
  MACHINE_USER="$user"
  MACHINE_HOME="$home"
}

# ensure_rchvm_user -> ensure_machine_user rchvm; also sets RCHVM_HOME
ensure_rchvm_user() {
  ensure_machine_user "$RCHVM_USER"
  # shellcheck disable=SC2034 # read by the scripts that source this file
  RCHVM_HOME="$MACHINE_HOME"
}

# write_sshd_config DIR PORT HOSTKEY AUTHORIZED_KEYS COMMENT -> DIR/sshd_config (0600),
# checked with sshd -t: loopback only, key login as MACHINE_USER (default rchvm) only,
# streamlocal forwarding on. SSHD_DOCKER_DOWN=1: a machine whose Docker is out of reach for its
# user (the docker CLI gets a dead DOCKER_HOST, forwarding a socket is refused).
write_sshd_config() {
  local d="$1" port="$2" hostkey="$3" ak="$4" comment="$5" streamlocal=yes
  [ "${SSHD_DOCKER_DOWN:-0}" = 1 ] && streamlocal=no
  cat >"$d/sshd_config" <<EOC
# generated by scripts/testenv: $comment
Port $port
ListenAddress 127.0.0.1
HostKey $hostkey
PidFile $d/sshd.pid
AuthorizedKeysFile $ak
AllowUsers ${MACHINE_USER:-$RCHVM_USER}
PermitRootLogin no
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes yes
MaxStartups 200:30:400
MaxSessions 128
AllowStreamLocalForwarding $streamlocal
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
  [ "$streamlocal" = no ] && printf 'SetEnv DOCKER_HOST=unix:///run/rch-docker-down/docker.sock\n' >>"$d/sshd_config"
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

# install_machine PUBKEY_FILE NAME REMOTE_DIR [WORK] -> authorizes the key for MACHINE_USER
# (default rchvm) as ~/.ssh/authorized_keys.NAME (sshd reads it as that user; sets MACHINE_AK)
# and makes WORK (default REMOTE_DIR/work) a fresh, empty work root owned by the user
# (root-owned job containers leave files the user cannot delete, hence root removes the old
# one). KEEP_WORK=1 keeps an existing work root (a stopped machine keeps its disk).
install_machine() {
  local pub="$1" name="$2" remote="$3" work="${4:-$3/work}"
  local user="${MACHINE_USER:-$RCHVM_USER}" home="${MACHINE_HOME:-$RCHVM_HOME}"
  MACHINE_AK="$home/.ssh/authorized_keys.$name"
  install -m 600 -o "$user" -g "$user" "$pub" "$MACHINE_AK"
  if [ "${KEEP_WORK:-0}" = 1 ] && [ -d "$work" ]; then
    chown "$user:" "$work"
    return 0
  fi
  rm -rf "$remote"
  [ "$work" = "$remote" ] || install -d -m 755 "$remote"
  install -d -m 755 -o "$user" -g "$user" "$work"
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

# dockerd_log -> the file the running dockerd writes its log to (its stdout), whoever started it
dockerd_log() {
  local p f
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = dockerd ] || continue
    f="$(readlink "$p/fd/1" 2>/dev/null)" || continue
    [ -f "$f" ] && { printf '%s' "$f"; return 0; }
  done
  return 1
}
