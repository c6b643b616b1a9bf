"""database_switchover end to end on the real lab, while a client keeps writing.

A WriteProbe commits a row every 10 ms through a multi-host, read-write connection (how
erlmcp's pool finds the primary) during each switchover: every commit the server confirmed
must be on the new primary afterwards (RPO 0), and the client must commit again after it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from armed_helpers import bin_dir_without_controldata, kill_postmaster
from conftest import lab_inventory
from runbook_helpers import (
    DEADLINE,
    as_int,
    changed_steps,
    connect,
    failure_message,
    host_vars,
    inventory_copy,
    plain_connect,
    primary_on,
    run_json,
    streaming_from,
    summary,
    topology,
    wait_for,
    wait_topology,
)

import erlmcp_dr
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.probe import ProbeReport, WriteProbe, multi_host_conninfo

pytestmark = pytest.mark.integration

COMMITS = 20  # commits the probe must make before the switchover starts, and again after it ends




def under_writes(cfg: lab.LabConfig, new_primary: str, switch_over: Callable[[], Any]) -> tuple[Any, ProbeReport]:
    """Runs switch_over() while a WriteProbe writes; asserts no confirmed commit is missing on new_primary."""
    probe = WriteProbe(multi_host_conninfo([("127.0.0.1", node.port) for node in cfg.nodes],
                                           lab.SUPERUSER, lab.LAB_PASSWORD))
    probe.start()
    try:
        wait_for(lambda: len(probe.report.committed) >= COMMITS, DEADLINE, what="the probe committing")
        committed_before = len(probe.report.committed)
        outcome = switch_over()
        committed_at_end = len(probe.report.committed)
        wait_for(lambda: len(probe.report.committed) >= committed_at_end + COMMITS, DEADLINE,
                 what=f"the probe committing on {new_primary} after the switchover")
    finally:
        report = probe.stop()
    with plain_connect(cfg, new_primary) as conn:
        missing = probe.missing_on(conn)
    assert committed_before >= COMMITS and len(report.committed) >= committed_at_end + COMMITS, report.to_dict()
    assert missing == [], f"{len(missing)} confirmed commits are missing on {new_primary}: {missing[:20]}"
    return outcome, report


def app_config(cfg: lab.LabConfig) -> dict[str, Any]:
    return json.loads(cfg.app_config_path.read_text())["database"]


def test_switchover_cli_then_failback_through_the_api_lose_no_committed_write(fresh_lab, home):
    cfg = fresh_lab
    inventory = str(lab_inventory(cfg))
    port = {node.name: node.port for node in cfg.nodes}

    # ---- pg-a -> pg-b through the CLI
    (_, result), _ = under_writes(cfg, "pg-b", lambda: run_json(
        "run", "database_switchover", "-i", inventory, "-e", "candidate=pg-b", "--yes", expect_rc=0))

    assert result["status"] == "successful", failure_message(result)
    facts = summary(result)
    assert facts["action"] == "promote" and facts["old_primary"] == "pg-a" and facts["new_primary"] == "pg-b", facts
    assert as_int(facts["timeline_after"]) == 2 and as_int(facts["lost_bytes_max"]) == 0, facts
    assert sorted(facts["streaming"]) == ["pg-a", "pg-c"], facts
    topo = wait_topology(cfg, {"pg-b": primary_on(2), "pg-a": streaming_from("pg-b", 2),
                               "pg-c": streaming_from("pg-b", 2)}, "pg-b primary, pg-a and pg-c its standbys")
    # pg-a came back with its own settings (its own port), as a standby.
    with connect(cfg, "pg-a") as conn:
        row = conn.execute("SELECT pg_is_in_recovery() AS standby, current_setting('port')::int AS port").fetchone()
    assert row == {"standby": True, "port": port["pg-a"]}
    app = app_config(cfg)
    assert app["primary_node"] == "pg-b" and app["replica_nodes"] == ["pg-a", "pg-c"], app

    # ---- the same switchover again: nothing to do
    _, again = run_json("run", "database_switchover", "-i", inventory, "-e", "candidate=pg-b", "--yes", expect_rc=0)

    assert summary(again)["action"] == "none", summary(again)
    assert changed_steps(again) == []
    assert topology(cfg) == topo

    # ---- fail back pg-b -> pg-a through the Python API
    api_result, _ = under_writes(cfg, "pg-a", lambda: erlmcp_dr.run(
        "database_switchover", inventory=inventory, extravars={"candidate": "pg-a"}))

    assert api_result.succeeded, f"{api_result.failing_step and api_result.failing_step.message} {api_result.error}"
    facts = dict(api_result.summary["details"], action=api_result.summary["action"])
    assert facts["action"] == "promote" and facts["old_primary"] == "pg-b" and facts["new_primary"] == "pg-a", facts
    assert as_int(facts["timeline_after"]) == 3 and as_int(facts["lost_bytes_max"]) == 0, facts
    # pg-a streamed on timeline 2 until the fence (asserted above): that is the timeline it was promoted from.
    assert as_int(facts["timeline_before"]) == 2, facts
    topo = wait_topology(cfg, {"pg-a": primary_on(3), "pg-b": streaming_from("pg-a", 3),
                               "pg-c": streaming_from("pg-a", 3)}, "pg-a primary again, pg-b and pg-c its standbys")
    app = app_config(cfg)
    assert app["primary"] == f"127.0.0.1:{port['pg-a']}" and app["replica_nodes"] == ["pg-b", "pg-c"], app

    # ---- and again through the API: nothing to do
    api_again = erlmcp_dr.run("database_switchover", inventory=inventory, extravars={"candidate": "pg-a"})

    assert api_again.succeeded and api_again.summary["action"] == "none", api_again.facts
    assert [s.task for s in api_again.steps if s.changed] == []
    assert topology(cfg) == topo


# ---------------------------------------------------------------- the fence-and-promote step failing


def test_a_fence_that_fails_after_stopping_the_old_primary_never_promotes_and_the_rescue_starts_it(fresh_lab, home):
    cfg = fresh_lab
    bin_dir = str(bin_dir_without_controldata(cfg))
    inventory = inventory_copy(cfg, "no-controldata", lambda d: host_vars(d, "pg-a").update(pg_bin_dir=bin_dir))

    _, result = run_json("run", "database_switchover", "-i", str(inventory), "-e", "candidate=pg-b", "--yes",
                         expect_rc=1)

    message = failure_message(result)
    assert "fencing pg-a failed" in message and "pg_controldata" in message, message
    assert "pg-a was started again (unfenced)" in message and "now pg-a takes writes" in message, message
    topo = topology(cfg)
    assert topo["pg-a"] == dict(topo["pg-a"], **primary_on(1)), topo
    assert topo["pg-b"]["role"] == "standby" and topo["pg-c"]["role"] == "standby", topo
    did = summary(result)["did"]
    assert any(s.startswith("fencing pg-a failed") for s in did), did
    assert "lifted the fence on pg-a again (the candidate was not promoted)" in did, did


def test_a_switchover_refuses_an_old_primary_that_did_not_shut_down_cleanly(fresh_lab, home):
    """A crashed primary's WAL may go on past its last checkpoint: a zero-loss switchover cannot know its final LSN,
    so the fence-and-promote step refuses and nothing is promoted (database_failover is for this case)."""
    cfg = fresh_lab
    kill_postmaster(cfg, "pg-a")

    _, result = run_json("run", "database_switchover", "-i", str(lab_inventory(cfg)), "-e", "candidate=pg-b", "--yes",
                         expect_rc=1)

    message = failure_message(result)
    assert "pg-b was not promoted" in message and "not shut down cleanly" in message, message
    topo = topology(cfg)
    assert topo["pg-a"]["state"] == "stopped", topo
    assert topo["pg-b"]["role"] == "standby" and topo["pg-c"]["role"] == "standby", topo
