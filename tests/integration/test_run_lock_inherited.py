"""A step of a composed run (regional_failover) runs under its parent's run lock: erlmcp.dr.run_lock given
`erlmcp_dr_lock_owner` checks the parent holds the key and never rewrites nor releases the record, so the lock
names the parent's process for the whole move. Real ansible-playbook processes (tests/fixtures/lock/hold.yml)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import store as _lock  # noqa: E402

PLAYBOOK = Path(__file__).resolve().parents[1] / "fixtures" / "lock" / "hold.yml"
KEY = "dns:inherited.example."
PARENT = "20261206T120000Z-regional_failover-beef"
HANG_GUARD = 300
pytestmark = pytest.mark.integration


def step(tmp_path: Path, owner: str) -> tuple[int, str, dict[str, Any] | None]:
    """hold.yml as a composed run's step would run it: take (present), then release (absent)."""
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    signal_file = tmp_path / "taken.json"
    env = dict(os.environ, ERLMCP_DR_LOCK_DIR=str(tmp_path / "locks"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_COLLECTIONS_PATH=str(paths.collections_path()))
    proc = subprocess.run([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(tmp_path / "hosts.ini"),
                           str(PLAYBOOK), "-e", f"lock_key={KEY}", "-e", f"signal_file={signal_file}",
                           "-e", f"erlmcp_dr_lock_owner={owner}"], capture_output=True, text=True, env=env,
                          timeout=HANG_GUARD, check=False)
    taken = json.loads(signal_file.read_text()) if signal_file.exists() else None
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split()), taken


def hold(tmp_path: Path, run_id: str) -> dict[str, Any]:
    """The parent's take: this test process is the holder, as the composing `runbook` process is."""
    store = _lock.DirectoryStore(str(tmp_path / "locks"))
    outcome = store.acquire(_lock.holder_record(KEY, run_id, os.getpid(), 3600, runbook="regional_failover"))
    assert outcome["decision"] == _lock.TAKE
    return outcome["record"]


def stored(tmp_path: Path) -> dict[str, Any] | None:
    path = Path(_lock.DirectoryStore(str(tmp_path / "locks")).path_for(KEY))
    return json.loads(path.read_text()) if path.exists() else None


def test_a_step_runs_under_its_parents_lock_and_leaves_the_record_to_the_parent(tmp_path: Path) -> None:
    parent = hold(tmp_path, PARENT)
    rc, out, taken = step(tmp_path, PARENT)
    assert rc == 0, out
    assert taken["held"] is True and taken["inherited_from"] == PARENT and taken["run_id"] == PARENT
    assert stored(tmp_path) == parent  # neither rewritten (the PID stays the parent's) nor released


def test_a_step_whose_parent_does_not_hold_the_key_is_refused_changing_nothing(tmp_path: Path) -> None:
    rc, out, taken = step(tmp_path, PARENT)
    assert rc != 0 and taken is None
    assert (f"this step runs under run {PARENT}, which should hold the run lock for {KEY} for the whole move, but "
            "nobody holds it") in out
    assert stored(tmp_path) is None


def test_a_step_finds_another_live_run_holding_the_key_busy(tmp_path: Path) -> None:
    other = hold(tmp_path, "someone-else")
    rc, out, taken = step(tmp_path, PARENT)
    assert rc != 0 and taken is None
    assert "Another run holds the run lock for " + KEY in out and "someone-else" in out
    assert stored(tmp_path) == other
