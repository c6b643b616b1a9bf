"""The run lock's directory store (module_utils/_lock/store.py): real files, real processes, no mocks."""

from __future__ import annotations

import datetime
import json
import multiprocessing
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import store as _lock  # noqa: E402

KEY = "postgres:7301234567890123456"
HERE = "controller-1"


def record(run_id: str, pid: int | None = None, hostname: str = HERE, lease: int = 3600,
           now: datetime.datetime | None = None) -> dict[str, Any]:
    return _lock.holder_record(KEY, run_id, pid or os.getpid(), lease, runbook="database_switchover",
                               operator="alice", now=now, hostname=hostname, user="alice")


def dead_pid() -> int:
    """The PID of a process that has ended (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def store(tmp_path) -> _lock.DirectoryStore:
    return _lock.DirectoryStore(tmp_path / "locks")


def test_free_lock_is_taken_and_the_record_is_private(store):
    outcome = store.acquire(record("run-1"), hostname=HERE)
    assert outcome["decision"] == _lock.TAKE and outcome["holder"] is None
    path = Path(outcome["path"])
    assert path.name == _lock.key_digest(KEY) + _lock.RECORD_SUFFIX
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    saved = json.loads(path.read_text())
    assert saved["run_id"] == "run-1" and saved["pid"] == os.getpid() and saved["runbook"] == "database_switchover"
    assert saved["pid_start_ticks"] == _lock.process_identity(os.getpid())["pid_start_ticks"]
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".tmp-")] == []


def test_live_holder_with_another_run_id_is_busy_and_named(store):
    store.acquire(record("run-1"), hostname=HERE)
    outcome = store.acquire(record("run-2"), hostname=HERE)
    assert outcome["decision"] == _lock.BUSY
    assert outcome["holder"]["run_id"] == "run-1"
    assert "still runs" in outcome["reason"]
    text = _lock.describe_holder(outcome["holder"])
    for part in ("run-1", "database_switchover", "alice", str(os.getpid()), HERE):
        assert part in text
    assert json.loads(Path(outcome["path"]).read_text())["run_id"] == "run-1"


def test_same_run_id_holds_it_again_and_keeps_when_it_was_taken(store):
    first = store.acquire(record("run-1", now=_lock.utc_now() - datetime.timedelta(minutes=5)), hostname=HERE)
    again = store.acquire(record("run-1"), hostname=HERE)
    assert again["decision"] == _lock.HELD
    assert again["record"]["started_at"] == first["record"]["started_at"]
    assert again["record"]["expires_at"] > first["record"]["expires_at"]


def test_dead_pid_is_taken_over(store):
    store.acquire(record("run-1", pid=dead_pid()), hostname=HERE)
    outcome = store.acquire(record("run-2"), hostname=HERE)
    assert outcome["decision"] == _lock.TAKE_OVER
    assert outcome["holder"]["run_id"] == "run-1"
    assert "is not running" in outcome["reason"]
    assert json.loads(Path(outcome["path"]).read_text())["run_id"] == "run-2"


def test_reused_pid_with_another_start_time_is_taken_over(store):
    old = record("run-1")
    old["pid_start_ticks"] -= 1  # the holder was an earlier process that had this PID
    store.acquire(old, hostname=HERE)
    outcome = store.acquire(record("run-2"), hostname=HERE)
    assert outcome["decision"] == _lock.TAKE_OVER
    assert "now belongs to another process" in outcome["reason"]


def test_reboot_since_the_lock_was_taken_is_taken_over(store):
    old = record("run-1")
    old["boot_id"] = "00000000-0000-0000-0000-000000000000"
    store.acquire(old, hostname=HERE)
    outcome = store.acquire(record("run-2"), hostname=HERE)
    assert outcome["decision"] == _lock.TAKE_OVER and "rebooted" in outcome["reason"]


def test_other_host_is_judged_by_its_lease(store):
    now = _lock.utc_now()
    store.acquire(record("run-1", pid=dead_pid(), hostname="controller-2", lease=60, now=now), hostname="controller-2")
    # Its PID means nothing here: while the lease runs, it is alive.
    busy = store.acquire(record("run-2"), hostname=HERE, now=now + datetime.timedelta(seconds=59))
    assert busy["decision"] == _lock.BUSY and "lease runs until" in busy["reason"]
    expired = store.acquire(record("run-2"), hostname=HERE, now=now + datetime.timedelta(seconds=60))
    assert expired["decision"] == _lock.TAKE_OVER and "lease expired" in expired["reason"]


def test_unreadable_record_is_taken_over(store):
    path = Path(store.path_for(KEY))
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    outcome = store.acquire(record("run-2"), hostname=HERE)
    assert outcome["decision"] == _lock.TAKE_OVER and "not JSON" in outcome["reason"]
    assert "unreadable" in _lock.describe_holder(outcome["holder"])


def test_release_only_by_the_owner(store):
    store.acquire(record("run-1"), hostname=HERE)
    other = store.release(KEY, "run-2")
    assert other["outcome"] == _lock.HELD_BY_OTHER and other["holder"]["run_id"] == "run-1"
    assert Path(other["path"]).exists()
    mine = store.release(KEY, "run-1")
    assert mine["outcome"] == _lock.RELEASED and not Path(mine["path"]).exists()
    assert store.release(KEY, "run-1")["outcome"] == _lock.NOT_HELD


def test_inspect_reads_only(store, tmp_path):
    assert store.inspect(KEY, "run-1")["decision"] == _lock.TAKE
    assert not (tmp_path / "locks").exists()
    store.acquire(record("run-1"), hostname=HERE)
    seen = store.inspect(KEY, "run-2", hostname=HERE)
    assert seen["decision"] == _lock.BUSY and seen["holder"]["run_id"] == "run-1"
    assert json.loads(Path(seen["path"]).read_text())["run_id"] == "run-1"


def test_keys_do_not_collide(store):
    store.acquire(record("run-1"), hostname=HERE)
    other = _lock.holder_record("postgres:42", "run-2", os.getpid(), 3600, hostname=HERE)
    assert store.acquire(other, hostname=HERE)["decision"] == _lock.TAKE


def test_default_store_dir_precedence(tmp_path):
    assert _lock.default_store_dir({"ERLMCP_DR_LOCK_DIR": "/x/locks", "XDG_STATE_HOME": "/s"}) == "/x/locks"
    assert _lock.default_store_dir({"XDG_STATE_HOME": "/s"}) == "/s/erlmcp-dr/locks"
    assert _lock.default_store_dir({}) == os.path.expanduser("~/.local/state/erlmcp-dr/locks")


def test_loose_store_dir_is_made_private(tmp_path):
    folder = tmp_path / "locks"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    _lock.DirectoryStore(folder).acquire(record("run-1"), hostname=HERE)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def _race(store_dir: str, run_id: str, ready: Any, done: Any, results: Any) -> None:
    ready.wait()
    outcome = _lock.DirectoryStore(store_dir).acquire(record(run_id, pid=os.getpid()), hostname=HERE)
    results.put((run_id, outcome["decision"]))
    done.wait()  # stay alive until every racer has decided: the winner must be a live holder


def test_concurrent_takers_exactly_one_wins(tmp_path):
    ctx = multiprocessing.get_context("fork")
    racers = 8
    ready, done, results = ctx.Barrier(racers), ctx.Barrier(racers), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path / "locks"), f"run-{i}", ready, done, results))
             for i in range(racers)]
    for proc in procs:
        proc.start()
    decisions = dict(results.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
    winners = [run for run, decision in decisions.items() if decision == _lock.TAKE]
    assert len(winners) == 1
    assert sorted(decisions.values()).count(_lock.BUSY) == racers - 1
    saved = json.loads(Path(_lock.DirectoryStore(tmp_path / "locks").path_for(KEY)).read_text())
    assert saved["run_id"] == winners[0]
