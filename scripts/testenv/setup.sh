#!/usr/bin/env bash
# Prepare this machine for the integration tests (idempotent; ~1 s when all is there).
#
#   bash scripts/testenv/setup.sh [packages]
#
# With `packages`, step 1 only.
#
# 1. installs missing Debian packages (needs root; one `apt-get update` first):
#    docker.io openssh-server rsync docker-registry debootstrap apache2-utils
#    busybox-static bash-static python3-fusepy (the name-folding test's FUSE file system)
#    python3 python3-venv (moto's and Terraform's checkers' virtualenvs) procps (ps)
# 2. starts dockerd if `docker info` fails (log .testenv/dockerd.log, pid
#    .testenv/dockerd.pid) and leaves it running: published ports on 127.0.0.1, and a dead
#    proxy for any registry outside 127.0.0.0/8 (no pull ever leaves this machine)
# 3. builds the local test images, without any registry (docker import of a
#    rootfs tarball), each labelled rch-test=1:
#      rch-test/tiny:1   busybox-static + bash-static (sh, bash, nc, httpd, tar, ...)
#      rch-test/musl:1   like tiny, but /etc/os-release ID=alpine + /etc/alpine-release
#      rch-test/glibc:1  debootstrap --variant=minbase bookworm (glibc, bash,
#                        coreutils, libstdc++: runs the host's node when mounted);
#                        rootfs tarball cached in .testenv/cache
#
# Env: DEBIAN_MIRROR (default: read from the apt sources), RCH_REBUILD_IMAGES=1
# (rebuild the images; the glibc rootfs cache is kept: delete .testenv/cache for that).
set -euo pipefail
# shellcheck source=scripts/testenv/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_root setup.sh
t0="$(now_s)"
mkdir -p "$TESTENV_DIR/cache"

PACKAGES=(docker.io openssh-server openssh-client rsync docker-registry debootstrap
  apache2-utils busybox-static bash-static python3-fusepy python3 python3-venv procps)
IMAGE_PATH_ENV='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

# ---------------------------------------------------------------- packages
POLICY_MARK='# made by remote-container-hooks scripts/testenv/setup.sh'

ensure_packages() {
  local p missing=() created_policy=0
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
  done
  # a marked policy-rc.d that a killed run left behind goes even when nothing is to be installed
  if [ -f /usr/sbin/policy-rc.d ] && grep -qx "$POLICY_MARK" /usr/sbin/policy-rc.d; then rm -f /usr/sbin/policy-rc.d; fi
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  # keep the packages' init scripts from starting system services (a system
  # sshd on :22, a dockerd we did not start) while they are installed. Ours carries a mark: one
  # that a killed run left behind is still ours to remove, and removed even if this run is killed.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_MARK" >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  local rc=0
  {
    # an install a killed run left half done makes every later one refuse ("dpkg was interrupted");
    # the lock wait covers a machine's own unattended upgrades
    # (`dpkg --audit` takes no lock: dpkg itself runs only when there is something to finish)
    { [ -z "$(dpkg --audit 2>/dev/null)" ] || DEBIAN_FRONTEND=noninteractive dpkg --configure -a; } &&
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q "${missing[@]}"
  } >"$TESTENV_DIR/apt.log" 2>&1 || rc=$?
  if [ "$created_policy" = 1 ]; then
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
  if [ "$rc" -ne 0 ]; then
    tail -n 30 "$TESTENV_DIR/apt.log" >&2
    die "apt-get failed (rc $rc), full log: $TESTENV_DIR/apt.log"
  fi
  # Services that came with packages this run installed stay off after a reboot too: the system
  # sshd would listen on every interface, the registry on :5000 without a password (and take the
  # port registry.sh uses). Units of packages that were there before are left as they were.
  local unit
  for p in "${missing[@]}"; do
    case "$p" in
      openssh-server) unit=ssh.service ;;
      docker-registry) unit=docker-registry.service ;;
      *) continue ;;
    esac
    command -v systemctl >/dev/null && systemctl disable --quiet "$unit" >>"$TESTENV_DIR/apt.log" 2>&1 || true
  done
}

# ---------------------------------------------------------------- dockerd
ensure_dockerd() {
  docker_ok && return 0
  local pid i
  # a dockerd we started earlier that is still starting up: wait for it
  if [ -f "$TESTENV_DIR/dockerd.pid" ] && pid_is "$(cat "$TESTENV_DIR/dockerd.pid")" dockerd; then
    pid="$(cat "$TESTENV_DIR/dockerd.pid")"
    log "dockerd (pid $pid) is running but not answering yet; waiting"
  else
    # a pid file left by a dockerd that was killed makes the next one refuse to
    # start if its PID got reused ("pid file found, ensure docker is not running")
    if [ -f /var/run/docker.pid ] && ! pid_is "$(cat /var/run/docker.pid)" dockerd; then
      rm -f /var/run/docker.pid
    fi
    log "starting dockerd (log: $TESTENV_DIR/dockerd.log)"
    # setsid: its own session, so a Ctrl-C of the test run does not take it down.
    # --ip: ports the tests publish listen on loopback only, never on the network.
    # The proxy is a closed loopback port, for every registry outside 127.0.0.0/8: a pull of any
    # other name (a public registry's) fails at once, never leaves this machine, and leaves a
    # "proxyconnect" line in the log, which scripts/test.sh counts as a failure.
    setsid env HTTP_PROXY="$RCH_DEAD_PROXY" HTTPS_PROXY="$RCH_DEAD_PROXY" NO_PROXY=127.0.0.0/8,localhost \
      dockerd --ip 127.0.0.1 >"$TESTENV_DIR/dockerd.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$TESTENV_DIR/dockerd.pid"
  fi
  for ((i = 0; i < 120; i++)); do
    docker_ok && { log "dockerd up (pid $pid) after $(elapsed "$t0") s"; return 0; }
    if ! pid_running "$pid"; then
      tail -n 30 "$TESTENV_DIR/dockerd.log" >&2
      die "dockerd exited during startup, see $TESTENV_DIR/dockerd.log"
    fi
    sleep 0.5
  done
  tail -n 30 "$TESTENV_DIR/dockerd.log" >&2
  die "dockerd (pid $pid) did not answer 'docker info' within 60 s"
}

# ---------------------------------------------------------------- images
image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# import_rootfs_tar TAR IMAGE CMD -> docker import with PATH, CMD and the label;
# a previous build of IMAGE left untagged is removed
import_rootfs_tar() {
  local old new
  old="$(docker image inspect -f '{{.Id}}' "$2" 2>/dev/null || true)"
  new="$(docker import \
    --change "$IMAGE_PATH_ENV" \
    --change "CMD [\"$3\"]" \
    --change 'LABEL rch-test=1' \
    "$1" "$2")"
  if [ -n "$old" ] && [ "$old" != "$new" ] &&
    [ "$(docker image inspect -f '{{len .RepoTags}}' "$old" 2>/dev/null)" = 0 ]; then
    docker image rm "$old" >/dev/null 2>&1 || true
  fi
}

import_rootfs_dir() { # DIR IMAGE CMD
  tar --numeric-owner -C "$1" -cf - . | import_rootfs_tar - "$2" "$3"
}

pkg_file() { # PACKAGE REGEX -> first file of the installed package matching REGEX
  local f
  f="$(dpkg -L "$1" | grep -E "$2" | head -n 1)"
  if [ -z "$f" ] || [ ! -f "$f" ]; then die "package $1 has no file matching $2"; fi
  printf '%s' "$f"
}

# busybox_rootfs DIR -> busybox-static with all applets linked + bash-static
busybox_rootfs() {
  local R="$1" a
  mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,root,home,tmp,var/tmp,proc,sys,dev,run}
  chmod 1777 "$R/tmp" "$R/var/tmp"
  chmod 700 "$R/root"
  cp "$(pkg_file busybox-static '/bin/busybox$')" "$R/bin/busybox"
  cp "$(pkg_file bash-static '/bin/bash-static$')" "$R/bin/bash-static"
  ln -s bash-static "$R/bin/bash"
  # --list-full gives each applet's usual place (bin/sh, usr/bin/env, sbin/ifconfig, ...)
  for a in $("$R/bin/busybox" --list-full); do
    [ -e "$R/$a" ] || [ -L "$R/$a" ] || ln -s /bin/busybox "$R/$a"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$R/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$R/etc/group"
}

build_busybox_image() { # tiny|musl
  local flavor="$1" image="rch-test/$1:1" R
  R="$(mktemp -d "$TESTENV_DIR/cache/rootfs-$flavor.XXXXXX")"
  busybox_rootfs "$R"
  if [ "$flavor" = musl ]; then
    printf '%s\n' 'NAME="Alpine Linux"' 'ID=alpine' 'VERSION_ID=3.19.1' \
      'PRETTY_NAME="rch-test fake Alpine Linux v3.19 (busybox)"' >"$R/etc/os-release"
    echo 3.19.1 >"$R/etc/alpine-release"
  else
    printf '%s\n' 'NAME="rch-test tiny"' 'ID=busybox' \
      'PRETTY_NAME="rch-test tiny (busybox-static + bash-static)"' >"$R/etc/os-release"
  fi
  import_rootfs_dir "$R" "$image" /bin/sh
  rm -rf "$R"
  log "built $image"
}

# The Debian mirror apt uses (one-line .list or deb822 .sources): the one it uses for bookworm, else
# the first Debian archive it uses for another plain suite (trixie, stable, sid: any Debian mirror
# serves bookworm too), never a security, updates or backports suite, nor a mirror not named .../debian.
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then printf '%s' "$DEBIAN_MIRROR"; return; fi
  local uri
  uri="$(mirror_for_suites '^bookworm$' '.')"
  [ -n "$uri" ] || uri="$(mirror_for_suites '^[a-z]+$' '/debian/?$')"
  [ -n "$uri" ] && { printf '%s' "$uri"; return; }
  die "no Debian mirror in the apt sources: set DEBIAN_MIRROR to the mirror debootstrap should use for bookworm"
}

# mirror_for_suites SUITE_REGEX URI_REGEX -> the first URI of a deb line or stanza with a suite
# matching, the component main (a Debian archive's; another vendor's repository for that suite, a
# Docker one say, has its own) and a URI matching. debian.sources and sources.list come first.
mirror_for_suites() {
  local f uri
  for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    case "$f" in
      *.list) uri="$(awk -v want="$1" -v at="$2" '
      $1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        main = 0
        for (k = i + 2; k <= NF; k++) if ($k == "main") main = 1
        if ($(i + 1) ~ want && main && $i ~ at) { print $i; exit }
      }' "$f")" ;;
      *) uri="$(awk -v want="$1" -v at="$2" '
      BEGIN { RS = ""; FS = "\n" }
      {
        types = ""; uris = ""; suites = ""; comps = ""; enabled = "yes"
        for (n = 1; n <= NF; n++) {
          line = $n
          if (line ~ /^[ \t]*#/) continue
          if (match(line, /^[A-Za-z-]+:/)) {
            key = tolower(substr(line, 1, RLENGTH - 1)); val = substr(line, RLENGTH + 1)
            if (key == "types") types = val
            else if (key == "uris") uris = val
            else if (key == "suites") suites = val
            else if (key == "components") comps = val
            else if (key == "enabled") enabled = val
          }
        }
        if (enabled ~ /no/) next
        if ((" " types " ") !~ /[ \t]deb[ \t]/) next
        ok = 0
        ns = split(suites, s, /[ \t]+/)
        for (k = 1; k <= ns; k++) if (s[k] ~ want) ok = 1
        if (!ok) next
        if ((" " comps " ") !~ /[ \t]main[ \t]/) next
        nu = split(uris, u, /[ \t]+/)
        for (k = 1; k <= nu; k++) if (u[k] != "" && u[k] ~ at) { print u[k]; exit }
      }' "$f")" ;;
    esac
    [ -n "$uri" ] && { printf '%s' "$uri"; return; }
  done
}

build_glibc_image() {
  local cache="$TESTENV_DIR/cache/glibc-bookworm-rootfs.tar" R mirror t
  if [ ! -s "$cache" ]; then
    mirror="$(debian_mirror)"
    # apt's own proxy, for debootstrap's downloads too (it reads only the environment's)
    local proxy
    proxy="$(apt-config dump 2>/dev/null | sed -n 's/^Acquire::http::Proxy "\(.*\)";$/\1/p' | head -n 1)"
    if [ -n "$proxy" ] && [ -z "${http_proxy:-}" ]; then export http_proxy="$proxy"; fi
    # Outside the checkout: debootstrap mounts /proc in it for a while, and the format check, which
    # runs meanwhile, walks the tree and stops at /proc's unreadable entries.
    R="$(mktemp -d /var/tmp/rch-rootfs-glibc.XXXXXX)"
    t="$(now_s)"
    log "debootstrap --variant=minbase bookworm from $mirror (~30 s, log: $TESTENV_DIR/cache/debootstrap.log)"
    if ! debootstrap --variant=minbase --include=ca-certificates bookworm "$R" "$mirror" \
      >"$TESTENV_DIR/cache/debootstrap.log" 2>&1; then
      tail -n 30 "$TESTENV_DIR/cache/debootstrap.log" >&2
      die "debootstrap failed, see $TESTENV_DIR/cache/debootstrap.log (its partial tree is left in $R)"
    fi
    # trim: package caches, apt lists, docs, man pages, locales, logs
    rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/cache/apt/*.bin \
      "$R"/var/lib/apt/lists/* "$R"/usr/share/doc/* "$R"/usr/share/man/* \
      "$R"/usr/share/info/* "$R"/usr/share/locale/* "$R"/var/log/*.log \
      "$R"/var/log/apt/* "$R"/debootstrap
    tar --numeric-owner -C "$R" -cf "$cache.tmp" .
    mv -f "$cache.tmp" "$cache"
    rm -rf "$R"
    log "glibc rootfs cached in $cache after $(elapsed "$t") s"
  fi
  import_rootfs_tar "$cache" rch-test/glibc:1 /bin/bash
  # it must run the host's dynamically linked node (the runner mounts it into job containers)
  local node_bin out
  node_bin="$(command -v node || true)"
  if [ -n "$node_bin" ]; then
    node_bin="$(readlink -f "$node_bin")"
    if ! out="$(docker run --rm --pull never --network none -v "$node_bin:/__e/node20/bin/node:ro" \
      rch-test/glibc:1 /__e/node20/bin/node -e 'console.log(process.version)' 2>&1)"; then
      docker image rm rch-test/glibc:1 >/dev/null 2>&1 || true
      die "rch-test/glibc:1 cannot run the host's node ($node_bin): $out"
    fi
    log "built rch-test/glibc:1 (runs host node $out)"
  else
    log "built rch-test/glibc:1 (no host node to check it with)"
  fi
}

ensure_images() {
  local name
  for name in tiny musl glibc; do
    if [ "${RCH_REBUILD_IMAGES:-0}" != 1 ] && image_exists "rch-test/$name:1"; then
      continue
    fi
    case "$name" in
      tiny | musl) build_busybox_image "$name" ;;
      glibc) build_glibc_image ;;
    esac
  done
}

ensure_packages
# `setup.sh packages`: only the packages (scripts/test.sh starts the virtualenvs' installs after them).
[ "${1:-}" = packages ] && exit 0
ensure_dockerd
ensure_images
log "setup done in $(elapsed "$t0") s"
