"""The database runbooks' summary and abort message (module_utils/_postgres/summary.py): what they say
is what the steps did, never what the plan meant."""

from __future__ import annotations

from erlmcp_dr import paths

paths.ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.filter.summary import FilterModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.summary import abort_message, db_summary  # noqa: E402

PLAN = {"action": "promote", "reason": "switch over from pg-a to pg-b", "old_primary": "pg-a", "candidate": "pg-b",
        "fence": "pg-a", "promote": True, "follow": ["pg-a", "pg-c"], "left_out": [], "lag_bytes": 0, "timeline": 4,
        "warnings": []}


def cluster(*writers):
    return {"nodes": {name: {"reachable": True, "role": "primary" if name in writers else "standby",
                             "read_only": False} for name in ("pg-a", "pg-b", "pg-c")}}


def test_a_full_run_lists_what_each_step_did():
    steps = {"fence": {"changed": True, "method": "stop", "final_lsn": "0/5000028"},
             "promote": {"changed": True, "promoted": True, "timeline_before": 4, "timeline_after": 5,
                         "lost_bytes_max": 0},
             "follow": {"results": [{"item": "pg-a", "changed": True, "action": "rewind"},
                                    {"item": "pg-c", "changed": True, "action": "follow"}]},
             "app_config": {"changed": True, "path": "/etc/erlmcp/db.json"},
             "end_state": {"ok": True, "problems": []}}
    summary = db_summary(PLAN, steps, completed=True)
    assert summary["did"] == ["fenced pg-a by stop (final LSN 0/5000028)", "promoted pg-b: timeline 4 -> 5",
                              "pg-a streams from the new primary (rewind)",
                              "pg-c streams from the new primary (follow)",
                              "rewrote the application's database config /etc/erlmcp/db.json"]
    details = summary["details"]
    assert details["timeline_before"] == 4 and details["timeline_after"] == 5 and details["new_primary"] == "pg-b"
    assert details["streaming"] == ["pg-a", "pg-c"] and details["methods"] == ["rewind", "follow"]
    assert summary["completed"] and summary["end_state"] == {"ok": True, "problems": []}


def test_a_primary_that_takes_no_write_is_a_warning_after_the_plans():
    reason = "pg-b takes no write: it asks for a synchronous standby"
    steps = {"app_config": {"changed": True, "path": "/etc/erlmcp/db.json", "writes_wait": reason},
             "end_state": {"ok": True, "problems": []}}
    summary = db_summary(dict(PLAN, warnings=["pg-c is left out"]), steps, completed=True)
    assert summary["details"]["warnings"] == ["pg-c is left out", reason]
    assert db_summary(PLAN, {"app_config": {"writes_wait": None}}, completed=True)["details"]["warnings"] == []


def test_nothing_done_says_so_and_a_plan_says_would():
    assert db_summary({"action": "none", "candidate": "pg-b"}, {})["did"] == ["nothing was changed"]
    planned = db_summary(PLAN, {"fence": {"changed": True, "method": "stop"},
                                "promote": {"changed": True, "would_promote": True}}, check_mode=True)
    assert planned["did"] == ["would fence pg-a by stop", "would promote pg-b", "would repoint pg-a, pg-c to pg-b"]


def test_a_run_that_stopped_early_is_not_completed_and_has_no_primary_when_refused():
    refused = db_summary({"action": "refuse", "reason": "split brain", "candidate": "pg-b"}, {})
    assert refused["details"]["new_primary"] is None and refused["details"]["primary"] is None
    assert not refused["completed"] and refused["end_state"] == {"ok": None, "problems": []}
    assert refused["served"] is None and refused["point_of_no_return_passed"] is False
    assert db_summary(None, {})["action"] is None


def test_abort_after_a_failed_fence_says_who_takes_writes_now():
    message = abort_message(PLAN, "pg_ctl not found", fence={"failed": True, "msg": "pg_ctl not found"},
                            unfence={"failed": True, "msg": "pg_ctl not found"}, after=cluster("pg-a"))
    assert message.startswith("fencing pg-a failed: pg_ctl not found; then")
    assert "then starting pg-a again failed" in message and "now pg-a takes writes, as before" in message


def test_abort_after_the_fence_restarts_the_old_primary_and_says_so():
    message = abort_message(PLAN, "lag", fence={"changed": True}, unfence={"changed": True}, after=cluster("pg-a"))
    assert "pg-b was not promoted: lag" in message and "pg-a was started again (unfenced)" in message


def test_abort_never_hides_that_no_node_takes_writes():
    message = abort_message(PLAN, "lag", fence={"changed": False, "fenced": True, "was_fenced": True},
                            after=cluster())
    assert "already fenced before this run" in message and "now no node takes writes" in message
    assert "split brain" in abort_message(PLAN, "x", fence={"changed": True}, after=cluster("pg-a", "pg-b"))
    assert "could not be read again" in abort_message(PLAN, "x", fence={"changed": True})


def test_abort_after_the_promotion_says_to_run_again():
    message = abort_message(PLAN, "timeline did not move", promote={"promoted": True})
    assert message.startswith("pg-b was promoted, then: timeline did not move. Run the runbook again")


def test_filters_are_registered():
    filters = FilterModule().filters()
    assert filters["pg_summary"](PLAN, {}, True)["completed"] is True
    assert "nothing was changed" in filters["pg_abort_message"]({"candidate": "pg-b"}, "bad").lower()


def test_the_point_of_no_return_comes_from_the_runbooks_metadata_and_the_promotion_having_happened():
    promoted = {"promote": {"changed": True, "promoted": True, "lost_bytes_max": 120}}
    failover = {"point_of_no_return": "erlmcp.dr.pg_promote", "rpo_seconds": 1}
    summary = db_summary(PLAN, promoted, True, False, "database_failover", failover)
    assert summary["runbook"] == "database_failover" and summary["point_of_no_return_passed"] is True
    assert summary["recovery_point"] == {"lost_bytes": 120, "lost_seconds": None, "target_seconds": 1}
    assert summary["served"] == {"before": "pg-a", "after": "pg-b"}
    assert db_summary(PLAN, promoted, True, False, "database_rejoin", {})["point_of_no_return_passed"] is False
    planned = db_summary(PLAN, {"promote": {"would_promote": True}}, False, True, "database_failover", failover)
    assert planned["point_of_no_return_passed"] is False and planned["served"] == {"before": "pg-a", "after": "pg-a"}
    assert planned["recovery_point"] is None
