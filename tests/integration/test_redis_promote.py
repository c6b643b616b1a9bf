"""redis_promote on the lab's real redis-server: a switchover by Redis's coordinated FAILOVER (never two writers,
every write kept), a failover with the primary down, the old primary coming back refused until it is named in
demote, check mode touching nothing, and a re-run that changes nothing."""

from __future__ import annotations

import subprocess
from typing import Any

from conftest import redis_client, redis_nodes_arg, run_module
from runbook_helpers import DEADLINE, wait_for, wait_redis_replicated

from erlmcp_dr.lab import lifecycle as lab


def _promote(cfg: lab.LabConfig, candidate: str, check: bool = False, **extra: Any) -> dict[str, Any]:
    args = dict(members=redis_nodes_arg(cfg), candidate=candidate, login_password=lab.LAB_PASSWORD,
                poll_interval=0.05, **extra)
    return run_module("erlmcp.dr.redis_promote", args, check=check, diff=True)


def _roles(cfg: lab.LabConfig) -> dict[str, tuple[str, int | None]]:
    roles = {}
    for node in cfg.redis_nodes:
        try:
            with redis_client(cfg, node.name) as client:
                info = client.info("replication")
        except Exception:  # noqa: BLE001 - a stopped node
            roles[node.name] = ("down", None)
            continue
        roles[node.name] = (info["role"], int(info["master_port"]) if info["role"] == "slave" else None)
    return roles


def _writable(cfg: lab.LabConfig, node: str) -> bool:
    import redis

    with redis_client(cfg, node) as client:
        try:
            client.set("probe-write", node)
        except redis.exceptions.ReadOnlyError:
            return False
    return True


def test_switchover_by_coordinated_failover_keeps_every_write_and_a_rerun_changes_nothing(fresh_lab):
    cfg = fresh_lab
    with redis_client(cfg, "redis-a") as client:
        client.mset({f"k{i}": str(i) for i in range(500)})
    # The plan's lag gate (max_lag_bytes, 0 by default) rightly refuses a candidate that has not yet received the write
    # just made: on a busy machine it had not, once in a full CI run. The plan is asked of a caught-up candidate.
    wait_redis_replicated(cfg)
    before = _roles(cfg)
    planned = _promote(cfg, "redis-b", check=True)
    assert not planned["failed"] and planned["changed"] and planned["plan"] == "failover", planned
    assert "redis-b: primary" in planned["diff"]["after"] and _roles(cfg) == before

    result = _promote(cfg, "redis-b", max_lag_bytes=1024 * 1024)
    assert not result["failed"] and result["promoted"] and result["fence"] == "failover", result
    assert result["old_primary"] == "redis-a" and result["repointed"] == ["redis-c"]
    port_b = cfg.redis_node("redis-b").port
    assert _roles(cfg) == {"redis-a": ("slave", port_b), "redis-b": ("master", None), "redis-c": ("slave", port_b)}
    with redis_client(cfg, "redis-b") as client:
        assert client.dbsize() == 500
    assert _writable(cfg, "redis-b") and not _writable(cfg, "redis-a") and not _writable(cfg, "redis-c")
    conf = cfg.redis_node("redis-a").conf_file.read_text()
    assert f"replicaof 127.0.0.1 {port_b}" in conf  # persisted: a restart keeps it a replica

    again = _promote(cfg, "redis-b")
    assert not again["failed"] and not again["changed"] and again["plan"] == "none", again


def test_failover_with_the_primary_down_then_the_old_primary_is_demoted_only_when_named(fresh_lab):
    cfg = fresh_lab
    old = cfg.redis_node("redis-a")
    with redis_client(cfg, "redis-a") as client:
        client.set("before", "1")
        client.execute_command("WAIT", 2, 5000)
        client.shutdown(nosave=True)  # the region is gone (redis-py takes the closed connection as done)
    wait_for(lambda: _roles(cfg)["redis-a"] == ("down", None), DEADLINE, interval=0.05, what="redis-a stopped")

    result = _promote(cfg, "redis-c")
    assert not result["failed"] and result["plan"] == "promote" and result["fence"] == "unreachable", result
    assert result["unreachable_nodes"] == ["redis-a"] and result["repointed"] == ["redis-b"]
    port_c = cfg.redis_node("redis-c").port
    assert _roles(cfg)["redis-b"] == ("slave", port_c) and _writable(cfg, "redis-c")

    subprocess.run(["redis-server", str(old.conf_file)], capture_output=True, timeout=30, check=True)
    refused = _promote(cfg, "redis-c")  # redis-a is back, and takes writes: two writers, refused
    assert refused["failed"] and "more than one Redis node takes writes" in refused["msg"], refused
    demoted = _promote(cfg, "redis-c", demote=["redis-a"])
    assert not demoted["failed"] and demoted["repointed"] == ["redis-a"], demoted
    assert _roles(cfg)["redis-a"] == ("slave", port_c)
    with redis_client(cfg, "redis-a") as client:
        assert client.get("before") == "1"
