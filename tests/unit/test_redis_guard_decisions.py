"""The Redis guard's decisions that need no server (plugins/module_utils/_guards/redis_guard.py, the shared skeleton
_guards/guard_process.py, the summary's fields); the racing runs on the lab's redis-servers are in
tests/integration/test_redis_guard.py."""

from __future__ import annotations

import itertools

import pytest

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._guards import guard_process as process  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._guards import redis_guard as guard  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.plan import summary  # noqa: E402

MINE, OTHER = "20261206T1000Z-redis_failover-1a2b-0001", "20261206T1001Z-redis_failover-3c4d-0002"


def row(name: str | None, addr: str = "127.0.0.1:5000") -> dict:
    return {"id": "7", "addr": addr, "age": "3", "name": name or ""}


def test_connection_names_round_trip_and_others_are_ignored():
    assert guard.parse_name(guard.connection_name(guard.WANT, MINE)) == ("want", MINE)
    colons = "run:with:colons-1a2b"
    assert guard.parse_name(guard.connection_name(guard.HOLD, colons)) == ("hold", colons)
    for name in ("", None, "erlmcp.dr", "erlmcp-dr-guard:", "erlmcp-dr-guard:maybe:x", "erlmcp-dr-guard:hold:"):
        assert guard.parse_name(name) is None


def test_others_are_the_guard_connections_of_other_runs_only():
    clients = [row("erlmcp.dr"), row(guard.connection_name("want", MINE)), row(guard.connection_name("hold", OTHER))]
    assert guard.others(clients, MINE) == [dict(state="hold", token=OTHER, addr="127.0.0.1:5000", age="3")]
    assert guard.others(clients, OTHER) == [dict(state="want", token=MINE, addr="127.0.0.1:5000", age="3")]


@pytest.mark.parametrize(("announced", "seen", "expected"), [
    (["a", "b", "c"], {}, "won"),
    (["b", "c"], {}, "won"),  # a majority of three with the primary down
    (["c"], {}, "too_few"),
    (["a", "b", "c"], {"b": [dict(state="want", token=OTHER)]}, "retry"),
    (["a", "b", "c"], {"b": [dict(state="hold", token=OTHER)]}, "busy"),
    (["c"], {"c": [dict(state="want", token=OTHER)]}, "retry"),
])
def test_verdict(announced, seen, expected):
    assert guard.verdict(announced, seen, 3) == expected


def _both_win(order: tuple[str, ...], reach_a: set[str], reach_b: set[str]) -> bool:
    """Play one interleaving of two contenders' steps (each announces on every member it reaches, then lists them)
    and say whether both would win."""
    announced: dict[str, set[str]] = {"A": set(), "B": set()}
    seen: dict[str, dict[str, list]] = {"A": {}, "B": {}}
    steps = {who: [("announce", m) for m in sorted(reach)] + [("list", m) for m in sorted(reach)]
             for who, reach in (("A", reach_a), ("B", reach_b))}
    for who in order:
        step, member = steps[who].pop(0)
        if step == "announce":
            announced[who].add(member)
        else:
            other = "B" if who == "A" else "A"
            if member in announced[other]:
                seen[who][member] = [dict(state="want", token=other)]
    return all(guard.verdict(sorted(announced[w]), seen[w], 3) == "won" for w in ("A", "B"))


@pytest.mark.parametrize(("reach_a", "reach_b"), [
    ({"a", "b", "c"}, {"a", "b", "c"}), ({"b", "c"}, {"b", "c"}), ({"a", "b"}, {"b", "c"}),
    ({"a", "b", "c"}, {"b", "c"})])
def test_announce_before_list_on_intersecting_majorities_never_lets_two_contenders_win(reach_a, reach_b):
    """The safety argument of docs/design.md, checked on every interleaving of two contenders' steps: whichever
    lists the shared member second sees the other's announcement there."""
    total, count_a = 2 * (len(reach_a) + len(reach_b)), 2 * len(reach_a)
    orders = 0
    for positions in itertools.combinations(range(total), count_a):
        order = tuple("A" if i in positions else "B" for i in range(total))
        assert not _both_win(order, reach_a, reach_b), order
        orders += 1
    assert orders > 1


def test_the_re_check_counts_members_showing_this_runs_hold_and_no_other_hold():
    mine, other = guard.connection_name("hold", MINE), guard.connection_name("hold", OTHER)
    clients = {"a": [row(mine)], "b": [row(mine), row(guard.connection_name("want", OTHER))],
               "c": [row(mine), row(other)]}
    assert guard.held_members(clients, MINE) == ["a", "b"]  # an announcement does not take a member, a hold does
    assert guard.held_members({"a": [row(guard.connection_name("want", MINE))]}, MINE) == []  # not won yet
    assert guard.held_members({}, MINE) == []


def test_the_refusal_names_the_other_run_and_its_members():
    seen = {"redis-b": [dict(state="hold", token=OTHER, addr="10.0.0.9:4000", age="15")],
            "redis-c": [dict(state="hold", token=OTHER, addr="10.0.0.9:4001", age="15")]}
    described = guard.describe_others(seen)
    assert described == ["run 20261206T1001Z-redis_failover-3c4d (hold on redis-b, redis-c; from 10.0.0.9:4000, "
                         "connected 15s)"]


def test_tokens_carry_the_run_id_and_stay_one_word():
    token = process.new_token("20261206T1000Z-redis_failover-1a2b")
    assert token.startswith("20261206T1000Z-redis_failover-1a2b-") and process.run_id_of(token) == \
        "20261206T1000Z-redis_failover-1a2b"
    assert " " not in process.new_token("a run id with spaces")  # CLIENT SETNAME refuses spaces
    assert len(process.new_token("x" * 80, max_len=63)) <= 63
    assert [process.majority(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]


def test_the_summary_carries_the_guard_and_the_token_the_promotion_was_checked_under():
    promote = {"candidate": "redis-b", "promoted": True, "old_primary": "redis-a", "fence": "failover",
               "guard_token": MINE, "changed": True}
    details = summary("redis_failover", {"action": "act", "target": "redis-b"},
                      {"promote": promote, "guard": {"enabled": True, "held": True, "token": MINE}}, True)["details"]
    assert details["guard"] == MINE and details["promoted_under_guard"] == MINE
    unguarded = summary("redis_failover", {}, {"promote": dict(promote, guard_token=None),
                                               "guard": {"enabled": False, "held": False, "token": None}}, True)
    assert unguarded["details"]["guard"] is None and unguarded["details"]["promoted_under_guard"] is None
