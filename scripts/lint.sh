#!/usr/bin/env bash
# The quality gates, offline: ruff, shellcheck, ansible-lint (production profile), and
# ansible-test sanity twice: on the project's ansible-core (2.19, .venv) and on the newest
# ansible-core series on the newest Python (.build/venv-newest; compile and import on that Python only; skipped,
# with one line saying why, where no such Python exists).
#
#   scripts/lint.sh                 all gates
#   scripts/lint.sh ruff sanity     only these (names: ruff, shellcheck, ansible-lint, changelog, sanity,
#                                   sanity-newest)
#
# Assumes scripts/setup.sh has run (.venv, .build/venv-newest and the .collections link). Runs every gate asked
# for, prints a summary, and exits 1 if any gate found anything (2 if it cannot start).
# Needs no internet beyond PyPI: ansible-test's pip bootstrap uses scripts/sanity_getpip.py
# instead of downloading get-pip.py, and ansible-lint runs with `offline: true`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bin=$root/.venv/bin

die() { printf 'lint: %s\n' "$*" >&2; exit 2; }
for tool in ansible-test ansible-lint ruff; do
  [ -x "$bin/$tool" ] || die "$bin/$tool is missing: run scripts/setup.sh first"
done
[ -f .collections/ansible_collections/erlmcp/dr/galaxy.yml ] \
  || die "collection link .collections/ansible_collections/erlmcp/dr is missing: run scripts/setup.sh first"

export PATH="$bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$root/.collections"
export ANSIBLE_CONFIG="$root/ansible.cfg"
export NO_COLOR=1 PY_COLORS=0 ANSIBLE_NOCOLOR=1

# ---------------------------------------------------------------- ruff
gate_ruff() {
  local dirs=() d rc=0
  for d in src tests benchmarks plugins scripts; do [ -d "$d" ] && dirs+=("$d"); done
  [ ${#dirs[@]} -gt 0 ] || { echo "nothing to check"; return 0; }
  ruff check --no-cache "${dirs[@]}" || rc=1
  # Modules and module_utils run on the managed hosts: ansible-core 2.19 supports Python 3.8+
  # there. ruff reports syntax newer than 3.8 (match, parenthesized context managers, except*,
  # ...) whether or not a 3.8 interpreter is around for ansible-test's compile test.
  # E9 selects nothing else.
  dirs=()
  for d in plugins/modules plugins/module_utils; do [ -d "$d" ] && dirs+=("$d"); done
  if [ ${#dirs[@]} -gt 0 ]; then
    echo "ruff: syntax of ${dirs[*]} for Python 3.8"
    ruff check --no-cache --target-version py38 --select E9 --output-format concise "${dirs[@]}" || rc=1
  fi
  return $rc
}

# ---------------------------------------------------------------- shellcheck
gate_shellcheck() {
  local files=()
  mapfile -t files < <(git ls-files -co --exclude-standard -- '*.sh' .ci/run)
  [ ${#files[@]} -gt 0 ] || { echo "no shell scripts"; return 0; }
  if ! command -v shellcheck >/dev/null; then
    echo "shellcheck: WARNING: not installed (Debian: apt-get install shellcheck): ${#files[@]} scripts not checked"
    return 0
  fi
  shellcheck "${files[@]}"
}

# ---------------------------------------------------------------- ansible-lint
gate_ansible_lint() {
  # Settings (profile production, offline, exclusions, extra rules) are in .ansible-lint.
  ansible-lint --nocolor --offline
}

# ---------------------------------------------------------------- changelog
gate_changelog() {
  # antsibull-changelog: the fragments of the next release (changelogs/fragments/) and the released history
  # (changelogs/changelog.yaml), which `antsibull-changelog release` turns into CHANGELOG.md.
  [ -x "$bin/antsibull-changelog" ] || { echo "$bin/antsibull-changelog is missing: run scripts/setup.sh"; return 1; }
  antsibull-changelog lint && antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
}

# ---------------------------------------------------------------- ansible-test sanity
build_root=$root/.build
collection_dir=$build_root/ansible_collections/erlmcp/dr

# Files of the collection as it ships: what git tracks or would track (`git ls-files -co
# --exclude-standard`), less galaxy.yml's build_ignore (the src/ package, tests/, scripts/... are
# not collection content: ruff and pytest cover them), but keeping tests/sanity/ and
# tests/config.yml, which ansible-test reads.
collection_files() {
  git ls-files -z -co --exclude-standard | "$bin/python" -c '
import fnmatch, os, sys, yaml
with open("galaxy.yml") as f:
    ignore = (yaml.safe_load(f) or {}).get("build_ignore") or []
keep_always = ("tests/sanity/", "tests/config.yml")
def ignored(path):
    if path.startswith(keep_always):
        return False
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(os.path.basename(p), pat)
               for p in prefixes for pat in ignore)
for path in sys.stdin.read().split("\0"):
    if path and os.path.lexists(path) and not ignored(path):
        sys.stdout.write(path + "\0")
'
}

# ansible-test bootstraps pip in each virtualenv it makes with get-pip-<version>.py, downloaded
# from ci-files.testing.ansible.com (unreachable) unless ~/.ansible/test/cache/get_pip_<version>.py
# exists. Put the offline stand-in there; keep a genuine get-pip.py someone cached themselves.
seed_get_pip() {  # $1: the python of the ansible-test in use (each release pins its own pip)
  local version cache
  version=$("$1" -c '
from types import SimpleNamespace
from ansible_test._internal.python_requirements import get_venv_packages
print(get_venv_packages(SimpleNamespace(version="3"))["pip"])')
  cache="$HOME/.ansible/test/cache/get_pip_${version//./_}.py"
  mkdir -p "$(dirname "$cache")"
  if [ ! -f "$cache" ] || grep -q 'MARKER: erlmcp.dr offline get-pip stand-in' "$cache"; then
    cp scripts/sanity_getpip.py "$cache"
  fi
}

# Interpreters for the multi-version tests (compile, import): every version the ansible-test in
# use supports for target code (2.19: 3.8-3.13, 2.21: 3.9-3.14) that this machine has, found on
# PATH or under pyenv. ansible-test needs each as a real `pythonX.Y` first on PATH (a pyenv shim
# for an inactive version fails), so they are linked into .build/bin. Versions not found are
# listed, not tested.
target_python_args=()
found_pythons=()
missing_pythons=()
controller_version=
find_python() {  # $1 version, $2 the controller's python: prints a usable real interpreter's path
  local v=$1 c
  local candidates=()
  [ "$v" = "$controller_version" ] && candidates+=("$("$2" -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')")
  candidates+=("${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v")
  c=$(command -v "python$v" || true); [ -n "$c" ] && candidates+=("$c")
  for c in "${candidates[@]}"; do
    [ -x "$c" ] || continue
    "$c" -c "import sys, venv, ensurepip; sys.exit(sys.version_info[:2] != tuple(map(int, '$v'.split('.'))))" \
      >/dev/null 2>&1 || continue
    "$c" -c 'import os, sys; print(os.path.realpath(sys.executable))'
    return 0
  done
  return 1
}
collect_pythons() {  # $1: the python of the ansible-test in use (its controller); $2: all (default) | controller
  local v p versions
  target_python_args=() found_pythons=() missing_pythons=()
  controller_version=$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  versions=$("$1" -c 'from ansible_test._internal.constants import SUPPORTED_PYTHON_VERSIONS as v; print(" ".join(v))')
  [ "${2:-all}" = controller ] && versions=$controller_version
  mkdir -p "$build_root/bin"
  for v in $versions; do
    if p=$(find_python "$v" "$1"); then
      ln -sfn "$p" "$build_root/bin/python$v"
      target_python_args+=(--target-python "$v@$build_root/bin/python$v")
      found_pythons+=("$v")
    else
      missing_pythons+=("$v")
    fi
  done
}

# meta/runtime.yml's requires_ansible states what is tested: a gate's ansible-core outside it means
# one of the two changed without the other.
check_requires_ansible() {  # $1: the python of the ansible-core in use
  "$1" - <<'PY'
import sys
import yaml
from packaging.specifiers import SpecifierSet
from ansible.release import __version__
with open("meta/runtime.yml") as f:
    wanted = str((yaml.safe_load(f) or {}).get("requires_ansible") or "")
if __version__ not in SpecifierSet(wanted):
    sys.exit(f"sanity: ansible-core {__version__} is outside meta/runtime.yml requires_ansible {wanted!r}: "
             "raise the bound there, or NEWEST_CORE in scripts/setup.sh, so they agree")
print(f"sanity: ansible-core {__version__}, within requires_ansible {wanted!r}")
PY
}

sanity_with() {  # $1: bin folder of a virtualenv holding ansible-core (its ansible-test runs the tests); $2: which
  # Pythons the multi-version tests (compile, import) run on: all (default) or controller
  # (called from an `if`, where errexit is off: every step checks its own status)
  local vbin=$1 pythons=${2:-all}
  check_requires_ansible "$vbin/python" || return 1
  rm -rf "${build_root:?}/ansible_collections" "${build_root:?}/bin" || return 1
  mkdir -p "$collection_dir" || return 1
  collection_files | tar --null -T - -cf - | tar -xf - -C "$collection_dir" || return 1
  # ansible-test lists content with git from the nearest .git upwards; without its own
  # repository the copy would be seen as part of this checkout, where .build/ is ignored.
  git -C "$collection_dir" -c init.defaultBranch=main init -q && git -C "$collection_dir" add -A || return 1
  seed_get_pip "$vbin/python" || return 1
  collect_pythons "$vbin/python" "$pythons" || return 1
  [ ${#found_pythons[@]} -gt 0 ] || { echo "sanity: no usable Python interpreter found"; return 1; }
  if [ ${#missing_pythons[@]} -gt 0 ]; then
    echo "sanity: WARNING: no interpreter for Python ${missing_pythons[*]}: compile/import not run on them"
  fi
  echo "sanity: controller Python $controller_version; compile/import on Python ${found_pythons[*]}"
  # Sanity venvs (pinned tools from ansible_test/_data/requirements/sanity.*.txt, from PyPI) are
  # cached in ~/.ansible/test/venv, so only the first run on a machine installs them.
  # No --requirements/--venv: the controller is the virtualenv itself, which has all ansible-test needs.
  (
    cd "$collection_dir"
    env -u ANSIBLE_COLLECTIONS_PATH -u ANSIBLE_CONFIG PATH="$build_root/bin:$vbin:$PATH" \
      "$vbin/ansible-test" sanity --color no \
        --controller "origin:python=$controller_version" \
        "${target_python_args[@]}"
  )
}

# The project's ansible-core (pyproject.toml's pin, in .venv).
gate_sanity() {
  sanity_with "$bin"
}

# The newest ansible-core release series on the newest Python it runs on, in the virtualenv
# scripts/setup.sh makes (.build/venv-newest), or a SKIP line with setup's reason when this machine
# has no such Python.
newest_venv=$build_root/venv-newest
gate_sanity_newest() {
  if [ -x "$newest_venv/bin/ansible-test" ]; then
    # Every test, but compile and import on the controller's Python only: the floor's gate (sanity) runs them on
    # every Python this machine has, with the same code; what a newer ansible-core can change (its pylint checkers,
    # validate-modules, ansible-doc, its module_utils under import) shows on one Python. Each Python costs an import
    # run in a virtualenv of its own, on a machine the test suite keeps busy meanwhile (scripts/test.sh).
    sanity_with "$newest_venv/bin" controller
  elif [ -f "$newest_venv.skip" ]; then
    echo "sanity-newest: SKIP: $(cat "$newest_venv.skip")"
    skipped=1
  else
    echo "sanity-newest: $newest_venv/bin/ansible-test is missing: run scripts/setup.sh first"
    return 1
  fi
}

# ---------------------------------------------------------------- run
gates=("$@")
[ ${#gates[@]} -gt 0 ] || gates=(ruff shellcheck ansible-lint changelog sanity sanity-newest)
failed=()
summary=()
t_all=$SECONDS
for g in "${gates[@]}"; do
  case $g in
    ruff) fn=gate_ruff ;;
    shellcheck) fn=gate_shellcheck ;;
    ansible-lint) fn=gate_ansible_lint ;;
    changelog) fn=gate_changelog ;;
    sanity) fn=gate_sanity ;;
    sanity-newest) fn=gate_sanity_newest ;;
    *) die "unknown gate '$g' (ruff, shellcheck, ansible-lint, changelog, sanity, sanity-newest)" ;;
  esac
  printf '\n===== %s\n' "$g"
  t=$SECONDS
  skipped=0  # a gate sets it when it cannot run here and said why
  if "$fn"; then status=ok; else status=FAILED; failed+=("$g"); fi
  [ "$status/$skipped" = ok/1 ] && status=SKIP
  summary+=("$(printf '%-13s %-6s %4ss' "$g" "$status" $((SECONDS - t)))")
done
printf '\n===== summary (%ss)\n' $((SECONDS - t_all))
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'lint: failed: %s\n' "${failed[*]}" >&2
  exit 1
fi
