"""A run killed at any step, then run again, ends in the runbook's end state, and nothing in
between ever makes two writable nodes or (switchover) loses an acknowledged write.

Each case: a client commits every 10 ms through a multi-host read-write connection, a sampler
asks every node every 10 ms whether it takes writes, `ansible-playbook` runs the runbook and is
killed with SIGKILL (its whole process group: the controller dying) right after the named step
reported, then `runbook run` runs the same runbook again.

The fence and the promotion are one step (pg_promote fence.perform): its kill point is inside it, once the old
primary is stopped and while the candidate is still in recovery (polled on the lab, as the repoint's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from runbook_helpers import (
    DEADLINE,
    failure_message,
    inventory_path,
    kill_run_tree,
    plain_connect,
    primary_on,
    run_json,
    streaming_from,
    summary,
    wait_for,
    wait_topology,
)

from erlmcp_dr import paths
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.probe import WriteProbe, WritersSampler, multi_host_conninfo

pytestmark = pytest.mark.integration

PLAYBOOKS = paths.collection_root() / "playbooks"


@dataclass(frozen=True)
class KillPoint:
    runbook: str
    extravars: tuple[str, ...]
    after: str  # the task (a substring of its name) whose first result line triggers the kill
    label: str
    candidate: str = "pg-b"
    # Kill while the task runs instead: once a node other than the candidate has its primary_conninfo pointed at
    # the candidate (the repoint has begun: the nodes are repointed together, in one task, so the task's result
    # line comes after all of them).
    while_repointing: bool = False
    # Kill inside the step that fences and promotes: once the old primary (pg-a) is stopped and the candidate is
    # still in recovery (fenced, not promoted yet).
    while_fenced: bool = False

    @property
    def inside(self) -> bool:
        return self.while_repointing or self.while_fenced

    @property
    def id(self) -> str:
        return f"{self.runbook.removeprefix('database_')}-killed-{self.label}"


SWITCHOVER = ("candidate=pg-b",)
FAILOVER = ("away_from=pg-a", "candidate=pg-b")
FENCE_AND_PROMOTE = "Fence the old primary"  # the one step that fences, then promotes
KILL_POINTS = [
    KillPoint("database_switchover", SWITCHOVER, "Lock the cluster", "after-lock"),
    KillPoint("database_switchover", SWITCHOVER, FENCE_AND_PROMOTE, "fenced-not-promoted", while_fenced=True),
    KillPoint("database_switchover", SWITCHOVER, FENCE_AND_PROMOTE, "after-promotion"),
    KillPoint("database_switchover", SWITCHOVER, "Make each node stream from", "while-repointing",
              while_repointing=True),
    KillPoint("database_switchover", SWITCHOVER, "Make each node stream from", "before-app-config"),
    KillPoint("database_failover", FAILOVER, FENCE_AND_PROMOTE, "fenced-not-promoted", while_fenced=True),
    KillPoint("database_failover", FAILOVER, FENCE_AND_PROMOTE, "after-promotion"),
    KillPoint("database_failover", FAILOVER, "Make each node stream from", "while-repointing",
              while_repointing=True),
    KillPoint("database_failover", FAILOVER, "Make each node stream from", "before-app-config"),
]
RESULT_PREFIXES = ("ok:", "changed:", "failed:", "fatal:", "skipping:")


def _node_kwargs(cfg: lab.LabConfig) -> dict[str, dict]:
    return {node.name: dict(node.conn_params(), connect_timeout=1) for node in cfg.nodes}


@contextmanager
def watched(cfg: lab.LabConfig) -> Iterator[tuple[WriteProbe, WritersSampler]]:
    endpoints = [("127.0.0.1", node.port) for node in cfg.nodes]
    conninfo = multi_host_conninfo(endpoints, lab.SUPERUSER, lab.LAB_PASSWORD)
    with WritersSampler(_node_kwargs(cfg)) as sampler, WriteProbe(conninfo, interval=0.01) as probe:
        yield probe, sampler


def _playbook_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1",
               ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_COLLECTIONS_PATH=str(paths.collections_path()),
               ANSIBLE_CONFIG=str(paths.collection_root() / "ansible.cfg"))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", os.defpath)])
    return env


def repoint_begun(cfg: lab.LabConfig, candidate: str) -> bool:
    """A node other than the candidate has its primary_conninfo naming the candidate's port."""
    mark = f"port=''{cfg.node(candidate).port}''"
    for node in cfg.nodes:
        if node.name == candidate:
            continue
        try:
            if mark in (node.data_dir / "postgresql.auto.conf").read_text():
                return True
        except OSError:
            continue
    return False


class FencedNotPromoted:
    """The old primary pg-a is stopped (no postmaster.pid) and the candidate is still in recovery."""

    def __init__(self, cfg: lab.LabConfig, candidate: str) -> None:
        self.pid_file = cfg.node("pg-a").data_dir / "postmaster.pid"
        self.conn = plain_connect(cfg, candidate)

    def __call__(self) -> bool:
        if self.pid_file.exists():
            return False
        row = self.conn.execute("SELECT pg_is_in_recovery()").fetchone()
        return bool(row and row[0])

    def close(self) -> None:
        self.conn.close()


def kill_when_inside(cfg: lab.LabConfig, point: KillPoint, pgid: int, killed: threading.Event) -> None:
    """Poll (deadline DEADLINE) until the repoint has begun (while_repointing) or the old primary is fenced and the
    candidate not promoted yet (while_fenced), then SIGKILL the run's process group."""
    fenced = FencedNotPromoted(cfg, point.candidate) if point.while_fenced else None

    def begun() -> bool:
        if killed.is_set():
            return True
        return fenced() if fenced is not None else repoint_begun(cfg, point.candidate)

    try:
        wait_for(begun, DEADLINE, interval=0.001, what="the point inside the step")
    except Exception:  # noqa: BLE001 - the result line below kills it then; the assertion says what happened
        return
    finally:
        if fenced is not None:
            fenced.close()
    if not killed.is_set():
        killed.set()
        kill_run_tree(pgid)


def kill_after(point: KillPoint, inventory: Path, cfg: lab.LabConfig | None = None) -> list[str]:
    """Run the playbook and SIGKILL its process group once `point.after` has reported a result (or, for a point
    inside a step, once that step has reached it)."""
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
            str(PLAYBOOKS / f"{point.runbook}.yml")]
    for extravar in point.extravars:
        argv += ["-e", extravar]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, env=_playbook_env(), start_new_session=True)
    seen: list[str] = []
    in_task, killed = False, threading.Event()
    watcher: threading.Thread | None = None
    ended_first = False  # the task reported before the point inside it was seen
    guard = threading.Timer(DEADLINE * 5, kill_run_tree, args=(proc.pid,))
    guard.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line.rstrip())
            if line.startswith("TASK ["):
                in_task = point.after in line
                if in_task and point.inside and cfg is not None and watcher is None:
                    watcher = threading.Thread(target=kill_when_inside, args=(cfg, point, proc.pid, killed),
                                               daemon=True)
                    watcher.start()
            elif killed.is_set():
                break
            elif in_task and line.startswith(RESULT_PREFIXES):
                ended_first = True
                killed.set()
                kill_run_tree(proc.pid)
                break
        proc.wait()
    finally:
        guard.cancel()
    assert killed.is_set(), f"{point.after!r} never reported; the run ended rc={proc.returncode}:\n" + "\n".join(
        seen[-40:])
    assert not (point.inside and ended_first), f"{point.after!r} ended before the point inside it was seen"
    return seen


def assert_end_state(cfg: lab.LabConfig, point: KillPoint) -> None:
    new, others = point.candidate, [n.name for n in cfg.nodes if n.name != point.candidate]
    want = {new: {"state": "running", "role": "primary"}}
    for name in others:
        if point.runbook == "database_failover" and name == "pg-a":
            want[name] = {"state": "stopped"}  # fenced: part of a failover's end state
        else:
            want[name] = {"state": "running", "role": "standby", "upstream": new}
    wait_topology(cfg, want, f"the end state of {point.runbook}")
    app = json.loads(cfg.app_config_path.read_text())["database"]
    assert app["primary_node"] == new, app


@pytest.mark.parametrize("point", KILL_POINTS, ids=lambda p: p.id)
def test_a_run_killed_at_each_step_is_finished_by_the_next_run(fresh_lab, home, point):
    cfg = fresh_lab
    inventory = inventory_path(cfg)
    with watched(cfg) as (probe, sampler):
        output = kill_after(point, inventory, cfg)
        extravars = [arg for extravar in point.extravars for arg in ("-e", extravar)]
        _, result = run_json("run", point.runbook, "-i", str(inventory), *extravars, "--yes", expect_rc=0)
        assert_end_state(cfg, point)
        finished = time.monotonic()
        wait_for(lambda: probe.report.commit_times and probe.report.commit_times[-1] > finished, DEADLINE,
                 what="the client commits again after the re-run")
    writes, writers = probe.report, sampler.report

    assert writers.max_writable <= 1, f"two writable nodes at {writers.split_rounds[:5]}"
    assert writers.rounds > 100, writers.to_dict()  # the sampler really watched
    facts = summary(result)
    assert facts["completed"] is True and facts["end_state"]["ok"] is True, failure_message(result) or facts
    assert facts["new_primary"] == point.candidate, facts
    if point.runbook == "database_switchover":
        with plain_connect(cfg, point.candidate) as conn:
            missing = probe.missing_on(conn)
        assert missing == [], f"{len(missing)} acknowledged writes lost: {missing[:20]}; killed run:\n" + "\n".join(
            output[-20:])
    assert writes.committed, writes.to_dict()


def test_a_second_run_over_the_end_state_changes_nothing(fresh_lab, home):
    """After a kill and a finishing run, a third run reports nothing to do."""
    cfg = fresh_lab
    inventory = str(inventory_path(cfg))
    kill_after(KILL_POINTS[2], inventory_path(cfg))  # switchover killed right after the promotion
    run_json("run", "database_switchover", "-i", inventory, "-e", "candidate=pg-b", "--yes", expect_rc=0)
    topo = wait_topology(cfg, {"pg-b": primary_on(2), "pg-a": streaming_from("pg-b", 2),
                               "pg-c": streaming_from("pg-b", 2)}, "switched over")
    _, again = run_json("run", "database_switchover", "-i", inventory, "-e", "candidate=pg-b", "--yes", expect_rc=0)
    assert summary(again)["action"] == "none", summary(again)
    assert summary(again)["did"] == ["nothing was changed"], summary(again)
    assert [s["task"] for s in again["steps"] if s["changed"] and not s["task"].startswith("Lock")
            and not s["task"].startswith("Release")] == []
    assert wait_topology(cfg, {}, "unchanged") == topo
