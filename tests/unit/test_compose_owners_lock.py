"""A composed run inside another run (dr_drill's region drill runs regional_failover as its recovery) runs under its
owner's lock only when the store shows the owner holding every key; otherwise it takes its own, as any run, so it is
turned away naming whoever holds a key. It never takes, rewrites nor releases the owner's records
(compose/move_lock.OwnersLock, in the directory store; the etcd store's lease side: tests/integration)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from erlmcp_dr.compose import move_lock
from erlmcp_dr.compose.inventory import _lock_module
from erlmcp_dr.errors import RunBusy

KEYS = ["postgres:lab", "redis:lab"]


def records(folder: Path) -> dict[str, dict]:
    found = (json.loads(path.read_text()) for path in folder.glob("*.lock.json"))
    return {record["key"]: record for record in found}


def held_by(folder: Path, run_id: str, keys: list[str], pid: int | None = None) -> dict[str, dict]:
    lock = _lock_module()
    store = lock.DirectoryStore(str(folder))
    for key in keys:
        assert store.acquire(lock.holder_record(key, run_id, pid or os.getpid(), 3600, runbook="dr_drill"))[
            "decision"] == lock.TAKE
    return records(folder)


def test_a_child_whose_owner_holds_every_key_runs_under_the_owners_lock_and_leaves_it_untouched(
        tmp_path: Path) -> None:
    folder = tmp_path / "locks"
    before = held_by(folder, "drill-1", KEYS)
    with move_lock.hold(str(folder), KEYS, "drill-1.recover", "regional_failover", "ann", "inv",
                        owner="drill-1") as held:
        assert isinstance(held, move_lock.OwnersLock)
        assert held.run_id == "drill-1"  # the children's run_lock finds the records under the owner's id
        assert held.before_step("forward") is None and held.before_step("undo") is None
        assert records(folder) == before
    assert records(folder) == before  # nothing released, nothing rewritten: the owner releases its keys


def test_a_child_is_refused_naming_the_owner_when_the_owner_lacks_one_key(tmp_path: Path) -> None:
    folder = tmp_path / "locks"
    before = held_by(folder, "drill-1", KEYS[:1])  # redis:lab is free
    with pytest.raises(RunBusy) as caught:
        with move_lock.hold(str(folder), KEYS, "drill-1.recover", "regional_failover", "ann", "inv",
                            owner="drill-1"):
            raise AssertionError("the child ran without the owner holding every key")
    assert "run drill-1 of dr_drill" in str(caught.value)
    assert records(folder) == before  # the free key was not taken, the owner's was not touched


def test_a_child_is_refused_naming_the_other_run_when_a_key_is_held_by_another_run(tmp_path: Path) -> None:
    folder = tmp_path / "locks"
    held_by(folder, "drill-1", KEYS[:1])
    before = held_by(folder, "someone-else", KEYS[1:])
    with pytest.raises(RunBusy) as caught:
        with move_lock.hold(str(folder), ["redis:lab"], "drill-1.recover", "regional_failover", "ann", "inv",
                            owner="drill-1"):
            raise AssertionError("the child ran with a key held by another run")
    assert "run someone-else" in str(caught.value)
    assert records(folder) == before


def test_a_child_does_not_run_under_an_owner_whose_process_is_gone(tmp_path: Path) -> None:
    """A dead owner's records are not a lock: the child takes the keys itself (as any run takes over a dead
    holder's), under its own id, and gives them back at its end."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    folder = tmp_path / "locks"
    held_by(folder, "drill-dead", KEYS, pid=int(gone.stdout))
    with move_lock.hold(str(folder), KEYS, "drill-dead.recover", "regional_failover", "ann", "inv",
                        owner="drill-dead") as held:
        assert not isinstance(held, move_lock.OwnersLock)
        assert {record["run_id"] for record in records(folder).values()} == {"drill-dead.recover"}
    assert records(folder) == {}


def test_a_child_under_its_owners_lock_stops_before_a_step_once_the_owner_lost_a_key(tmp_path: Path) -> None:
    folder = tmp_path / "locks"
    held_by(folder, "drill-1", KEYS)
    lock = _lock_module()
    with move_lock.hold(str(folder), KEYS, "drill-1.recover", "regional_failover", "ann", "inv",
                        owner="drill-1") as held:
        lock.DirectoryStore(str(folder)).release("redis:lab", "drill-1")
        assert "no longer holds the run lock for redis:lab" in (held.before_step("forward") or "")
        refusal = held.before_step("undo") or ""
        assert "the undo was not run" in refusal  # the owner's keys are never taken back by the child
    assert set(records(folder)) == {"postgres:lab"}
