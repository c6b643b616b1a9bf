"""One writer without trusting the controllers to share anything (issue 16 row 1, PostgreSQL).

Two runs from two controllers - separate lock folders, separate ERLMCP_DR_HOME - meet only at the cluster guard:
a session advisory lock held on a majority of the members by a holder process from the start of the run to its end
(plugins/module_utils/_guards/postgres_guard.py), and re-checked right before pg_promote(). A sampler asks every node
every
10 ms whether it takes writes during each pair (guard_race.py, shared with benchmarks/race_pairs.py).
"""

from __future__ import annotations

import os
import signal

import pytest
from guard_race import (
    Controller,
    crash_primary,
    guard_holders,
    holder_pids,
    one_writer_one_promotion,
    prepare,
    race_pair,
    timelines,
)
from runbook_helpers import DEADLINE, wait_for

from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration


def assert_one_writer_one_promotion(pair) -> None:
    one_writer_one_promotion(pair)  # one promotion, the loser turned away by the guard, saying so
    assert pair.timeline_after == pair.timeline_before + 1, pair.to_dict()  # one promotion, not two in a row


@pytest.mark.parametrize(("kind", "frozen"), [("switchover", True), ("switchover", False), ("failover", True),
                                              ("failover", False)])
def test_racing_pairs_from_two_controllers_never_make_two_writers(fresh_lab, tmp_path, kind, frozen):
    cfg = fresh_lab
    candidates = prepare(cfg, kind)

    pair = race_pair(cfg, tmp_path, kind, ("cli", "cli"), candidates, frozen=frozen)

    assert_one_writer_one_promotion(pair)
    assert guard_holders(cfg) == []  # both runs ended: the guard is free again


def test_cli_and_plain_ansible_playbook_from_two_controllers_never_both_promote(fresh_lab, tmp_path):
    cfg = fresh_lab
    pair = race_pair(cfg, tmp_path, "switchover", ("cli", "playbook"), ("pg-b", "pg-c"), frozen=True)
    assert_one_writer_one_promotion(pair)
    assert pair.runs[0].promoted  # the frozen first run held the guard all along


def _holder_pids(controller: Controller) -> list[int]:
    return holder_pids(controller, "_guards/postgres_guard.py")


def test_a_run_whose_guard_was_lost_refuses_to_promote_and_starts_the_old_primary_again(fresh_lab, tmp_path):
    """The re-check inside the fence-and-promote step: the holder is gone (as when a pause outlived it), so the
    run must not promote, however sure its earlier reads were."""
    cfg = fresh_lab
    controller = Controller.make(cfg, "controller-a", tmp_path / "a")
    run = controller.start("cli", "database_switchover", ["candidate=pg-b"])
    wait_for(lambda: guard_holders(cfg) or run.poll() is not None, DEADLINE, interval=0.005,
             what="the run holds the guard")
    pid = controller.playbook_pid()
    assert pid and run.poll() is None
    os.kill(pid, signal.SIGSTOP)
    try:
        for holder in _holder_pids(controller):
            os.kill(holder, signal.SIGKILL)
        wait_for(lambda: not guard_holders(cfg), DEADLINE, interval=0.01, what="the members release the guard")
    finally:
        os.kill(pid, signal.SIGCONT)
    out, _ = run.communicate(timeout=DEADLINE * 5)

    assert run.returncode != 0, out
    assert "cluster_guard" in out, out[-3000:]
    roles = timelines(cfg)
    assert [name for name, (role, _t) in roles.items() if role == "primary"] == ["pg-a"], roles  # started again


def test_killing_the_run_tree_releases_the_guard(fresh_lab, tmp_path):
    from runbook_helpers import kill_run_tree

    cfg = fresh_lab
    controller = Controller.make(cfg, "controller-a", tmp_path / "a")
    run = controller.start("playbook", "database_switchover", ["candidate=pg-b"])
    wait_for(lambda: guard_holders(cfg) or run.poll() is not None, DEADLINE, interval=0.005,
             what="the run holds the guard")
    assert run.poll() is None, run.communicate()[0]
    kill_run_tree(run.pid)
    run.communicate(timeout=DEADLINE)

    wait_for(lambda: not guard_holders(cfg), DEADLINE, interval=0.05, what="the guard released on every member")
    # The holder outlived its worker, so it left the run's process tree (the run guard is no subreaper: daemons a run
    # starts must survive a tree kill); it ends by itself once the ansible-playbook it watches is gone.
    wait_for(lambda: _holder_pids(controller) == [], DEADLINE, interval=0.05, what="the holder ends")


def test_a_failover_takes_the_guard_with_the_primary_down_and_records_its_token(fresh_lab, tmp_path):
    """A majority of three survives the primary being down; the promotion's fencing value (the guard's token) is in
    the summary."""
    import json

    cfg = fresh_lab
    crash_primary(cfg, "pg-a")
    controller = Controller.make(cfg, "controller-a", tmp_path / "a")
    run = controller.start("cli", "database_failover", ["candidate=pg-c"])
    out, _ = run.communicate(timeout=DEADLINE * 5)
    assert run.returncode == 0, out[-3000:]
    result = json.loads(out[out.index("{"):])
    summary = result["facts"]["summary"]["details"]
    assert summary["guard"] and summary["promoted_under_guard"] == summary["guard"], summary
    assert lab.status(cfg) and timelines(cfg)["pg-c"][0] == "primary"


def test_the_inventory_can_opt_out_of_the_guard_explicitly(fresh_lab, tmp_path):
    """dr_cluster_guard: false (a controller that cannot reach the members): no guard taken, the run lock alone."""
    import json

    import yaml

    cfg = fresh_lab
    controller = Controller.make(cfg, "controller-a", tmp_path / "a")
    data = yaml.safe_load(controller.inventory.read_text())
    data["all"]["vars"]["dr_cluster_guard"] = False
    controller.inventory.write_text("---\n" + yaml.safe_dump(data, sort_keys=False))
    run = controller.start("cli", "database_switchover", ["candidate=pg-b"])
    out, _ = run.communicate(timeout=DEADLINE * 5)

    assert run.returncode == 0, out[-3000:]
    summary = json.loads(out[out.index("{"):])["facts"]["summary"]["details"]
    assert summary["guard"] is None and summary["promoted_under_guard"] is None, summary
