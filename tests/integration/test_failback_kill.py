"""failback killed past its point of no return, and two operators meanwhile (issue 18), on the real lab (PostgreSQL
streaming replication and pg_rewind, redis-server, Knot DNS, the lab's app). One lab run asserts both, killing the
run at its hardest moment: inside the database handover, the current primary fenced and the old region's node not
yet promoted (no writer at all). The whole matrix of boundaries (the kill after the handover among them) is
benchmarks/failback_kill_matrix.py and its committed result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import lab_inventory, new_lab
from failback_kill import (
    A_REJOINED,
    FAILBACK,
    FENCED_NOT_PROMOTED,
    RUNBOOK,
    boundaries,
    failback_cli,
    failback_end_state,
    kill_failback,
    moved_away,
    seen_from_outside,
    stopped_processes_of,
)
from regional_kill import parsed
from runbook_helpers import has_row, runbook_cli, summary, topology, write_row

from erlmcp_dr.compose import run as composed
from erlmcp_dr.lab import dns as lab_dns

pytestmark = pytest.mark.integration
LAST_WRITE = "the last write before the fence"


def test_failback_boundaries_come_from_its_workflow_and_include_the_inside_of_the_handover() -> None:
    steps = [step.id for step in composed.workflow_of(composed.catalog.load(RUNBOOK)).steps]
    assert boundaries()[:len(steps) + 1] == [*steps, "end"]
    assert "inside:database" in boundaries() and "inside:rejoin" in boundaries()
    assert FENCED_NOT_PROMOTED in boundaries()


def test_a_failback_killed_between_its_fence_and_the_promotion_is_finished_by_the_same_command_and_refuses_a_second_operator(  # noqa: E501
        home: Path) -> None:
    with new_lab(app=True, dns=True) as cfg:
        inventory = lab_inventory(cfg)
        moved_away(cfg, inventory)
        refused: dict[str, Any] = {}

        def second_operators(journal: dict[str, Any]) -> None:
            """While the failback holds its locks (stopped before the handover, alive): a second failback and a
            single-system runbook on one of its targets are refused with exit 3, naming the holder, changing
            nothing. Then one last write on pg-b, the primary about to be fenced: the promotion must not lose it."""
            before = seen_from_outside(cfg)
            refused["failback"] = runbook_cli("run", RUNBOOK, "-i", str(inventory), *FAILBACK, "--yes")
            refused["switchover"] = runbook_cli("run", "database_switchover", "-i", str(inventory), "-e",
                                                "candidate=pg-b", "--yes")
            refused["holder"], refused["unchanged"] = journal["run_id"], seen_from_outside(cfg) == before
            write_row(cfg, "pg-b", LAST_WRITE)

        # Killed inside the database handover (the point of no return): pg-b fenced (stopped cleanly), pg-a not
        # promoted. Nobody takes writes; the operator used to have to run database_switchover by hand.
        killed = kill_failback(cfg, inventory, FENCED_NOT_PROMOTED, second_operators)
        left = killed["journal"]
        for name in ("failback", "switchover"):
            assert refused[name].rc == 3, refused[name]
            assert refused["holder"] in refused[name].stderr, refused[name]
        assert refused["unchanged"] is True
        assert left["status"] == "running" and left["entered_point_of_no_return"] is True
        assert "database" in left["entered"] and "database" not in left["verified"], left
        assert "redis" in left["verified"] and "app" not in left["entered"], left
        assert stopped_processes_of(home) == [], "a stopped process of the run (or of its lab) remains"
        between = failback_end_state(cfg)
        assert between["writable"] == [] and between["redis_primaries"] == ["redis-a"], between
        assert topology(cfg)["pg-a"]["role"] == "standby" and lab_dns.REGION_ADDRESSES["b"] in between["dns"]
        assert between["verified_state"] is None

        # The same command again continues that handover: the same incident, rolling forward only, pg-a promoted
        # once it replayed pg-b's final position (the last write is there), region a serves with every member
        # rejoined, judged from outside.
        rerun = failback_cli(inventory)
        assert rerun.rc == 0, rerun
        outcome = summary(parsed(rerun.stdout))
        assert outcome["status"] == "completed" and outcome["incident_id"] == left["incident_id"]
        assert outcome["resumed_from"]["run_id"] == left["run_id"]
        assert all(step["phase"] == "forward" for step in outcome["steps"])
        assert outcome["rejoin"]["method"].startswith("none (a handover under way"), outcome["rejoin"]
        end = failback_end_state(cfg)
        assert end["verified_state"] == A_REJOINED, end
        assert has_row(cfg, "pg-a", LAST_WRITE)
