"""A kill of a run's whole process tree never takes down a server the run started (issue 16 row 3).

The guard used to make itself a subreaper: a daemon the run started (a daemonized redis-server, a postmaster from
`pg_ctl start`) was re-parented to the guard, so it sat in the `runbook` process's tree and died with any kill of
that tree. Here the tree is killed the blunt way - every descendant of `runbook`, found by parent pid, frozen then
SIGKILLed, sessions ignored - and the daemon must live; the run's own orphan (a background child in a worker's
session) must still not outlive the run. Real processes on localhost, no lab; every wait is a poll with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from runbook_helpers import runbook_command
from test_runner_kill import DEADLINE, _processes, _wait_holding, local, warm_processes  # noqa: F401 - a fixture

from erlmcp_dr.guard import freeze_and_kill, process_tree
from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402

pytestmark = pytest.mark.integration


def kill_every_descendant(root: int) -> list[int]:
    """SIGSTOP (until no new one appears) then SIGKILL `root` and every process below it by parent pid: what a
    supervisor or an operator's `kill the tree` does, with no idea of sessions or daemons."""
    return freeze_and_kill(lambda: set(process_tree(root)))


def _tagged(tag: str) -> dict[int, str]:
    return {pid: cmd for pid, (_state, _group, cmd) in _processes().items() if tag in cmd}


def _start(local: dict[str, str], tag: str, run_id: str, hold: int, tmp_path: Path) -> subprocess.Popen:  # noqa: F811
    out = open(tmp_path / f"{run_id}.out", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen([*runbook_command(), "run", "daemon_and_orphan", "-i", local["inventory"], "--run-id",
                             run_id, "-e", f"tag={tag}", "-e", f"hold_seconds={hold}"],
                            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=local)


def _orphan_gone(tag: str) -> bool:
    return not [pid for pid, cmd in _tagged(tag).items() if f"orphan-{tag}" in cmd]


def _kill_tagged(tag: str) -> None:
    for pid in _tagged(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def test_a_tree_kill_never_takes_down_the_daemon_a_run_started_and_its_orphans_end_at_the_next_start(
    local, tmp_path  # noqa: F811
):
    tag = "erlmcp-dr-it-tree-" + os.urandom(3).hex()
    run_id = "tree-" + os.urandom(3).hex()
    local["ERLMCP_DR_WARM"] = "1"
    proc = _start(local, tag, run_id, 600, tmp_path)
    try:
        _wait_holding(proc, local, run_id, tmp_path)
        # The warm start (the default, issue 19): the run's ansible-playbook is not below `runbook` at all; the
        # zygote's run server ends it when the guard dies.
        assert warm_processes(run_id), _processes()
        daemons = [pid for pid, cmd in _tagged(tag).items() if f"daemon-{tag}" in cmd]
        assert len(daemons) == 1, _tagged(tag)
        assert daemons[0] not in process_tree(proc.pid), "the run adopted the daemon it started (a subreaper)"
        killed = kill_every_descendant(proc.pid)
        assert proc.pid in killed and daemons[0] not in killed
        proc.wait(timeout=DEADLINE)
        assert [pid for pid, cmd in _tagged(tag).items() if f"daemon-{tag}" in cmd] == daemons
        wait_for(lambda: not warm_processes(run_id), DEADLINE, interval=0.1, what="the warm run's processes to end")

        # The guard died too, so the run's orphan (outside the tree now) is left: the next run's start ends it,
        # found by the killed run's marker, and leaves the daemon alone.
        nxt = subprocess.run([*runbook_command(), "plan", "trusted_params", "-i", local["inventory"]],
                             capture_output=True, text=True, env=local, timeout=DEADLINE * 5, check=False)
        assert nxt.returncode == 0, nxt.stdout + nxt.stderr
        wait_for(lambda: _orphan_gone(tag), DEADLINE, interval=0.1, what="the killed run's orphan to be ended")
        assert [pid for pid, cmd in _tagged(tag).items() if f"daemon-{tag}" in cmd] == daemons
    finally:
        if proc.poll() is None:
            kill_every_descendant(proc.pid)
        _kill_tagged(tag)


def test_the_runs_orphans_end_with_it_and_its_daemon_does_not(local, tmp_path):  # noqa: F811
    """Without a subreaper the guard finds the run's orphans by the marker in their environment."""
    tag = "erlmcp-dr-it-orphan-" + os.urandom(3).hex()
    run_id = "orphan-" + os.urandom(3).hex()
    proc = _start(local, tag, run_id, 1, tmp_path)
    try:
        assert proc.wait(timeout=DEADLINE * 5) == 0, (tmp_path / f"{run_id}.out").read_text()

        wait_for(lambda: _orphan_gone(tag), DEADLINE, interval=0.1, what="the run's orphan to end with the run")
        assert len([pid for pid, cmd in _tagged(tag).items() if f"daemon-{tag}" in cmd]) == 1, _tagged(tag)
    finally:
        _kill_tagged(tag)
