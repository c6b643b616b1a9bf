"""The drill's decisions (src/erlmcp_dr/drill/judge.py) on made-up client logs and readiness summaries; the Chaos
Toolkit export (drill/chaos.py) against the JSON Schema it publishes; the refusal outside the lab."""

from __future__ import annotations

import jsonschema
import pytest

from erlmcp_dr import catalog, params
from erlmcp_dr.drill import chaos as drill_chaos
from erlmcp_dr.drill import judge as drill_judge
from erlmcp_dr.drill import run as drill
from erlmcp_dr.drill.judge import Attempt, Hypothesis
from erlmcp_dr.errors import ParameterError


def write(t: float, ok: bool, row: int | None = None, key: str | None = None) -> Attempt:
    return Attempt("write", t - 0.005, t, ok, row_id=row if ok else None, session_key=key if ok else None)


def log_with_outage() -> list[Attempt]:
    """Writes every 20 ms: ok until 1.00, failing 1.02..3.98, ok again from 4.00 (ids 1..)."""
    attempts, row = [], 0
    for step in range(0, 300):
        t = round(step * 0.02, 2)
        ok = not (1.0 < t < 4.0)
        if ok:
            row += 1
        attempts.append(write(t, ok, row, f"s{row}"))
    return attempts


def test_rto_runs_from_the_fault_to_the_first_success_after_the_last_failure() -> None:
    seen = drill_judge.outage(log_with_outage(), fault_at=1.01, resolution=0.02)
    assert seen.first_failure == pytest.approx(1.02)
    assert seen.last_failure == pytest.approx(3.98)
    assert seen.first_success == pytest.approx(4.0)
    assert seen.rto_seconds == pytest.approx(2.99)
    assert seen.client_outage_seconds == pytest.approx(2.98)
    assert seen.resolution_seconds == pytest.approx(0.02)


def test_a_flap_after_the_first_success_belongs_to_the_outage() -> None:
    attempts = [write(0.5, True, 1), write(1.1, False), write(1.5, True, 2), write(1.7, False), write(2.2, True, 3)]
    seen = drill_judge.outage(attempts, fault_at=1.0, resolution=0.02)
    assert seen.first_success == 2.2 and seen.rto_seconds == pytest.approx(1.2)
    assert seen.resolution_seconds == pytest.approx(0.5)  # the real gap between the last failure and the success


def test_a_service_that_never_comes_back_has_no_rto_and_fails_it() -> None:
    attempts = [write(0.5, True, 1), write(1.1, False), write(1.3, False)]
    seen = drill_judge.outage(attempts, fault_at=1.0, resolution=0.02)
    assert seen.rto_seconds is None and seen.first_success is None
    targets = drill_judge.targets_for("database_primary", None)
    loss = drill_judge.data_loss(attempts, [1], ["s1"], 0.02)
    table = drill_judge.criteria("database_primary", targets, seen, loss, {"rate": 0.0}, None)
    assert {c.name: c.verdict for c in table}["rto_seconds"] == "fail"


def test_no_failure_after_the_fault_is_an_rto_of_zero() -> None:
    seen = drill_judge.outage([write(0.5, True, 1), write(1.5, True, 2)], fault_at=1.0, resolution=0.02)
    assert seen.rto_seconds == 0.0 and seen.failed_attempts == 0


def test_rpo_counts_acknowledged_writes_missing_afterwards_and_the_time_they_cover() -> None:
    attempts = log_with_outage()
    acked = [a for a in attempts if a.ok]
    lost = [a.row_id for a in acked if 0.9 <= a.ended <= 1.0]  # the last writes before the fault
    present_ids = [a.row_id for a in acked if a.row_id not in lost]
    present_keys = [a.session_key for a in acked if a.row_id not in lost]
    loss = drill_judge.data_loss(attempts, present_ids, present_keys, resolution=0.02)
    assert loss.lost_ids == sorted(lost) and len(lost) == 6
    assert loss.rpo_seconds == pytest.approx(0.12)  # 0.90 to 1.00, plus one interval
    assert loss.lost_span_seconds == pytest.approx(0.10)
    assert loss.sessions_lost == 6 and loss.acknowledged == len(acked)


def test_one_lost_write_is_never_an_rpo_of_zero() -> None:
    """Regression: a write acknowledged as the kill landed was lost, and the RPO said 0 s (benchmark drill 1)."""
    attempts = [write(0.1, True, 1, "s1"), write(0.2, True, 2, "s2")]
    loss = drill_judge.data_loss(attempts, [1], ["s1", "s2"], resolution=0.02)
    assert loss.lost_ids == [2] and loss.rpo_seconds == pytest.approx(0.02) and loss.lost_span_seconds == 0.0


def test_a_session_lost_while_its_row_survived_is_counted() -> None:
    attempts = [write(0.1, True, 1, "s1"), write(0.2, True, 2, "s2")]
    loss = drill_judge.data_loss(attempts, [1, 2], ["s1"], resolution=0.02)
    assert loss.lost_ids == [] and loss.rpo_seconds == 0.0 and loss.sessions_lost == 1


def test_errors_are_counted_outside_the_recovery_window_only() -> None:
    attempts = log_with_outage() + [write(6.5, False)]
    seen = drill_judge.outage(attempts[:-1], fault_at=1.01, resolution=0.02)  # back at 4.00
    errors = drill_judge.steady_error_rate(attempts, 1.01, seen.first_success)
    # outside the window: 51 before the fault (0.00-1.00), 99 after the return (4.02-5.98), the late failure
    assert errors["errors"] == 1 and errors["errors_total"] == 1 + 149
    assert errors["attempts"] == 51 + 99 + 1 and errors["rate"] == round(1 / errors["attempts"], 6)


def test_targets_come_from_the_inventory_key_by_key_and_bad_ones_are_named() -> None:
    default = drill_judge.targets_for("app_instance", None)
    assert default["rto_seconds"]["target"] == 5.0 and "S1" in default["rto_seconds"]["source"]
    assert default["rpo_seconds"]["target"] == 1.0 and "MISSION" in default["rpo_seconds"]["source"]
    mine = drill_judge.targets_for("database_primary", {"rto_seconds": {"database_primary": 60}, "rpo_seconds": 5})
    assert mine["rto_seconds"] == {"target": 60.0, "source": "inventory dr_drill.targets.rto_seconds"}
    assert mine["rpo_seconds"]["target"] == 5.0
    other = drill_judge.targets_for("redis_primary", {"rto_seconds": {"database_primary": 60}})
    assert other["rto_seconds"]["target"] == 10.0 and "S1" in other["rto_seconds"]["source"]
    with pytest.raises(ValueError, match=r"dr_drill.targets.rpo_seconds: found 'fast'; expected a number"):
        drill_judge.targets_for("region", {"rpo_seconds": "fast"})
    with pytest.raises(ValueError, match=r"dr_drill.targets.rto: unknown criterion; expected one of rto_seconds"):
        drill_judge.targets_for("region", {"rto": 1})


def readiness_summary(*checks: tuple[str, str]) -> dict:
    return {"details": {"checks": [{"name": n, "verdict": v, "measured": 1, "threshold": "x", "detail": f"{n} d"}
                                   for n, v in checks]}}


def test_the_hypothesis_judges_the_steady_state_checks_only() -> None:
    ok = drill_judge.hypothesis(readiness_summary(("pg_replay_lag pg-b", "pass"), ("redis_link redis-b", "warn"),
                                                  ("redis_backup_age", "fail"), ("drill database_primary", "fail")))
    assert ok.holds and ok.checked == ["pg_replay_lag pg-b", "redis_link redis-b"]
    bad = drill_judge.hypothesis(readiness_summary(("pg_replay_lag pg-b", "pass"), ("redis_link redis-c", "fail")))
    assert not bad.holds and [d["name"] for d in bad.deviations] == ["redis_link redis-c"]
    assert "redis_link redis-c" in bad.message


def test_a_readiness_that_could_not_run_is_a_deviation_never_a_pass() -> None:
    assert not drill_judge.hypothesis(None).holds
    assert not drill_judge.hypothesis({"details": {}}).holds
    assert not drill_judge.hypothesis(readiness_summary(("certificate x", "pass"))).holds


def passing_table() -> list:
    return [drill_judge.Criterion("rto_seconds", "< 10", 2.0, "pass", "s")]


def test_a_drill_whose_restore_failed_is_never_passed() -> None:
    held = Hypothesis(True)
    assert drill_judge.verdict(held, True, True, passing_table(), True)["verdict"] == "passed"
    assert drill_judge.verdict(held, True, True, passing_table(), False)["verdict"] == "restore_failed"
    assert drill_judge.verdict(Hypothesis(False, message="x"), False, None, [], False)["verdict"] == "restore_failed"


def test_verdicts_for_deviation_failed_recovery_and_missed_criteria() -> None:
    assert drill_judge.verdict(Hypothesis(False, message="m"), False, None, [], None)["verdict"] == "deviated"
    held = Hypothesis(True)
    assert drill_judge.verdict(held, False, None, [], True)["verdict"] == "failed"
    assert drill_judge.verdict(held, True, False, passing_table(), True)["reason"] == "the recovery runbook failed"
    missed = [drill_judge.Criterion("rpo_seconds", "< 1", 3.0, "fail", "s")]
    assert drill_judge.verdict(held, True, True, missed, True) == {"verdict": "failed",
                                                                   "reason": "criteria not met: rpo_seconds"}


def test_the_timeline_counts_successes_and_failures_per_bucket() -> None:
    buckets = drill_judge.timeline(log_with_outage(), origin=0.0, bucket=1.0)
    assert buckets[0] == {"t": 0.0, "ok": 50, "failed": 0}
    assert buckets[2] == {"t": 2.0, "ok": 0, "failed": 50}


def test_outside_the_lab_a_drill_is_refused_typed_name_or_not() -> None:
    drill.refuse_outside_lab(True, None, None)
    with pytest.raises(ParameterError, match="not the lab.*dr_environment \\(prod\\); found staging"):
        drill.refuse_outside_lab(False, "prod", "staging")
    with pytest.raises(ParameterError, match="environment prod confirmed, but fault injection outside the lab is "
                                             "not built yet"):
        drill.refuse_outside_lab(False, "prod", "prod")


def drill_result(verdict: str, restored: bool | None) -> dict:
    criteria = [{"name": "rto_seconds", "target": "< 10", "measured": 2.0, "verdict": "pass", "source": "s",
                 "detail": ""}]
    details = {"kind": "database_primary", "verdict": verdict, "verdict_reason": "r", "restored": restored,
               "recovery_runbook": "database_failover", "fault": {"target": "pg-a"}, "criteria": criteria,
               "targets": {"rto_seconds": {"target": 10.0, "source": "s"}}, "measured": {"rto_seconds": 2.0,
                                                                                         "timeline": []},
               "steady_state_before": {"holds": True, "message": "ok", "deviations": [], "run_id": "x.steady-before"},
               "steady_state_after": {"holds": bool(restored), "message": "m", "deviations": [],
                                      "run_id": "x.steady-after"}}
    steps = [{"task": "steady-before: readiness", "action": "readiness", "start": "a", "end": "b", "duration": 1.0,
              "failed": False, "data": {"child_run_id": "x.steady-before"}},
             {"task": "inject the fault", "action": "dr_drill", "start": "b", "end": "c", "duration": 0.1,
              "failed": False, "data": {"result": {"target": "pg-a"}}},
             {"task": "restore the steady state", "action": "dr_drill", "start": "c", "end": "d", "duration": 3.0,
              "failed": restored is False, "message": "database_rejoin of pg-a failed", "data": {}}]
    return {"run_id": "x", "runbook": "dr_drill", "inventory": "/inv", "started_at": "a", "ended_at": "d",
            "duration_seconds": 9.5, "steps": steps, "facts": {"summary": {"details": details}}}


@pytest.mark.parametrize(("verdict", "restored", "deviated"), [("passed", True, False), ("restore_failed", False, True),
                                                               ("deviated", None, True)])
def test_the_chaos_toolkit_export_validates_against_its_documented_structure(verdict, restored, deviated) -> None:
    result = drill_result(verdict, restored)
    schema = drill_chaos.schema()
    experiment, journal = drill_chaos.experiment(result), drill_chaos.journal(result)
    jsonschema.validate(experiment, {**schema, "$ref": "#/$defs/experiment"})
    jsonschema.validate(journal, {**schema, "$ref": "#/$defs/journal"})
    assert journal["deviated"] is deviated
    assert experiment["runtime"]["rollbacks"]["strategy"] == "always"
    assert [r["activity"]["name"] for r in journal["rollbacks"]] == ["restore the steady state"]
    assert journal["rollbacks"][0]["status"] == ("failed" if restored is False else "succeeded")


def test_the_schema_refuses_what_chaos_toolkit_would() -> None:
    schema = drill_chaos.schema()
    experiment = drill_chaos.experiment(drill_result("passed", True))
    broken = dict(experiment, method=[])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, {**schema, "$ref": "#/$defs/experiment"})
    probe = dict(experiment["steady-state-hypothesis"]["probes"][0])
    probe.pop("tolerance")
    no_tolerance = dict(experiment, **{"steady-state-hypothesis": {"title": "t", "probes": [probe]}})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(no_tolerance, {**schema, "$ref": "#/$defs/experiment"})


def test_an_interrupted_drill_is_failed_once_restored_and_restore_failed_otherwise() -> None:
    held = Hypothesis(True)
    restored = drill_judge.verdict(held, True, None, [], True, "KeyboardInterrupt")
    assert restored == {"verdict": "failed",
                        "reason": "interrupted (KeyboardInterrupt); the steady state was restored"}
    assert drill_judge.verdict(held, True, None, [], False, "KeyboardInterrupt")["verdict"] == "restore_failed"
    assert drill_judge.verdict(held, False, None, [], None, "KeyboardInterrupt")["verdict"] == "failed"


@pytest.mark.parametrize("kind", ["database_primary", "app_instance"])
def test_sigstop_is_refused_for_a_kind_it_is_not_built_for_before_anything_runs(kind, tmp_path) -> None:
    """SIGSTOP is built for the Redis primary only: another kind is refused naming `signal`, before the inventory is
    even read (a path that does not exist)."""
    with pytest.raises(ParameterError) as caught:
        drill.run("dr_drill", inventory=tmp_path / "absent.yml", extravars={"kind": kind, "signal": "SIGSTOP"})
    assert caught.value.parameter == "signal" and f"found kind {kind}" in str(caught.value)
    assert "redis_primary" in str(caught.value) and not (tmp_path / "absent.yml").exists()


def test_the_region_drill_is_judged_by_the_seeds_region_criterion_and_recovers_with_regional_failover() -> None:
    targets = drill_judge.targets_for("region", None)
    assert targets["rto_seconds"]["target"] == 30.0 and "region < 30 s" in targets["rto_seconds"]["source"]
    loss = drill_judge.DataLoss(100, [], 0, 0.0, 0.0)
    errors = {"rate": 0.0, "errors": 0, "attempts": 100}

    def rto_verdict(back_at: float) -> str:
        attempts = [write(0.5, True, 1), write(1.0, False), write(back_at - 0.02, False), write(back_at, True, 2)]
        seen = drill_judge.outage(attempts, 0.9, 0.02)
        table = drill_judge.criteria("region", targets, seen, loss, errors, back_at)
        return next(row for row in table if row.name == "rto_seconds").verdict

    assert (rto_verdict(0.9 + 29.0), rto_verdict(0.9 + 31.0)) == ("pass", "fail")  # database_primary's 10 s would fail
    assert drill.RECOVERY["region"] == "regional_failover"
    runbook = catalog.load("dr_drill")
    assert params.validate(runbook, {"kind": "region"}) == {"kind": "region"}


def _check(name: str, verdict: str, detail: str = "") -> dict:
    return {"name": name, "verdict": verdict, "detail": detail, "measured": None}


def test_the_region_drill_moves_to_the_first_region_no_target_check_rules_out() -> None:
    checks = [_check("reachable region b", "pass"), _check("capacity region b", "fail", "capacity 0.5 for a load of 1"),
              _check("residency region b", "pass"), _check("reachable region c", "pass"),
              _check("capacity region c", "pass"), _check("residency region c", "warn", "not configured"),
              _check("pg_replay_lag pg-b", "fail", "behind")]  # not a target check: the steady state judges it
    target, ruled_out = drill_judge.region_target("a", ["a", "b", "c"], checks)
    assert target == "c"
    assert ruled_out == {"b": ["capacity region b: capacity 0.5 for a load of 1"]}
    assert drill_judge.region_target("b", ["a", "b", "c"], [])[0] == "a"  # nothing failed: the lab's order


def test_a_region_drill_with_no_region_to_go_to_has_none_and_every_reason() -> None:
    checks = [_check("residency region b", "fail", "dataset eu-users may not leave the EU"),
              _check("reachable region c", "fail", "app-c refused"), _check("capacity region c", "fail", "0.2")]
    target, ruled_out = drill_judge.region_target("a", ["a", "b", "c"], checks)
    assert target is None
    assert ruled_out == {"b": ["residency region b: dataset eu-users may not leave the EU"],
                         "c": ["reachable region c: app-c refused", "capacity region c: 0.2"]}
    assert drill_judge.region_target("a", ["a"], checks) == (None, {})


def test_the_hypothesis_keeps_every_check_readiness_published() -> None:
    checks = [_check("pg_replay_lag pg-b", "pass"), _check("capacity region b", "fail", "0.5")]
    held = drill_judge.hypothesis({"details": {"checks": checks}})
    assert held.holds and held.checked == ["pg_replay_lag pg-b"] and list(held.checks) == checks
# ------------------------------------------------------------------ the region drill's restore: Redis handed back

HOME = {"pg_primary": "pg-a", "pg_region": "a", "redis_primary": "redis-a", "redis_region": "a"}


@pytest.mark.parametrize(("kind", "now", "handed_back"), [
    # killed after regional_failover moved Redis, before it promoted: the database is home again, Redis is not
    ("region", {"pg_region": "a", "redis_primary": "redis-b"}, [{"away_from": "redis-b", "candidate": "redis-a"}]),
    ("region", {"pg_region": "a", "redis_primary": "redis-a"}, []),  # Redis never moved
    ("region", {"pg_region": "b", "redis_primary": "redis-b"}, []),  # the database is away: failback's to move
    ("region", {"pg_region": "a", "redis_primary": None}, []),  # no Redis primary to hand over from
    ("redis_primary", {"pg_region": "a", "redis_primary": "redis-b"}, []),  # another kind's restore keeps its primary
])
def test_a_region_drills_restore_hands_redis_back_only_when_the_database_is_home_and_redis_is_not(
        monkeypatch: pytest.MonkeyPatch, kind: str, now: dict, handed_back: list) -> None:
    calls: list[dict] = []
    restorer = drill.Drill.__new__(drill.Drill)
    restorer.cfg = None
    monkeypatch.setattr(drill.lab_drill, "state", lambda cfg: now)

    class Succeeded:
        succeeded = True

    def child(step_id: str, runbook: str, arguments: dict) -> Succeeded:
        assert (step_id, runbook) == ("redis-back", "redis_failover")
        calls.append(arguments)
        return Succeeded()

    restorer.child = child  # type: ignore[method-assign]
    assert restorer.redis_back({"kind": kind, "before": HOME}) == []
    assert calls == handed_back
