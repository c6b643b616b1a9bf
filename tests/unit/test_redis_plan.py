"""The Redis runbooks' pure decisions: the lock key, which node a restore or backup acts on, the end state and the
summary (module_utils/_redis/plan.py). No server."""

from __future__ import annotations

from typing import Any

import pytest

from erlmcp_dr.paths import ensure_collection_importable

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._app import redis_config as app  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.errors import ModuleFailure  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._redis import plan, promote  # noqa: E402


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
    assert out["details"]["dataset"] == "backup" and out["did"] == ["restored backup b1"]
    assert out["details"]["bytes"] == 10 and out["end_state"] == {"ok": True, "problems": []}
    rolled = dict(restored, failed=True, rolled_back=True)
    assert plan.summary("redis_restore", target, dict(restore=rolled))["details"]["dataset"] == "rollback_point"
    resumed = dict(restored, resumed_from="placed")
    assert plan.summary("redis_restore", target, dict(restore=resumed))["did"][0].startswith("finished a restore")
    planned = plan.summary("redis_restore", target, dict(restore=restored), check_mode=True)
    assert planned["details"]["dataset"] == "unchanged" and planned["recovery_point"] is None


def test_a_restore_passes_the_point_of_no_return_its_runbook_declares_and_gives_up_the_backups_age():
    target = dict(action="restore", target="a", reason="backup b1")
    restored = dict(changed=True, backup_id="b1", backup=dict(size=10), data_loss_seconds=5)
    meta = {"point_of_no_return": "erlmcp.dr.redis_restore", "rpo_seconds": 3600}
    out = plan.summary("redis_restore", target, dict(restore=restored), True, meta=meta)
    assert out["point_of_no_return_passed"] is True
    assert out["recovery_point"] == {"lost_bytes": None, "lost_seconds": 5, "target_seconds": 3600}
    assert plan.summary("redis_restore", target, dict(restore=restored), True)["point_of_no_return_passed"] is False
    assert plan.summary("redis_restore", target, dict(restore=restored), True, True, meta)[
        "point_of_no_return_passed"] is False  # a plan passes nothing


def test_summary_of_a_backup():
    result = dict(changed=True, backup_id="b1", path="/s/b1.rdb", verified=True, size=3, sha256="y",
                  keys_per_db={"db0": 1}, deleted=["b0"], metadata=dict(source=dict(name="a")))
    out = plan.summary("redis_backup", {}, dict(backup=result, lock=dict(key="redis:k")))
    assert out["did"] == ["backed up a to /s/b1.rdb", "deleted backups by retention: b0"]
    assert out["lock"] == {"key": "redis:k"} and out["details"]["bytes"] == 3 and out["details"]["verified"]


# ---------------------------------------------------------------- failover: candidate, promotion plan, app config


def test_failover_candidate_is_the_named_node_else_the_replica_with_the_most_data():
    ahead = _info(_node("a", 7001, None), _node("b", 7002, repl_offset=90), _node("c", 7003, repl_offset=100))
    assert plan.failover_candidate(ahead)["target"] == "c"
    assert plan.failover_candidate(ahead, "b")["target"] == "b"
    assert plan.failover_candidate(ahead, "a")["action"] == "refuse"  # does not answer
    assert plan.failover_candidate(HEALTHY, away_from="a")["target"] in ("b", "c")
    assert plan.failover_candidate(HEALTHY)["target"] == "a"  # the primary already: nothing to move
    assert plan.failover_candidate(HEALTHY, "a", away_from="a")["action"] == "refuse"


def test_failover_away_from_a_node_outside_the_redis_group_is_refused_naming_the_members():
    refused = plan.failover_candidate(HEALTHY, away_from="redis-z")
    assert refused["action"] == "refuse" and "redis-z" in refused["reason"] and "a, b, c" in refused["reason"]


def _promote_nodes(**overrides: dict) -> dict:
    nodes = {
        "a": dict(reachable=True, role="primary", repl_offset=100, error=None),
        "b": dict(reachable=True, role="replica", upstream="a", link_status="up", repl_offset=100, error=None),
        "c": dict(reachable=True, role="replica", upstream="a", link_status="up", repl_offset=60, error=None),
    }
    for name, change in overrides.items():
        nodes[name] = dict(nodes[name], **change)
    return nodes


def test_promotion_plan_hands_over_by_failover_when_the_primary_answers():
    decided = promote.decide(_promote_nodes(), "b", max_lag_bytes=0)
    assert decided["action"] == "failover" and decided["old_primary"] == "a" and decided["follow"] == ["c"]
    refused = promote.decide(_promote_nodes(), "c", max_lag_bytes=10)
    assert refused["action"] == "refuse" and "40 bytes behind" in refused["reason"]
    unlinked = promote.decide(_promote_nodes(b=dict(link_status="down")), "b")
    assert unlinked["action"] == "refuse" and "link" in unlinked["reason"]


def test_promotion_plan_without_a_primary_takes_the_replica_with_the_most_data_unless_forced():
    down = dict(reachable=False, role=None, error="refused")
    assert promote.decide(_promote_nodes(a=down), "b")["action"] == "promote"
    assert promote.decide(_promote_nodes(a=down), "c")["action"] == "refuse"
    assert promote.decide(_promote_nodes(a=down), "c", force=True)["action"] == "promote"


def test_promotion_plan_refuses_a_second_writer_unless_it_is_to_be_demoted():
    two = _promote_nodes(b=dict(role="primary", upstream=None))
    assert promote.decide(two, "b")["action"] == "refuse"
    demoted = promote.decide(two, "b", demote=["a"])
    assert demoted["action"] == "none" and demoted["follow"] == ["a", "c"]
    done = _promote_nodes(a=dict(role="replica", upstream="b"), b=dict(role="primary", upstream=None),
                          c=dict(upstream="b"))
    assert promote.decide(done, "b") == dict(action="none", reason="b is the primary already", old_primary=None,
                                             lag_bytes=None, follow=[])


def test_app_redis_config_names_the_primary_and_its_linked_replicas():
    info = _info(_node("a", 7001, "primary"), _node("b", 7002), _node("c", 7003, link_status="down"))
    assert app.content(info) == {"redis": {"primary": "127.0.0.1:7001", "replicas": ["127.0.0.1:7002"],
                                           "primary_node": "a", "replica_nodes": ["b"]}}
    two = _info(_node("a", 7001, "primary"), _node("b", 7002, "primary"))
    with pytest.raises(ModuleFailure, match="no single Redis primary"):
        app.content(two)


def test_a_returning_old_primary_is_demoted_when_the_app_config_names_the_new_one():
    """Issue 16 row 4: after an unplanned failover the old primary restarts as a primary beside the new one."""
    split = _info(_node("a", 7001, "primary"), _node("b", 7002, "primary"), _node("c", 7003, upstream="b"))
    kept = plan.failover_candidate(split, recorded_primary="b")
    assert kept["action"] == "act" and kept["target"] == "b" and kept["demote"] == ["a"], kept
    assert "a" in kept["reason"] and "application" in kept["reason"]
    named = plan.failover_candidate(split, candidate="b", recorded_primary="b")
    assert named["target"] == "b" and named["demote"] == ["a"]
    unknown = plan.failover_candidate(split)
    assert unknown["action"] == "refuse" and "a, b" in unknown["reason"] and "(away_from)" in unknown["reason"]
    # the candidate that is not the recorded primary demotes nobody by itself: the engine refuses a second writer
    assert plan.failover_candidate(split, candidate="a", recorded_primary="b")["demote"] == []
    assert plan.failover_candidate(split, candidate="b", away_from="a")["demote"] == ["a"]
    nodes = {n: dict(f, repl_offset=10, replicas=[]) for n, f in split["nodes"].items()}
    assert promote.decide(nodes, "b", demote=["a"])["follow"] == ["a"]


def test_the_recorded_primary_is_read_from_the_app_config_text_or_is_none():
    assert plan.recorded_primary('{"redis": {"primary_node": "redis-b", "primary": "h:1"}}') == "redis-b"
    for text in (None, "", "not json", "[]", '{"redis": {}}', '{"redis": {"primary_node": 3}}'):
        assert plan.recorded_primary(text) is None, text
