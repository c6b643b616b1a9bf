#!/usr/bin/env bash
# The whole test suite: lint and sanity gates, runbook pages in step with the playbooks,
# then pytest (unit and integration tests on real PostgreSQL labs). Assumes setup.sh ran.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$PWD/.collections"
export ANSIBLE_CONFIG="$PWD/ansible.cfg"

failed=()
step() {
  local name=$1; shift
  printf '\n=== %s\n' "$name"
  if "$@"; then printf '=== %s: ok\n' "$name"; else printf '=== %s: FAILED\n' "$name"; failed+=("$name"); fi
}

step "lint and sanity" bash scripts/lint.sh
step "runbook pages match the playbooks" runbook docs --check
step "pytest" python -m pytest -q -p no:cacheprovider tests
# Molecule needs podman and a locally bootstrapped image (`make molecule` installs what is missing, and
# the first build takes minutes): run where they are, say so where they are not.
if command -v podman >/dev/null && command -v debootstrap >/dev/null; then
  step "molecule (every role, in podman containers)" bash scripts/molecule.sh
else
  printf '\n=== molecule: SKIP: podman or debootstrap is not installed (make molecule installs them)\n'
fi

if [ ${#failed[@]} -gt 0 ]; then
  printf '\nFAILED: %s\n' "${failed[*]}"
  exit 1
fi
printf '\nall checks passed\n'
