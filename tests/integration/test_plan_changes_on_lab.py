"""`runbook plan` on the lab names what a run would change, from the runbooks' own check-mode summaries: the
backup a restore puts back (id, age, key counts now -> after) and the writes it gives up, and the node that
serves before -> after for redis_failover and database_switchover. Nothing changes (check mode)."""

from __future__ import annotations

import pytest
from runbook_helpers import inventory_path, redis_client, run_json, summary

from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration


def _keys(cfg: lab.LabConfig) -> int:
    with redis_client(cfg, "redis-a") as client:
        return int(client.dbsize())


def test_plans_name_the_backup_the_keys_and_the_serving_node(fresh_lab, home):
    cfg = fresh_lab
    inventory = str(inventory_path(cfg))
    with redis_client(cfg, "redis-a") as client:
        client.flushall()
        client.mset({f"key:{i}": str(i) for i in range(50)})
    run_json("run", "redis_backup", "-i", inventory, "-e", "backup_id=before-change", expect_rc=0)
    with redis_client(cfg, "redis-a") as client:
        client.mset({f"later:{i}": str(i) for i in range(25)})

    _, restore = run_json("plan", "redis_restore", "-i", inventory, "-e", "backup=before-change", expect_rc=0)
    planned = summary(restore)
    assert planned["plan"]["will_change"] and planned["plan"]["will_change"][0].startswith(
        "dataset of redis-a: 75 keys -> 50 keys, from backup before-change (taken "), planned
    assert planned["plan"]["may_lose"] and planned["plan"]["may_lose"][0].startswith(
        "every write to redis-a since the backup was taken ("), planned
    assert _keys(cfg) == 75  # a plan changes nothing

    _, failover = run_json("plan", "redis_failover", "-i", inventory, "-e", "candidate=redis-b", expect_rc=0)
    assert summary(failover)["plan"]["will_change"][0] == (
        "primary: redis-a -> redis-b (Redis's coordinated FAILOVER: writes paused until redis-b has every byte)")
    assert summary(failover)["plan"]["may_lose"] == []

    _, switchover = run_json("plan", "database_switchover", "-i", inventory, "-e", "candidate=pg-b", expect_rc=0)
    assert summary(switchover)["plan"]["will_change"] == ["primary: pg-a -> pg-b"], summary(switchover)
