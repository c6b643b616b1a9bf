"""The Redis runbooks' one-task start (erlmcp.dr.redis_begin) on the lab's real redis-server, through the CLI: one lab,
several runs, each asserting what the start promises (docs/architecture.md, "The one-task start"):
- a refusal made in the plan (a store the inventory does not name) fails the gate, touching nothing, its summary
  naming the variable, and the lock the start took is released (the next run is not turned away);
- the start is one step, before the gate and the first change, and says how long each of its parts took;
- a failover takes the Redis guard inside the start and promotes under it.
Check mode (no lock, no guard taken) is tests/integration/test_plan_changes_on_lab.py's."""

from __future__ import annotations

import pytest
from runbook_helpers import changed_steps, inventory_path, redis_client, run_json, step, summary

from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration

START = "Start - parameters, inventory, lock the deployment"


def _roles(cfg: lab.LabConfig) -> dict[str, str]:
    roles = {}
    for node in ("redis-a", "redis-b", "redis-c"):
        with redis_client(cfg, node) as client:
            roles[node] = client.info("replication")["role"]
    return roles


def test_the_redis_start_refuses_in_its_plan_releases_its_lock_and_guards_a_failover(fresh_lab, home):
    cfg = fresh_lab
    inventory = str(inventory_path(cfg))

    # A store the inventory does not name: refused by the plan, after the start, before anything changed.
    _, refused = run_json("run", "redis_backup", "-i", inventory, "-e", "store=s3", "--yes", expect_rc=1)
    done = summary(refused)
    assert done["action"] == "refuse" and "store=s3 needs redis_s3_bucket" in done["reason"], done
    assert not done["completed"] and changed_steps(refused) == [], refused["steps"]
    start = step(refused, START)
    assert start["action"] == "erlmcp.dr.redis_begin" and not start["failed"], start
    assert [s["task"] for s in refused["steps"]].index(start["task"]) == 0, [s["task"] for s in refused["steps"]]

    # The lock it took is released: the next run of the deployment goes on. A failover's start takes the Redis guard
    # (and times every part); the promotion is re-checked under its token.
    _, moved = run_json("run", "redis_failover", "-i", inventory, "-e", "candidate=redis-b", "--yes", expect_rc=0)
    done = summary(moved)
    start = step(moved, START)["data"]
    assert {"parameters", "inventory", "members", "lock", "guard", "read", "plan"} <= set(start["durations"]), start
    assert start["guard"]["held"] and done["guard"] == start["guard"]["token"] == done["promoted_under_guard"], done
    assert done["completed"] and done["end_state"]["ok"] and done["new_primary"] == "redis-b", done
    assert _roles(cfg) == {"redis-a": "slave", "redis-b": "master", "redis-c": "slave"}
