"""The lock over a whole move in the directory store (compose/move_lock.py): every key or none, the holder named,
nothing left behind by a refused move, the records of a killed move found for the run that resumes it. The etcd
store's side (leases, keepers, a lost lease mid-move) runs against real etcd members:
tests/integration/test_etcd_composed.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from erlmcp_dr.compose import move_lock
from erlmcp_dr.compose.inventory import _lock_module
from erlmcp_dr.errors import RunBusy


def records(folder: Path) -> dict[str, dict]:
    found = (json.loads(path.read_text()) for path in folder.glob("*.lock.json"))
    return {record["key"]: record for record in found}


def test_a_move_takes_every_key_or_none_and_a_second_move_is_turned_away_naming_the_first(tmp_path: Path) -> None:
    folder = str(tmp_path / "locks")
    with move_lock.hold(folder, ["redis:x", "postgres:1"], "move-a", "regional_failover", "ann", "inv") as held:
        assert not held.shared and held.before_step("forward") is None and held.before_step("undo") is None
        assert {key: record["run_id"] for key, record in records(tmp_path / "locks").items()} == {
            "postgres:1": "move-a", "redis:x": "move-a"}
        # The second move's first key (in sorted order) is free, its second is the first move's.
        with pytest.raises(RunBusy) as caught:
            with move_lock.hold(folder, ["dns:z.", "redis:x"], "move-b", "regional_failover", "bob", "inv"):
                raise AssertionError("the second move ran")
        assert "run move-a of regional_failover" in str(caught.value)
        assert set(records(tmp_path / "locks")) == {"postgres:1", "redis:x"}  # dns:z. given back
    assert records(tmp_path / "locks") == {}


def test_the_records_of_a_killed_move_are_found_for_the_run_that_resumes_it(tmp_path: Path) -> None:
    lock = _lock_module()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    store = lock.DirectoryStore(str(tmp_path / "locks"))
    store.acquire(lock.holder_record("postgres:1", "killed-move", int(gone.stdout), 3600, runbook="regional_failover"))
    settings = {"kind": lock.STORE_DIRECTORY, "store_dir": str(tmp_path / "locks")}
    holders = move_lock.gone_holders(settings, ["postgres:1", "redis:x"], "regional_failover", tmp_path / "runs")
    assert [holder["run_id"] for holder in holders] == ["killed-move"]
