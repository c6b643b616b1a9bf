#!/usr/bin/env bash
# The whole test suite: lint and sanity gates, runbook pages in step with the playbooks,
# then pytest (unit and integration tests on real PostgreSQL labs), then every role's Molecule
# scenario. Assumes setup.sh ran.
#
# In CI (CI=true, as .ci/run and the usual CI services set it) nothing may be skipped for want of a
# tool: a machine nobody set up by hand must not pass without Molecule or the execution environment
# (tests/integration/test_ee.py reads CI the same way). On a developer's machine a missing tool is a
# SKIP line, said out loud.
set -uo pipefail

in_ci() {
  case "${CI:-}" in [Tt]rue | TRUE | 1 | [Yy]es) return 0 ;; *) return 1 ;; esac
}

# The tools Molecule's scenarios and the execution environment run on (scripts/ee.sh, scripts/molecule.sh).
missing_container_tools() {
  local tool missing=()
  for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  printf '%s' "${missing[*]}"
}

# Each role is tested in its own scenario: a role without molecule/<role>/molecule.yml is a failure.
roles_without_scenario() {
  local role missing=()
  for role in roles/*/; do
    role=${role%/}; role=${role#roles/}
    [ -f "molecule/$role/molecule.yml" ] || missing+=("$role")
  done
  printf '%s' "${missing[*]}"
}

failed=()
step() {
  local name=$1; shift
  printf '\n=== %s\n' "$name"
  if "$@"; then printf '=== %s: ok\n' "$name"; else printf '=== %s: FAILED\n' "$name"; failed+=("$name"); fi
}

# Molecule needs podman and a locally bootstrapped image (the first build takes minutes): run where they
# are; where they are not, a failure in CI and a SKIP line elsewhere.
molecule_step() {
  local missing unscenarioed
  unscenarioed=$(roles_without_scenario)
  if [ -n "$unscenarioed" ]; then
    printf '\n=== molecule: FAILED: roles without a scenario (molecule/<role>/molecule.yml): %s\n' "$unscenarioed"
    failed+=("molecule scenarios")
  fi
  missing=$(missing_container_tools)
  if [ -z "$missing" ]; then
    step "molecule (every role, in podman containers)" bash scripts/molecule.sh
  elif in_ci; then
    printf '\n=== molecule: FAILED: CI=true and %s not installed (scripts/setup.sh installs them, as root)\n' "$missing"
    failed+=("molecule")
  else
    printf '\n=== molecule: SKIP: %s not installed (scripts/setup.sh installs them, as root; CI=true fails)\n' "$missing"
  fi
}

# A gate started in the background: waits for it, prints its output, returns its status.
wait_for_background() {  # $1: its pid, $2: its log
  local rc=0
  wait "$1" || rc=$?
  cat "$2"
  rm -f "$2"
  return "$rc"
}

main() {
  cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
  export PATH="$PWD/.venv/bin:$PATH"
  export ANSIBLE_COLLECTIONS_PATH="$PWD/.collections"
  export ANSIBLE_CONFIG="$PWD/ansible.cfg"
  # Bytecode caches for everything the suite runs. Where PYTHONDONTWRITEBYTECODE is set (the shells of this machine
  # kind set it), every `runbook`, guard and lab process would compile the package and the collection's plugins
  # again: about a third of a CLI start's CPU, thousands of times, on a machine whose cores the suite keeps busy.
  # git, galaxy.yml and MANIFEST.in ignore the caches, so nothing built or shipped carries them.
  unset PYTHONDONTWRITEBYTECODE
  python -m compileall -q -j 0 src plugins tests benchmarks >/dev/null || true

  # Lint and sanity (mostly one busy core) and Molecule (podman containers; on a new machine mostly the download
  # and bootstrap of its images) run beside pytest. The machine is busy throughout, but none of them waits for the
  # others, and each of their idle moments is pytest's.
  local lint_log lint_pid molecule_log molecule_pid
  lint_log=$(mktemp)
  bash scripts/lint.sh >"$lint_log" 2>&1 &
  lint_pid=$!
  molecule_log=$(mktemp)
  (molecule_step; [ ${#failed[@]} -eq 0 ]) >"$molecule_log" 2>&1 &
  molecule_pid=$!
  step "runbook pages match the playbooks" runbook docs --check
  # worksteal: an idle worker takes queued tests from a busy one, so the few long lab tests do not end the run alone.
  # Three workers: four were tried in round 10 and were no faster on two cores (pytest 1537 s against 1466 s), and
  # the heavier load made a kill-timing test flaky.
  step "pytest" python -m pytest -q -p no:cacheprovider -n "${ERLMCP_DR_TEST_WORKERS:-3}" --dist worksteal --durations=25 tests
  step "lint and sanity (ran beside pytest; its output follows)" wait_for_background "$lint_pid" "$lint_log"
  step "molecule (ran beside pytest; its output follows)" wait_for_background "$molecule_pid" "$molecule_log"

  if [ ${#failed[@]} -gt 0 ]; then
    printf '\nFAILED: %s\n' "${failed[*]}"
    exit 1
  fi
  printf '\nall checks passed\n'
}

# Sourced (tests/unit/test_ci_strict.py), it only defines the functions above.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
