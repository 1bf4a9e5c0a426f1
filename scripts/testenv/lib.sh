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
