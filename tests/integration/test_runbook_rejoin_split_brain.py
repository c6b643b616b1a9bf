"""database_rejoin after a split brain on one timeline (issue 16 row 2), end to end on the real lab."""

from __future__ import annotations

import pytest
from conftest import lab_inventory
from runbook_helpers import changed_steps, failure_message, run_json, summary, topology, wait_topology
from test_pg_split_brain import rows, split_brain
from test_pg_standby_follow import wait_rows

pytestmark = pytest.mark.integration


def test_rejoin_refuses_a_split_brain_node_and_reclones_it_only_with_allow_reclone(fresh_lab, home):
    cfg = fresh_lab
    split_brain(cfg, rows_on_c=300)
    inventory = str(lab_inventory(cfg))
    primary_rows, own_rows, before = rows(cfg, "pg-b"), rows(cfg, "pg-c"), topology(cfg)
    args = ("run", "database_rejoin", "-i", inventory, "-e", "node=pg-c", "-e", "allow_stop_primary=true", "--yes")

    _, refused = run_json(*args, expect_rc=1)

    message = failure_message(refused)
    assert "runs as a primary on timeline 2, the primary's own timeline" in message, message
    assert "allow_reclone=true" in message, message
    assert rows(cfg, "pg-c") == own_rows and topology(cfg) == before
    assert "Make the nodes stream from the primary" not in " ".join(changed_steps(refused)), changed_steps(refused)

    _, recloned = run_json(*args, "-e", "allow_reclone=true", expect_rc=0)

    assert recloned["status"] == "successful", failure_message(recloned)
    assert summary(recloned)["streaming"] == ["pg-c"], summary(recloned)
    wait_topology(cfg, {"pg-b": {"role": "primary", "timeline": 2},
                        "pg-c": {"role": "standby", "upstream": "pg-b", "timeline": 2}}, "pg-c streams from pg-b")
    assert rows(cfg, "pg-c") == primary_rows
    wait_rows(cfg, "pg-c", "SELECT count(*) FROM t WHERE origin = 'written on pg-c'", [(0,)])
