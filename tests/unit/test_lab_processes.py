"""The lab's process helpers (src/erlmcp_dr/lab/config.py), on real child processes (no server needed).

`pid_if_running` is the one way the lab's app, its services and its etcd members find their process from a pid file
(a pid file outlives its process, and the PID may belong to another program since); `LabServer.
wait_killed_postmaster_gone` is the one place a start waits for a postmaster killed on purpose (a drill, `lab
fail-region`) to be reaped: PostgreSQL refuses to start while a zombie postmaster still holds its PID.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from erlmcp_dr import paths
from erlmcp_dr.lab import config as lab_config
from erlmcp_dr.lab.config import LabServer, alive, flag_values, pid_if_running, process_state

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import WaitTimeout, wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import server as _pg_server  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")

WAIT = 30  # seconds a child gets to start or to exit on a loaded machine


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A live process whose command line names a folder, its PID in tmp_path/app.pid."""
    child = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(600)", "--dir", str(tmp_path)])
    (tmp_path / "app.pid").write_text(f"{child.pid}\n")
    wait_for(lambda: "--dir" in _argv(child.pid), WAIT, interval=0.01, what="the child's command line")
    yield child
    child.kill()
    child.wait()


def _argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def _zombie() -> subprocess.Popen[bytes]:
    """A child that has exited and is not reaped yet."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: process_state(child.pid) == "Z", WAIT, interval=0.005, what="the child to exit")
    return child


def test_a_pid_file_names_its_process_only_while_it_lives_and_its_command_line_says_so(tmp_path, sleeper):
    pid_file = tmp_path / "app.pid"
    ours = lambda argv: flag_values(argv).get("--dir") == str(tmp_path)  # noqa: E731

    assert pid_if_running(pid_file, ours) == sleeper.pid
    assert pid_if_running(pid_file, lambda argv: False) is None  # another program under that PID
    assert pid_if_running(tmp_path / "missing.pid", ours) is None
    (tmp_path / "garbage.pid").write_text("not a pid\n")
    assert pid_if_running(tmp_path / "garbage.pid", ours) is None

    sleeper.kill()
    wait_for(lambda: process_state(sleeper.pid) == "Z", WAIT, interval=0.005, what="the child to die")
    assert not alive(sleeper.pid) and pid_if_running(pid_file, ours) is None  # a zombie does not run
    sleeper.wait()
    assert process_state(sleeper.pid) is None and pid_if_running(pid_file, ours) is None


def test_flag_values_pairs_each_argument_with_the_next() -> None:
    assert flag_values(["python", "-m", "x", "--dir", "/d", "--name", "n"])["--dir"] == "/d"
    assert flag_values(["--last"]) == {}


def _lab_server(tmp_path: Path, pid: int, monkeypatch: pytest.MonkeyPatch) -> LabServer:
    """A LabServer whose postmaster.pid names `pid`, with nothing attached to its shared memory."""
    (tmp_path / "PG_VERSION").write_text("15\n")
    (tmp_path / "postmaster.pid").write_text(
        f"{pid}\n{tmp_path}\n1795627107\n5432\n\n127.0.0.1\n  2253896   9666577\nready   \n")
    monkeypatch.setattr(_pg_server, "find_bin_dir", lambda bin_dir=None: "/nonexistent")
    monkeypatch.setattr(_pg_server, "shm_attached", lambda shmid: 0)
    return LabServer(str(tmp_path), name="pg-test")


def test_a_start_waits_for_a_killed_postmaster_to_be_reaped(tmp_path, monkeypatch):
    child = _zombie()
    server = _lab_server(tmp_path, child.pid, monkeypatch)
    try:
        with pytest.raises(WaitTimeout, match="pg-test's killed postmaster"):
            server.wait_killed_postmaster_gone(0)  # its backends are gone, but the zombie still holds the PID
    finally:
        child.wait()
    assert server.wait_killed_postmaster_gone(0) is True


def test_pg_rewind_and_a_start_wait_for_a_killed_postmaster_to_be_reaped(tmp_path, monkeypatch):
    """The collection's own Server (a rejoin's pg_rewind, a start), not only the lab's: PostgreSQL's single-user run
    refuses with 'lock file already exists' while the zombie holds the PID (seen in a drill's rejoin)."""
    child = _zombie()
    server = _lab_server(tmp_path, child.pid, monkeypatch)
    try:
        with pytest.raises(_pg_server.ServerError, match="still a zombie after 0s"):
            server.wait_killed_postmaster_reaped(0)
    finally:
        child.wait()
    server.wait_killed_postmaster_reaped(0)  # reaped: nothing to wait for
    (tmp_path / "postmaster.pid").unlink()
    server.wait_killed_postmaster_reaped(0)  # no postmaster.pid: nothing either


def test_a_live_postmaster_or_none_is_not_waited_for(tmp_path, monkeypatch):
    server = _lab_server(tmp_path, os.getpid(), monkeypatch)
    assert server.wait_killed_postmaster_gone(0) is False
    (tmp_path / "postmaster.pid").unlink()
    assert server.wait_killed_postmaster_gone(0) is False


def test_every_lab_node_gets_a_lab_server(tmp_path):
    node = lab_config.LabNode("pg-a", "a", 5432, tmp_path)
    assert isinstance(node.server(), LabServer) and node.server().name == "pg-a"


_SYS_EXIT = {"x86_64": 60, "aarch64": 93}  # exit(2): only the calling thread ends (exit_group(2) ends them all)

# A process whose first thread has ended while a second one lives on, holding the process's files (a listening
# socket): what a multi-threaded server (knotd) killed with SIGKILL looks like until its last thread has exited.
_FIRST_THREAD_ENDS = f"""
import ctypes, os, threading, time
threading.Thread(target=time.sleep, args=(600,)).start()
print("ready", flush=True)
ctypes.CDLL(None).syscall({_SYS_EXIT.get(os.uname().machine, 60)}, 0)
"""


@pytest.mark.skipif(os.uname().machine not in _SYS_EXIT, reason="exit(2)'s number is known for x86_64 and aarch64")
def test_a_process_whose_first_thread_is_a_zombie_lives_while_another_thread_runs() -> None:
    child = subprocess.Popen([sys.executable, "-c", _FIRST_THREAD_ENDS], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        wait_for(lambda: process_state(child.pid) == "Z", WAIT, interval=0.005, what="the first thread to end")
        assert alive(child.pid)  # its second thread still holds its files: not gone yet
        child.kill()
        wait_for(lambda: not alive(child.pid), WAIT, interval=0.005, what="every thread to end")
        assert process_state(child.pid) == "Z"  # every thread has ended; the parent has not reaped it yet
    finally:
        child.kill()
        child.wait()
