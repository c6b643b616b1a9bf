"""database_rejoin end to end on the real lab: the fenced old primary comes back as a standby."""

from __future__ import annotations

import json

import pytest
from conftest import lab_inventory
from runbook_helpers import (
    DEADLINE,
    changed_steps,
    connect,
    failure_message,
    has_row,
    primary_on,
    run_json,
    streaming_from,
    summary,
    takes_no_writes,
    topology,
    wait_for,
    wait_topology,
    write_row,
)

import erlmcp_dr

pytestmark = pytest.mark.integration




def test_rejoin_brings_the_fenced_old_primary_back_then_changes_nothing_and_refuses_the_primary(fresh_lab, home):
    cfg = fresh_lab
    inventory = str(lab_inventory(cfg))
    failover = erlmcp_dr.run("database_failover", inventory=inventory, extravars={"candidate": "pg-b"})
    assert failover.succeeded, f"{failover.failing_step and failover.failing_step.message} {failover.error}"
    assert topology(cfg)["pg-a"]["state"] == "stopped"
    write_row(cfg, "pg-b", "written after the failover")

    _, result = run_json("run", "database_rejoin", "-i", inventory, "--yes", expect_rc=0)

    assert result["status"] == "successful", failure_message(result)
    facts = summary(result)
    assert facts["action"] == "rejoin" and facts["primary"] == "pg-b" and facts["streaming"] == ["pg-a"], facts
    assert len(facts["methods"]) == 1 and facts["methods"][0] in ("follow", "rewind"), facts
    topo = wait_topology(cfg, {"pg-b": primary_on(2), "pg-a": streaming_from("pg-b", 2),
                               "pg-c": streaming_from("pg-b", 2)}, "pg-a and pg-c streaming from pg-b")
    # pg-a kept its own settings (a pg_rewind copies the primary's config files): its own port, a standby.
    with connect(cfg, "pg-a") as conn:
        row = conn.execute("SELECT pg_is_in_recovery() AS standby, current_setting('port')::int AS port, "
                           "current_setting('cluster_name') AS name").fetchone()
    assert row == {"standby": True, "port": cfg.node("pg-a").port, "name": "pg-a"}
    assert takes_no_writes(cfg, "pg-a").startswith("write rejected")
    # It has what was written on the new primary, and what is written from now on.
    assert has_row(cfg, "pg-a", "written after the failover")
    write_row(cfg, "pg-b", "written after the rejoin")
    wait_for(lambda: has_row(cfg, "pg-a", "written after the rejoin"), DEADLINE, what="pg-a replays pg-b's writes")
    app = json.loads(cfg.app_config_path.read_text())["database"]
    assert app["primary_node"] == "pg-b" and app["replica_nodes"] == ["pg-a", "pg-c"], app

    # A second run: everything already streams from pg-b.
    _, again = run_json("run", "database_rejoin", "-i", inventory, "--yes", expect_rc=0)

    assert summary(again)["action"] == "none" and summary(again)["streaming"] == [], summary(again)
    assert changed_steps(again) == []
    assert topology(cfg) == topo

    # Rejoining the primary to itself is refused, clearly, and nothing is touched.
    _, refused = run_json("run", "database_rejoin", "-i", inventory, "-e", "node=pg-b", "--yes", expect_rc=1)

    message = failure_message(refused)
    assert "pg-b is the primary" in message, message
    assert changed_steps(refused) == []
    assert topology(cfg) == topo
