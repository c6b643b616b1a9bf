"""Lab situations for the fence-and-promote step (pg_promote fence.perform): a crashed primary, a fence that
stops the server and then fails."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from runbook_helpers import DEADLINE, wait_for

from erlmcp_dr.lab import lifecycle as lab


def kill_postmaster(cfg: lab.LabConfig, node: str = "pg-a") -> None:
    """kill -9 of the node's postmaster (a crash: no shutdown checkpoint), waited for until pg_ctl sees it gone."""
    server = cfg.node(node).server()
    pid = server.postmaster_pid()
    assert pid is not None, f"{node} has no postmaster.pid"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not server.is_running(), DEADLINE, interval=0.01, what=f"{node}'s postmaster to die")


def bin_dir_without_controldata(cfg: lab.LabConfig) -> Path:
    """A pg_bin_dir holding pg_ctl and no pg_controldata, readable by the data directories' owner: a stop fence
    stops the server, then fails reading its final LSN (and pg_ctl start still works: it finds postgres through
    the link)."""
    bin_dir = cfg.root / "bin-without-controldata"
    lab.make_owned_dir(bin_dir, 0o755)
    if not (bin_dir / "pg_ctl").exists():
        (bin_dir / "pg_ctl").symlink_to(Path(lab.find_bin_dir()) / "pg_ctl")
    return bin_dir
