"""The kill matrix of failback (issue 18): kill -9 of the whole run tree at each step boundary of the way back (and
inside its long steps), then the same command again; the end state judged from outside.

Shared by tests/integration/test_failback_kill.py (one case in CI, with the two-operators checks) and
benchmarks/failback_kill_matrix.py (every boundary, result committed). The mechanism is regional_failover's
(tests/integration/regional_kill.py: the run stops itself at the boundary, its process tree is killed, the
end state is read from every node); this file adds what a failback needs:
- the way there first: region a killed, `regional_failover` a -> b, region a restarted (pg-a stays down: a former
  primary the failback rejoins), as an operator would before failing back;
- the verified end state of a failback: region a serves (regional_kill.end_state's "a serving": the only writable
  database pg-a, the only Redis primary redis-a, every DNS server answering a's address, a's application writing)
  AND everything rejoined: every other database node a running standby whose upstream chain reaches pg-a, every
  other Redis node a replica with its link up whose chain reaches redis-a;
- "finish with": when the re-run itself stops (exit 1 with a resume command, compose/run.py resume_command), that
  command is run once more, as the run tells the operator to, and the end state judged after it;
- two kills that land at a chosen moment inside a step, not at a boundary:
  FENCED_NOT_PROMOTED, between the fence of the current primary (pg-b's clean shutdown) and the promotion of pg-a.
  Made certain, not raced: a standby of pg-b other than the candidate (pg-c) has its WAL receiver stopped
  (SIGSTOP) before the handover starts, so pg-b's shutdown waits for that standby to confirm its last WAL (a
  clean shutdown does, up to wal_sender_timeout) and the switchover cannot promote before it ends. The run is
  killed while pg-b says "stopping" (postmaster.pid), then the receiver continued, and pg-b stops cleanly: the
  fence done, nothing promoted, the journal saying the handover was entered.
  DURING_REWIND, inside pg_rewind while it copies in the rejoin: pg-a's pg_bin_dir (its host var, for the killed
  run only) is tests/integration/rewind_freeze.py's, whose real pg_rewind is frozen at its first copied chunk (on the
  lab's small databases pg_rewind used to end before the harness saw it); then the run's tree is killed.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import yaml
from regional_kill import (
    A_SERVING,
    INSIDE,
    end_state,
    journal_of_latest,
    killed_at,
    killed_at_the_end,
    left_by_the_kill,
    parsed,
    process_state,
)
from rewind_freeze import bin_dir_freezing_pg_rewind, wait_frozen
from runbook_helpers import (
    CLI_HANG_GUARD,
    DEADLINE,
    node_name_at,
    plain_connect,
    runbook_cli,
    runbook_command,
    summary,
    topology,
    venv_path,
    wait_for,
)

import erlmcp_dr
from erlmcp_dr import catalog
from erlmcp_dr.compose import run as composed
from erlmcp_dr.lab import app as lab_app
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import regions as lab_regions

RUNBOOK = "failback"
# The lab's grace period is a second (the seeds' hour is a parameter); the samples every 0.1 s.
FAILBACK = ("-e", "from_region=b", "-e", "to_region=a", "-e", "grace_seconds=1", "-e", "grace_interval=0.1",
            "-e", "catchup_timeout=60")
A_REJOINED = "a serving, everything rejoined"
# Killed while the step's child run runs, not at a boundary: the rejoin (pg_rewind, the longest preparation) and the
# database handover itself (the point of no return: the old primary may be demoted, the candidate not yet promoted).
INSIDE_STEPS = ("rejoin", "database")
FENCED_NOT_PROMOTED = INSIDE + "database:fenced-not-promoted"
DURING_REWIND = INSIDE + "rejoin:pg_rewind"


def boundaries() -> list[str]:
    """Every boundary of failback, from its workflow (before each step, and the end), then the inside cases."""
    workflow = composed.workflow_of(catalog.load(RUNBOOK))
    return ([step.id for step in workflow.steps] + [composed.END_BOUNDARY] + [INSIDE + step for step in INSIDE_STEPS]
            + [FENCED_NOT_PROMOTED, DURING_REWIND])


def app_healthy(cfg: lab.LabConfig, region: str) -> bool:
    import urllib.request

    app = next(app for app in lab_app.apps(cfg) if app.region == region)
    try:
        with urllib.request.urlopen(app.url + "/health", timeout=3) as answer:  # noqa: S310 - the lab's loopback
            return answer.status == 200
    except OSError:
        return False


def moved_away(cfg: lab.LabConfig, inventory: Path) -> None:
    """What precedes every failback: region a failed and the service moved to b, then region a restarted."""
    lab_regions.fail_region(cfg, "a")
    away = erlmcp_dr.run("regional_failover", inventory=inventory, extravars={
        "from_region": "a", "to_region": "b", "mode": "unplanned", "health_interval": 0.2})
    assert away.succeeded, f"the way there failed: {away.error}"
    lab_regions.restore_region(cfg, "a")  # pg-a stays down: a former primary, failback's to rejoin
    wait_for(lambda: app_healthy(cfg, "a"), DEADLINE, what="region a's application healthy")


def rejoined(cfg: lab.LabConfig, region: str) -> list[str]:
    """What is not rejoined to `region`'s primaries (empty: every member follows them, directly or cascading)."""
    status = lab.status(cfg)
    problems = []
    primary, redis_primary = f"pg-{region}", f"redis-{region}"
    upstream = {row["name"]: node_name_at(cfg, row["upstream"]) for row in status["nodes"]}
    for row in status["nodes"]:
        if row["name"] == primary:
            if row["role"] != "primary" or row["state"] != "running":
                problems.append(f"{primary}: {row['state']} {row['role']}")
        elif row["state"] != "running" or row["role"] != "standby" or not _reaches(row["name"], primary, upstream):
            problems.append(f"{row['name']}: {row['state']} {row['role']} following {upstream.get(row['name'])}")
    by_port = {str(node.port): node.name for node in cfg.redis_nodes}
    redis_upstream = {row["name"]: by_port.get(str(row["upstream"] or "").rpartition(":")[2])
                      for row in status["redis"]}
    for row in status["redis"]:
        if row["name"] == redis_primary:
            if row["role"] != "primary":
                problems.append(f"{redis_primary}: {row['state']} {row['role']}")
        elif row["role"] != "replica" or row["link"] != "up" or not _reaches(row["name"], redis_primary,
                                                                              redis_upstream):
            problems.append(f"{row['name']}: {row['state']} {row['role']} link {row['link']} following "
                            f"{redis_upstream.get(row['name'])}")
    return problems


def _reaches(node: str, primary: str, upstream: dict[str, str | None]) -> bool:
    seen = {node}
    current = upstream.get(node)
    while current is not None and current not in seen:
        if current == primary:
            return True
        seen.add(current)
        current = upstream.get(current)
    return False


def failback_end_state(cfg: lab.LabConfig) -> dict[str, Any]:
    """regional_kill.end_state, and whether it is the failback's verified state (A_REJOINED; None: it is not)."""
    state = end_state(cfg)
    state["not_rejoined"] = rejoined(cfg, "a")
    state["verified_state"] = A_REJOINED if state["verified_state"] == A_SERVING and not state["not_rejoined"] \
        else None
    return state


def seen_from_outside(cfg: lab.LabConfig) -> dict[str, Any]:
    """What a second operator must not change: the topology, the writers, the Redis primaries, DNS."""
    state = failback_end_state(cfg)
    return {"topology": topology(cfg), "writable": state["writable"], "redis": state["redis_primaries"],
            "dns": state["dns"]}


def failback_cli(inventory: Path) -> Any:
    return runbook_cli("run", RUNBOOK, "-i", str(inventory), *FAILBACK, "--yes", "--json")


def finish_with(command: str) -> Any:
    """The resume command a stopped run printed, run as printed (its first word is the `runbook` CLI)."""
    words = shlex.split(command)
    assert words[:2] == ["runbook", "run"], command
    return runbook_cli(*words[1:], "--json")


def started_failback(inventory: Path, stop_at: str | None = None) -> subprocess.Popen:
    stop = {composed.STOP_AT_BOUNDARY_ENV: stop_at} if stop_at else {}
    return subprocess.Popen([*runbook_command(), "run", RUNBOOK, "-i", str(inventory), *FAILBACK, "--yes", "--json"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PATH=venv_path(), **stop), start_new_session=True)


def poll_fast(proc: subprocess.Popen, reached: Callable[[], bool], what: str) -> None:
    """Every few milliseconds (the moments below last a fraction of a second): until `reached`, or the run ends."""
    deadline = time.monotonic() + CLI_HANG_GUARD
    while not reached():
        if proc.poll() is not None:
            raise AssertionError(f"the failback ended (rc {proc.returncode}) before {what}: "
                                 f"{proc.stderr.read()[-3000:] if proc.stderr else ''}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {CLI_HANG_GUARD} s")
        time.sleep(0.005)


def wal_receiver_pid(cfg: lab.LabConfig, node: str) -> int | None:
    with plain_connect(cfg, node) as conn:
        row = conn.execute("SELECT pid FROM pg_stat_wal_receiver").fetchone()
    return int(row[0]) if row and row[0] else None


def postmaster_status(cfg: lab.LabConfig, node: str) -> str | None:
    """The status line PostgreSQL keeps in postmaster.pid ('ready', 'stopping'...); None when it is not running."""
    try:
        lines = (cfg.node(node).data_dir / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    return lines[7].strip() if len(lines) > 7 else ""


def killed_between_fence_and_promotion(cfg: lab.LabConfig, inventory: Path,
                                       while_stopped: Callable[[dict[str, Any]], None] | None = None
                                       ) -> dict[str, Any]:
    """failback b -> a killed after its fence stopped pg-b cleanly and before pg-a was promoted (FENCED_NOT_PROMOTED:
    how the moment is made certain is in this module's docstring). `while_stopped(journal)` runs while the run,
    stopped at the database boundary, holds its locks."""
    home = Path(os.environ["ERLMCP_DR_HOME"])
    proc = started_failback(inventory, stop_at="database")
    held = None
    try:
        with killed_at_the_end(proc) as killed:
            poll_fast(proc, lambda: process_state(proc.pid) == "T", "the database boundary")
            if while_stopped is not None:
                while_stopped(journal_of_latest(home, RUNBOOK) or {})
            # a standby of pg-b, the candidate's peer first
            holder = "pg-c" if wal_receiver_pid(cfg, "pg-c") else "pg-a"
            held = wal_receiver_pid(cfg, holder)
            assert held is not None, f"{holder} has no WAL receiver: nothing holds pg-b's shutdown open"
            os.kill(held, signal.SIGSTOP)
            os.kill(proc.pid, signal.SIGCONT)
            poll_fast(proc, lambda: postmaster_status(cfg, "pg-b") == "stopping", "pg-b's fence (its shutdown)")
    finally:
        if held is not None:  # only once the run is killed: pg-b's shutdown ends then, and nothing can promote
            os.kill(held, signal.SIGCONT)
    wait_for(lambda: postmaster_status(cfg, "pg-b") is None, DEADLINE, what="pg-b's clean shutdown to end")
    return {**left_by_the_kill(killed, home, RUNBOOK), "held_open_by": holder}


def killed_during_rewind(cfg: lab.LabConfig, inventory: Path) -> dict[str, Any]:
    """failback b -> a killed inside pg_rewind on pg-a while it copies (DURING_REWIND); the inventory as it was
    afterwards (the re-run uses the real pg_rewind)."""
    home = Path(os.environ["ERLMCP_DR_HOME"])
    bin_dir = bin_dir_freezing_pg_rewind(cfg, "bin-freezing-pg-rewind-failback")
    original = inventory.read_text()
    hosts = yaml.safe_load(original)
    hosts["all"]["children"]["postgres"]["hosts"]["pg-a"]["pg_bin_dir"] = str(bin_dir)
    inventory.write_text(yaml.safe_dump(hosts, sort_keys=False))
    try:
        proc = started_failback(inventory)
        with killed_at_the_end(proc) as killed:
            frozen = wait_frozen(bin_dir, lambda: proc.poll() is not None, CLI_HANG_GUARD)
    finally:
        inventory.write_text(original)
    return {**left_by_the_kill(killed, home, RUNBOOK), "frozen_at": frozen["line"]}


def kill_failback(cfg: lab.LabConfig, inventory: Path, boundary: str,
                  while_stopped: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    if boundary == FENCED_NOT_PROMOTED:
        return killed_between_fence_and_promotion(cfg, inventory, while_stopped)
    if boundary == DURING_REWIND:
        return killed_during_rewind(cfg, inventory)
    return killed_at(inventory, boundary, RUNBOOK, FAILBACK, while_stopped)


def kill_case(cfg: lab.LabConfig, inventory: Path, boundary: str,
              while_stopped: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The way there; failback killed at `boundary`; the same command again (and its resume command if it stopped).
    What each left, judged from outside."""
    moved_away(cfg, inventory)
    killed = kill_failback(cfg, inventory, boundary, while_stopped)
    between = failback_end_state(cfg)
    rerun = failback_cli(inventory)
    outcome = summary(parsed(rerun.stdout))
    case: dict[str, Any] = {
        "boundary": boundary, "killed_run": killed["journal"]["run_id"],
        "killed_entered": killed["journal"]["entered"], "killed_verified": killed["journal"]["verified"],
        "killed_entered_point_of_no_return": killed["journal"]["entered_point_of_no_return"],
        "killed_pids": killed["killed_pids"], "killed_frozen_at": killed.get("frozen_at"), "after_kill": between,
        "rerun_rc": rerun.rc,
        "rerun_status": outcome.get("status"), "rerun_reason": outcome.get("reason"),
        "resumed_from": outcome.get("resumed_from"), "incident_id": outcome.get("incident_id"),
        "rejoin": outcome.get("rejoin"),
        "rerun_steps": [(step["step"], step["phase"]) for step in outcome.get("steps") or []],
        "rerun_stderr": rerun.stderr[-2000:] if rerun.rc != 0 else "", "finished_with": None}
    if rerun.rc != 0 and outcome.get("resume_command"):
        finish = finish_with(str(outcome["resume_command"]))
        case["finished_with"] = {"command": outcome["resume_command"], "rc": finish.rc,
                                 "status": summary(parsed(finish.stdout)).get("status")}
    case["end"] = failback_end_state(cfg)
    return case
