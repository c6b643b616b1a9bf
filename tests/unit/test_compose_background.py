"""Background steps of a composed workflow (compose/engine.py, spec.py): the incident is declared beside the
recovery, never before it. A fake step runner (the engine's ordering logic is pure; tests/integration runs the real
children): the background step blocks on an event that only a later step sets, so the run can only finish if both
really ran at once. The events' waits are safety deadlines, never measured."""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional

import pytest

from erlmcp_dr.compose import engine, refs, spec
from erlmcp_dr.compose.engine import Engine, StepOutcome

CHILDREN = {name: {"value": {}} for name in ("notify", "redis", "database", "dns")}
ENVELOPE_OK = {"end_state": {"ok": True, "problems": []}, "did": ["changed something"]}
SAFETY = 30.0  # seconds: only reached when the engine is broken (it would otherwise hang the test)


def workflow(steps: List[Dict[str, Any]]) -> spec.Workflow:
    return spec.load("composed", {"steps": steps}, {}, CHILDREN, {})


class Runner:
    """Records the order of starts and ends; the background step `declare` waits until `release_on` has started."""

    def __init__(self, release_on: str = "redis", fail: Optional[Dict[tuple, StepOutcome]] = None) -> None:
        self.events: List[str] = []
        self.release_on = release_on
        self.fail = fail or {}
        self.released = threading.Event()
        self.lock = threading.Lock()

    def log(self, text: str) -> None:
        with self.lock:
            self.events.append(text)

    def __call__(self, step: spec.WorkflowStep, call: spec.Call, arguments: Dict[str, Any], phase: str) -> StepOutcome:
        self.log(f"start {step.id} {phase}")
        if step.id == self.release_on and phase == "forward":
            self.released.set()
        if step.id == "declare" and phase == "forward":
            assert self.released.wait(SAFETY), "declare never ran beside the next step"
        outcome = self.fail.get((step.id, phase)) or StepOutcome(
            ok=True, summary=dict(ENVELOPE_OK, point_of_no_return_passed=step.point_of_no_return),
            run_id=f"run.{step.id}.{phase}", rc=0, changed=True)
        self.log(f"end {step.id} {phase}")
        return outcome


STEPS = [
    {"id": "declare", "runbook": "notify", "background": True, "verify_by": "exit",
     "undo": {"runbook": "notify", "verify_by": "exit"}},
    {"id": "redis", "runbook": "redis", "undo": {"runbook": "redis"}},
    {"id": "database", "runbook": "database", "point_of_no_return": True},
    {"id": "dns", "runbook": "dns"},
    {"id": "resolved", "runbook": "notify", "after": ["declare"], "verify_by": "exit"},
]


def test_the_declare_step_runs_beside_the_recovery_and_resolved_waits_for_it() -> None:
    runner = Runner()
    outcome = Engine(workflow(STEPS), {}, runner).run()
    assert outcome.status == engine.COMPLETED
    assert outcome.done == ["declare", "redis", "database", "dns", "resolved"]  # the workflow's order
    events = runner.events
    assert events.index("start redis forward") < events.index("end declare forward")  # beside it
    assert events.index("end declare forward") < events.index("start resolved forward")  # after: [declare]
    # One timeline: the records are in the order the steps started.
    assert [record.step for record in outcome.records] == ["declare", "redis", "database", "dns", "resolved"]


def test_a_background_step_is_waited_for_before_the_run_ends() -> None:
    steps = [{"id": "declare", "runbook": "notify", "background": True, "verify_by": "exit"},
             {"id": "redis", "runbook": "redis"}]
    runner = Runner()
    outcome = Engine(workflow(steps), {}, runner).run()
    assert outcome.ok and outcome.done == ["declare", "redis"]
    assert runner.events[-1] == "end declare forward"


def test_a_step_reading_a_background_step_waits_for_it() -> None:
    steps = [{"id": "declare", "runbook": "notify", "background": True},
             {"id": "redis", "runbook": "redis"},
             {"id": "dns", "runbook": "dns", "with": {"value": {"from": "steps.declare.run_id"}}}]
    calls: List[Any] = []
    runner = Runner()

    def recording(step: spec.WorkflowStep, call: spec.Call, arguments: Dict[str, Any], phase: str) -> StepOutcome:
        calls.append((step.id, arguments))
        return runner(step, call, arguments, phase)

    outcome = Engine(workflow(steps), {}, recording).run()
    assert outcome.ok
    assert ("dns", {"value": "run.declare.forward"}) in calls


def test_a_recovery_step_failing_while_declare_runs_undoes_everything_in_the_workflows_reverse_order() -> None:
    runner = Runner(fail={("database", "forward"): StepOutcome(ok=False, rc=1, message="candidate lags",
                                                               summary={"point_of_no_return_passed": False})})
    outcome = Engine(workflow(STEPS), {}, runner).run()
    assert outcome.status == engine.UNDONE and outcome.failed_step == "database"
    assert outcome.undone == ["redis", "declare"]  # declare's undo ("abandoned") last, though it ended last
    undo_starts = [event for event in runner.events if event.endswith(" undo") and event.startswith("start")]
    assert undo_starts == ["start redis undo", "start declare undo"]
    assert runner.events.index("end declare forward") < runner.events.index("start redis undo")


def test_a_failed_background_step_before_the_point_of_no_return_undoes_what_completed() -> None:
    # redis's end releases declare, which fails; it is collected at the next boundary, before the database step.
    steps = [dict(STEPS[0]), {"id": "redis", "runbook": "redis", "undo": {"runbook": "redis"}},
             {"id": "database", "runbook": "database", "point_of_no_return": True, "after": ["declare"]}]
    runner = Runner(fail={("declare", "forward"): StepOutcome(ok=False, rc=2, message="no notification channels")})
    outcome = Engine(workflow(steps), {}, runner).run()
    assert outcome.status == engine.UNDONE and outcome.failed_step == "declare"
    assert outcome.undone == ["redis"] and "start database forward" not in runner.events
    assert "no notification channels" in outcome.message


def test_a_failed_background_step_found_after_the_point_of_no_return_stops_the_run() -> None:
    runner = Runner(release_on="dns", fail={("declare", "forward"): StepOutcome(ok=False, rc=2, message="broken")})
    outcome = Engine(workflow(STEPS), {}, runner).run()
    assert outcome.status == engine.STOPPED and outcome.failed_step == "declare"
    assert outcome.undone == [] and "start resolved forward" not in runner.events
    assert outcome.done == ["redis", "database", "dns"]


def test_at_the_kill_matrix_boundary_every_background_step_has_ended_first() -> None:
    # The boundary's step waits for declare (compose/run.py passes STOP_AT_BOUNDARY_ENV's step): the run stops
    # where its journal names every earlier step verified, whatever the receivers took.
    runner = Runner(release_on="redis")
    outcome = Engine(workflow(STEPS), {}, runner, settle_before="database").run()
    assert outcome.ok
    assert runner.events.index("end declare forward") < runner.events.index("start database forward")


@pytest.mark.parametrize(("changed", "problem"), [
    ({"id": "database", "runbook": "database", "point_of_no_return": True, "background": True},
     "the point of no return cannot run in the background"),
    ({"id": "dns", "runbook": "dns", "after": ["redis"]}, "after names 'redis', which is not a background step"),
    ({"id": "dns", "runbook": "dns", "background": "yes"}, "background must be true or false"),
])
def test_a_wrong_background_or_after_is_refused_before_anything_runs(changed: Dict[str, Any], problem: str) -> None:
    steps = [dict(step) for step in STEPS if step["id"] != changed["id"]]
    steps.insert(next(i for i, step in enumerate(STEPS) if step["id"] == changed["id"]), changed)
    with pytest.raises(spec.WorkflowError) as caught:
        workflow(steps)
    assert any(problem in line for line in caught.value.problems), caught.value.problems


def test_the_regional_failover_declares_beside_the_recovery() -> None:
    from erlmcp_dr import catalog
    from erlmcp_dr.compose import run as composed

    for name in ("regional_failover", "failback"):
        steps = {step.id: step for step in composed.workflow_of(catalog.load(name)).steps}
        assert steps["declare"].background and steps["resolved"].after == ("declare",), name


# ------------------------------------------------------------------ the regional failover's services step

MOVE_CONTEXT = {"params": {"from_region": "a", "to_region": "b", "mode": None, "incident_id": "rf-1"},
                "run": {"id": "rf-1"},
                "targets": {"from": {"postgres": "pg-a", "redis": "redis-a", "app": "app-a", "app_url": "http://a"},
                            "to": {"postgres": "pg-b", "redis": "redis-b", "app": "app-b", "app_url": "http://b"}}}
# What each step's check reads (the playbook's expect), as the real children and built-ins report it.
MOVE_DETAILS = {"confirm": {"failed_regions": ["a"]}, "database": {"primary": "pg-b"},
                "services": {"failed": [], "not_started": []},
                "app": {"region": "b", "database": "pg-b", "redis": "redis-b"}}


def regional_steps(mode: str) -> spec.Workflow:
    from erlmcp_dr import catalog
    from erlmcp_dr.compose import run as composed

    return composed.workflow_of(catalog.load("regional_failover")).for_mode(mode)


@pytest.mark.parametrize("mode", ["unplanned", "planned"])
def test_the_regional_services_step_is_declared_beside_the_promotions_and_the_app_step_waits_for_it(mode) -> None:
    workflow = regional_steps(mode)
    ids = [step.id for step in workflow.steps]
    services = workflow.step("services")
    assert services.background and services.undo is None and not services.point_of_no_return
    # Launched before both promotions (nothing it reads comes from them: only the parameters), awaited by the app.
    assert ids.index("services") < ids.index("redis") < ids.index("database") < ids.index("app")
    assert not [text for text in refs.references(services.call.arguments) if text.startswith("steps.")]
    assert workflow.step("app").after == ("services",)
    assert workflow.step("database").after == () and workflow.step("redis").after == ()


class MoveRunner(Runner):
    """The shipped workflow's steps with the details their checks read. `services` ends only once the database
    promotion has started (so the move can only finish if it really ran beside the promotions); with
    `services_first`, `services` ends at once."""

    def __init__(self, fail: Optional[Dict[tuple, StepOutcome]] = None, services_first: bool = False) -> None:
        super().__init__(release_on="redis", fail=fail)
        self.database_started = threading.Event()
        self.services_first = services_first

    def __call__(self, step: spec.WorkflowStep, call: spec.Call, arguments: Dict[str, Any], phase: str) -> StepOutcome:
        self.log(f"start {step.id} {phase}")
        forward = phase == "forward"
        if step.id == "database" and forward:
            self.database_started.set()
        if step.id == "services" and forward and not self.services_first:
            assert self.database_started.wait(SAFETY), "services never ran beside the database promotion"
        outcome = self.fail.get((step.id, phase)) or StepOutcome(
            ok=True, summary=dict(ENVELOPE_OK, details=MOVE_DETAILS.get(step.id, {}),
                                  point_of_no_return_passed=step.point_of_no_return),
            run_id=f"run.{step.id}.{phase}", rc=0, changed=True)
        self.log(f"end {step.id} {phase}")
        return outcome


@pytest.mark.parametrize("mode", ["unplanned", "planned"])
def test_the_regional_services_step_runs_beside_the_promotions_and_the_app_step_starts_after_it(mode) -> None:
    runner = MoveRunner()
    outcome = Engine(regional_steps(mode), dict(MOVE_CONTEXT, params=dict(MOVE_CONTEXT["params"], mode=mode)),
                     runner).run()
    assert outcome.status == engine.COMPLETED, outcome.message
    events = runner.events
    assert events.index("start services forward") < events.index("start redis forward")
    assert events.index("start database forward") < events.index("end services forward")  # beside it
    assert events.index("end services forward") < events.index("start app forward")  # after: [services]
    assert outcome.done.index("services") < outcome.done.index("redis")  # the workflow's order


SERVICES_FAILED = {("services", "forward"): StepOutcome(ok=False, rc=2, message="auth failed its health gate")}


def test_a_services_failure_found_after_the_database_promotion_stops_the_move_and_undoes_nothing() -> None:
    runner = MoveRunner(fail=SERVICES_FAILED)
    outcome = Engine(regional_steps("unplanned"), MOVE_CONTEXT, runner).run()
    assert outcome.status == engine.STOPPED and outcome.failed_step == "services", outcome.message
    assert outcome.undone == [] and "start app forward" not in runner.events
    assert outcome.done == ["residency", "confirm", "declare", "isolate", "redis", "database"]
    assert "auth failed its health gate" in outcome.message


def test_a_services_failure_found_before_the_point_of_no_return_undoes_the_completed_steps() -> None:
    runner = MoveRunner(fail=SERVICES_FAILED, services_first=True)
    # settle_before (the kill matrix's boundary) joins the services thread before the redis step, so its failure is
    # found there, whatever the thread's last instructions took.
    outcome = Engine(regional_steps("unplanned"), MOVE_CONTEXT, runner, settle_before="redis").run()
    assert outcome.status == engine.UNDONE and outcome.failed_step == "services", outcome.message
    assert "start redis forward" not in runner.events and "start database forward" not in runner.events
    assert outcome.undone == ["isolate", "declare"]  # services only starts: nothing of it to undo
