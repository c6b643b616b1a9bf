"""failback killed past its point of no return, and two operators meanwhile (issue 18), on the real lab (PostgreSQL
streaming replication and pg_rewind, redis-server, Knot DNS, the lab's app). One lab run asserts both: the whole
matrix of boundaries is benchmarks/failback_kill_matrix.py and its committed result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import lab_inventory, new_lab
from failback_kill import A_REJOINED, FAILBACK, RUNBOOK, boundaries, failback_cli, failback_end_state, moved_away
from regional_kill import killed_at, parsed, process_state, run_tree
from runbook_helpers import runbook_cli, summary, topology

from erlmcp_dr.compose import run as composed
from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import lifecycle as lab

pytestmark = pytest.mark.integration


def test_failback_boundaries_come_from_its_workflow_and_include_the_inside_of_the_handover() -> None:
    steps = [step.id for step in composed.workflow_of(composed.catalog.load(RUNBOOK)).steps]
    assert boundaries()[:len(steps) + 1] == [*steps, "end"]
    assert "inside:database" in boundaries() and "inside:rejoin" in boundaries()


def seen_from_outside(cfg: lab.LabConfig) -> dict[str, Any]:
    state = failback_end_state(cfg)
    return {"topology": topology(cfg), "writable": state["writable"], "redis": state["redis_primaries"],
            "dns": state["dns"]}


def test_a_failback_killed_after_the_database_handover_is_finished_by_the_same_command_and_refuses_a_second_operator(
        home: Path) -> None:
    with new_lab(app=True, dns=True) as cfg:
        inventory = lab_inventory(cfg)
        moved_away(cfg, inventory)
        refused: dict[str, Any] = {}

        def second_operators(journal: dict[str, Any]) -> None:
            """While the failback holds its locks (stopped at the boundary, alive): a second failback and a
            single-system runbook on one of its targets are refused with exit 3, naming the holder, changing
            nothing."""
            before = seen_from_outside(cfg)
            refused["failback"] = runbook_cli("run", RUNBOOK, "-i", str(inventory), *FAILBACK, "--yes")
            refused["switchover"] = runbook_cli("run", "database_switchover", "-i", str(inventory), "-e",
                                                "candidate=pg-b", "--yes")
            refused["holder"], refused["unchanged"] = journal["run_id"], seen_from_outside(cfg) == before

        # Stopped, then killed, after the database handover (the point of no return): pg-a takes writes, DNS still b.
        killed = killed_at(inventory, "app", RUNBOOK, FAILBACK, second_operators)
        left = killed["journal"]
        for name in ("failback", "switchover"):
            assert refused[name].rc == 3, refused[name]
            assert refused["holder"] in refused[name].stderr, refused[name]
        assert refused["unchanged"] is True
        assert left["status"] == "running" and left["entered_point_of_no_return"] is True
        assert {"redis", "database"} <= set(left["verified"]) and "app" not in left["entered"], left
        assert not [pid for pid in run_tree(1) if process_state(pid) == "T"], "a stopped process of the run remains"
        between = failback_end_state(cfg)
        assert between["writable"] == ["pg-a"] and between["redis_primaries"] == ["redis-a"]
        # Half-way: region a's database and Redis, DNS still b's; neither verified state.
        assert between["dns"] == [lab_dns.REGION_ADDRESSES["b"]] and between["verified_state"] is None

        # The same command again resumes it: the same incident, rolling forward only, region a serves again with
        # every member rejoined, judged from outside.
        rerun = failback_cli(inventory)
        assert rerun.rc == 0, rerun
        outcome = summary(parsed(rerun.stdout))
        assert outcome["status"] == "completed" and outcome["incident_id"] == left["incident_id"]
        assert outcome["resumed_from"]["run_id"] == left["run_id"]
        assert all(step["phase"] == "forward" for step in outcome["steps"])
        end = failback_end_state(cfg)
        assert end["verified_state"] == A_REJOINED, end
