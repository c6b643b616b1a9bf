"""One Redis writer without trusting the controllers to share anything (issue 16 row 1, the Redis part).

Two redis_failover runs from two controllers - separate lock folders, separate ERLMCP_DR_HOME - meet only at the
Redis guard: named connections (`erlmcp-dr-guard:<state>:<token>`) held on a majority of the members by a holder
process from the start of the run to its end (plugins/module_utils/_guards/redis_guard.py), re-checked right before
REPLICAOF NO ONE / FAILOVER. A sampler sends ROLE to every member every 10 ms during each pair
(redis_guard_race.py, shared with benchmarks/redis_race_pairs.py). Real redis-server, the lab's three members.
"""

from __future__ import annotations

import os
import signal

import pytest
from guard_race import Controller, holder_pids, one_writer_one_promotion
from redis_guard_race import client, guard_names, holding, parse_name, prepare, race_pair, roles
from runbook_helpers import DEADLINE, wait_for

pytestmark = pytest.mark.integration


def assert_one_writer_one_promotion(pair) -> None:
    winner, loser, described = one_writer_one_promotion(pair)
    assert pair.primaries_after == [("redis-b", "redis-c")[pair.runs.index(winner)]], pair.to_dict()
    assert loser.rc == 3, described  # busy, as for a held run lock
    assert "run " in loser.output and "hold" in loser.output, described  # naming the other run


@pytest.mark.parametrize(("kind", "frozen"), [("planned", False), ("unplanned", True)])
def test_racing_redis_failovers_from_two_controllers_never_make_two_primaries(fresh_lab, tmp_path, kind, frozen):
    cfg = fresh_lab
    candidates = prepare(cfg, kind)

    pair = race_pair(cfg, tmp_path, kind, ("cli", "cli"), candidates, frozen=frozen)

    assert_one_writer_one_promotion(pair)
    wait_for(lambda: guard_names(cfg) == [], DEADLINE, interval=0.05, what="both runs ended: the guard is free")


def _holder_pids(controller: Controller) -> list[int]:
    return holder_pids(controller, "_guards/redis_guard.py")


def _guard_connections(cfg, node: str) -> list[dict]:
    with client(cfg, node) as conn:
        return [row for row in conn.client_list() if parse_name(row.get("name"))]


def test_a_redis_failover_whose_holder_died_refuses_to_promote(fresh_lab, tmp_path):
    """A member that dropped the holder's connection (as a restart does) is taken again by the holder; the holder's
    connections closed (it was killed) free every member at once, and the run, re-checking right before FAILOVER,
    refuses: redis-a stays the only primary."""
    cfg = fresh_lab
    controller = Controller.make(cfg, "controller-a", tmp_path / "a")
    run = controller.start("cli", "redis_failover", ["candidate=redis-b"])
    wait_for(lambda: holding(cfg) or run.poll() is not None, DEADLINE, interval=0.005, what="the run holds the guard")
    pid = controller.playbook_pid()
    assert pid and run.poll() is None, run.communicate()[0]
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: len(_guard_connections(cfg, "redis-c")) == 1, DEADLINE, interval=0.01,
                 what="the guard held on redis-c")
        [dropped] = _guard_connections(cfg, "redis-c")
        with client(cfg, "redis-c") as conn:
            conn.client_kill_filter(_id=dropped["id"])
        wait_for(lambda: [(row["id"] != dropped["id"], row["name"]) for row in _guard_connections(cfg, "redis-c")]
                 == [(True, dropped["name"])], DEADLINE, interval=0.02, what="the holder takes redis-c again")
        for holder in _holder_pids(controller):
            os.kill(holder, signal.SIGKILL)
        wait_for(lambda: guard_names(cfg) == [], DEADLINE, interval=0.01, what="the members forget the guard")
    finally:
        os.kill(pid, signal.SIGCONT)
    out, _ = run.communicate(timeout=DEADLINE * 5)

    assert run.returncode != 0, out
    assert "redis_guard" in out + controller.run_results(), out[-3000:]
    assert roles(cfg) == {"redis-a": "master", "redis-b": "slave", "redis-c": "slave"}
