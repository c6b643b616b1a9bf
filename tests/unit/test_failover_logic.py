"""Every branch of the failover and switchover plans (module_utils/_failover.py) and their filters."""

from __future__ import annotations

import pytest

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible.errors import AnsibleFilterError  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.filter.failover import FilterModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._failover import (  # noqa: E402
    failover_plan,
    healthy_standbys,
    live_primaries,
    position,
    rejoin_plan,
    switchover_plan,
)

SYSID = "7311520438512345678"


def primary(name, lsn="0/5000000", timeline=1, **extra):
    node = dict(name=name, reachable=True, error=None, role="primary", timeline=timeline, system_identifier=SYSID,
                current_lsn=lsn, receive_lsn=None, replay_lsn=None, replay_paused=False, streaming=None,
                upstream=None, receiver_status=None, lag_bytes=None)
    node.update(extra)
    return node


def standby(name, replay="0/5000000", receive=None, upstream="pg-a", lag=0, **extra):
    node = dict(name=name, reachable=True, error=None, role="standby", timeline=1, system_identifier=SYSID,
                current_lsn=None, receive_lsn=receive or replay, replay_lsn=replay, replay_paused=False,
                streaming=True, upstream=upstream, receiver_status="streaming", lag_bytes=lag)
    node.update(extra)
    return node


def down(name):
    return dict(name=name, reachable=False, error="nothing is listening at 127.0.0.1:1 (connection refused)",
                role=None, timeline=None, system_identifier=None, current_lsn=None, receive_lsn=None,
                replay_lsn=None, replay_paused=None, streaming=None, upstream=None, lag_bytes=None)


def info(*nodes, primaries=None):
    result = {"nodes": {n["name"]: n for n in nodes}}
    if primaries is not None:
        result["primaries"] = primaries
    return result


def healthy():
    return info(primary("pg-a"), standby("pg-b", "0/4FFF000", lag=4096), standby("pg-c", "0/4000000", lag=1 << 24))


# ---------------------------------------------------------------- helpers


def test_live_primaries_from_nodes_or_given():
    assert live_primaries(healthy()) == ["pg-a"]
    assert live_primaries(info(primary("pg-b"), primary("pg-a"))) == ["pg-a", "pg-b"]
    assert live_primaries(info(primary("pg-a", reachable=False))) == []
    assert live_primaries(info(primary("pg-a"), primaries=["pg-z", "pg-a"])) == ["pg-a", "pg-z"]
    assert live_primaries({}) == []


def test_position_is_the_highest_known_lsn():
    assert position(standby("x", replay="0/10", receive="0/20")) == 0x20
    assert position(primary("x", lsn="1/0")) == 1 << 32
    assert position(down("x")) == -1


def test_healthy_standbys_best_first_ties_by_name():
    nodes = info(primary("pg-a"), standby("pg-d", "0/100"), standby("pg-c", "0/200"), standby("pg-b", "0/200"),
                 standby("pg-e", "0/900", replay_paused=True), standby("pg-f", "0/900", system_identifier="1"),
                 down("pg-g"))
    assert healthy_standbys(nodes, sysid=SYSID) == ["pg-b", "pg-c", "pg-d"]
    assert healthy_standbys(nodes, exclude=("pg-b",), sysid=SYSID) == ["pg-c", "pg-d"]


def test_nodes_as_a_list_are_accepted():
    plan = failover_plan({"nodes": [primary("pg-a", reachable=False), standby("pg-b")]}, "pg-a")
    assert plan["action"] == "promote" and plan["candidate"] == "pg-b"


# ---------------------------------------------------------------- failover: promote


def test_failover_picks_the_most_advanced_standby():
    plan = failover_plan(healthy(), "pg-a")
    assert plan["action"] == "promote"
    assert plan["old_primary"] == "pg-a"
    assert plan["candidate"] == "pg-b"
    assert plan["others"] == ["pg-c"]
    assert plan["lag_bytes"] == 4096
    assert plan["timeline"] == 1
    assert plan["warnings"] == []
    assert "most advanced" in plan["reason"] and "pg-b" in plan["reason"]


def test_failover_uses_receive_lsn_not_only_replay():
    nodes = info(down("pg-a"), standby("pg-b", replay="0/100", receive="0/900"), standby("pg-c", replay="0/800"))
    assert failover_plan(nodes, "pg-a")["candidate"] == "pg-b"


def test_failover_tie_broken_by_name():
    nodes = info(down("pg-a"), standby("pg-c", "0/500"), standby("pg-b", "0/500"))
    plan = failover_plan(nodes, "pg-a")
    assert plan["candidate"] == "pg-b" and plan["others"] == ["pg-c"]
    assert "down" in plan["reason"]


def test_failover_skips_paused_unreachable_and_foreign_standbys():
    nodes = info(primary("pg-a"), standby("pg-b", "0/900", replay_paused=True),
                 standby("pg-c", "0/800", system_identifier="42"), down("pg-d"), standby("pg-e", "0/100"))
    plan = failover_plan(nodes, "pg-a")
    assert plan["action"] == "promote" and plan["candidate"] == "pg-e"
    assert plan["others"] == ["pg-b", "pg-c"]  # reachable standbys left: repointing decides what to do with them


def test_failover_old_primary_down_uses_the_majority_system_identifier():
    nodes = info(down("pg-a"), standby("pg-b", "0/900", system_identifier="42"), standby("pg-c", "0/100"),
                 standby("pg-d", "0/100"))
    assert failover_plan(nodes, "pg-a")["candidate"] == "pg-c"


def test_failover_refuses_a_candidate_past_the_lag_budget_before_anything_is_fenced():
    plan = failover_plan(healthy(), "pg-a", candidate="pg-c")
    assert plan["action"] == "refuse" and plan["candidate"] == "pg-c"
    assert plan["lag_bytes"] == 1 << 24
    assert "max_lag_bytes" in plan["reason"] and "force" in plan["reason"]


def test_failover_force_promotes_a_lagging_candidate_with_a_warning():
    plan = failover_plan(healthy(), "pg-a", candidate="pg-c", force=True)
    assert plan["action"] == "promote" and plan["candidate"] == "pg-c" and plan["others"] == ["pg-b"]
    assert "requested" in plan["reason"]
    assert any("max_lag_bytes" in w and "force" in w for w in plan["warnings"])


def test_failover_lag_gate_follows_max_lag_bytes():
    assert failover_plan(healthy(), "pg-a", candidate="pg-c", max_lag_bytes=1 << 25)["action"] == "promote"
    assert failover_plan(healthy(), "pg-a", candidate="pg-c", max_lag_bytes=None)["action"] == "promote"
    assert failover_plan(healthy(), "pg-a", max_lag_bytes=0)["action"] == "refuse"  # pg-b is 4096 bytes behind


def test_failover_refuses_a_requested_candidate_with_paused_replay_unless_forced():
    nodes = info(primary("pg-a"), standby("pg-b", replay_paused=True))
    plan = failover_plan(nodes, "pg-a", candidate="pg-b")
    assert plan["action"] == "refuse" and "paused" in plan["reason"] and "force" in plan["reason"]
    forced = failover_plan(nodes, "pg-a", candidate="pg-b", force=True)
    assert forced["action"] == "promote"
    assert any("paused" in w for w in forced["warnings"])


def test_failover_unknown_lag_is_none():
    nodes = info(down("pg-a"), standby("pg-b", lag=None))
    assert failover_plan(nodes, "pg-a")["lag_bytes"] is None


def test_failover_away_from_a_standby_when_no_primary_is_up():
    nodes = info(down("pg-a"), standby("pg-b", "0/100"), standby("pg-c", "0/200"))
    plan = failover_plan(nodes, "pg-b")
    assert plan["action"] == "promote" and plan["candidate"] == "pg-c"


# ---------------------------------------------------------------- failover: none


def test_failover_already_done():
    nodes = info(down("pg-a"), primary("pg-b", timeline=2), standby("pg-c", upstream="pg-b"))
    plan = failover_plan(nodes, "pg-a")
    assert plan["action"] == "none"
    assert plan["reason"] == "already failed over: pg-b is the primary on timeline 2"
    assert plan["candidate"] == "pg-b" and plan["old_primary"] == "pg-a" and plan["others"] == ["pg-c"]
    assert plan["timeline"] == 2


def test_failover_already_done_while_old_primary_is_back_as_standby():
    nodes = info(standby("pg-a", upstream="pg-b"), primary("pg-b", timeline=2), standby("pg-c", upstream="pg-b"))
    plan = failover_plan(nodes, "pg-a", candidate="pg-c")
    assert plan["action"] == "none" and plan["others"] == ["pg-c"]


# ---------------------------------------------------------------- failover: refuse


def test_failover_refuses_split_brain():
    nodes = info(primary("pg-a"), primary("pg-b", timeline=2), standby("pg-c"))
    plan = failover_plan(nodes, "pg-a")
    assert plan["action"] == "refuse" and "split brain" in plan["reason"]
    assert "pg-a and pg-b" in plan["reason"]


def test_failover_refuses_split_brain_given_as_primaries():
    plan = failover_plan(info(primary("pg-a"), standby("pg-b"), primaries=["pg-a", "pg-x"]), "pg-a")
    assert plan["action"] == "refuse" and "split brain" in plan["reason"]


def test_failover_refuses_unknown_away_from():
    plan = failover_plan(healthy(), "pg-z")
    assert plan["action"] == "refuse" and "pg-z is not one of the nodes" in plan["reason"]


def test_failover_refuses_unknown_candidate():
    plan = failover_plan(healthy(), "pg-a", candidate="pg-z")
    assert plan["action"] == "refuse" and "pg-z" in plan["reason"] and "not one of the nodes" in plan["reason"]


def test_failover_refuses_candidate_that_is_away_from():
    nodes = info(down("pg-a"), standby("pg-b"))
    plan = failover_plan(nodes, "pg-a", candidate="pg-a")
    assert plan["action"] == "refuse" and "failing over away from" in plan["reason"]


def test_failover_refuses_unreachable_candidate():
    nodes = info(primary("pg-a"), down("pg-b"), standby("pg-c"))
    plan = failover_plan(nodes, "pg-a", candidate="pg-b")
    assert plan["action"] == "refuse" and "pg-b is unreachable" in plan["reason"]
    assert "connection refused" in plan["reason"]


def test_failover_refuses_candidate_that_is_not_a_standby():
    nodes = info(down("pg-a"), primary("pg-b", reachable=True, role="unknown"), standby("pg-c"))
    plan = failover_plan(nodes, "pg-a", candidate="pg-b")
    assert plan["action"] == "refuse" and "not a standby" in plan["reason"]


def test_failover_refuses_candidate_of_another_cluster():
    nodes = info(primary("pg-a"), standby("pg-b", system_identifier="42"))
    plan = failover_plan(nodes, "pg-a", candidate="pg-b")
    assert plan["action"] == "refuse" and "another cluster" in plan["reason"]


def test_failover_refuses_when_no_healthy_standby():
    nodes = info(primary("pg-a"), down("pg-b"), standby("pg-c", replay_paused=True),
                 standby("pg-d", system_identifier="42"))
    plan = failover_plan(nodes, "pg-a")
    assert plan["action"] == "refuse" and plan["candidate"] is None
    assert plan["reason"].startswith("no healthy standby to promote")
    assert "pg-b is unreachable" in plan["reason"]
    assert "pg-c has replay paused" in plan["reason"]
    assert "pg-d belongs to another cluster" in plan["reason"]


def test_failover_refuses_with_a_single_node():
    plan = failover_plan(info(primary("pg-a")), "pg-a")
    assert plan["action"] == "refuse" and plan["reason"] == "no healthy standby to promote"


# ---------------------------------------------------------------- switchover


def test_switchover_promotes_streaming_standby():
    plan = switchover_plan(healthy(), "pg-c")
    assert plan["action"] == "promote"
    assert plan["old_primary"] == "pg-a" and plan["candidate"] == "pg-c" and plan["others"] == ["pg-b"]
    assert plan["lag_bytes"] == 1 << 24 and plan["timeline"] == 1


def test_switchover_none_when_candidate_already_primary():
    nodes = info(down("pg-a"), primary("pg-b", timeline=3), standby("pg-c", upstream="pg-b"))
    plan = switchover_plan(nodes, "pg-b")
    assert plan["action"] == "none" and "pg-b already is the primary on timeline 3" == plan["reason"]
    assert plan["others"] == ["pg-c"]


def test_switchover_refuses_split_brain_even_for_a_primary_candidate():
    nodes = info(primary("pg-a"), primary("pg-b"))
    assert switchover_plan(nodes, "pg-b")["action"] == "refuse"


def test_switchover_refuses_unknown_candidate():
    plan = switchover_plan(healthy(), "pg-z")
    assert plan["action"] == "refuse" and "not one of the nodes" in plan["reason"]


def test_switchover_refuses_without_a_primary():
    nodes = info(down("pg-a"), standby("pg-b"))
    plan = switchover_plan(nodes, "pg-b")
    assert plan["action"] == "refuse" and "no primary is up" in plan["reason"]


def test_switchover_refuses_unreachable_candidate():
    nodes = info(primary("pg-a"), down("pg-b"))
    plan = switchover_plan(nodes, "pg-b")
    assert plan["action"] == "refuse" and "unreachable" in plan["reason"] and plan["old_primary"] == "pg-a"


def test_switchover_refuses_candidate_not_streaming():
    nodes = info(primary("pg-a"), standby("pg-b", streaming=False, receiver_status=None))
    plan = switchover_plan(nodes, "pg-b")
    assert plan["action"] == "refuse" and "not streaming from the primary pg-a" in plan["reason"]


def test_switchover_refuses_candidate_streaming_from_another_node():
    nodes = info(primary("pg-a"), standby("pg-b"), standby("pg-c", upstream="pg-b"))
    plan = switchover_plan(nodes, "pg-c")
    assert plan["action"] == "refuse" and "upstream: pg-b" in plan["reason"]


def test_switchover_refuses_candidate_of_another_cluster():
    nodes = info(primary("pg-a"), standby("pg-b", system_identifier="42"))
    assert "another cluster" in switchover_plan(nodes, "pg-b")["reason"]


def test_switchover_refuses_paused_replay():
    nodes = info(primary("pg-a"), standby("pg-b", replay_paused=True))
    plan = switchover_plan(nodes, "pg-b")
    assert plan["action"] == "refuse" and "pg_wal_replay_resume" in plan["reason"]


# ---------------------------------------------------------------- filters


def test_filters_are_registered_and_delegate():
    filters = FilterModule().filters()
    assert filters["pg_failover_plan"](healthy(), "pg-a")["candidate"] == "pg-b"
    assert filters["pg_failover_plan"](healthy(), "pg-a", "pg-c", "0")["action"] == "refuse"
    assert filters["pg_failover_plan"](healthy(), "pg-a", "pg-c", "0", True)["warnings"]
    assert filters["pg_failover_plan"](healthy(), "pg-a", "")["candidate"] == "pg-b"  # '' = no candidate
    assert filters["pg_switchover_plan"](healthy(), "pg-b")["action"] == "promote"
    assert filters["pg_switchover_plan"](healthy(), "pg-c", 1024)["action"] == "refuse"
    assert filters["pg_rejoin_plan"](healthy())["action"] == "none"


@pytest.mark.parametrize("name", ["pg_failover_plan", "pg_switchover_plan"])
def test_filters_reject_what_is_not_replication_info(name):
    with pytest.raises(AnsibleFilterError, match="pg_replication_info"):
        FilterModule().filters()[name]([1, 2], "pg-a")


def test_failover_filter_rejects_bad_max_lag():
    with pytest.raises(AnsibleFilterError, match="max_lag_bytes"):
        FilterModule().filters()["pg_failover_plan"](healthy(), "pg-a", None, "lots")


# ---------------------------------------------------------------- switchover lag gate and rejoin


def test_switchover_refuses_a_candidate_past_max_lag_bytes():
    plan = switchover_plan(healthy(), "pg-c", max_lag_bytes=1 << 20)
    assert plan["action"] == "refuse" and "max_lag_bytes" in plan["reason"] and plan["lag_bytes"] == 1 << 24
    assert switchover_plan(healthy(), "pg-c")["action"] == "promote"  # no budget given: no limit


def test_rejoin_none_when_every_node_streams_from_the_primary():
    plan = rejoin_plan(healthy())
    assert plan["action"] == "none" and plan["primary"] == "pg-a" and plan["nodes"] == []


def test_rejoin_lists_stopped_and_stray_nodes():
    nodes = info(down("pg-a"), primary("pg-b", timeline=2), standby("pg-c", upstream="pg-a", streaming=False))
    plan = rejoin_plan(nodes)
    assert plan["action"] == "rejoin" and plan["primary"] == "pg-b" and plan["nodes"] == ["pg-a", "pg-c"]
    assert rejoin_plan(nodes, node="pg-a")["nodes"] == ["pg-a"]


def test_rejoin_refuses_without_a_single_primary_or_for_the_primary_itself():
    assert rejoin_plan(info(down("pg-a"), standby("pg-b")))["action"] == "refuse"
    split = info(primary("pg-a"), primary("pg-b", timeline=2), standby("pg-c"))
    assert rejoin_plan(split)["action"] == "refuse" and "split brain" in rejoin_plan(split)["reason"]
    stray = rejoin_plan(split, node="pg-a")
    assert stray["action"] == "rejoin" and stray["primary"] == "pg-b" and stray["nodes"] == ["pg-a"]
    assert rejoin_plan(healthy(), node="pg-a")["action"] == "refuse"
    assert rejoin_plan(healthy(), node="pg-z")["action"] == "refuse"
