#!/usr/bin/env bash
# The Python tools of the offline Terraform checks (test/integration/terraform.test.ts):
#
#   bash scripts/testenv/tf-venv.sh ensure   # idempotent; ~0 s when installed, ~30 s the first time
#
# Two virtualenvs, because checkov's own fork of the HCL parser (bc-python-hcl2) installs a
# module named `hcl2` too:
#   .testenv/tf-venv/checkov   CHECKOV_SPEC   checkov, run as `checkov -d terraform --skip-download`
#   .testenv/tf-venv/tools     TOOLS_SPEC     python-hcl2 (the parser of scripts/terraform-check.py)
#                                             and the AWS CLI (v1) the pool members' setup script
#                                             publishes its host key with, run against moto
#   .testenv/tf-venv/env       CHECKOV=<bin> HCL2_PYTHON=<python> AWS_CLI=<bin> and the versions
#   .testenv/tf-venv/pip.log   pip's output    .testenv/tf-venv/freeze-*.txt  what was installed
# pip reads this machine's own configuration (index, proxy, certificates): nothing is overridden,
# and every package is held to scripts/testenv/tf-constraints.txt. A venv is reinstalled when its
# spec or the constraints change.
# Env: RCH_PYTHON (default python3). Needs no root and starts nothing.
set -euo pipefail
# shellcheck source=scripts/testenv/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Pinned: the versions the checks were verified with. Bump deliberately and re-run the test:
# a new checkov release adds checks, a new python-hcl2 may change its parse tree.
CHECKOV_VERSION=3.3.30
HCL2_VERSION=8.1.4
AWSCLI_VERSION=1.46.3
CHECKOV_SPEC="checkov==$CHECKOV_VERSION"
TOOLS_SPEC="python-hcl2==$HCL2_VERSION awscli==$AWSCLI_VERSION"
PYTHON="${RCH_PYTHON:-python3}"
CONSTRAINTS="$RCH_ROOT/scripts/testenv/tf-constraints.txt"
D="$TESTENV_DIR/tf-venv"

stamp_of() { printf '%s %s\n' "$1" "$(sha256sum "$CONSTRAINTS" | cut -c1-16)"; }

venv_ok() { # DIR SPEC PROGRAM
  [ -x "$1/bin/python" ] && [ -x "$1/bin/$3" ] &&
    [ "$(cat "$1/.rch-installed" 2>/dev/null)" = "$(stamp_of "$2")" ] &&
    "$1/bin/python" -c 'import sys' 2>/dev/null # the base python may have moved
}

ensure_venv() { # DIR SPEC PROGRAM NAME
  local dir="$1" spec="$2" program="$3" name="$4" t0 rc=0
  venv_ok "$dir" "$spec" "$program" && return 0
  t0="$(now_s)"
  command -v "$PYTHON" >/dev/null || die "tf-venv: $PYTHON not found (set RCH_PYTHON)"
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir" >>"$D/pip.log" 2>&1 || {
    tail -n 20 "$D/pip.log" >&2
    die "tf-venv: '$PYTHON -m venv' failed (Debian: apt-get install python3-venv)"
  }
  log "tf-venv: installing $spec into $dir"
  # shellcheck disable=SC2086 # a spec may name several packages
  "$dir/bin/python" -m pip install --disable-pip-version-check --no-input -q -c "$CONSTRAINTS" $spec \
    >>"$D/pip.log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -n 30 "$D/pip.log" >&2
    if grep -Eq 'No matching distribution|Could not find a version|NewConnectionError|Failed to establish|Temporary failure in name resolution|Network is unreachable|ProxyError|SSLError' "$D/pip.log"; then
      die "tf-venv: pip could not get $spec from a package index: this machine's pip configuration ('$dir/bin/python -m pip config list') names no index it can reach. Full log: $D/pip.log"
    fi
    die "tf-venv: pip install $spec failed (rc $rc), full log: $D/pip.log"
  fi
  [ -x "$dir/bin/$program" ] || die "tf-venv: $dir/bin/$program missing after pip install"
  "$dir/bin/python" -m pip freeze --disable-pip-version-check >"$D/freeze-$name.txt" 2>/dev/null || true
  stamp_of "$spec" >"$dir/.rch-installed"
  log "tf-venv: installed $spec ($(elapsed "$t0") s)"
}

ensure() {
  mkdir -p "$D"
  ensure_venv "$D/checkov" "$CHECKOV_SPEC" checkov checkov
  ensure_venv "$D/tools" "$TOOLS_SPEC" aws tools
  rm -rf "$D/hcl2" "$D/freeze-hcl2.txt" # the tools venv's former name
  "$D/tools/bin/python" -c 'import hcl2, lark' || die "tf-venv: python-hcl2 does not import in $D/tools"
  write_env "$D/env" \
    "CHECKOV=$D/checkov/bin/checkov" \
    "CHECKOV_VERSION=$CHECKOV_VERSION" \
    "HCL2_PYTHON=$D/tools/bin/python" \
    "HCL2_VERSION=$HCL2_VERSION" \
    "AWS_CLI=$D/tools/bin/aws" \
    "AWSCLI_VERSION=$AWSCLI_VERSION"
}

case "${1:-}" in
  ensure) ensure ;;
  *) echo "usage: $0 ensure" >&2; exit 2 ;;
esac
