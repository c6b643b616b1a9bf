"""redis_restore whose run is killed whole while the server it had just started loads the backup (journal phase
`started`, issue 16 row 3), on the lab's real redis-server, through the `runbook` CLI (the run guard included).

- The kill is the blunt kind (every descendant of `runbook` by parent pid, sessions ignored): the redis-server
  the run started is no descendant of the run, so it survives; the next run finishes the restore, rc 0.
- The server is gone too (killed after the run, as a crash or a reboot would): the next run starts it itself
  (it used to wait wait_timeout for a server it never started), verifies what it loads, rc 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from runbook_helpers import (
    DEADLINE,
    inventory_path,
    redis_client,
    run_json,
    runbook_command,
    summary,
    venv_path,
    wait_for,
    wait_redis_replicated,
)
from test_run_tree_kill import kill_every_descendant

from erlmcp_dr.guard import process_tree
from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration

# Enough keys that loading, checking and rewriting them keeps the run in phase `started` for a while.
DATA = {f"key:{i}": f"value-{i}" for i in range(20000)}


def _phases(data_dir: Path) -> list[str]:
    phases = []
    for path in sorted(data_dir.glob("erlmcp-dr-rollback-*/restore.json")):
        try:
            phases.append(json.loads(path.read_text())["phase"])
        except (OSError, ValueError, KeyError):  # being replaced right now
            phases.append("?")
    return phases


def _server_pid(node: lab.LabRedisNode) -> int | None:
    try:
        return int(node.pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _is_pg_ctl(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "pg_ctl"
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the lab's OS user owns it
        return True
    return Path(f"/proc/{pid}/stat").exists() and " Z " not in Path(f"/proc/{pid}/stat").read_text()


def _outside_the_run(pid: int | None, run_pid: int) -> int | None:
    return pid if pid is not None and pid not in process_tree(run_pid) else None


@pytest.mark.parametrize("server", ["survives", "gone too"])
def test_a_restore_killed_whole_in_phase_started_is_finished_by_the_next_run_with_the_server_up(
        fresh_lab, home, server):
    cfg = fresh_lab
    node = cfg.redis_node("redis-a")
    with redis_client(cfg, "redis-a") as client:
        client.flushall()
        client.mset(DATA)
    inventory = inventory_path(cfg)
    run_json("run", "redis_backup", "-i", str(inventory), "-e", "backup_id=nightly", expect_rc=0)
    with redis_client(cfg, "redis-a") as client:
        client.flushall()
        client.set("after-backup", "1")
    wait_redis_replicated(cfg)

    env = dict(os.environ, PATH=venv_path())
    proc = subprocess.Popen([*runbook_command(), "run", "redis_restore", "-i", str(inventory), "-e", "backup=nightly",
                             "--yes"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    try:
        wait_for(lambda: proc.poll() is not None or _phases(node.data_dir) == ["started"], DEADLINE * 5,
                 interval=0.002, what="the restore journal at phase started")
        assert proc.poll() is None, f"the restore ended (rc {proc.returncode}) before phase started was seen"
        # The server daemonizes: for a moment its parent is still the start command, inside the run's tree. Adopted
        # by the guard, it would stay there; a daemon of its own leaves it at once.
        started, _ = wait_for(lambda: _outside_the_run(_server_pid(node), proc.pid), DEADLINE, interval=0.005,
                              what="the redis-server the run started outside the run's process tree (not adopted "
                                   "by the guard)")
        kill_every_descendant(proc.pid)
        proc.wait(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            kill_every_descendant(proc.pid)
    assert _phases(node.data_dir) == ["started"], _phases(node.data_dir)
    assert _alive(started), "the tree kill took the redis-server down"
    if server == "gone too":
        os.kill(started, signal.SIGKILL)
        wait_for(lambda: not _alive(started), DEADLINE, interval=0.05, what="the server to die")

    _, result = run_json("run", "redis_restore", "-i", str(inventory), "-e", "backup=nightly", "--yes", expect_rc=0)
    done = summary(result)
    assert done["resumed_from"] == "started", done
    assert _phases(node.data_dir) == ["done"]
    with redis_client(cfg, "redis-a") as client:
        assert client.dbsize() == len(DATA)
        assert client.mget(["key:0", "key:19999"]) == ["value-0", "value-19999"]
        assert client.info("persistence")["aof_enabled"] == 1
        assert client.info("replication")["role"] == "master"
    if server == "gone too":
        assert _server_pid(node) not in (None, started)


def test_a_tree_kill_of_a_rejoin_never_takes_down_the_postgres_it_started_with_pg_ctl(fresh_lab, home):
    """The PostgreSQL side of the same rule: database_rejoin starts the old primary with `pg_ctl start`."""
    import erlmcp_dr

    cfg = fresh_lab
    inventory = str(inventory_path(cfg))
    failover = erlmcp_dr.run("database_failover", inventory=inventory, extravars={"candidate": "pg-b"})
    assert failover.succeeded, f"{failover.failing_step and failover.failing_step.message} {failover.error}"
    node = cfg.node("pg-a")
    assert lab._lab_postmaster_pid(node) is None

    env = dict(os.environ, PATH=venv_path())
    proc = subprocess.Popen([*runbook_command(), "run", "database_rejoin", "-i", inventory, "--yes"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        # While `pg_ctl start -w` waits for it, the postmaster is pg_ctl's child, in the run's tree (that window is
        # pg_ctl's, docs/design.md); once pg_ctl has returned it must be out of the tree - a subreaper kept it in.
        def started_and_left_the_tree() -> bool:
            pid = lab._lab_postmaster_pid(node)
            return proc.poll() is not None or (pid is not None and pid not in process_tree(proc.pid)
                                               and not [p for p in process_tree(proc.pid) if _is_pg_ctl(p)])

        wait_for(started_and_left_the_tree, DEADLINE * 5, interval=0.002,
                 what="pg-a's postmaster started by the rejoin, out of the run's process tree")
        postmaster = lab._lab_postmaster_pid(node)
        assert proc.poll() is None and postmaster is not None, f"the rejoin ended (rc {proc.returncode}) first"
        kill_every_descendant(proc.pid)
        proc.wait(timeout=DEADLINE)
    finally:
        if proc.poll() is None:
            kill_every_descendant(proc.pid)
    assert _alive(postmaster) and lab._lab_postmaster_pid(node) == postmaster, "the tree kill took postgres down"
    _, result = run_json("run", "database_rejoin", "-i", inventory, "--yes", expect_rc=0)
    assert summary(result)["primary"] == "pg-b", summary(result)
