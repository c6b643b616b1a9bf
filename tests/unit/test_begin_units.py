"""The pure parts of the one-task start and end: pg_begin's plans are the plan filters called with the runbook's
parameters, and app_db_config's end-state verdict is the pg_end_state filter's (no servers)."""

from __future__ import annotations

from typing import Any

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.action.pg_begin import PLANS  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.filter.failover import (  # noqa: E402
    pg_end_state,
    pg_failover_plan,
    pg_rejoin_plan,
    pg_switchover_plan,
)
from ansible_collections.erlmcp.dr.plugins.module_utils._app.db_config import verdict  # noqa: E402

SYSID = "7311520438512345678"


def node(name: str, role: str, upstream: str | None = None, **extra: Any) -> dict[str, Any]:
    facts = dict(name=name, host="127.0.0.1", port=5432 + ord(name[-1]), reachable=True, error=None, role=role,
                 timeline=1, system_identifier=SYSID, current_lsn="0/5000000" if role == "primary" else None,
                 receive_lsn=None if role == "primary" else "0/5000000",
                 replay_lsn=None if role == "primary" else "0/5000000", replay_paused=False,
                 streaming=None if role == "primary" else True, upstream=upstream,
                 receiver_status=None if role == "primary" else "streaming", lag_bytes=None if role == "primary" else 0)
    facts.update(extra)
    return facts


def cluster(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": {n["name"]: n for n in nodes}, "system_identifier": SYSID}


HEALTHY = cluster(node("pg-a", "primary"), node("pg-b", "standby", "pg-a"), node("pg-c", "standby", "pg-a"))
DR = {"candidate": "pg-b", "max_lag_bytes": 1 << 24, "away_from": None, "force": False, "fence_method": "stop",
      "primary_confirmed_down": False, "node": None}


def test_the_folded_plans_are_the_filters_with_the_runbook_parameters():
    assert PLANS["switchover"](HEALTHY, DR, None) == pg_switchover_plan(HEALTHY, "pg-b", 1 << 24, None)
    assert PLANS["failover"](HEALTHY, DR, "pg-a") == pg_failover_plan(HEALTHY, "pg-a", "pg-b", 1 << 24, False,
                                                                     "stop", False)
    assert PLANS["failover"](HEALTHY, dict(DR, away_from="pg-c"), "pg-a")["old_primary"] == pg_failover_plan(
        HEALTHY, "pg-c", "pg-b", 1 << 24)["old_primary"]  # away_from wins over the primary of record
    assert PLANS["rejoin"](HEALTHY, DR, None) == pg_rejoin_plan(HEALTHY, None)


def test_the_end_state_verdict_is_the_filter_s_with_the_plan_s_left_out_entries():
    moved = cluster(node("pg-a", "standby", "pg-b"), node("pg-b", "primary"), node("pg-c", "standby", "pg-a"))
    wanted = {"primary": "pg-b", "fenced_ok": [], "left_out": []}

    assert verdict(moved, wanted) == pg_end_state(moved, "pg-b") and not verdict(moved, wanted)["ok"]
    assert verdict(moved, dict(wanted, left_out=[{"node": "pg-c", "reason": "unreachable"}])) == {
        "ok": True, "problems": [], "primary": "pg-b"}
    fenced = cluster(node("pg-a", "primary", writable=False, read_only=True), node("pg-b", "primary"),
                     node("pg-c", "standby", "pg-b"))
    assert verdict(fenced, dict(wanted, fenced_ok=["pg-a"]))["ok"] is True
    assert verdict(fenced, wanted)["ok"] is False


def _planner(reads: list[dict[str, Any]]) -> tuple[Any, Any, list[int]]:
    """pg_begin's ActionModule with its read replaced by `reads` in turn (no servers), and the Start it plans from."""
    from types import SimpleNamespace

    from ansible_collections.erlmcp.dr.plugins.action import pg_begin

    action = pg_begin.ActionModule.__new__(pg_begin.ActionModule)
    taken: list[int] = []

    def read(start: Any) -> dict[str, Any]:
        taken.append(1)
        return reads[min(len(taken), len(reads) - 1)]

    action.read = read  # type: ignore[method-assign]
    action.rendered_or = lambda task_vars, name: None  # type: ignore[method-assign]
    start = SimpleNamespace(read=reads[0], dr=dict(DR, max_lag_bytes=1 << 20), task_vars={},
                            args={"plan": "switchover"})
    return action, start, taken


def test_a_switchover_refused_for_lag_reads_again_and_goes_on_once_a_segment_switchs_padding_has_arrived(
        monkeypatch: Any) -> None:
    from ansible_collections.erlmcp.dr.plugins.action import pg_begin

    monkeypatch.setattr(pg_begin, "LAG_SETTLE_INTERVAL", 0.0)
    behind = cluster(node("pg-a", "primary", current_lsn="0/6000028"),
                     node("pg-b", "standby", "pg-a", lag_bytes=16765808), node("pg-c", "standby", "pg-a"))
    action, start, taken = _planner([behind, behind, HEALTHY])
    plan = action.plan(start)
    assert plan["action"] == "promote" and plan["candidate"] == "pg-b", plan
    assert len(taken) == 2 and start.read is HEALTHY  # the plan and the facts come from the last read

    monkeypatch.setattr(pg_begin, "LAG_SETTLE_SECONDS", 0.05)  # truly behind: still refused, once the moment passed
    action, start, taken = _planner([behind])
    refused = action.plan(start)
    assert refused["action"] == "refuse" and "16765808 bytes behind" in refused["reason"] and taken, refused


def test_other_plans_are_not_read_again() -> None:
    action, start, taken = _planner([HEALTHY])
    assert action.plan(start)["action"] == "promote" and taken == []
    stopped = cluster(node("pg-a", "primary"), node("pg-b", "stopped"), node("pg-c", "standby", "pg-a"))
    action, start, taken = _planner([stopped])
    assert action.plan(start)["action"] == "refuse" and taken == []  # refused, but not for lag
