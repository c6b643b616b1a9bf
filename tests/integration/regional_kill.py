"""The kill matrix of regional_failover (issue 17): kill -9 of the whole run tree at a step boundary, then a re-run.

Shared by tests/integration/test_regional_kill.py (a sample, in CI) and benchmarks/regional_kill_matrix.py (every
boundary, result committed). The boundaries come from the workflow's own step list (a new step is a new boundary):
"before <step>" for each forward step, and "end" (every step verified, the result not yet written).

The run stops itself exactly at the boundary (compose/run.py, STOP_AT_BOUNDARY_ENV: SIGSTOP once its journal is
written); then every process of its tree (the `runbook` process and all its descendants, found through /proc: the
ansible children run in sessions of their own) gets SIGKILL. The re-run is the plain command an operator would
type again. Its end state is judged from the outside: which database nodes take writes, which Redis nodes are
primaries, what every authoritative DNS server answers, whether the application of the serving region writes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from runbook_helpers import (
    CLI_HANG_GUARD,
    DEADLINE,
    dns_answers,
    plain_connect,
    redis_client,
    runbook_cli,
    runbook_command,
    summary,
    venv_path,
    wait_for,
)

from erlmcp_dr import catalog, launch
from erlmcp_dr.compose import run as composed
from erlmcp_dr.lab import app as lab_app
from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import regions as lab_regions

MOVE = ("-e", "from_region=a", "-e", "to_region=b", "-e", "mode=unplanned", "-e", "health_interval=0.2")
# The planned mode (both regions answer; nothing is failed first): the same move, zero-loss hand-overs.
MOVES = {"unplanned": MOVE, "planned": ("-e", "from_region=a", "-e", "to_region=b", "-e", "mode=planned", "-e",
                                        "health_interval=0.2")}
B_SERVING = "b serving"
A_SERVING = "a serving, everything undone"


def boundaries(mode: str = "unplanned") -> list[str]:
    """Every boundary of the regional failover in `mode`, from its workflow: before each of that mode's steps, and
    the end."""
    workflow = composed.workflow_of(catalog.load("regional_failover")).for_mode(mode)
    return [step.id for step in workflow.steps] + [composed.END_BOUNDARY]


def run_tree(pid: int) -> list[int]:
    """pid and every descendant, parents first (read from /proc: ansible's children are in other sessions)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def process_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def process_name(pid: int) -> str:
    """The process's name (/proc/<pid>/comm); "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def kill_run_tree(proc: subprocess.Popen, spare: tuple[str, ...] = ()) -> dict[int, str]:
    """SIGKILL to the run and every descendant, but those whose name is in `spare` (servers the run started, which
    outlive a dead controller: benchmarks/pitr_kill_matrix.py spares PostgreSQL's); waits until the run is reaped.
    Returns the processes killed, PID: name."""
    killed = {}
    for pid in run_tree(proc.pid):
        name = process_name(pid)
        if name in spare:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
            killed[pid] = name
        except ProcessLookupError:
            continue
    proc.wait(timeout=DEADLINE)
    return killed


@contextmanager
def killed_at_the_end(proc: subprocess.Popen, spare: tuple[str, ...] = ()) -> Iterator[dict[int, str]]:
    """The tail of every kill case: the body brings the run `proc` to the moment of its kill; when the body ends,
    the run's tree is killed (kill_run_tree, sparing `spare`), also when the body failed (a run never outlives its
    case), and its stderr pipe closed. Yields the processes killed (PID: name), filled once the body ended without
    an error."""
    killed: dict[int, str] = {}
    try:
        yield killed
        killed.update(kill_run_tree(proc, spare))
    finally:
        if proc.poll() is None:
            kill_run_tree(proc, spare)
        if proc.stderr:
            proc.stderr.close()


def stopped_processes_of(home: Path) -> list[int]:
    """Processes in the stopped state (T) that belong to this test: started with its ERLMCP_DR_HOME (the run, its
    children, and the lab it started), or marked as one of its runs' (ERLMCP_DR_RUN=<home>/private/...: a warm
    ansible-playbook shows the zygote's environment, docs/speed-warm.md). The machine is shared: another test's
    stopped process (a drill's frozen server, a frozen pg_rewind) is not this one's."""
    names = (f"ERLMCP_DR_HOME={home}".encode(), f"ERLMCP_DR_RUN={home}/".encode())
    found = []
    for pid in run_tree(1):
        if process_state(pid) != "T":
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(entry == names[0] or entry.startswith(names[1]) for entry in environ):
            found.append(pid)
    return found


def left_by_the_kill(killed: dict[int, str], home: Path, runbook: str) -> dict[str, Any]:
    """What a killed run left, as every kill case reports it: how many processes were killed and its journal."""
    return {"killed_pids": len(killed), "journal": journal_of_latest(home, runbook)}


def writable_nodes(cfg: lab.LabConfig) -> list[str]:
    """The database nodes that answer and take writes (not in recovery, not read-only)."""
    found = []
    for node in cfg.nodes:
        try:
            with plain_connect(cfg, node.name) as conn:
                row = conn.execute("SELECT pg_is_in_recovery(), current_setting('transaction_read_only')").fetchone()
        except Exception:
            continue
        if row == (False, "off"):
            found.append(node.name)
    return found


def redis_primaries(cfg: lab.LabConfig) -> list[str]:
    found = []
    for node in cfg.redis_nodes:
        try:
            with redis_client(cfg, node.name) as client:
                if client.info("replication").get("role") == "master":
                    found.append(node.name)
        except Exception:
            continue
    return found


def app_writes(cfg: lab.LabConfig, region: str) -> dict[str, Any] | None:
    app = next(app for app in lab_app.apps(cfg) if app.region == region)
    request = urllib.request.Request(app.url + "/write", data=b'{"note": "kill matrix"}', method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the lab's loopback address
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def end_state(cfg: lab.LabConfig) -> dict[str, Any]:
    """What the lab serves, seen from outside, and which of the two verified states it is (None: neither)."""
    answers = dns_answers(cfg, "api.erlmcp.lab.")
    state: dict[str, Any] = {"writable": writable_nodes(cfg), "redis_primaries": redis_primaries(cfg),
                             "dns": sorted({address for values in answers.values() for address in values}),
                             "dns_servers": len(answers)}
    for region, label in (("b", B_SERVING), ("a", A_SERVING)):
        wrote = app_writes(cfg, region) if state["writable"] == [f"pg-{region}"] else None
        if (state["redis_primaries"] == [f"redis-{region}"] and state["dns_servers"] >= 2
                and all(values == [lab_dns.REGION_ADDRESSES[region]] for values in answers.values())
                and wrote is not None and (wrote.get("database"), wrote.get("redis")) == (f"pg-{region}",
                                                                                         f"redis-{region}")):
            state["verified_state"] = label
            return state
    state["verified_state"] = None
    return state


INSIDE = "inside:"  # "inside:<step>": killed while that step's child run runs (not a boundary: the harder case)


def journal_of_latest(home: Path, runbook: str = "regional_failover") -> dict[str, Any] | None:
    """The journal written last (the run going on, or stopped at a boundary). By the time it was written, not by run
    id: two runs started in the same second sort by their random suffix (a CI run read a grace-refused failback's
    journal for the killed one that started the same second)."""
    journals = []
    for path in (home / "runs").glob(f"*-{runbook}-*/journal.json"):
        try:
            journals.append((path.stat().st_mtime_ns, path))
        except OSError:
            continue  # moved into place meanwhile
    try:
        return json.loads(max(journals)[1].read_text()) if journals else None
    except (OSError, ValueError):
        return None


def inside_step(proc: subprocess.Popen, step: str, home: Path, runbook: str = "regional_failover") -> bool:
    """True once `step` is entered, not yet verified, and its child ansible-playbook runs."""
    journal = journal_of_latest(home, runbook) or {}
    return (step in journal.get("entered", []) and step not in journal.get("verified", [])
            and any(b"ansible-playbook" in _cmdline(pid) for pid in run_tree(proc.pid)[1:]))


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def killed_at(inventory: Path, boundary: str, runbook: str = "regional_failover", move: tuple[str, ...] = MOVE,
              while_stopped: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Starts the move, lets it stop itself at `boundary` (or reach the inside of a step), kills its whole tree;
    what the killed run left. `while_stopped(journal)` runs while a move stopped at a boundary still holds its locks
    (its process alive): what a second operator meets then (tests/integration/failback_kill.py)."""
    home = Path(os.environ["ERLMCP_DR_HOME"])
    inside = boundary[len(INSIDE):] if boundary.startswith(INSIDE) else None
    # Inside a step, the move is found by the ansible-playbook below the `runbook` process: the CLI runs there, not
    # in a CLI zygote (docs/speed-warm.md; a boundary's own stop is never served either, launch.py).
    stop = {launch.WARM_CLI_ENV: "0"} if inside else {composed.STOP_AT_BOUNDARY_ENV: boundary}
    env = dict(os.environ, PATH=venv_path(), **stop)
    proc = subprocess.Popen([*runbook_command(), "run", runbook, "-i", str(inventory), *move, "--yes",
                             "--json"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    with killed_at_the_end(proc) as killed:
        reached = ((lambda: inside_step(proc, inside, home, runbook)) if inside else
                   (lambda: process_state(proc.pid) == "T"))
        wait_for(lambda: proc.poll() is not None or reached(), CLI_HANG_GUARD, interval=0.1,
                 what=f"the move at {boundary}")
        if proc.poll() is not None:
            raise AssertionError(f"the move ended (rc {proc.returncode}) before the boundary {boundary}: "
                                 f"{proc.stderr.read()[-3000:] if proc.stderr else ''}")
        if while_stopped is not None and not inside:
            while_stopped(journal_of_latest(home, runbook) or {})
    return left_by_the_kill(killed, home, runbook)


def parsed(stdout: str) -> dict[str, Any]:
    try:
        return json.loads(stdout)
    except ValueError:
        return {}


def kill_case(cfg: lab.LabConfig, inventory: Path, boundary: str, mode: str = "unplanned") -> dict[str, Any]:
    """unplanned: region a killed first; planned: both regions answer. The move killed at `boundary`; the same
    command again. What each left, judged outside."""
    if mode == "unplanned":
        lab_regions.fail_region(cfg, "a")
    killed = killed_at(inventory, boundary, move=MOVES[mode])
    between = end_state(cfg)
    rerun = runbook_cli("run", "regional_failover", "-i", str(inventory), *MOVES[mode], "--yes", "--json")
    outcome = summary(parsed(rerun.stdout))
    return {"boundary": boundary, "mode": mode, "killed_run": killed["journal"]["run_id"],
            "killed_entered": killed["journal"]["entered"], "killed_verified": killed["journal"]["verified"],
            "killed_entered_point_of_no_return": killed["journal"]["entered_point_of_no_return"],
            "killed_changes": killed["journal"].get("changes", {}),  # the built-in steps' write-ahead records
            "killed_pids": killed["killed_pids"], "after_kill": between, "rerun_rc": rerun.rc,
            "rerun_status": outcome.get("status"), "rerun_reason": outcome.get("reason"),
            "resumed_from": outcome.get("resumed_from"), "incident_id": outcome.get("incident_id"),
            "rerun_steps": [(step["step"], step["phase"]) for step in outcome.get("steps") or []],
            "rerun_stderr": rerun.stderr[-2000:] if rerun.rc != 0 else "", "end": end_state(cfg)}
