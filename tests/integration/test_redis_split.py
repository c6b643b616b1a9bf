"""A Redis primary lost to an unplanned failover comes back (issue 16 rows 4 and 9), on the lab's real redis-server.

kill -9 of the primary, `redis_failover` (it promotes the replica with the most data; the old primary is down, its
config file still names no `replicaof`), then the old primary started again as `runbook lab up` starts it: it
comes back a primary beside the new one. region_health calls that what it is - a split, its regions failed, both
primaries named, rc 1 - and the next `redis_failover` keeps the primary the application's Redis config names and
makes the returning one its replica (link up, role written into its config file), rc 0. The config files, 0600
because they hold the password, stay 0600 through every CONFIG REWRITE: a run that changes roles and a no-op run.
"""

from __future__ import annotations

import os
import signal
import stat

import pytest
from runbook_helpers import (
    DEADLINE,
    failure_message,
    inventory_path,
    redis_client,
    run_json,
    summary,
    wait_for,
    wait_redis_replicated,
)

from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration

NODES = ("redis-a", "redis-b", "redis-c")
FAST = ("-e", "interval=0.05", "-e", "timeout=20")


def _modes(cfg: lab.LabConfig) -> dict[str, str]:
    return {name: oct(stat.S_IMODE(cfg.redis_node(name).conf_file.stat().st_mode)) for name in NODES}


def _role(cfg: lab.LabConfig, node: str) -> dict:
    with redis_client(cfg, node) as client:
        return client.info("replication")


def _refused(cfg: lab.LabConfig, node: str) -> bool:
    try:
        with redis_client(cfg, node) as client:
            client.ping()
    except Exception:  # noqa: BLE001 - any failure to answer is what is awaited
        return True
    return False


def test_a_returning_old_primary_is_a_split_and_the_next_failover_makes_it_a_replica_confs_stay_0600(
        fresh_lab, home):
    cfg = fresh_lab
    with redis_client(cfg, "redis-a") as client:
        client.mset({f"key:{i}": str(i) for i in range(100)})
    wait_redis_replicated(cfg)
    for name in NODES:
        os.chmod(cfg.redis_node(name).conf_file, 0o600)
    inventory = str(inventory_path(cfg))

    old = cfg.redis_node("redis-a")
    os.kill(int(old.pid_file.read_text().split()[0]), signal.SIGKILL)
    wait_for(lambda: _refused(cfg, "redis-a"), DEADLINE, interval=0.05, what="redis-a to die")
    _, result = run_json("run", "redis_failover", "-i", inventory, "--yes", expect_rc=0)
    new = summary(result)["new_primary"]
    assert new in ("redis-b", "redis-c") and summary(result)["old_primary_fence"] == "unreachable", summary(result)
    assert _modes(cfg) == dict.fromkeys(NODES, "0o600")

    lab._bring_up_redis(cfg)  # what `runbook lab up` does: start what is stopped, with its own config file
    assert _role(cfg, "redis-a")["role"] == "master", "the old primary did not come back as a primary"

    _, health = run_json("run", "region_health", "-i", inventory, *FAST, expect_rc=1)
    found = summary(health)
    assert [split["hosts"] for split in found["splits"]] == [sorted(["redis-a", new])], found["splits"]
    regions = {cfg.redis_node(name).region for name in ("redis-a", new)}
    assert all(found["regions"][region] == "failed" for region in regions), found["regions"]
    assert "split" in failure_message(health) and "redis-a" in failure_message(health), failure_message(health)
    assert new in found["splits"][0]["message"]
    assert any(line.startswith("FAILED  split: Redis primaries") for line in found["table"])

    _, again = run_json("run", "redis_failover", "-i", inventory, "--yes", expect_rc=0)
    done = summary(again)
    assert done["new_primary"] == new and "redis-a" in done["repointed"] and done["end_state"]["ok"], done
    role = _role(cfg, "redis-a")
    assert role["role"] == "slave" and role["master_link_status"] == "up", role
    assert int(role["master_port"]) == cfg.redis_node(new).port
    assert "replicaof" in old.conf_file.read_text()
    assert _modes(cfg) == dict.fromkeys(NODES, "0o600")

    _, noop = run_json("run", "redis_failover", "-i", inventory, "--yes", expect_rc=0)
    assert summary(noop)["repointed"] == [] and not summary(noop)["promoted"], summary(noop)
    assert _modes(cfg) == dict.fromkeys(NODES, "0o600")
    _, healthy = run_json("run", "region_health", "-i", inventory, *FAST, expect_rc=0)
    assert summary(healthy)["splits"] == []  # (the regions' apps are not running in this lab: they fail)
    assert {row["host"]: row["role"] for row in summary(healthy)["checks"] if row["component"] == "redis"} == {
        "redis-a": "replica", new: "primary", ({"redis-b", "redis-c"} - {new}).pop(): "replica"}
