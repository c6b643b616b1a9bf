"""The run lock's folder comes from the inventory (or ERLMCP_DR_LOCK_DIR), never from an extra var (issue 16 row
11): `ansible-playbook ... -e dr_lock_dir=<elsewhere>` used to move the lock away from the one every other run
takes, and the value was templated where the lock is used. Now the first task refuses it, naming the places to set
it, before any lock, read or change - and a template in it is never rendered. On the real lab."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import lab_inventory
from runbook_helpers import CLI_HANG_GUARD, VENV_BIN, playbook_env

from erlmcp_dr import paths
from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration


def _switchover(cfg: lab.LabConfig, *extra: str) -> subprocess.CompletedProcess:
    playbook = str(paths.collection_root() / "playbooks" / "database_switchover.yml")
    argv = [str(VENV_BIN / "ansible-playbook"), "-i", str(lab_inventory(cfg)), playbook, "-e", "candidate=pg-b"]
    for value in extra:
        argv += ["-e", value]
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=playbook_env(),
                          timeout=CLI_HANG_GUARD, check=False)


def test_an_extra_var_cannot_move_the_run_lock(untouched: lab.LabConfig, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    proc = _switchover(untouched, f"dr_lock_dir={elsewhere}")
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "'dr_lock_dir' was given as an extra var (-e): it is the inventory's to set" in proc.stdout
    assert "ERLMCP_DR_LOCK_DIR" in proc.stdout and "nothing was run" in proc.stdout
    assert not elsewhere.exists()  # no lock taken there; `untouched` checks no role, timeline or upstream moved


def test_a_template_in_dr_lock_dir_is_never_rendered(untouched: lab.LabConfig, tmp_path: Path) -> None:
    witness = tmp_path / "rendered"
    proc = _switchover(untouched, "dr_lock_dir={{ lookup('pipe', 'touch " + str(witness) + "') }}")
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "'dr_lock_dir' was given as an extra var" in proc.stdout
    assert not witness.exists()
