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
  command is run once more, as the run tells the operator to, and the end state judged after it.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Callable

from regional_kill import A_SERVING, INSIDE, end_state, killed_at, parsed
from runbook_helpers import DEADLINE, node_name_at, runbook_cli, summary, wait_for

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


def boundaries() -> list[str]:
    """Every boundary of failback, from its workflow (before each step, and the end), then the inside cases."""
    workflow = composed.workflow_of(catalog.load(RUNBOOK))
    return [step.id for step in workflow.steps] + [composed.END_BOUNDARY] + [INSIDE + step for step in INSIDE_STEPS]


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


def failback_cli(inventory: Path) -> Any:
    return runbook_cli("run", RUNBOOK, "-i", str(inventory), *FAILBACK, "--yes", "--json")


def finish_with(command: str) -> Any:
    """The resume command a stopped run printed, run as printed (its first word is the `runbook` CLI)."""
    words = shlex.split(command)
    assert words[:2] == ["runbook", "run"], command
    return runbook_cli(*words[1:], "--json")


def kill_case(cfg: lab.LabConfig, inventory: Path, boundary: str,
              while_stopped: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The way there; failback killed at `boundary`; the same command again (and its resume command if it stopped).
    What each left, judged from outside."""
    moved_away(cfg, inventory)
    killed = killed_at(inventory, boundary, RUNBOOK, FAILBACK, while_stopped)
    between = failback_end_state(cfg)
    rerun = failback_cli(inventory)
    outcome = summary(parsed(rerun.stdout))
    case: dict[str, Any] = {
        "boundary": boundary, "killed_run": killed["journal"]["run_id"],
        "killed_entered": killed["journal"]["entered"], "killed_verified": killed["journal"]["verified"],
        "killed_entered_point_of_no_return": killed["journal"]["entered_point_of_no_return"],
        "killed_pids": killed["killed_pids"], "after_kill": between, "rerun_rc": rerun.rc,
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
