"""redis_info on the lab's real redis-server nodes: what it reports, and how it reports nodes it cannot ask."""

from __future__ import annotations

import json

from conftest import redis_client, redis_nodes_arg, run_module, wait_redis_replicated

from erlmcp_dr.lab import lifecycle as lab


def _info(cfg: lab.LabConfig, check: bool = False, **extra) -> dict:
    args = {"nodes": redis_nodes_arg(cfg), "login_password": lab.LAB_PASSWORD}
    args.update(extra)
    return run_module("erlmcp.dr.redis_info", args, check=check)


def test_reports_the_primary_its_replicas_their_links_and_versions(untouched):
    result = _info(untouched)
    assert not result["failed"] and not result["changed"], result
    assert result["primary"] == "redis-a" and result["replicas"] == ["redis-b", "redis-c"]
    assert result["unreachable_nodes"] == [] and not result["split_brain"]
    nodes = result["nodes"]
    primary = nodes["redis-a"]
    assert primary["role"] == "primary" and primary["rdb_version"] == 10 and primary["redis_version"].startswith("7.")
    assert sorted(r["port"] for r in primary["replicas"]) == [untouched.redis_node(n).port
                                                                for n in ("redis-b", "redis-c")]
    assert primary["persistence"]["aof_enabled"] and primary["appenddirname"] == "appendonlydir"
    assert primary["dir"] == str(untouched.redis_node("redis-a").data_dir) and primary["dbfilename"] == "dump.rdb"
    assert primary["config_file"] == str(untouched.redis_node("redis-a").conf_file)
    for name in ("redis-b", "redis-c"):
        replica = nodes[name]
        assert (replica["role"], replica["upstream"], replica["link_status"]) == ("replica", "redis-a", "up")
        assert replica["lag_bytes"] is not None and replica["lag_bytes"] >= 0
    assert lab.LAB_PASSWORD not in json.dumps(result)


def test_counts_keys_per_database_and_follows_the_offsets(untouched):
    with redis_client(untouched, "redis-a", db=2) as client:
        client.flushdb()
        client.mset({f"info-key-{i}": str(i) for i in range(7)})
    wait_redis_replicated(untouched)
    result = _info(untouched, check=True)  # read-only: the same in check mode
    assert not result["failed"] and not result["changed"]
    for name in ("redis-a", "redis-b", "redis-c"):
        assert result["nodes"][name]["keys_per_db"].get("db2") == 7
    assert result["nodes"]["redis-b"]["lag_bytes"] == 0
    assert result["nodes"]["redis-b"]["repl_offset"] == result["nodes"]["redis-a"]["repl_offset"] > 0
    with redis_client(untouched, "redis-a", db=2) as client:
        client.flushdb()


def test_a_wrong_password_an_unknown_host_and_a_closed_port_are_said_per_node(untouched):
    nodes = redis_nodes_arg(untouched)
    nodes[1]["host"] = "no-such-host.invalid"
    nodes[2]["port"] = lab.free_port_base()
    result = run_module("erlmcp.dr.redis_info", {"nodes": nodes, "login_password": lab.LAB_PASSWORD})
    assert not result["failed"]
    assert result["unreachable_nodes"] == ["redis-b", "redis-c"]
    assert result["nodes"]["redis-b"]["error_kind"] == "dns" and "nodes[].host" in result["nodes"]["redis-b"]["error"]
    assert result["nodes"]["redis-c"]["error_kind"] == "refused"
    wrong = run_module("erlmcp.dr.redis_info", {"nodes": redis_nodes_arg(untouched), "login_password": "nope"})
    assert wrong["unreachable_nodes"] == ["redis-a", "redis-b", "redis-c"]
    error = wrong["nodes"]["redis-a"]["error"]
    assert wrong["nodes"]["redis-a"]["error_kind"] == "auth" and "login_password" in error and "nope" not in error
    none = run_module("erlmcp.dr.redis_info", {"nodes": redis_nodes_arg(untouched)[:1]})
    assert none["nodes"]["redis-a"]["error_kind"] == "auth" and "none was given" in none["nodes"]["redis-a"]["error"]
