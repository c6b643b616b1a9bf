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
fi

python=${PYTHON:-python3}
"$python" - <<'PY' || { log "Python 3.11 or newer is needed (PYTHON=... to choose)"; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$python" -m venv .venv
fi
stamp=.venv/.erlmcp-dr-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing Python packages into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
  echo "$want" > "$stamp"
fi

# The repository root is the collection; Ansible finds it through this link.
mkdir -p .collections/ansible_collections/erlmcp
ln -sfn ../../.. .collections/ansible_collections/erlmcp/dr
[ -f .collections/ansible_collections/erlmcp/dr/galaxy.yml ] || { log "collection link is broken"; exit 1; }
log "ready: $root/.venv, collection erlmcp.dr linked under .collections/"
