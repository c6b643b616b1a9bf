"""The plan before the confirmation names what will change: the Redis runbooks' backup (id, age, key counts
before -> after) and what is lost, the node that serves before -> after for redis_failover and the database
runbooks; the terminal shows those lines as `will change:` and `may lose:`."""

from __future__ import annotations

from erlmcp_dr import terminal
from erlmcp_dr.paths import ensure_collection_importable
from erlmcp_dr.result import RunResult

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.summary import db_summary  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._redis import plan as _redis_plan  # noqa: E402

# What redis_restore returns in check mode when the primary does not hold the backup yet (_redis_restore.run).
RESTORE_CHECK = dict(changed=True, backup_id="20261206T080000Z", data_loss_seconds=5400,
                     keys_before={"db0": 1250, "db1": 10},
                     backup={"id": "20261206T080000Z", "keys_per_db": {"db0": 1000, "db1": 10},
                             "created_at": "2026-12-06T08:00:00+00:00", "size": 4096})


def plan_of(summary: dict) -> list[str]:
    result = RunResult(run_id="r1", runbook="x", status="successful", rc=0, check=True, started_at="", ended_at="",
                       duration_seconds=1.0, inventory="inv", facts={"summary": summary}, run_dir="/runs/r1")
    return terminal.plan_lines(result)


def test_redis_restore_plan_names_the_backup_the_keys_and_what_is_lost():
    summary = _redis_plan.summary("redis_restore", {"target": "redis-a", "action": "restore"},
                                  {"restore": RESTORE_CHECK}, check_mode=True)
    assert summary["plan"]["will_change"] == [
        "dataset of redis-a: 1260 keys (db0 1250, db1 10) -> 1010 keys (db0 1000, db1 10), from backup "
        "20261206T080000Z (taken 90 min ago, 2026-12-06T08:00:00+00:00)"]
    assert summary["plan"]["may_lose"] == ["every write to redis-a since the backup was taken (90 min ago)"]
    lines = plan_of(summary)
    assert lines[0].startswith("will change: dataset of redis-a: 1260 keys")
    assert "may lose: every write to redis-a since the backup was taken (90 min ago)" in lines


def test_a_restore_the_primary_already_holds_plans_no_change():
    holds = dict(RESTORE_CHECK, changed=False, keys_after={"db0": 1000, "db1": 10})
    summary = _redis_plan.summary("redis_restore", {"target": "redis-a"}, {"restore": holds}, check_mode=True)
    assert summary["plan"]["will_change"] == [] and summary["plan"]["may_lose"] == []
    assert plan_of(summary) == ["nothing to change: the end state already holds"]


def test_redis_failover_plan_names_the_primary_before_and_after():
    coordinated = dict(changed=True, candidate="redis-b", old_primary="redis-a", plan="failover",
                       would_promote=True, would_repoint=["redis-c"], lag_bytes_at_gate=0)
    summary = _redis_plan.summary("redis_failover", {}, {"promote": coordinated}, check_mode=True)
    assert summary["plan"]["will_change"] == [
        "primary: redis-a -> redis-b (Redis's coordinated FAILOVER: writes paused until redis-b has every byte)",
        "replicate from redis-b: redis-c"]
    assert summary["plan"]["may_lose"] == []  # the coordinated hand-over loses nothing acknowledged
    alone = dict(coordinated, plan="promote", lag_bytes_at_gate=512)
    summary = _redis_plan.summary("redis_failover", {}, {"promote": alone}, check_mode=True)
    assert summary["plan"]["will_change"][0] == "primary: redis-a -> redis-b (redis-a does not answer)"
    assert summary["plan"]["may_lose"] == [
        "the writes redis-a acknowledged after its last byte redis-b received (lag at the gate: 512 B)"]


def test_a_real_run_publishes_no_plan_lines():
    summary = _redis_plan.summary("redis_restore", {"target": "redis-a"}, {"restore": RESTORE_CHECK})
    assert summary["plan"]["will_change"] == [] and summary["plan"]["may_lose"] == []


def test_database_plans_name_the_primary_before_and_after():
    plan = {"action": "promote", "candidate": "pg-b", "old_primary": "pg-a", "fence": "pg-a", "lag_bytes": 0}
    summary = db_summary(plan, {"promote": {"would_promote": True, "changed": True}}, check_mode=True)
    assert summary["plan"]["will_change"] == ["primary: pg-a -> pg-b"]
    assert "will change: primary: pg-a -> pg-b" in plan_of(summary)
    assert db_summary(plan, {"promote": {"promoted": True, "changed": True}})["plan"]["will_change"] == []
    nothing = db_summary({"action": "none", "candidate": "pg-b"}, {}, check_mode=True)
    assert nothing["plan"]["will_change"] == []
