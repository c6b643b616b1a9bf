"""The composition engine: runs a workflow's steps in order, verifies each, undoes or rolls forward. Pure.

The rules (docs/design.md, "Composed runbooks"):
- Each step's arguments are resolved from the parent's parameters, the targets and earlier steps' outcomes.
- A step is verified when its child exited 0, its summary's end state is not failed (unless the call says
  `verify_by: expect` or `exit`) and its `expect` checks hold.
  A run is `completed` (exit 0) only when every step was verified: none is ever skipped.
- Before the point of no return, a step that fails makes the engine undo every completed step that has an undo,
  in exact reverse order, verifying each undo; the outcome says what failed and what was undone (`undone`), or
  which undo failed too (`undo_incomplete`). The point-of-no-return step itself counts as "before" while its own
  summary says it did not pass its own point of no return (database_failover lifts its own fence then).
- A run that resumes an interrupted one (killed after it had entered the point-of-no-return step: compose/journal.py)
  starts "after" it: the killed child may have promoted, so undoing an earlier step could split the service.
- After it, a failure stops the run (`stopped`): nothing is undone, the outcome says what is done and what is not,
  and the caller prints the command that finishes the job (each step is idempotent: a re-run of a converged
  single-system runbook changes nothing).
- A `background` step (the incident declared: the recovery must not wait for its receivers) starts at its place and
  runs beside the steps after it. It is joined (waited for) before a step that reads it (`steps.<id>` in its
  arguments) or names it in `after`, before any undo, and before the run ends; one that already ended is collected
  at every step boundary. A background step that failed fails the run at the boundary where it is collected, as any
  step does there: undo before the point of no return, stop after it. Undo runs in the workflow's reverse order,
  whatever order the steps ended in.

How a step runs is the caller's `StepRunner` (compose/run.py: a child run through erlmcp_dr.runner.run with its
own run folder, or a built-in), so the engine's ordering, undo and reference logic is unit-tested with fakes.
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

from erlmcp_dr.compose import refs
from erlmcp_dr.compose.spec import Call, Workflow, WorkflowStep

COMPLETED = "completed"  # every step verified
UNDONE = "undone"  # failed before the point of no return; every completed step undone and verified
UNDO_INCOMPLETE = "undo_incomplete"  # failed before the point of no return; an undo failed too
STOPPED = "stopped"  # failed after the point of no return; nothing undone: finish it by running it again


@dataclass
class StepOutcome:
    """What running one call gave: the child's exit, its summary envelope and run id (None for a built-in)."""

    ok: bool
    summary: Dict[str, Any] = field(default_factory=dict)
    run_id: Optional[str] = None
    rc: Optional[int] = None
    changed: bool = False
    message: str = ""


StepRunner = Callable[[WorkflowStep, Call, Dict[str, Any], str], StepOutcome]  # step, call, arguments, phase
Listener = Callable[["StepRecord"], None]
Starting = Callable[[WorkflowStep, str], None]  # step, phase: called before the step runs (the journal's entry)


@dataclass
class StepRecord:
    step: str
    title: str
    phase: str  # forward | undo
    runs: str  # the runbook or built-in
    arguments: Dict[str, Any]
    verified: bool
    changed: bool
    run_id: Optional[str]
    rc: Optional[int]
    problems: List[str]
    message: str
    point_of_no_return: bool
    passed_point_of_no_return: bool
    started_at: str
    ended_at: str
    duration: float
    summary: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class ComposedOutcome:
    status: str
    records: List[StepRecord]
    failed_step: Optional[str] = None
    point_of_no_return: Optional[str] = None
    point_of_no_return_passed: bool = False
    done: List[str] = field(default_factory=list)  # forward steps verified, in order
    not_done: List[str] = field(default_factory=list)  # forward steps not run or not verified
    undone: List[str] = field(default_factory=list)  # steps undone, in the order they were undone
    undo_failed: List[str] = field(default_factory=list)
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == COMPLETED

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["records"] = [record.to_dict() for record in self.records]
        return data


@dataclass
class _Underway:
    """A background step under way: its thread fills in the outcome and when it ended."""

    step: WorkflowStep
    started_wall: str
    started: float
    thread: threading.Thread = field(default_factory=lambda: threading.Thread())
    arguments: Dict[str, Any] = field(default_factory=dict)
    outcome: StepOutcome = field(default_factory=lambda: StepOutcome(ok=False, message="it did not end"))
    ended_wall: str = ""
    duration: float = 0.0
    order: int = 0


class Engine:
    def __init__(self, workflow: Workflow, context: Mapping[str, Any], runner: StepRunner,
                 listener: Optional[Listener] = None, clock: Callable[[], float] = time.monotonic,
                 starting: Optional[Starting] = None, resumed_past_point_of_no_return: bool = False,
                 settle_before: Optional[str] = None) -> None:
        self.workflow = workflow
        self.context: Dict[str, Any] = {"params": dict(context.get("params") or {}),
                                        "run": dict(context.get("run") or {}),
                                        "targets": dict(context.get("targets") or {}), "steps": {}}
        self.runner = runner
        self.listener = listener
        self.clock = clock
        self.records: List[StepRecord] = []
        self.starting = starting
        # An interrupted run may have passed it (its child killed mid-promotion): from the start, only roll forward.
        self.resumed_past_point_of_no_return = resumed_past_point_of_no_return
        self.underway: Dict[str, _Underway] = {}  # background steps started and not yet recorded, by id
        # The kill matrix's boundary (compose/run.py): before that step, every background step is waited for, so the
        # run stops where its journal names every earlier step verified.
        self.settle_before = settle_before
        self.start_order: List[int] = []  # beside self.records: the order each record's call started in
        self.started_calls = 0

    def run(self) -> ComposedOutcome:
        completed: List[WorkflowStep] = []
        passed = self.resumed_past_point_of_no_return
        for step in self.workflow.steps:
            failed = self._settle(completed, waits_for=self._waits_for(step))
            if failed is None:
                if step.background:
                    self._launch(step)
                    continue
                record = self._run(step, step.call, "forward")
                passed = passed or (step.point_of_no_return and (record.verified or record.passed_point_of_no_return))
                if record.verified:
                    self._completed(completed, step)
                    continue
                failed = step
            return self._failed(failed, completed, passed)
        failed = self._settle(completed, waits_for=set(self.underway))
        if failed is not None:
            return self._failed(failed, completed, passed)
        return self._outcome(COMPLETED, None, completed, passed, message=(
            f"every step verified: {', '.join(step.id for step in completed)}"))

    def _failed(self, failed: WorkflowStep, completed: List[WorkflowStep], passed: bool) -> ComposedOutcome:
        """The run's end after `failed`: every background step still under way waited for first (its record, and
        its undo when it completed), then the undo before the point of no return, or the stop after it."""
        self._settle(completed, waits_for=set(self.underway), failed_already=True)
        return self._stopped(failed, completed, passed=True) if passed else self._undo(failed, completed)

    # -------------------------------------------------------- background steps

    def _waits_for(self, step: WorkflowStep) -> set:
        """The background steps under way that `step` must wait for: named in `after`, or read by its arguments."""
        if step.id == self.settle_before:
            return set(self.underway)
        read = {refs.parse(text)[1][0] for text in refs.references(step.call.arguments)
                if refs.parse(text)[0] == "steps"}
        return (set(step.after) | read) & set(self.underway)

    def _launch(self, step: WorkflowStep) -> None:
        """Starts a background step in a thread of its own; its arguments are resolved here, before it starts."""
        if self.starting is not None:
            self.starting(step, "forward")
        underway = _Underway(step=step, started_wall=_now(), started=self.clock(), order=self._next_start())
        resolved = self._resolve(step.call)

        def work() -> None:
            underway.arguments, underway.outcome = self._call(step, step.call, "forward", resolved)
            underway.ended_wall, underway.duration = _now(), round(self.clock() - underway.started, 3)

        underway.thread = threading.Thread(target=work, name=f"compose-step-{step.id}", daemon=True)
        self.underway[step.id] = underway
        underway.thread.start()

    def _settle(self, completed: List[WorkflowStep], waits_for: set, failed_already: bool = False
                ) -> Optional[WorkflowStep]:
        """Joins the background steps in `waits_for`, collects those that already ended; records them (a verified
        one joins `completed`) and returns the first that failed, if any (None when `failed_already`: the run is
        already failing and only needs their records)."""
        failed: Optional[WorkflowStep] = None
        for step_id in [step.id for step in self.workflow.steps if step.id in self.underway]:
            underway = self.underway[step_id]
            if step_id in waits_for:
                underway.thread.join()
            elif underway.thread.is_alive():
                continue
            del self.underway[step_id]
            record = self._finish(underway.step, underway.step.call, "forward", underway.arguments,
                                  underway.outcome, underway.started_wall, underway.ended_wall, underway.duration,
                                  underway.order)
            if record.verified:
                self._completed(completed, underway.step)
            elif failed is None and not failed_already:
                failed = underway.step
        return failed

    def _completed(self, completed: List[WorkflowStep], step: WorkflowStep) -> None:
        """Keeps `completed` in the workflow's order (the undo's reverse), whatever order the steps ended in."""
        completed.append(step)
        completed.sort(key=self.workflow.steps.index)

    # -------------------------------------------------------- one call

    def _run(self, step: WorkflowStep, call: Call, phase: str) -> StepRecord:
        if self.starting is not None:
            self.starting(step, phase)
        started_wall, started, order = _now(), self.clock(), self._next_start()
        arguments, outcome = self._call(step, call, phase, self._resolve(call))
        return self._finish(step, call, phase, arguments, outcome, started_wall, _now(),
                            round(self.clock() - started, 3), order)

    def _next_start(self) -> int:
        self.started_calls += 1
        return self.started_calls

    def _resolve(self, call: Call) -> Any:
        """The call's arguments resolved now, or the UnresolvedReference that stops it."""
        try:
            return refs.drop_unset(refs.resolve(call.arguments, self.context))
        except refs.UnresolvedReference as exc:
            return exc

    def _call(self, step: WorkflowStep, call: Call, phase: str, resolved: Any) -> tuple:
        if isinstance(resolved, refs.UnresolvedReference):
            return {}, StepOutcome(ok=False, message=f"could not resolve its arguments: {resolved}")
        try:
            return resolved, self.runner(step, call, resolved, phase)
        except Exception as exc:  # a runner that crashes is a failed step, never a half-run workflow
            return resolved, StepOutcome(ok=False, message=f"{call.name} could not run: {type(exc).__name__}: {exc}")

    def _finish(self, step: WorkflowStep, call: Call, phase: str, arguments: Dict[str, Any], outcome: StepOutcome,
                started_wall: str, ended_wall: str, duration: float, order: int) -> StepRecord:
        if phase == "forward":  # its own expect checks (and later steps) read it as steps.<id>
            self.context["steps"][step.id] = _as_context(outcome)
        problems = self._problems(call, outcome, step.id, phase)
        summary = outcome.summary or {}
        record = StepRecord(
            step=step.id, title=step.title, phase=phase, runs=call.name, arguments=arguments,
            verified=not problems, changed=bool(outcome.changed), run_id=outcome.run_id, rc=outcome.rc,
            problems=problems, message=outcome.message,
            point_of_no_return=step.point_of_no_return and phase == "forward",
            passed_point_of_no_return=bool(summary.get("point_of_no_return_passed")), started_at=started_wall,
            ended_at=ended_wall, duration=duration, summary=summary)
        # One timeline, in the order the calls started: a background step's record goes where it started.
        at = bisect.bisect(self.start_order, order)
        self.records.insert(at, record)
        self.start_order.insert(at, order)
        if self.listener is not None:
            self.listener(record)
        return record

    def _problems(self, call: Call, outcome: StepOutcome, step_id: str, phase: str) -> List[str]:
        problems: List[str] = []
        if not outcome.ok:
            problems.append(outcome.message or f"{call.name} failed (rc {outcome.rc})")
        end_state = (outcome.summary or {}).get("end_state") or {}
        if end_state.get("ok") is False and call.verify_by == "end_state":
            problems.append(f"{call.name}'s end state does not hold: " + "; ".join(end_state.get("problems") or []))
        if outcome.ok:
            context = self.context
            if phase == "undo":  # an undo's checks read the undo's own outcome as steps.<id>
                context = dict(self.context, steps=dict(self.context["steps"], **{step_id: _as_context(outcome)}))
            problems.extend(check_expectations(call.expect, context))
        return problems

    # -------------------------------------------------------- endings

    def _undo(self, failed: WorkflowStep, completed: List[WorkflowStep]) -> ComposedOutcome:
        undone: List[str] = []
        undo_failed: List[str] = []
        for step in reversed(completed):
            if step.undo is None:
                continue
            record = self._run(step, step.undo, "undo")
            (undone if record.verified else undo_failed).append(step.id)
        failure = self._failure_text(failed)
        if undo_failed:
            message = (f"step {failed.id} failed before the point of no return ({failure}); undoing the completed "
                       f"steps in reverse order, the undo of {', '.join(undo_failed)} failed too"
                       + (f" (undone: {', '.join(undone)})" if undone else "")
                       + ": the region left is NOT verified to serve again. See each step's run and finish the undo by "
                       "hand, or run the failover again once its cause is fixed")
            status = UNDO_INCOMPLETE
        else:
            message = (f"step {failed.id} failed before the point of no return ({failure}); "
                       + (f"every completed change was undone in reverse order and each undo verified ("
                          f"{', '.join(undone)}): the service is back where it was before the run" if undone else
                          "no completed step had changed anything: the service is where it was before the run"))
            status = UNDONE
        return self._outcome(status, failed.id, completed, False, undone=undone, undo_failed=undo_failed,
                             message=message)

    def _stopped(self, failed: WorkflowStep, completed: List[WorkflowStep], passed: bool) -> ComposedOutcome:
        done = [step.id for step in completed]
        where = "the point of no return"
        if self.resumed_past_point_of_no_return:
            where += " (the interrupted run this one resumes had entered it)"
        message = (f"step {failed.id} failed after {where} ({self._failure_text(failed)}). Nothing was "
                   f"undone: the run only rolls forward from here. Done: {', '.join(done) or 'none'}. Not done: "
                   f"{', '.join(self._not_done(completed))}. Fix the cause and run the same command again: every "
                   "step is idempotent, the done ones change nothing and the rest finish the move")
        return self._outcome(STOPPED, failed.id, completed, passed, message=message)

    def _failure_text(self, failed: WorkflowStep) -> str:
        record = next(r for r in reversed(self.records) if r.step == failed.id and r.phase == "forward")
        return "; ".join(record.problems)

    def _not_done(self, completed: List[WorkflowStep]) -> List[str]:
        done = {step.id for step in completed}
        return [step.id for step in self.workflow.steps if step.id not in done]

    def _outcome(self, status: str, failed: Optional[str], completed: List[WorkflowStep], passed: bool,
                 undone: Optional[List[str]] = None, undo_failed: Optional[List[str]] = None,
                 message: str = "") -> ComposedOutcome:
        return ComposedOutcome(status=status, records=self.records, failed_step=failed,
                               point_of_no_return=self.workflow.point_of_no_return, point_of_no_return_passed=passed,
                               done=[step.id for step in completed], not_done=self._not_done(completed),
                               undone=list(undone or []), undo_failed=list(undo_failed or []), message=message)


def check_expectations(checks: List[Dict[str, Any]], context: Mapping[str, Any]) -> List[str]:
    """The problems of a call's `expect` checks: {equals: [a, b]} and {contains: [list, item]}, both sides resolved."""
    problems: List[str] = []
    for check in checks:
        (kind, operands), = check.items()
        try:
            left, right = (refs.resolve(operand, context) for operand in operands)
        except refs.UnresolvedReference as exc:
            problems.append(f"expected {kind} {operands}: {exc}")
            continue
        if kind == "equals" and left != right:
            problems.append(f"expected {_show(operands[0])} to be {right!r}, found {left!r}")
        elif kind == "contains" and (not isinstance(left, (list, tuple, str)) or right not in left):
            problems.append(f"expected {_show(operands[0])} to contain {right!r}, found {left!r}")
    return problems


def _show(operand: Any) -> str:
    return operand["from"] if refs.is_reference(operand) else repr(operand)


def _as_context(outcome: StepOutcome) -> Dict[str, Any]:
    return {**(outcome.summary or {}), "run_id": outcome.run_id, "rc": outcome.rc, "changed": outcome.changed,
            "message": outcome.message, "ok": outcome.ok}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
