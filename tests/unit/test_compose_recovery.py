"""A composed run's recovery numbers, from its step records only (each child's envelope): the time to serve from the
target against the RTO, the data each system gave up against the RPO, the point of no return, what was undone."""

from __future__ import annotations

from typing import Any, Dict

from erlmcp_dr.compose import recovery
from erlmcp_dr.compose.engine import StepRecord


def record(step: str, start: str, end: str, summary: Dict[str, Any], verified: bool = True,
           phase: str = "forward") -> StepRecord:
    return StepRecord(step=step, title=step, phase=phase, runs=step, arguments={}, verified=verified, changed=True,
                      run_id=None, rc=0, problems=[], message="", point_of_no_return=step == "database",
                      passed_point_of_no_return=False, started_at=f"2026-12-06T10:00:{start}Z",
                      ended_at=f"2026-12-06T10:00:{end}Z", duration=0.0, summary=summary)


COORDINATED = {"details": {"promoted": True, "old_primary_fence": "failover", "lag_bytes_at_gate": 120}}
SWITCHOVER = {"recovery_point": {"lost_bytes": 0, "lost_seconds": None, "target_seconds": 0}}


def test_a_planned_move_loses_nothing_and_its_time_ends_when_dns_serves_the_target() -> None:
    records = [record("residency", "00.000", "00.100", {}), record("redis", "01.000", "03.000", COORDINATED),
               record("database", "03.000", "10.500", SWITCHOVER), record("app", "10.500", "11.000", {}),
               record("dns", "11.000", "14.250", {}), record("resolved", "14.250", "20.000", {})]
    found = recovery.measure(records, 300, 1, 1048576, [], "database", completed=True, client_writes_missing=0)
    assert found["recovery_seconds"] == 14.25 and found["rto_met"] is True
    assert found["lost"] == {"database_bytes": 0, "redis_bytes": 0, "client_writes": 0}
    assert found["lost_bytes"] == 0 and found["within_lag_budget"] is True
    assert found["point_of_no_return"] == {"step": "database", "passed": True, "at": "2026-12-06T10:00:10.500Z"}


def test_an_unplanned_promotion_reports_the_bytes_given_up_and_an_undone_run_no_recovery_time() -> None:
    promoted = {"details": {"promoted": True, "old_primary_fence": None, "lag_bytes_at_gate": 300}}
    failed_over = {"recovery_point": {"lost_bytes": 4096, "lost_seconds": None, "target_seconds": 1}}
    records = [record("redis", "00.000", "01.000", promoted), record("database", "01.000", "02.000", failed_over),
               record("dns", "02.000", "03.000", {})]
    found = recovery.measure(records, 1, 1, 1024, [], "database", completed=True)
    assert found["lost"] == {"database_bytes": 4096, "redis_bytes": 300, "client_writes": None}
    assert found["within_lag_budget"] is False and found["rto_met"] is False  # 3 s against an RTO of 1 s

    refused = [record("redis", "00.000", "01.000", COORDINATED),
               record("database", "01.000", "02.000", {"details": {}}, verified=False),
               record("redis", "02.000", "03.000", COORDINATED, phase="undo")]
    undone = recovery.measure(refused, 300, 1, 1024, ["redis"], "database", completed=False)
    assert undone["recovery_seconds"] is None and undone["rto_met"] is None
    assert undone["point_of_no_return"] == {"step": "database", "passed": False, "at": None}
    assert undone["undone"] == ["redis"] and undone["lost"]["database_bytes"] is None
