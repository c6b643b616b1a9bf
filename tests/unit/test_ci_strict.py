"""CI never passes by skipping: with CI=true a missing podman/runc/debootstrap fails the Molecule step of
scripts/test.sh and the execution-environment test, where a developer's machine prints a SKIP line.

scripts/test.sh is sourced (it then only defines its functions) and its Molecule step run on a PATH
without the container tools, or with stand-ins for them; nothing here starts Molecule or podman.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BASH = "/bin/bash"


def molecule_step(cwd: Path, path: str, ci: str | None) -> subprocess.CompletedProcess:
    # `step` stands in for running scripts/molecule.sh: it only says it would have.
    script = (f'source {REPO / "scripts" / "test.sh"}; step() {{ echo "RAN $1"; }}; '
              f'PATH={path}; molecule_step; echo "failed=${{failed[*]}}"')
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([BASH, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
                          check=True)


def fake_tools(tmp_path: Path, names: tuple[str, ...]) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in names:
        (bin_dir / name).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / name).chmod(0o755)
    return str(bin_dir)


def test_ci_fails_the_molecule_step_when_podman_is_missing(tmp_path):
    done = molecule_step(REPO, fake_tools(tmp_path, ("runc", "debootstrap")), ci="true")
    assert "=== molecule: FAILED: CI=true and podman not installed" in done.stdout
    assert "failed=molecule" in done.stdout
    assert "RAN" not in done.stdout


def test_outside_ci_a_missing_tool_is_a_skip_line_not_a_failure(tmp_path):
    done = molecule_step(REPO, fake_tools(tmp_path, ()), ci=None)
    assert "=== molecule: SKIP: podman runc debootstrap not installed" in done.stdout
    assert done.stdout.rstrip().endswith("failed=")


def test_with_the_tools_the_molecule_step_runs_in_and_out_of_ci(tmp_path):
    path = fake_tools(tmp_path, ("podman", "runc", "debootstrap"))
    for ci in ("true", None):
        done = molecule_step(REPO, path, ci=ci)
        assert "RAN molecule (every role, in podman containers)" in done.stdout
        assert done.stdout.rstrip().endswith("failed=")


def test_a_role_without_a_molecule_scenario_fails(tmp_path):
    (tmp_path / "roles" / "pg_assess").mkdir(parents=True)
    (tmp_path / "roles" / "pg_new").mkdir(parents=True)
    (tmp_path / "molecule" / "pg_assess").mkdir(parents=True)
    (tmp_path / "molecule" / "pg_assess" / "molecule.yml").write_text("---\n")
    done = molecule_step(tmp_path, fake_tools(tmp_path, ("podman", "runc", "debootstrap")), ci=None)
    assert "roles without a scenario (molecule/<role>/molecule.yml): pg_new" in done.stdout
    assert "failed=molecule scenarios" in done.stdout


def test_every_role_of_this_checkout_has_a_scenario():
    roles = {path.name for path in (REPO / "roles").iterdir() if path.is_dir()}
    assert roles and all((REPO / "molecule" / role / "molecule.yml").is_file() for role in roles), roles


@pytest.mark.parametrize("ci, outcome", [("true", "failed"), (None, "skipped")])
def test_the_ee_test_fails_in_ci_and_skips_elsewhere_without_podman(tmp_path, ci, outcome):
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env["PATH"] = fake_tools(tmp_path, ())  # no podman, runc nor debootstrap
    if ci is not None:
        env["CI"] = ci
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "-rs",
         "tests/integration/test_ee.py::test_make_ee_builds_the_image_and_runs_a_plan_inside_it"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert f"1 {outcome}" in done.stdout, done.stdout[-3000:]
    if outcome == "failed":
        assert "CI=true and podman runc debootstrap not installed" in done.stdout
