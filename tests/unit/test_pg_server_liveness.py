"""_pg_server's liveness reading (no PostgreSQL needed): a killed postmaster that its parent has not reaped yet
is a zombie, which pg_ctl still counts as running; the fence counts it as stopped once nothing is attached to its
shared memory any more (no orphaned backend left)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import server as _pg_server  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")


def test_a_live_process_a_zombie_and_a_reaped_one():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: _pg_server.process_state(child.pid) == "Z", 30, interval=0.005, what="the child to exit")
    assert _pg_server.process_state(os.getpid()) in ("R", "S")
    child.wait()
    assert _pg_server.process_state(child.pid) == ""


def test_a_missing_segment_has_nothing_attached():
    assert _pg_server.shm_attached(2**31 - 2) in (0, None)


def write_lock_file(data_dir: Path, pid: int, shmid: str = "  2253896   9666577") -> None:
    (data_dir / "PG_VERSION").write_text("15\n")
    (data_dir / "postmaster.pid").write_text(
        f"{pid}\n{data_dir}\n1795627107\n5432\n\n127.0.0.1\n{shmid}\nready   \n")


def test_a_reaped_postmaster_with_nothing_attached_is_gone(tmp_path, monkeypatch):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    write_lock_file(tmp_path, child.pid)
    monkeypatch.setattr(_pg_server, "find_bin_dir", lambda bin_dir=None: "/nonexistent")
    monkeypatch.setattr(_pg_server, "shm_attached", lambda shmid: 0 if shmid == 9666577 else 99)
    server = _pg_server.Server(str(tmp_path))

    assert server.postmaster_gone() is True and server.attached() == 0
    assert server.status() == {"state": "stopped", "pid": None}  # without asking pg_ctl (not there)
    assert server.wait_orphans_gone(1) is True


def test_orphans_still_attached_are_waited_for_then_refused(tmp_path, monkeypatch):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    write_lock_file(tmp_path, child.pid)
    monkeypatch.setattr(_pg_server, "find_bin_dir", lambda bin_dir=None: "/nonexistent")
    monkeypatch.setattr(_pg_server, "shm_attached", lambda shmid: 2)
    server = _pg_server.Server(str(tmp_path))

    with pytest.raises(_pg_server.ServerError, match="2 processes are still attached"):
        server.wait_orphans_gone(0)


def test_a_live_postmaster_is_not_gone(tmp_path, monkeypatch):
    write_lock_file(tmp_path, os.getpid())
    monkeypatch.setattr(_pg_server, "find_bin_dir", lambda bin_dir=None: "/nonexistent")
    server = _pg_server.Server(str(tmp_path))

    assert server.postmaster_gone() is False
    assert server.wait_orphans_gone(1) is False


def test_a_start_is_seen_once_a_postmaster_started_since_the_launch_is_ready(tmp_path, monkeypatch):
    """Server.start's own poll (every 5 ms, where pg_ctl start -w polls every 100 ms): postmaster.pid must name a
    live process, started at or after the launch (less pg_ctl's 2 s of slack), ready or a hot standby."""
    monkeypatch.setattr(_pg_server, "find_bin_dir", lambda bin_dir=None: "/nonexistent")
    server = _pg_server.Server(str(tmp_path))
    launched = 1795627107.4

    def lock_file(pid: int, started: float, status: str) -> None:
        (tmp_path / "postmaster.pid").write_text(
            f"{pid}\n{tmp_path}\n{int(started)}\n5432\n\n127.0.0.1\n  2253896   9666577\n{status:<8}\n")

    assert not server.started_since(launched)  # no postmaster.pid yet
    for status in ("ready", "standby"):
        lock_file(os.getpid(), launched, status)
        assert server.started_since(launched)
    lock_file(os.getpid(), launched, "starting")
    assert not server.started_since(launched)
    lock_file(os.getpid(), launched - 60, "ready")  # a postmaster.pid left by an earlier server
    assert not server.started_since(launched)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    lock_file(child.pid, launched, "ready")  # it said ready, then died
    assert not server.started_since(launched)
