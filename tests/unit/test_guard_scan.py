"""The guard's scan for a run's processes: a marked orphan outside the run's tree is found by its marker, and only
processes started since the run's root can carry it (the scan reads no older process's environment)."""

from __future__ import annotations

import os
import subprocess
import sys

from erlmcp_dr import guard
from erlmcp_dr.lab.lifecycle import wait_for

DEADLINE = 30.0


def _orphan(marker: str) -> int:
    """A process carrying the run's marker outside every live tree and session: a sleeper whose session leader (a
    shell that set up the session) has exited. Returns its pid."""
    env = dict(os.environ, **{guard.RUN_MARKER: marker})
    done = subprocess.run(["setsid", "sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"], env=env, capture_output=True,
                          text=True, timeout=30, check=True)
    pid = int(done.stdout.strip())
    wait_for(lambda: (guard.proc_stat(pid) or (0, 0, 0))[0] != os.getpid() and _leader_gone(pid), DEADLINE,
             interval=0.01, what="the orphan's session leader to exit")
    return pid


def _leader_gone(pid: int) -> bool:
    found = guard.proc_stat(pid)
    return found is not None and guard.proc_stat(found[1]) is None


def _ticks_since_boot() -> float:
    with open("/proc/uptime", encoding="ascii") as handle:
        return float(handle.read().split()[0]) * os.sysconf("SC_CLK_TCK")


def _stop(*pids: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def test_proc_stat_reads_the_parent_session_and_start_time():
    found = guard.proc_stat(os.getpid())
    assert found == (os.getppid(), os.getsid(0), guard.process_start_time(os.getpid()))
    assert guard.process_table()[os.getpid()] == found
    assert guard.proc_stat(2 ** 22 + 1) is None  # above pid_max: never a process


def test_a_marked_orphan_started_since_the_root_is_the_runs_and_an_older_one_only_without_a_root(tmp_path):
    marker = str(tmp_path)
    older = _orphan(marker)
    started = guard.process_start_time(older)
    wait_for(lambda: _ticks_since_boot() > started + 1, DEADLINE, interval=0.01, what="a clock tick to pass")
    root = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    newer = None
    try:
        wait_for(lambda: guard.process_start_time(root.pid) is not None, DEADLINE, interval=0.01, what="the root")
        assert guard.process_start_time(root.pid) > started
        newer = _orphan(marker)
        found = guard.run_processes(root.pid, marker)
        assert newer in found and root.pid in found
        # Started before the run's root, it cannot be the run's (the run's processes descend from the root): the
        # environment of such a process is not read. The sweep of a killed run has no root: every process is read.
        assert older not in found
        assert {older, newer} <= set(guard.run_processes(guard.NO_ROOT, marker))
    finally:
        root.kill()
        root.wait(timeout=30)
        _stop(older, *([newer] if newer else []))
