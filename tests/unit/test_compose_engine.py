"""The composition engine with fake step runners: ordering, undo before the point of no return in exact reverse
order, roll forward after it, references between steps, verification. (A fake runner is fine here: the engine's
logic is pure; tests/integration/test_regional_failover.py runs the real children on the lab.)"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from erlmcp_dr.compose import engine, spec
from erlmcp_dr.compose.engine import Engine, StepOutcome

ENVELOPE_OK = {"end_state": {"ok": True, "problems": []}, "did": ["changed something"]}
CHILDREN = {name: {"node": {}, "back_to": {}, "value": {}} for name in ("one", "two", "three", "four", "five")}


def workflow(steps: List[Dict[str, Any]]) -> spec.Workflow:
    return spec.load("composed", {"steps": steps}, {"target": {"type": "str"}}, CHILDREN, {"check": ("value",)})


class FakeRunner:
    """Records every call; `fail` maps (step, phase) to the outcome to return instead of success."""

    def __init__(self, fail: Optional[Dict[tuple, StepOutcome]] = None,
                 details: Optional[Dict[str, Dict[str, Any]]] = None) -> None:
        self.calls: List[tuple] = []
        self.fail = fail or {}
        self.details = details or {}

    def __call__(self, step: spec.WorkflowStep, call: spec.Call, arguments: Dict[str, Any], phase: str) -> StepOutcome:
        self.calls.append((step.id, phase, call.name, arguments))
        if (step.id, phase) in self.fail:
            return self.fail[(step.id, phase)]
        summary = dict(ENVELOPE_OK, details=self.details.get(step.id, {}),
                       point_of_no_return_passed=step.point_of_no_return)
        return StepOutcome(ok=True, summary=summary, run_id=f"run.{step.id}.{phase}", rc=0, changed=True)


FIVE = [
    {"id": "s1", "runbook": "one", "undo": {"runbook": "one", "with": {"back_to": "old"}}},
    {"id": "s2", "runbook": "two"},  # nothing to undo (a read, a notification already sent)
    {"id": "s3", "runbook": "three", "undo": {"runbook": "three"}},
    {"id": "s4", "runbook": "four", "point_of_no_return": True},
    {"id": "s5", "runbook": "five"},
]
FAILED = StepOutcome(ok=False, rc=1, message="it broke")


def test_every_step_verified_in_order_is_completed() -> None:
    runner = FakeRunner()
    outcome = Engine(workflow(FIVE), {}, runner).run()
    assert outcome.status == engine.COMPLETED and outcome.ok
    assert [call[:2] for call in runner.calls] == [(s, "forward") for s in ("s1", "s2", "s3", "s4", "s5")]
    assert outcome.point_of_no_return_passed and outcome.done == ["s1", "s2", "s3", "s4", "s5"]


def test_a_failure_before_the_point_of_no_return_undoes_completed_steps_in_exact_reverse_order() -> None:
    runner = FakeRunner(fail={("s4", "forward"): StepOutcome(ok=False, rc=1, message="candidate down",
                                                              summary={"point_of_no_return_passed": False})})
    outcome = Engine(workflow(FIVE), {}, runner).run()
    assert outcome.status == engine.UNDONE and outcome.failed_step == "s4"
    assert [call[:2] for call in runner.calls] == [("s1", "forward"), ("s2", "forward"), ("s3", "forward"),
                                                   ("s4", "forward"), ("s3", "undo"), ("s1", "undo")]
    assert outcome.undone == ["s3", "s1"] and not outcome.point_of_no_return_passed
    assert runner.calls[-1][3] == {"back_to": "old"}
    assert "candidate down" in outcome.message and "back where it was before the run" in outcome.message


def test_a_failed_undo_is_reported_and_the_remaining_undos_still_run() -> None:
    runner = FakeRunner(fail={("s3", "forward"): FAILED, ("s1", "undo"): FAILED})
    steps = [FIVE[0], {"id": "s2", "runbook": "two", "undo": {"runbook": "two"}}, FIVE[2], FIVE[3]]
    outcome = Engine(workflow(steps), {}, runner).run()
    assert outcome.status == engine.UNDO_INCOMPLETE
    assert outcome.undone == ["s2"] and outcome.undo_failed == ["s1"]
    assert "NOT verified" in outcome.message


def test_a_failure_after_the_point_of_no_return_stops_and_undoes_nothing() -> None:
    runner = FakeRunner(fail={("s5", "forward"): FAILED})
    outcome = Engine(workflow(FIVE), {}, runner).run()
    assert outcome.status == engine.STOPPED and outcome.point_of_no_return_passed
    assert all(phase == "forward" for _, phase, _, _ in runner.calls)
    assert outcome.done == ["s1", "s2", "s3", "s4"] and outcome.not_done == ["s5"] and outcome.undone == []
    assert "Nothing was undone" in outcome.message and "run the same command again" in outcome.message


def test_the_point_of_no_return_step_failing_after_passing_its_own_rolls_forward() -> None:
    """database_failover that promoted, then failed to repoint: its summary says it passed: no undo."""
    runner = FakeRunner(fail={("s4", "forward"): StepOutcome(ok=False, rc=1, message="repoint failed",
                                                              summary={"point_of_no_return_passed": True})})
    outcome = Engine(workflow(FIVE), {}, runner).run()
    assert outcome.status == engine.STOPPED and outcome.undone == []
    assert [call[1] for call in runner.calls] == ["forward"] * 4


def test_references_take_parameters_targets_and_earlier_steps_outcomes() -> None:
    steps = [
        {"id": "first", "runbook": "one", "with": {"node": {"from": "targets.to.postgres"}}},
        {"id": "second", "runbook": "two",
         "with": {"node": {"from": "steps.first.details.primary"}, "value": {"from": "params.target"},
                  "back_to": {"from": "run.id"}}},
    ]
    runner = FakeRunner(details={"first": {"primary": "pg-b"}})
    context = {"params": {"target": "b"}, "run": {"id": "run-1"}, "targets": {"to": {"postgres": "pg-b"}}}
    Engine(workflow(steps), context, runner).run()
    assert runner.calls[0][3] == {"node": "pg-b"}
    assert runner.calls[1][3] == {"node": "pg-b", "value": "b", "back_to": "run-1"}


def test_an_unset_parameter_is_left_out_so_the_child_default_applies() -> None:
    runner = FakeRunner()
    Engine(workflow([{"id": "only", "runbook": "one", "with": {"value": {"from": "params.target"}}}]), {},
           runner).run()
    assert runner.calls[0][3] == {}


def test_expect_checks_and_the_child_end_state_decide_verification() -> None:
    steps = [{"id": "db", "runbook": "one", "expect": [{"equals": [{"from": "steps.db.details.primary"}, "pg-b"]}]},
             {"id": "next", "runbook": "two"}]
    runner = FakeRunner(details={"db": {"primary": "pg-c"}})
    outcome = Engine(workflow(steps), {}, runner).run()
    assert outcome.status == engine.UNDONE and outcome.failed_step == "db"
    assert outcome.records[0].problems == ["expected steps.db.details.primary to be 'pg-b', found 'pg-c'"]
    broken = FakeRunner(fail={("db", "forward"): StepOutcome(ok=True, summary={"end_state": {
        "ok": False, "problems": ["two writers"]}})})
    assert Engine(workflow([{"id": "db", "runbook": "one"}]), {}, broken).run().records[0].problems == [
        "one's end state does not hold: two writers"]


def test_verify_by_expect_and_exit_ignore_a_failed_child_end_state() -> None:
    failed_end = StepOutcome(ok=True, summary={"end_state": {"ok": False, "problems": ["region a failed"]},
                                               "details": {"failed_regions": ["a"]}})
    steps = [{"id": "confirm", "runbook": "one", "verify_by": "expect",
              "expect": [{"contains": [{"from": "steps.confirm.details.failed_regions"}, "a"]}]},
             {"id": "notify", "runbook": "two", "verify_by": "exit"}]
    runner = FakeRunner(fail={("confirm", "forward"): failed_end, ("notify", "forward"): failed_end})
    assert Engine(workflow(steps), {}, runner).run().ok


def test_a_crashing_runner_is_a_failed_step_never_a_half_run_workflow() -> None:
    def crash(*_args: Any) -> StepOutcome:
        raise RuntimeError("no ansible-runner")

    outcome = Engine(workflow(FIVE[:1]), {}, crash).run()
    assert outcome.status == engine.UNDONE and "RuntimeError: no ansible-runner" in outcome.records[0].problems[0]


def test_the_listener_sees_every_record_as_it_ends() -> None:
    seen: List[tuple] = []
    runner = FakeRunner(fail={("s3", "forward"): FAILED})
    Engine(workflow(FIVE), {}, runner, listener=lambda record: seen.append((record.step, record.phase))).run()
    assert seen == [("s1", "forward"), ("s2", "forward"), ("s3", "forward"), ("s1", "undo")]


def test_a_run_resuming_one_killed_past_the_point_of_no_return_never_undoes() -> None:
    # The kill matrix's finding: a re-run that fails BEFORE reaching the point-of-no-return step must not undo
    # when the killed run had entered it (its child may have promoted): Redis back in the region left would split.
    runner = FakeRunner(fail={("s3", "forward"): FAILED})
    outcome = Engine(workflow(FIVE), {}, runner, resumed_past_point_of_no_return=True).run()
    assert outcome.status == engine.STOPPED and outcome.failed_step == "s3"
    assert all(phase == "forward" for _, phase, *_ in runner.calls) and outcome.undone == []
    assert "the interrupted run this one resumes had entered it" in outcome.message


def test_the_starting_hook_sees_each_call_before_it_runs() -> None:
    seen: List[tuple] = []
    runner = FakeRunner(fail={("s3", "forward"): FAILED})
    Engine(workflow(FIVE), {}, runner, starting=lambda step, phase: seen.append((step.id, phase, len(runner.calls)))
           ).run()
    assert seen == [("s1", "forward", 0), ("s2", "forward", 1), ("s3", "forward", 2), ("s1", "undo", 3)]
