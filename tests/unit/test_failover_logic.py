"""Every branch of the failover and switchover plans (module_utils/_postgres/failover_plan.py) and their filters."""

from __future__ import annotations

import pytest

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible.errors import AnsibleFilterError  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.filter.failover import FilterModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.failover_plan import (  # noqa: E402
    end_state,
    failover_plan,
    healthy_standbys,
    live_primaries,
    position,
    rejoin_plan,
    switchover_plan,
    writes_wait,
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


def test_live_primaries_are_the_writable_ones_read_from_the_nodes():
    assert live_primaries(healthy()) == ["pg-a"]
    assert live_primaries(info(primary("pg-b"), primary("pg-a"))) == ["pg-a", "pg-b"]
    assert live_primaries(info(primary("pg-a", reachable=False))) == []
    assert live_primaries(info(primary("pg-a", read_only=True), primary("pg-b"))) == ["pg-b"]  # fenced: no writer
    assert live_primaries(info(primary("pg-a"), primaries=["pg-z", "pg-a"])) == ["pg-a"]  # facts, not labels
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


def test_failover_skips_paused_and_unreachable_standbys_and_leaves_the_unreachable_out_with_a_warning():
    nodes = info(primary("pg-a"), standby("pg-b", "0/900", replay_paused=True), down("pg-d"), standby("pg-e", "0/100"))
    plan = failover_plan(nodes, "pg-a")
    assert plan["action"] == "promote" and plan["candidate"] == "pg-e" and plan["fence"] == "pg-a"
    assert plan["others"] == ["pg-b"]  # reachable standbys left: repointing decides what to do with them
    assert plan["left_out"][0]["node"] == "pg-d"
    assert any(w.startswith("pg-d is left out") for w in plan["warnings"])


def test_failover_refuses_before_fencing_when_a_member_belongs_to_another_cluster():
    nodes = info(down("pg-a"), standby("pg-b", "0/900", system_identifier="42"), standby("pg-c", "0/100"),
                 standby("pg-d", "0/100"))
    plan = failover_plan(nodes, "pg-a")
    assert plan["action"] == "refuse" and "pg-b (system identifier 42)" in plan["reason"]
    assert "another cluster" in plan["reason"] and plan["fence"] is None


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


def test_failover_with_the_primary_down_holds_a_requested_candidate_to_the_budget_against_the_best_standby():
    # pg-a cannot be asked: with synchronous replication pg-b may hold acknowledged commits pg-c lacks.
    nodes = info(down("pg-a"), standby("pg-b", "0/6000000", lag=None), standby("pg-c", "0/4000000", lag=None))
    plan = failover_plan(nodes, "pg-a", candidate="pg-c")
    assert plan["action"] == "refuse" and plan["candidate"] == "pg-c" and plan["lag_bytes"] is None
    assert "33554432 bytes behind pg-b" in plan["reason"] and "candidate=pg-b" in plan["reason"], plan["reason"]
    forced = failover_plan(nodes, "pg-a", candidate="pg-c", force=True)
    assert forced["action"] == "promote" and any("force" in w for w in forced["warnings"])
    # Within the budget: promoted, with a warning naming what only the better standby has.
    close = info(down("pg-a"), standby("pg-b", "0/4001000", lag=None), standby("pg-c", "0/4000000", lag=None))
    plan = failover_plan(close, "pg-a", candidate="pg-c")
    assert plan["action"] == "promote" and any("4096 bytes behind pg-b" in w for w in plan["warnings"])
    assert failover_plan(close, "pg-a", candidate="pg-c", max_lag_bytes=0)["action"] == "refuse"
    # The most advanced standby itself (asked for, or chosen): nothing ahead of it, no warning.
    for candidate in ("pg-b", None):
        plan = failover_plan(nodes, "pg-a", candidate=candidate, max_lag_bytes=0)
        assert plan["action"] == "promote" and plan["candidate"] == "pg-b" and plan["warnings"] == []


def test_failover_away_from_a_standby_when_no_primary_is_up():
    nodes = info(down("pg-a"), standby("pg-b", "0/100"), standby("pg-c", "0/200"))
    plan = failover_plan(nodes, "pg-b")
    assert plan["action"] == "promote" and plan["candidate"] == "pg-c"


# ---------------------------------------------------------------- failover: none


def test_failover_already_done():
    nodes = info(down("pg-a"), primary("pg-b", timeline=2), standby("pg-c", upstream="pg-b"))
    plan = failover_plan(nodes, "pg-a")
    assert plan["action"] == "none" and not plan["promote"] and plan["fence"] is None
    assert plan["reason"] == "already failed over: pg-b is the primary on timeline 2"
    assert plan["candidate"] == "pg-b" and plan["old_primary"] == "pg-a" and plan["follow"] == []
    assert plan["timeline"] == 2 and plan["left_out"] == []  # the fenced old primary is part of the end state


def test_failover_already_done_while_old_primary_is_back_as_standby():
    nodes = info(standby("pg-a", upstream="pg-b"), primary("pg-b", timeline=2), standby("pg-c", upstream="pg-b"))
    plan = failover_plan(nodes, "pg-a", candidate="pg-c")
    assert plan["action"] == "none" and plan["candidate"] == "pg-b"
    assert any("not promoting pg-c" in w for w in plan["warnings"])


# ---------------------------------------------------------------- failover: refuse


def test_failover_refuses_split_brain():
    nodes = info(primary("pg-a"), primary("pg-b", timeline=2), standby("pg-c"))
    plan = failover_plan(nodes, "pg-a")
    assert plan["action"] == "refuse" and "split brain" in plan["reason"]
    assert "pg-a and pg-b" in plan["reason"]


def test_failover_refuses_unknown_away_from():
    plan = failover_plan(healthy(), "pg-z")
    assert plan["action"] == "refuse" and "pg-z (away_from) is not one of the nodes" in plan["reason"]


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
    nodes = info(primary("pg-a"), down("pg-b"), standby("pg-c", replay_paused=True), primary("pg-d", read_only=True))
    plan = failover_plan(nodes, "pg-a")
    assert plan["action"] == "refuse" and plan["candidate"] is None
    assert plan["reason"].startswith("no healthy standby to promote")
    assert "pg-b is unreachable" in plan["reason"]
    assert "pg-c has replay paused" in plan["reason"]
    assert "pg-d is a fenced (read-only) primary" in plan["reason"]


def test_failover_refuses_with_a_single_node():
    plan = failover_plan(info(primary("pg-a")), "pg-a")
    assert plan["action"] == "refuse" and plan["reason"] == "no healthy standby to promote"


# ---------------------------------------------------------------- switchover


def test_switchover_promotes_streaming_standby():
    plan = switchover_plan(healthy(), "pg-c")
    assert plan["action"] == "promote"
    assert plan["old_primary"] == "pg-a" and plan["candidate"] == "pg-c" and plan["others"] == ["pg-b"]
    assert plan["lag_bytes"] == 1 << 24 and plan["timeline"] == 1


def test_switchover_none_when_candidate_already_primary_and_every_member_streams():
    nodes = info(standby("pg-a", upstream="pg-b"), primary("pg-b", timeline=3), standby("pg-c", upstream="pg-b"))
    plan = switchover_plan(nodes, "pg-b")
    assert plan["action"] == "none" and "pg-b already is the primary on timeline 3" == plan["reason"]
    assert plan["follow"] == [] and not plan["promote"]


def test_switchover_refuses_split_brain_even_for_a_primary_candidate():
    nodes = info(primary("pg-a"), primary("pg-b"))
    assert switchover_plan(nodes, "pg-b")["action"] == "refuse"


def test_switchover_refuses_unknown_candidate():
    plan = switchover_plan(healthy(), "pg-z")
    assert plan["action"] == "refuse" and "not one of the nodes" in plan["reason"]


def test_switchover_refuses_without_a_primary_to_switch_from():
    nodes = info(down("pg-a"), standby("pg-b", upstream=None, streaming=False))
    plan = switchover_plan(nodes, "pg-b")
    assert plan["action"] == "refuse" and "no node takes writes" in plan["reason"]
    assert "use database_failover" in plan["reason"] and "connection refused" in plan["reason"]


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


# ---------------------------------------------------------------- end state: what a killed run leaves behind


def promoted(name, timeline=2, upstream_of_old="pg-a", **extra):
    """A freshly promoted primary: it keeps the primary_conninfo naming the node it was promoted away from."""
    return primary(name, timeline=timeline, configured_upstream=upstream_of_old, **extra)


def test_switchover_killed_after_the_fence_finishes_from_the_stopped_old_primary():
    nodes = info(down("pg-a"), standby("pg-b", streaming=False, upstream=None, configured_upstream="pg-a"),
                 standby("pg-c", streaming=False, upstream=None, configured_upstream="pg-a"))
    plan = switchover_plan(nodes, "pg-b")
    assert plan["action"] == "promote" and plan["promote"] and plan["fence"] == "pg-a"
    assert plan["old_primary"] == "pg-a" and plan["follow"] == ["pg-a", "pg-c"]
    assert "finish the switchover from pg-a (stopped)" in plan["reason"]


def test_switchover_killed_after_the_fence_uses_the_primary_of_record_when_the_upstream_is_unknown():
    nodes = info(down("pg-a"), standby("pg-b", streaming=False, upstream=None), standby("pg-c", streaming=False))
    assert switchover_plan(nodes, "pg-b")["action"] == "refuse"
    assert switchover_plan(nodes, "pg-b", primary_of_record="pg-a")["fence"] == "pg-a"


def test_switchover_killed_after_the_promotion_converges_and_rejoins_the_stopped_old_primary():
    nodes = info(down("pg-a"), promoted("pg-b"), standby("pg-c", streaming=False, upstream=None))
    plan = switchover_plan(nodes, "pg-b")
    assert plan["action"] == "converge" and not plan["promote"] and plan["fence"] is None
    assert plan["follow"] == ["pg-a", "pg-c"] and plan["old_primary"] == "pg-a"


def test_switchover_converge_leaves_an_unreachable_stranger_out_with_a_warning():
    nodes = info(standby("pg-a", upstream="pg-b"), promoted("pg-b"),
                 dict(down("pg-c"), error_kind="timeout", error="no answer from 10.0.0.3:5432 within 5s"))
    plan = switchover_plan(nodes, "pg-b")
    assert plan["action"] == "none" and plan["left_out"][0]["node"] == "pg-c"
    assert plan["warnings"] == ["pg-c is left out: pg-c is unreachable (no answer from 10.0.0.3:5432 within 5s)"]


def test_switchover_converts_a_read_only_fenced_old_primary():
    nodes = info(primary("pg-a", read_only=True), promoted("pg-b"), standby("pg-c", upstream="pg-b"))
    plan = switchover_plan(nodes, "pg-b")
    assert plan["action"] == "converge" and plan["follow"] == ["pg-a"]


def test_failover_killed_after_the_promotion_repoints_the_standbys_but_leaves_the_fenced_old_primary():
    nodes = info(down("pg-a"), promoted("pg-b"), standby("pg-c", streaming=False, upstream=None))
    plan = failover_plan(nodes, "pg-a")
    assert plan["action"] == "converge" and plan["follow"] == ["pg-c"] and not plan["promote"]


def test_failover_with_a_read_only_fenced_old_primary_is_done_once_the_others_stream():
    nodes = info(primary("pg-a", read_only=True), promoted("pg-b"), standby("pg-c", upstream="pg-b"))
    plan = failover_plan(nodes, "pg-a", fence_method="read_only")
    assert plan["action"] == "none"


def test_failover_killed_after_a_read_only_fence_promotes_and_fences_again():
    nodes = info(primary("pg-a", read_only=True), standby("pg-b"), standby("pg-c"))
    plan = failover_plan(nodes, "pg-a", fence_method="read_only")
    assert plan["action"] == "promote" and plan["fence"] == "pg-a" and "fenced read-only" in plan["reason"]


def test_failover_never_promotes_beside_a_writable_primary_without_a_fence_even_with_force():
    plan = failover_plan(healthy(), "pg-a", fence_method="none", primary_confirmed_down=True, force=True)
    assert plan["action"] == "refuse" and "two writable primaries" in plan["reason"]
    assert "force does not override" in plan["reason"]


def test_failover_without_fence_needs_confirmation_when_the_old_primary_cannot_be_asked():
    nodes = info(down("pg-a"), standby("pg-b"))
    assert failover_plan(nodes, "pg-a", fence_method="none")["action"] == "refuse"
    confirmed = failover_plan(nodes, "pg-a", fence_method="none", primary_confirmed_down=True)
    assert confirmed["action"] == "promote" and confirmed["fence"] is None


def test_streaming_is_matched_by_identity_not_by_name():
    nodes = info(primary("pg-a"), standby("pg-b", upstream="pg-a", system_identifier="42"))
    assert rejoin_plan(nodes, node="pg-b")["action"] == "refuse"
    assert "another cluster" in rejoin_plan(nodes, node="pg-b")["reason"]


def test_rejoin_takes_a_read_only_primary_as_a_node_to_rejoin():
    nodes = info(primary("pg-a", read_only=True), promoted("pg-b"), standby("pg-c", upstream="pg-b"))
    plan = rejoin_plan(nodes)
    assert plan["action"] == "rejoin" and plan["primary"] == "pg-b" and plan["nodes"] == ["pg-a"]


def test_end_state_holds_only_with_one_writer_and_every_member_streaming():
    ok = info(standby("pg-a", upstream="pg-b"), promoted("pg-b"), standby("pg-c", upstream="pg-b"))
    assert end_state(ok, "pg-b") == {"ok": True, "problems": [], "primary": "pg-b"}
    stale = info(down("pg-a"), promoted("pg-b"), standby("pg-c", upstream="pg-a", streaming=False))
    verdict = end_state(stale, "pg-b")
    assert not verdict["ok"] and len(verdict["problems"]) == 2
    assert end_state(stale, "pg-b", fenced_ok=("pg-a",), left_out=("pg-c",))["ok"]
    two = info(primary("pg-a"), promoted("pg-b"))
    assert "the writable primaries are pg-a, pg-b" in end_state(two, "pg-b", fenced_ok=("pg-a",))["problems"][0]


def test_end_state_filter_accepts_the_plans_left_out_entries():
    stale = info(down("pg-a"), promoted("pg-b"))
    verdict = FilterModule().filters()["pg_end_state"](stale, "pg-b", None, [{"node": "pg-a", "why": "down"}])
    assert verdict["ok"]


# ---------------------------------------------------------------- synchronous replication


def test_a_primary_asking_for_a_synchronous_standby_with_none_streaming_takes_no_write():
    def cluster(setting, *sync_states):
        replicas = [dict(application_name=f"pg-{index}", sync_state=state) for index, state in enumerate(sync_states)]
        return info(primary("pg-b", synchronous_standby_names=setting, replicas=replicas))

    reason = writes_wait(cluster("ANY 1 (*)"), "pg-b")
    assert reason.startswith("pg-b takes no write") and "ANY 1 (*)" in reason
    assert writes_wait(cluster("FIRST 1 (pg-0, pg-1)", "potential"), "pg-b") is not None  # a standby only potential
    assert writes_wait(cluster("ANY 1 (*)", "quorum"), "pg-b") is None
    assert writes_wait(cluster("pg-c", "sync"), "pg-b") is None
    assert writes_wait(cluster("", "async"), "pg-b") is None  # asynchronous
    assert writes_wait(cluster(None), "pg-b") is None  # a read from before the setting was read
    assert writes_wait(cluster("ANY 1 (*)"), "pg-x") is None  # not a node of the read: nothing to say
