#!/usr/bin/env bash
# Makes a fresh checkout usable: system packages (when missing), the virtualenv with
# the Python packages, and the collection resolvable as erlmcp.dr from this tree.
# Safe to run again: every step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { printf 'setup: %s\n' "$*" >&2; }

need_apt=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_apt+=(postgresql-15)
command -v psql >/dev/null || need_apt+=(postgresql-client-15)
command -v git >/dev/null || need_apt+=(git)
command -v shellcheck >/dev/null || need_apt+=(shellcheck)
# Redis for the lab (redis-server brings redis-tools: redis-cli, redis-check-rdb).
command -v redis-server >/dev/null || need_apt+=(redis-server)
# Knot DNS for the lab's authoritative servers (knotd, knotc).
command -v knotd >/dev/null || need_apt+=(knot)
# Headless Chromium renders report.html in the report tests.
command -v chromium >/dev/null || need_apt+=(chromium)
# Molecule scenarios and the execution environment (scripts/molecule.sh, scripts/ee.sh): podman with
# runc, and debootstrap for the locally bootstrapped Debian base image; without them CI fails (test.sh).
command -v podman >/dev/null || need_apt+=(podman fuse-overlayfs slirp4netns uidmap)
command -v runc >/dev/null || need_apt+=(runc)
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
# etcd (the shared run lock's three members) and pgBackRest (pg_backup, pg_restore), from Debian.
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v etcdctl >/dev/null || need_apt+=(etcd-client)
command -v pgbackrest >/dev/null || need_apt+=(pgbackrest)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing system packages: ${need_apt[*]} (install them, or run this as root)"; exit 1
  fi
  log "installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian's package starts a "main" cluster on 5432; the lab needs none of it.
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql/15/main ]; then
    pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
  fi
  # Likewise Debian's etcd service on 2379/2380: the tests start their own members.
  if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl stop etcd >/dev/null 2>&1 || true
    systemctl disable etcd >/dev/null 2>&1 || true
  fi
  # Likewise Debian's redis-server service on 6379: the lab runs its own servers.
  if [ -f /etc/redis/redis.conf ] && command -v redis-cli >/dev/null; then
    if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
      systemctl stop redis-server >/dev/null 2>&1 || true
      systemctl disable redis-server >/dev/null 2>&1 || true
    elif [ -f /run/redis/redis-server.pid ]; then
      kill "$(cat /run/redis/redis-server.pid)" 2>/dev/null || true
    fi
  fi
fi

python=${PYTHON:-python3}
"$python" - <<'PY' || { log "Python 3.11 or newer is needed (PYTHON=... to choose)"; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

# The newest ansible-core, for scripts/lint.sh's sanity-newest gate: its own virtualenv with the
# newest release series (its newest patch release) on the newest Python that series runs on as a
# controller. Raising NEWEST_CORE means raising requires_ansible's upper bound in meta/runtime.yml
# (lint.sh checks). Without such a Python the gate is skipped, with the reason setup records here.
# Not fatal: .venv (below) is all `make test` needs.
NEWEST_CORE=2.21                     # ansible-core release series
NEWEST_CORE_PYTHONS="3.14 3.13 3.12" # its controller Pythons, newest first (NEWEST_PYTHON=... to choose)
newest_venv=.build/venv-newest
newest_skip=.build/venv-newest.skip

real_python() {  # prints the real interpreter for version $1 (PATH, then pyenv), with venv and ensurepip
  local v=$1 c
  for c in "$(command -v "python$v" || true)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v"; do
    [ -x "$c" ] || continue
    "$c" -c "import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != tuple(map(int, '$v'.split('.'))))" \
      >/dev/null 2>&1 || continue
    "$c" -c 'import os, sys; print(os.path.realpath(sys.executable))'
    return 0
  done
  return 1
}

setup_newest() {
  local py="${NEWEST_PYTHON:-}" v want version
  if [ -z "$py" ]; then
    for v in $NEWEST_CORE_PYTHONS; do py=$(real_python "$v") && break; py=; done
  fi
  mkdir -p .build
  if [ -z "$py" ]; then
    rm -rf "$newest_venv"
    echo "no Python ${NEWEST_CORE_PYTHONS// //} found on PATH or under pyenv (NEWEST_PYTHON=... to choose): ansible-core $NEWEST_CORE not tested" > "$newest_skip"
    log "SKIP newest ansible-core: $(cat "$newest_skip")"
    return 0
  fi
  rm -f "$newest_skip"
  want="ansible-core~=$NEWEST_CORE.0 $py"
  if [ "$(cat "$newest_venv/.erlmcp-dr-installed" 2>/dev/null)" != "$want" ]; then
    log "creating $newest_venv (ansible-core $NEWEST_CORE, $py)"
    rm -rf "$newest_venv"
    if ! { "$py" -m venv "$newest_venv" \
           && "$newest_venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip \
           && "$newest_venv/bin/python" -m pip install -q --disable-pip-version-check "ansible-core~=$NEWEST_CORE.0"; }; then
      log "WARNING: could not install ansible-core $NEWEST_CORE into $newest_venv: the sanity-newest gate will fail"
      return 0
    fi
    echo "$want" > "$newest_venv/.erlmcp-dr-installed"
  fi
  version=$("$newest_venv/bin/python" -c 'from ansible.release import __version__; print(__version__)')
  log "newest ansible-core: $newest_venv (ansible-core $version, $("$newest_venv/bin/python" -V))"
}
# The two virtualenvs are independent: the newest one is made while .venv installs (each is mostly one busy core).
setup_newest &
newest_pid=$!

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$python" -m venv .venv
fi
# The package accepts ansible-core 2.19 up to the newest series (requires_ansible); the whole suite runs on
# the oldest, 2.19, and the newest series gets its own virtualenv (setup_newest, made meanwhile; sanity).
FLOOR_CORE=2.19
stamp=.venv/.erlmcp-dr-installed
# setuptools new enough for pyproject.toml's license expression: scripts/ee.sh builds the package's wheel with it
# (--no-build-isolation: no second install of setuptools and ansible-core into a throwaway environment per build).
want="$(sha256sum pyproject.toml | cut -d' ' -f1) ansible-core~=$FLOOR_CORE.0 setuptools>=77"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python packages into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]" "ansible-core~=$FLOOR_CORE.0" \
    "setuptools>=77"
  echo "$want" > "$stamp"
fi

wait "$newest_pid"

# The repository root is the collection; Ansible finds it through this link.
mkdir -p .collections/ansible_collections/erlmcp
ln -sfn ../../.. .collections/ansible_collections/erlmcp/dr
[ -f .collections/ansible_collections/erlmcp/dr/galaxy.yml ] || { log "collection link is broken"; exit 1; }
log "ready: $root/.venv, collection erlmcp.dr linked under .collections/"
