"""The Redis runbooks' pure decisions: the lock key, which node a restore or backup acts on, the end state and the
summary (module_utils/_redis_plan.py). No server."""

from __future__ import annotations

from typing import Any

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils import _redis_plan as plan  # noqa: E402


def _node(name: str, port: int, role: str | None = "replica", upstream: str | None = "a", **extra: Any) -> dict:
    facts = dict(name=name, host="127.0.0.1", port=port, reachable=role is not None, role=role, error=None,
                 upstream=upstream if role == "replica" else None, upstream_host="127.0.0.1",
                 upstream_port=7001 if upstream == "a" else 7002, link_status="up", loading=False,
                 persistence=dict(aof_enabled=True))
    facts.update(extra)
    return facts


def _info(*nodes: dict) -> dict:
    by_name = {n["name"]: n for n in nodes}
    primaries = sorted(n["name"] for n in nodes if n["reachable"] and n["role"] == "primary")
    return dict(nodes=by_name, primaries=primaries, primary=primaries[0] if len(primaries) == 1 else None,
                unreachable_nodes=sorted(n["name"] for n in nodes if not n["reachable"]))


HEALTHY = _info(_node("a", 7001, "primary"), _node("b", 7002), _node("c", 7003))


def test_the_lock_key_is_the_members_endpoints_in_any_order():
    one = plan.lock_key([dict(host="127.0.0.1", port=7002), dict(host="LOCALHOST", port="7001")])
    other = plan.lock_key([dict(host="localhost", port=7001), dict(host="127.0.0.1", port=7002)])
    assert one == other == "redis:127.0.0.1:7002,localhost:7001"


def test_nodes_default_host_and_port():
    assert plan.nodes(["r1"], {"r1": {}}) == [dict(name="r1", host="r1", port=6379)]


def test_restore_targets_the_one_primary_or_the_node_named():
    assert plan.target(HEALTHY) == dict(action="act", target="a", reason="the one primary")
    assert plan.target(HEALTHY, "a")["target"] == "a"
    assert plan.target(HEALTHY, "b")["action"] == "refuse" and "replica" in plan.target(HEALTHY, "b")["reason"]
    assert plan.target(HEALTHY, "zz")["action"] == "refuse"


def test_restore_with_the_primary_stopped_targets_the_node_the_replicas_follow():
    info = _info(_node("a", 7001, None), _node("b", 7002), _node("c", 7003))
    assert plan.target(info)["target"] == "a"
    split = _info(_node("a", 7001, None), _node("b", 7002), _node("c", 7003, upstream="b"))
    assert plan.target(split)["action"] == "refuse"


def test_two_primaries_are_refused():
    info = _info(_node("a", 7001, "primary"), _node("b", 7002, "primary"), _node("c", 7003))
    assert plan.target(info)["action"] == "refuse"
    assert plan.target(info, "a")["action"] == "refuse"
    assert plan.target(info, purpose="backup")["action"] == "refuse"


def test_backup_saves_from_the_primary_or_a_named_reachable_node():
    assert plan.target(HEALTHY, purpose="backup")["target"] == "a"
    assert plan.target(HEALTHY, "c", purpose="backup")["target"] == "c"
    down = _info(_node("a", 7001, None), _node("b", 7002), _node("c", 7003))
    assert plan.target(down, purpose="backup")["action"] == "refuse"
    assert plan.target(down, "a", purpose="backup")["action"] == "refuse"
    assert plan.target(down, "b", purpose="backup")["target"] == "b"


def test_end_state_names_what_differs():
    assert plan.end_state(HEALTHY, "a") == dict(ok=True, problems=[])
    bad = _info(_node("a", 7001, "primary", persistence=dict(aof_enabled=False)), _node("b", 7002, link_status="down"),
                _node("c", 7003, "primary"))
    problems = plan.end_state(bad, "a")["problems"]
    assert len(problems) == 3 and "AOF off" in problems[0] and "down" in problems[1] and "primary" in problems[2]
    assert plan.end_state(bad, "a", left_out=["b", "c"])["problems"] == problems[:1]


def test_summary_of_a_restore_says_which_dataset_the_server_holds():
    target = dict(action="act", target="a", reason="the one primary")
    restored = dict(changed=True, backup_id="b1", backup=dict(size=10, sha256="x"), keys_before={"db0": 1},
                    keys_after={"db0": 2}, data_loss_seconds=5, replicas=[dict(host="h", port=1, offset=9)])
    out = plan.summary("redis_restore", target, dict(restore=restored, end_state=dict(ok=True, problems=[])), True)
    assert out["dataset"] == "backup" and out["did"] == ["restored backup b1"] and out["bytes"] == 10
    rolled = dict(restored, failed=True, rolled_back=True)
    assert plan.summary("redis_restore", target, dict(restore=rolled))["dataset"] == "rollback_point"
    resumed = dict(restored, resumed_from="placed")
    assert plan.summary("redis_restore", target, dict(restore=resumed))["did"][0].startswith("finished a restore")
    assert plan.summary("redis_restore", target, dict(restore=restored), check_mode=True)["dataset"] == "unchanged"


def test_summary_of_a_backup():
    result = dict(changed=True, backup_id="b1", path="/s/b1.rdb", verified=True, size=3, sha256="y",
                  keys_per_db={"db0": 1}, deleted=["b0"], metadata=dict(source=dict(name="a")))
    out = plan.summary("redis_backup", {}, dict(backup=result, lock=dict(key="redis:k")))
    assert out["did"] == ["backed up a to /s/b1.rdb", "deleted backups by retention: b0"]
    assert out["lock"] == "redis:k" and out["bytes"] == 3 and out["verified"]
