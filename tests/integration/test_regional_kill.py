"""The kill matrix of regional_failover, a sample in CI (the whole matrix: benchmarks/regional_kill_matrix.py and
its committed result): kill -9 of the whole run tree at a step boundary, then the same command again ends in one
of the two verified states. Real lab: PostgreSQL streaming replication, redis-server, Knot DNS, the lab's app."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import lab_inventory, new_lab
from regional_kill import B_SERVING, MOVE, boundaries, end_state, killed_at, parsed, stopped_processes_of
from runbook_helpers import runbook_cli, summary

from erlmcp_dr.compose import run as composed
from erlmcp_dr.lab import regions as lab_regions

pytestmark = pytest.mark.integration


def test_the_boundaries_come_from_the_workflow_so_a_new_step_is_a_new_boundary() -> None:
    workflow = composed.workflow_of(composed.catalog.load("regional_failover"))
    for mode in ("unplanned", "planned"):  # each mode's own steps: a planned-only step is no unplanned boundary
        steps = [step.id for step in workflow.for_mode(mode).steps]
        assert boundaries(mode) == [*steps, "end"] and "database" in steps and "services" in steps
    assert "isolate" in boundaries() and "isolate" not in boundaries("planned")
    assert "healthy" in boundaries("planned") and "healthy" not in boundaries()


def test_a_move_killed_past_the_point_of_no_return_is_finished_by_the_same_command_toward_the_same_region(
        home: Path) -> None:
    with new_lab(app=True, dns=True) as cfg:
        inventory = lab_inventory(cfg)
        lab_regions.fail_region(cfg, "a")
        killed = killed_at(inventory, "app")  # the database promoted in b, the app not yet checked, DNS still a
        left = killed["journal"]
        assert left["status"] == "running" and left["entered_point_of_no_return"] is True
        assert left["verified"] == ["residency", "confirm", "declare", "isolate", "services", "redis", "database"]
        assert stopped_processes_of(home) == [], "a stopped process of the run remains"
        between = end_state(cfg)
        assert between["writable"] == ["pg-b"] and between["redis_primaries"] == ["redis-b"]
        assert between["dns"] == ["127.0.1.1"] and between["verified_state"] is None  # half-way: neither state

        # Another target while that move is unfinished: refused before anything changes, naming the killed run.
        elsewhere = runbook_cli("run", "regional_failover", "-i", str(inventory), "-e", "from_region=a", "-e",
                                "to_region=c", "-e", "mode=unplanned", "--yes")
        assert elsewhere.rc == 2, elsewhere
        assert left["run_id"] in elsewhere.stderr and "to_region=b" in elsewhere.stderr
        assert end_state(cfg) == between

        # The same command again resumes it: same incident, roll forward only, b serves, verified from outside.
        rerun = runbook_cli("run", "regional_failover", "-i", str(inventory), *MOVE, "--yes", "--json")
        assert rerun.rc == 0, rerun
        outcome = summary(parsed(rerun.stdout))
        assert outcome["status"] == "completed" and outcome["incident_id"] == left["incident_id"]
        assert outcome["resumed_from"]["run_id"] == left["run_id"]
        assert all(step["phase"] == "forward" for step in outcome["steps"])
        assert end_state(cfg)["verified_state"] == B_SERVING
        resumed = parsed(Path(home, "runs", left["run_id"], "journal.json").read_text())
        assert resumed["status"] == f"interrupted (resumed by run {parsed(rerun.stdout)['run_id']})"
