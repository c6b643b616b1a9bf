#!/usr/bin/env bash
# `make molecule`: every role's Molecule scenario (molecule/<role>/), against PostgreSQL 15 from
# Debian running in podman containers. Steps:
#  1. podman, containers.conf and the debootstrap base image: scripts/ee.sh base;
#  2. the node image localhost/erlmcp-dr/pg15:bookworm (base + postgresql-15 + psycopg in /opt/venv),
#     built once and kept (podman rmi it to rebuild);
#  3. the containers.podman collection (its connection plugin runs the roles' tasks inside the containers),
#     taken from PyPI's `ansible` package (the release series for this ansible-core) and kept under
#     .build/molecule/collections;
#  4. `molecule test -s <scenario>` for each scenario (or those named: scripts/molecule.sh pg_assess),
#     printing each one's time and the total.
# Assumes scripts/setup.sh ran (.venv with molecule).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
log() { printf 'molecule: %s\n' "$*" >&2; }
now() { date +%s; }
t0=$(now)

NODE_IMAGE=localhost/erlmcp-dr/pg15:bookworm
ANSIBLE_PACKAGE=${ANSIBLE_PACKAGE:-ansible>=12,<13}  # PyPI's ansible for ansible-core 2.19
build=$root/.build/molecule
export PATH=$root/.venv/bin:$PATH
export CONTAINERS_CONF=$root/.build/containers.conf

bash scripts/ee.sh base

node_image() {
  podman image exists "$NODE_IMAGE" && return 0
  mkdir -p "$build/node"
  cp requirements.txt "$build/node/requirements.txt"
  cat > "$build/node/Containerfile" <<'EOF'
FROM localhost/erlmcp-dr/debian-base:bookworm
# PostgreSQL 15 from Debian, without the cluster its package creates (the scenarios make their own)
RUN mkdir -p /etc/postgresql-common && echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf \
 && pkgmgr install postgresql-15 && pkgmgr clean
COPY requirements.txt /tmp/requirements.txt
RUN pip install --no-cache-dir -r /tmp/requirements.txt && rm /tmp/requirements.txt
CMD ["sleep", "infinity"]
EOF
  log "building $NODE_IMAGE"
  podman build --quiet --network host --tag "$NODE_IMAGE" "$build/node" >"$build/node/build.log" 2>&1 \
    || { tail -30 "$build/node/build.log" >&2; log "node image build failed"; exit 1; }
}

podman_collection() {
  local dest=$build/collections/ansible_collections/containers/podman
  [ -f "$dest/plugins/connection/podman.py" ] && return 0
  mkdir -p "$build/wheel"
  log "taking containers.podman from PyPI's $ANSIBLE_PACKAGE"
  python -m pip download --quiet --no-deps --dest "$build/wheel" "$ANSIBLE_PACKAGE"
  python - "$build/wheel" "$build/collections" <<'PY'
import sys, zipfile
from pathlib import Path
wheel = sorted(Path(sys.argv[1]).glob("ansible-*.whl"))[-1]
with zipfile.ZipFile(wheel) as z:
    z.extractall(sys.argv[2], [m for m in z.namelist() if m.startswith("ansible_collections/containers/podman/")])
PY
}

tb=$(now); node_image; podman_collection; log "images and collections ready in $(( $(now) - tb )) s"

export ANSIBLE_COLLECTIONS_PATH=$root/.collections:$build/collections
unset ANSIBLE_CONFIG  # molecule writes its own ansible.cfg per scenario
export NO_COLOR=1 ANSIBLE_NOCOLOR=1 PY_COLORS=0
# container names carry this checkout's hash: two checkouts on one machine never replace each other's
ERLMCP_DR_MOL_PREFIX=erlmcp-dr-mol-$(printf '%s' "$root" | sha256sum | cut -c1-8)
export ERLMCP_DR_MOL_PREFIX
scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
  for f in molecule/*/molecule.yml; do d=${f%/molecule.yml}; scenarios+=("${d#molecule/}"); done
fi
failed=()
for s in "${scenarios[@]}"; do
  ts=$(now)
  if molecule test -s "$s" >"$build/$s.log" 2>&1; then
    log "$s: ok in $(( $(now) - ts )) s"
  else
    log "$s: FAILED in $(( $(now) - ts )) s (log: $build/$s.log)"; tail -40 "$build/$s.log" >&2; failed+=("$s")
  fi
done
log "make molecule took $(( $(now) - t0 )) s"
[ ${#failed[@]} -eq 0 ] || { log "failed: ${failed[*]}"; exit 1; }
