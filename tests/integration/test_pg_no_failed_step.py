"""A successful or refused PostgreSQL runbook shows no failed step (issue 23 row 2).

A step the plan skips (the fence-and-promote step of a no-op or a refusal) used to show "[failed] Fence the old
primary" ("Empty hostname produced from delegate_to") in result.json's timeline and a red bar in report.html, on a
run that succeeded. Each PostgreSQL runbook's no-op and refusal: the only failed step a refusal may show is the start
(erlmcp.dr.pg_begin, which is the runbooks' gate: a refusing plan fails it), with the plan's reason, and the summary
still says the run refused.
"""

from __future__ import annotations

import pytest
from conftest import lab_inventory
from runbook_helpers import run_json, sql, topology

pytestmark = pytest.mark.integration

REFUSING_STEP_ACTION = "erlmcp.dr.pg_begin"


def failed_steps(result: dict) -> list[str]:
    return [f"{step['task']}: {step.get('message')}" for step in result["steps"] if step["failed"]]


def assert_no_failed_step(result: dict) -> None:
    assert result["succeeded"] is True, result.get("error")
    assert failed_steps(result) == [], failed_steps(result)


def assert_only_the_refusal_failed(result: dict, reason: str) -> None:
    failed = [step for step in result["steps"] if step["failed"]]
    assert [step["action"] for step in failed] == [REFUSING_STEP_ACTION], failed_steps(result)
    assert reason in failed[0]["message"], failed_steps(result)
    assert failed[0]["data"].get("refused") is True, failed[0]["data"]
    assert failed[0]["data"].get("lock_released") is True, failed[0]["data"]  # a refused run holds nothing after it
    assert result["facts"]["summary"]["action"] == "refuse", result["facts"]["summary"]


@pytest.mark.parametrize(("runbook", "extravars"), [
    ("database_switchover", ["candidate=pg-a"]),  # pg-a already is the primary
    ("database_failover", ["away_from=pg-b"]),  # pg-a, not pg-b, is the only writable primary
    ("database_rejoin", []),  # every standby already streams
])
def test_a_no_op_postgresql_run_shows_no_failed_step(shared_lab, home, runbook, extravars):
    cfg = shared_lab
    args = ["run", runbook, "-i", str(lab_inventory(cfg)), "--yes"]
    for extravar in extravars:
        args += ["-e", extravar]

    _cli, result = run_json(*args, expect_rc=0)

    assert_no_failed_step(result)
    assert result["facts"]["summary"]["action"] == "none", result["facts"]["summary"]


@pytest.mark.parametrize(("runbook", "extravars", "reason"), [
    ("database_switchover", ["candidate=pg-b"], "replay is paused on pg-b"),
    ("database_failover", ["candidate=pg-b"], "pg-b"),
])
def test_a_refused_postgresql_run_shows_only_its_refusal(fresh_lab, home, runbook, extravars, reason):
    cfg = fresh_lab
    sql(cfg, "pg-b", "SELECT pg_wal_replay_pause()")
    before = topology(cfg)
    args = ["run", runbook, "-i", str(lab_inventory(cfg)), "--yes"]
    for extravar in extravars:
        args += ["-e", extravar]

    _cli, result = run_json(*args, expect_rc=1)

    assert_only_the_refusal_failed(result, reason)
    assert topology(cfg) == before  # nothing was touched


def test_a_refused_rejoin_shows_only_its_refusal(shared_lab, home):
    cfg = shared_lab
    _cli, result = run_json("run", "database_rejoin", "-i", str(lab_inventory(cfg)), "-e", "node=pg-a", "--yes",
                            expect_rc=1)
    assert_only_the_refusal_failed(result, "pg-a")
