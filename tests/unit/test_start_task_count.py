"""How many tasks a state-changing runbook runs before its first change (issue 15 item 1): every task before it is a
worker fork and its result handling on the critical path, and a start written out task by task is a start copied.
PostgreSQL's, DNS's and Redis's start is one task (erlmcp.dr.pg_begin, erlmcp.dr.dns_begin, erlmcp.dr.redis_begin),
followed at most by a gate.

Counted from the playbooks themselves: the first play's tasks in order, blocks flattened (their rescue and always
sections run after the first change, if at all), an imported role counted as its tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# The tasks that change a target: the engines that write, and the roles made of them.
CHANGING_ACTIONS = {"erlmcp.dr." + name for name in (
    "pg_promote", "pg_fence", "pg_standby_follow", "app_db_config", "dns_record", "redis_backup", "redis_restore",
    "redis_promote", "app_redis_config")}
CHANGING_ROLES = {"erlmcp.dr.pg_fence_node", "erlmcp.dr.pg_follow_primary"}
ROLE_ACTIONS = ("ansible.builtin.import_role", "ansible.builtin.include_role")
FENCE_STEP = "erlmcp.dr.lock_fence"
TASK_KEYWORDS = {"name", "when", "vars", "register", "loop", "loop_control", "tags", "delegate_to", "check_mode",
                 "ignore_errors", "changed_when", "failed_when", "no_log", "notify", "environment", "become", "until",
                 "retries", "delay", "run_once", "args", "module_defaults", "any_errors_fatal"}
# The state-changing runbooks whose start is one task, and the most tasks each may run before its first change.
ONE_TASK_STARTS = {"database_switchover": 2, "database_failover": 2, "database_rejoin": 2, "dns_cutover": 2,
                   "redis_backup": 2, "redis_restore": 2, "redis_failover": 2}
REDIS_RUNBOOKS = ("redis_backup", "redis_restore", "redis_failover")
# The steps a start is made of: a runbook whose start is one task runs none of them itself (the start does), so the
# start and the contract it checks are written once, in the start's plugin.
START_STEPS = {"erlmcp.dr.runbook_params", "erlmcp.dr.inventory_contract", "erlmcp.dr.redis_guard",
               "ansible.builtin.set_fact"}


def action_of(task: dict[str, Any]) -> str:
    actions = [key for key in task if key not in TASK_KEYWORDS and key not in ("block", "rescue", "always")]
    assert len(actions) == 1, f"not one action in {task}"
    return actions[0]


def ordered_tasks(tasks: list[dict[str, Any]], roles: Path) -> Iterator[dict[str, Any]]:
    """The tasks in the order a run meets them on its way to the first change: blocks flattened, an imported
    role's tasks in its place."""
    for task in tasks or []:
        if "block" in task:
            yield from ordered_tasks(task["block"], roles)
            continue
        action = action_of(task)
        role = (task.get(action) or {}).get("name", "") if action in ROLE_ACTIONS else ""
        if action == "ansible.builtin.import_role" and role not in CHANGING_ROLES:
            main = roles / role.rsplit(".", 1)[-1] / "tasks" / "main.yml"
            yield from ordered_tasks(yaml.safe_load(main.read_text()), roles)
            continue
        yield task


def tasks_before_first_change(playbook_text: str, roles: Path = ROOT / "roles") -> int:
    """The number of tasks the first play runs before the first one that can change a target."""
    play = yaml.safe_load(playbook_text)[0]
    count = 0
    for task in ordered_tasks(play["tasks"], roles):
        action = action_of(task)
        role = (task.get(action) or {}).get("name", "") if action in ROLE_ACTIONS else ""
        if action in CHANGING_ACTIONS or role in CHANGING_ROLES:
            return count
        if action == FENCE_STEP:
            continue  # the change's own fencing check, right before it (skipped, no worker, unless the lock is in etcd)
        count += 1
    raise AssertionError("the play changes nothing")


@pytest.mark.parametrize("runbook", sorted(ONE_TASK_STARTS))
def test_a_runbook_with_a_one_task_start_runs_at_most_a_gate_before_its_first_change(runbook: str) -> None:
    text = (ROOT / "playbooks" / f"{runbook}.yml").read_text()
    assert tasks_before_first_change(text) <= ONE_TASK_STARTS[runbook]


def all_tasks(tasks: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every task of a list, its blocks' block, rescue and always sections flattened."""
    for task in tasks or []:
        if any(section in task for section in ("block", "rescue", "always")):
            for section in ("block", "rescue", "always"):
                yield from all_tasks(task.get(section) or [])
            continue
        yield task


@pytest.mark.parametrize("runbook", REDIS_RUNBOOKS)
def test_a_redis_runbook_starts_with_the_shared_start_and_copies_none_of_it(runbook: str) -> None:
    play = yaml.safe_load((ROOT / "playbooks" / f"{runbook}.yml").read_text())[0]
    tasks = list(all_tasks(play["tasks"]))
    assert action_of(tasks[0]) == "erlmcp.dr.redis_begin", tasks[0]
    assert tasks[0]["erlmcp.dr.redis_begin"]["runbook"] == runbook
    copied = [task["name"] for task in tasks if action_of(task) in START_STEPS]
    assert copied == [], f"{runbook} runs steps of the start itself: {copied}"
    taken = [task["name"] for task in tasks if action_of(task) == "erlmcp.dr.run_lock"
             and (task["erlmcp.dr.run_lock"] or {}).get("state") != "absent"]
    assert taken == [], f"{runbook} takes the run lock itself: {taken}"
    assert not [name for name in play["vars"] if "contract" in name], "the Redis contract lives in redis_begin"


def test_the_count_finds_a_start_written_out_task_by_task() -> None:
    written_out = yaml.safe_dump([{"hosts": "localhost", "tasks": [{"name": "t", "block": [
        {"name": "Parameters", "erlmcp.dr.runbook_params": None},
        {"name": "Inventory", "erlmcp.dr.inventory_contract": {}},
        {"name": "Lock", "erlmcp.dr.run_lock": {"key": "dns:x."}},
        {"name": "Read", "erlmcp.dr.dns_info": {"name": "api"}, "loop": [1]},
        {"name": "Change", "erlmcp.dr.dns_record": {"name": "api"}},
    ], "always": [{"name": "Release", "erlmcp.dr.run_lock": {"key": "dns:x.", "state": "absent"}}]}]}])
    assert tasks_before_first_change(written_out) == 4
