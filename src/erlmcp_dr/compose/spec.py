"""A composed runbook's workflow: ordered steps declared as data in the playbook's `vars.runbook.workflow`.

    workflow:
      steps:
        - id: database                    # unique, [a-z][a-z0-9_]*
          runbook: database_failover      # a single-system runbook of the catalog, or `action:` a built-in
          with: {candidate: {from: targets.to.postgres}, max_lag_bytes: {from: params.max_lag_bytes}}
          expect:                         # checks on the outcome beside the child's own end state
            - {equals: [{from: steps.database.details.new_primary}, {from: targets.to.postgres}]}
          undo: {runbook: redis_failover, with: {...}}   # how a completed step is undone (before the PNR only)
          point_of_no_return: true        # at most one step per mode; after it the run only rolls forward
          modes: [unplanned]              # the modes (the runbook's `mode` parameter) it runs in; default all
          background: true                # runs beside the steps after it (never the point of no return)
          after: [declare]                # starts only once these background steps ended

`load()` checks everything a run could trip on later, before anything runs, and lists every problem at once:
unknown keys, runbooks and built-ins, parameters the child runbook does not declare, references to an unknown
namespace, a parameter the composed runbook does not declare or a step that does not run earlier, template
markers anywhere, an undo after the point of no return (it could never run).

Steps are chosen by mode as data (`modes:`, never a Jinja `when:`): the workflow is checked once per mode, each mode
seeing only its own steps in order (ids unique, one point of no return, references to steps that run before it in
that mode), so two modes may each have a step with the same id (`database`: a failover in one, a switchover in the
other) and every report reads `steps.database` whatever the mode. `Workflow.for_mode(mode)` is what a run executes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from erlmcp_dr.compose import refs
from erlmcp_dr.errors import RunbookError

STEP_KEYS = frozenset({"id", "title", "runbook", "action", "with", "expect", "verify_by", "undo", "point_of_no_return",
                       "modes", "background", "after"})
UNDO_KEYS = frozenset({"runbook", "action", "with", "expect", "verify_by"})
# end_state: the child exited 0, its summary's end state holds and the expect checks hold (the default);
# expect: the child exited 0 and the expect checks hold, for a read-only child whose end state is a verdict on
# something else (region_health's "region a failed" is exactly what confirms the failure);
# exit: the child exited 0, whatever its end state says: for a step that must never block the recovery
# (incident_notify: a receiver that is down is reported in the child's summary, not a reason to stop).
VERIFY_BY = ("end_state", "expect", "exit")
CHECKS = ("equals", "contains")
STEP_ID = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
STEP_FIELDS = ("run_id", "rc", "changed", "message")  # what steps.<id>.<field> names beside the envelope's keys


class WorkflowError(RunbookError):
    """A workflow that cannot run: every problem found, one per line."""

    def __init__(self, runbook: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"the workflow of runbook '{runbook}' cannot run:\n  - " + "\n  - ".join(self.problems))


@dataclass(frozen=True)
class Call:
    """What a step (or its undo) runs: a runbook of the catalog or a built-in action, with its arguments."""

    runbook: Optional[str]
    action: Optional[str]
    arguments: Dict[str, Any] = field(default_factory=dict)
    expect: List[Dict[str, Any]] = field(default_factory=list)
    verify_by: str = "end_state"

    @property
    def name(self) -> str:
        return self.runbook or f"built-in {self.action}"


@dataclass(frozen=True)
class WorkflowStep:
    id: str
    title: str
    call: Call
    undo: Optional[Call] = None
    point_of_no_return: bool = False
    modes: Optional[Tuple[str, ...]] = None  # None: every mode
    # Runs beside the steps after it (compose/engine.py: joined before a step that reads it or names it in `after`,
    # before any undo, and before the run ends); for a step the recovery must not wait for (the incident declared).
    background: bool = False
    after: Tuple[str, ...] = ()  # background steps that must have ended before this one starts

    def runs_in(self, mode: Optional[str]) -> bool:
        return self.modes is None or mode in self.modes


@dataclass(frozen=True)
class Workflow:
    steps: List[WorkflowStep]
    modes: Tuple[str, ...] = ()  # the modes its steps are chosen by; () when no step names one

    def for_mode(self, mode: Optional[str]) -> Workflow:
        """The steps that run in `mode`, in order (every step when the workflow does not choose steps by mode)."""
        if not self.modes:
            return self
        if mode not in self.modes:
            raise WorkflowError("workflow", [f"mode {mode!r} is not one of the workflow's modes: "
                                             f"{', '.join(self.modes)}"])
        return Workflow(steps=[step for step in self.steps if step.runs_in(mode)], modes=(str(mode),))

    @property
    def point_of_no_return(self) -> Optional[str]:
        return next((step.id for step in self.steps if step.point_of_no_return), None)

    def step(self, step_id: str) -> WorkflowStep:
        return next(step for step in self.steps if step.id == step_id)

    def position(self, step_id: str) -> int:
        """Where `step_id` runs in this workflow (0 first); -1 for an id it does not have."""
        return next((index for index, step in enumerate(self.steps) if step.id == step_id), -1)


def load(runbook: str, data: Any, declared: Mapping[str, Any], runbook_parameters: Mapping[str, Mapping[str, Any]],
         actions: Mapping[str, Sequence[str]]) -> Workflow:
    """The workflow of `runbook` from its `workflow:` mapping. `declared`: the composed runbook's own parameters;
    `runbook_parameters`: each catalog runbook's parameters by name; `actions`: each built-in's arguments."""
    if not isinstance(data, Mapping) or set(data) - {"steps"}:
        raise WorkflowError(runbook, ["workflow must be a mapping with one key, steps (a list of steps)"])
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise WorkflowError(runbook, ["workflow.steps must be a non-empty list of steps"])
    problems: List[str] = refs.jinja_markers(raw_steps, "workflow.steps")
    modes = _modes(raw_steps, declared, problems)
    # Each mode is checked on its own steps; a problem every mode shares is listed once, others name their modes.
    found_in: Dict[str, List[str]] = {}
    loaded: Dict[int, WorkflowStep] = {}
    for mode in modes or (None,):
        mode_problems: List[str] = []
        for index, step in _load_steps(raw_steps, mode, declared, runbook_parameters, actions, mode_problems):
            loaded.setdefault(index, step)
        for problem in mode_problems:
            found_in.setdefault(problem, []).append(str(mode))
    for problem, in_modes in found_in.items():
        shared = not modes or len(in_modes) == len(modes)
        problems.append(problem if shared else f"{problem} (mode {', '.join(in_modes)})")
    if problems:
        raise WorkflowError(runbook, problems)
    return Workflow(steps=[loaded[index] for index in sorted(loaded)], modes=tuple(modes))


def _modes(raw_steps: List[Any], declared: Mapping[str, Any], problems: List[str]) -> List[str]:
    """The modes steps are chosen by: the `mode` parameter's choices when steps name modes, else none."""
    named = [raw.get("modes") for raw in raw_steps if isinstance(raw, Mapping) and raw.get("modes") is not None]
    if not named:
        return []
    choices = (declared.get("mode") or {}).get("choices") if isinstance(declared.get("mode"), Mapping) else None
    if not choices:
        problems.append("steps name modes, but the runbook declares no `mode` parameter with choices to pick them by")
        return []
    for index, raw in enumerate(raw_steps):
        value = raw.get("modes") if isinstance(raw, Mapping) else None
        if value is None:
            continue
        where = f"step {raw.get('id') or index + 1}"
        if not isinstance(value, list) or not value or not all(isinstance(mode, str) for mode in value):
            problems.append(f"{where}: modes must be a non-empty list of modes ({', '.join(choices)}), got {value!r}")
        elif set(value) - set(choices):
            problems.append(f"{where}: modes {', '.join(sorted(set(value) - set(choices)))} unknown: the parameter "
                            f"mode takes {', '.join(choices)}")
    return [str(choice) for choice in choices]


def _runs_in(raw: Any, mode: Optional[str]) -> bool:
    value = raw.get("modes") if isinstance(raw, Mapping) else None
    return mode is None or not isinstance(value, list) or mode in value


def _load_steps(raw_steps: List[Any], mode: Optional[str], declared: Mapping[str, Any],
                runbook_parameters: Mapping[str, Mapping[str, Any]], actions: Mapping[str, Sequence[str]],
                problems: List[str]) -> List[Tuple[int, WorkflowStep]]:
    """The steps that run in `mode` (all when None), checked in their order; problems appended."""
    steps: List[Tuple[int, WorkflowStep]] = []
    seen: List[str] = []
    passed_point_of_no_return = False
    for index, raw in enumerate(raw_steps):
        if not _runs_in(raw, mode):
            continue
        where = f"step {index + 1}"
        if not isinstance(raw, Mapping):
            problems.append(f"{where} must be a mapping (id, runbook or action, with ...), got {type(raw).__name__}")
            continue
        step_id = raw.get("id")
        if not isinstance(step_id, str) or not STEP_ID.match(step_id):
            problems.append(f"{where}: id {step_id!r} must be lower-case letters, digits and '_' (e.g. database)")
            step_id = f"#{index + 1}"
        elif step_id in seen:
            problems.append(f"{where}: id {step_id!r} is used twice")
        where = f"step {step_id}"
        unknown = sorted(set(raw) - STEP_KEYS)
        if unknown:
            problems.append(f"{where}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(STEP_KEYS))}")
        call = _call(where, raw, declared, runbook_parameters, actions, earlier=seen, itself=step_id, problems=problems)
        undo = None
        if raw.get("undo") is not None:
            undo_raw = raw["undo"]
            if not isinstance(undo_raw, Mapping):
                problems.append(f"{where}: undo must be a mapping (runbook or action, with)")
            else:
                unknown = sorted(set(undo_raw) - UNDO_KEYS)
                if unknown:
                    problems.append(f"{where}.undo: unknown key(s) {', '.join(unknown)}")
                # An undo runs after its step completed: it may read that step's outcome (e.g. its run id).
                undo = _call(f"{where}.undo", undo_raw, declared, runbook_parameters, actions,
                             earlier=[*seen, step_id], itself=step_id, problems=problems)
        pnr = raw.get("point_of_no_return", False)
        if not isinstance(pnr, bool):
            problems.append(f"{where}: point_of_no_return must be true or false, got {pnr!r}")
            pnr = False
        if pnr and passed_point_of_no_return:
            problems.append(f"{where}: a second point of no return; a workflow has at most one")
        if pnr and undo is not None:
            problems.append(f"{where}: the point of no return has no undo (its own runbook lifts what it did before "
                            "its promotion; after it nothing is undone)")
        if passed_point_of_no_return and undo is not None:
            problems.append(f"{where}: comes after the point of no return, where the run only rolls forward: its "
                            "undo could never run")
        passed_point_of_no_return = passed_point_of_no_return or pnr
        background = _background(where, raw, pnr, problems)
        after = _after(where, raw, [step for _, step in steps], problems)
        title = raw.get("title") if isinstance(raw.get("title"), str) else step_id
        modes = raw.get("modes")
        if call is not None:
            steps.append((index, WorkflowStep(id=step_id, title=title, call=call, undo=undo, point_of_no_return=pnr,
                                              modes=tuple(modes) if isinstance(modes, list) else None,
                                              background=background, after=after)))
        seen.append(step_id)
    return steps


def _background(where: str, raw: Mapping[str, Any], point_of_no_return: bool, problems: List[str]) -> bool:
    value = raw.get("background", False)
    if not isinstance(value, bool):
        problems.append(f"{where}: background must be true or false, got {value!r}")
        return False
    if value and point_of_no_return:
        problems.append(f"{where}: the point of no return cannot run in the background: the steps after it must "
                        "know it passed")
        return False
    return value


def _after(where: str, raw: Mapping[str, Any], earlier: List[WorkflowStep], problems: List[str]) -> Tuple[str, ...]:
    """The background steps this step waits for: each must be an earlier background step of the same mode."""
    value = raw.get("after", [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        problems.append(f"{where}: after must be a list of step ids, got {value!r}")
        return ()
    background = [step.id for step in earlier if step.background]
    for item in value:
        if item not in background:
            problems.append(f"{where}: after names {item!r}, which is not a background step that runs before it; "
                            f"those that do: {', '.join(background) or 'none'}")
    return tuple(item for item in value if item in background)


def _call(where: str, raw: Mapping[str, Any], declared: Mapping[str, Any],
          runbook_parameters: Mapping[str, Mapping[str, Any]], actions: Mapping[str, Sequence[str]],
          earlier: List[str], itself: str, problems: List[str]) -> Optional[Call]:
    child, action = raw.get("runbook"), raw.get("action")
    if (child is None) == (action is None):
        problems.append(f"{where}: give exactly one of runbook (a runbook of the catalog) or action (a built-in: "
                        f"{', '.join(sorted(actions))})")
        return None
    arguments = raw.get("with") or {}
    if not isinstance(arguments, Mapping):
        problems.append(f"{where}: with must be a mapping of parameter names to values or references")
        arguments = {}
    if child is not None:
        if child not in runbook_parameters:
            problems.append(f"{where}: unknown runbook {child!r}; known: {', '.join(sorted(runbook_parameters))}")
            accepted: Optional[Sequence[str]] = None
        else:
            accepted = list(runbook_parameters[child])
    else:
        if action not in actions:
            problems.append(f"{where}: unknown built-in action {action!r}; known: {', '.join(sorted(actions))}")
            accepted = None
        else:
            accepted = list(actions[action])
    if accepted is not None:
        for name in arguments:
            if name not in accepted:
                problems.append(f"{where}: {child or action} has no parameter {name!r}; it takes "
                                f"{', '.join(sorted(accepted)) or 'none'}")
    expect = raw.get("expect") or []
    if not isinstance(expect, list) or not all(_check_shape(check) for check in expect):
        problems.append(f"{where}: expect must be a list of checks, each {{equals: [a, b]}} or "
                        "{contains: [list, item]}")
        expect = []
    verify_by = raw.get("verify_by", "end_state")
    if verify_by not in VERIFY_BY:
        problems.append(f"{where}: verify_by is {verify_by!r}: expected one of {', '.join(VERIFY_BY)}")
    elif verify_by == "expect" and not expect:
        problems.append(f"{where}: verify_by is expect, but there is no expect check: the step would verify nothing")
    # `with` reads earlier steps only; `expect` reads this step's own outcome too.
    _check_references(where, arguments, declared, earlier, problems)
    _check_references(f"{where}.expect", expect, declared, [*earlier, itself], problems)
    return Call(runbook=child, action=action, arguments=dict(arguments), expect=[dict(check) for check in expect],
                verify_by=str(verify_by))


def _check_shape(check: Any) -> bool:
    return (isinstance(check, Mapping) and len(check) == 1 and next(iter(check)) in CHECKS
            and isinstance(next(iter(check.values())), list) and len(next(iter(check.values()))) == 2)


def _check_references(where: str, value: Any, declared: Mapping[str, Any], earlier: Sequence[str],
                      problems: List[str]) -> None:
    for text in refs.references(value):
        try:
            namespace, path = refs.parse(text)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if namespace == "params" and path[0] not in declared:
            problems.append(f"{where}: reference {text!r} names a parameter the runbook does not declare; declared: "
                            f"{', '.join(sorted(declared))}")
        elif namespace == "steps" and path[0] not in earlier:
            problems.append(f"{where}: reference {text!r} names step {path[0]!r}, which does not run before this "
                            f"point; steps that do: {', '.join(earlier) or 'none'}")
        elif namespace == "run" and path not in (["id"], ["resumed_past_point_of_no_return"]):
            problems.append(f"{where}: reference {text!r}: the run namespace has only run.id and "
                            "run.resumed_past_point_of_no_return")
        elif namespace == "targets" and (path[0] not in ("from", "to") or len(path) != 2):
            problems.append(f"{where}: reference {text!r}: expected targets.from.<kind> or targets.to.<kind>")
