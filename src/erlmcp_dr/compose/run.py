"""Runs a composed runbook (a playbook whose `vars.runbook.workflow` declares its steps): the real step runner.

    erlmcp_dr.run("regional_failover", inventory=..., extravars={"from_region": "a", "to_region": "b",
                  "mode": "unplanned"})
    runbook run regional_failover -e from_region=a -e to_region=b -e mode=unplanned

1. Everything is checked before anything changes: the parameters (the runbook's spec), the workflow (spec.load),
   the regions (each with one database, Redis and application host) and the lock keys.
2. The run lock of every target (database cluster, Redis members, DNS zone) is taken under this run's id, with
   this process as the holder, and held until the end, in the store the inventory chose (the controller's folder,
   or etcd with a lease kept alive for the whole move: compose/move_lock.py): another runbook on those targets
   meanwhile, from this controller or another, is refused (exit 3, naming this run). If any key is busy, the ones
   taken are given back and RunBusy is raised. Before every step the run checks it still holds them.
   Run as another run's child (`erlmcp_dr_lock_owner=<its run id>` in extravars, as dr_drill runs
   regional_failover), it runs under that run's lock when the store shows that run holding every key (a live
   process, or a live etcd lease): it takes, rewrites and releases none of them, and its children find them
   under the owner's id. Otherwise it takes its own as above, so it never runs with a key held by someone else.
3. The engine (engine.py) runs the steps. A runbook step is a child run through erlmcp_dr.runner (its own run
   folder `<run id>.<step>`, timeline and summary envelope) given the parent's run id as `erlmcp_dr_lock_owner`:
   its erlmcp.dr.run_lock (alone or inside pg_begin) finds the parent's record under that id and neither rewrites
   nor releases it. A built-in step (residency_guard, app_write) runs here.
4. The parent's run folder gets result.json (one step per child run, the envelope with the engine's outcome under
   `details`) and report.md; the audit trail gets the start (parameters: a residency override's justification
   included) and the end.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import os
import shlex
import shutil
import signal
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional

from erlmcp_dr import audit, catalog, launch, params, paths
from erlmcp_dr.catalog import Runbook
from erlmcp_dr.compose import engine as engine_module
from erlmcp_dr.compose import hooks, move_lock, recovery, spec
from erlmcp_dr.compose import inventory as inventory_module
from erlmcp_dr.compose import journal as journal_module
from erlmcp_dr.compose.engine import Engine, StepOutcome, StepRecord
from erlmcp_dr.errors import ParameterError, RunBusy
from erlmcp_dr.reporting import report
from erlmcp_dr.result import REPORT_FILE, RunResult, Step
from erlmcp_dr.warm import parsed_inventory

log = logging.getLogger(__name__)

LOCK_OWNER_VAR = "erlmcp_dr_lock_owner"  # read by plugins/action/run_lock.py
APP_WRITE_TIMEOUT = 30.0  # seconds the target's application gets to accept a write after the promotions
HTTP_TIMEOUT = 5.0
# The built-ins every composed runbook may use; a runbook's own (failback's grace gate...) are in compose/hooks.py.
BUILTIN_ACTIONS: Dict[str, tuple] = {"residency_guard": ("to_region", "justification"), "app_write": ("url",)}
# Fault injection for the kill matrix (tests/integration/test_regional_kill.py, benchmarks/regional_kill_matrix.py):
# the run stops itself (SIGSTOP) at that boundary, its journal written, so a test kills it exactly there.
# A step id: before that forward step starts; "end": after the last step, before the result is written.
STOP_AT_BOUNDARY_ENV = launch.STOP_AT_BOUNDARY_ENV  # never served by a CLI zygote: it stops the `runbook` process
END_BOUNDARY = "end"


def is_composed(runbook: Runbook) -> bool:
    return runbook.workflow is not None


def workflow_of(runbook: Runbook, playbooks_dir: Optional[os.PathLike | str] = None) -> spec.Workflow:
    known = catalog.discover(playbooks_dir)
    children = {name: other.parameters for name, other in known.items() if other.workflow is None}
    return spec.load(runbook.name, runbook.workflow, runbook.parameters, children,
                     {**BUILTIN_ACTIONS, **hooks.of(runbook.name).actions})


def run(name: str | Runbook, inventory: Optional[os.PathLike | str] = None,
        extravars: Optional[Mapping[str, Any]] = None, run_id: Optional[str] = None, operator: Optional[str] = None,
        playbooks_dir: Optional[os.PathLike | str] = None, listener: Optional[Callable[[StepRecord], None]] = None,
        **ignored: Any) -> RunResult:
    """Runs a composed runbook; returns its RunResult (status successful only when every step was verified).
    Raises ParameterError/WorkflowError before anything runs, RunBusy when a target's lock is held."""
    from erlmcp_dr import runner

    unsupported = sorted(key for key, value in ignored.items() if value not in (None, False, 0, True, ""))
    if unsupported or ignored.get("check"):
        wrong = unsupported[0] if unsupported else "check"
        raise ParameterError(wrong, f"{wrong}: not supported by a composed run (its plan is `runbook plan "
                                    f"{_name(name)}`, or erlmcp_dr.run(..., check=True))")
    runbook = name if isinstance(name, Runbook) else catalog.load(name, playbooks_dir)
    extravars = dict(extravars or {})
    # Not a parameter (params.validate would refuse it): the run this one runs inside, whose lock it may run under.
    lock_owner = str(extravars.pop(LOCK_OWNER_VAR, None) or "") or None
    values = params.validate(runbook, extravars)
    workflow = workflow_of(runbook, playbooks_dir).for_mode(values.get("mode"))  # steps chosen by mode, as data
    run_id = run_id or runner.new_run_id(runbook.name)
    run_dir = paths.state_home() / "runs" / run_id
    if run_dir.exists():
        raise ParameterError("run_id", f"run {run_id} already exists at {run_dir}; choose another run id")
    inventory_path = runner.resolve_inventory(inventory)
    view = inventory_module.read(inventory_path)
    targets = view.check_regions(str(values["from_region"]), str(values["to_region"]))
    parameters = {**_defaults(runbook), **values}
    parameters["incident_id"] = parameters.get("incident_id") or run_id
    lock_settings = view.lock_settings()  # the store's settings checked before the database is asked for a key
    keys = view.lock_keys()
    interrupted = find_unfinished(lock_settings, keys, runbook.name)
    if interrupted is not None:
        check_resumable(interrupted, values)
        parameters["incident_id"] = values.get("incident_id") or interrupted.incident_id or run_id
    composed = ComposedRun(runbook, run_id, run_dir, inventory_path, view, parameters, values, operator,
                           playbooks_dir, listener, resumes=interrupted)
    with hold_locks(lock_settings, keys, run_id, runbook.name, operator, str(inventory_path), lock_owner) as held, \
            inventory_handed_over(view, run_id) as parsed:
        composed.parsed_inventory = parsed  # each child's warm ansible-playbook reads it instead of the inventory
        composed.move_lock = held  # checked before every step: a lost lease stops the move there
        composed.lock_run_id = held.run_id  # this run's id, or its owner's when it runs under the owner's lock
        return composed.execute(workflow, targets, keys)


def find_unfinished(lock_settings: Mapping[str, Any], keys: List[str], runbook: str
                    ) -> Optional[journal_module.Journal]:
    """The move this run finishes (compose/journal.py): a run of `runbook` killed while it held these locks, or one
    stopped past its point of no return. Read before any lock is taken: a run refused here leaves the killed run's
    records for the next attempt."""
    runs_dir = paths.state_home() / "runs"
    gone = move_lock.gone_holders(lock_settings, keys, runbook, runs_dir)
    return journal_module.unfinished_move(runs_dir, gone, runbook, keys)


def check_resumable(interrupted: journal_module.Journal, values: Mapping[str, Any]) -> None:
    """A move killed past its point of no return is finished toward the region it was going to, or not at all."""
    if not interrupted.entered_point_of_no_return:
        return  # nothing promoted yet: any move (or the same one) may start afresh; its undo covers the rest
    for key in ("from_region", "to_region"):
        if str(values.get(key)) != str(getattr(interrupted, key)):
            raise ParameterError(key, (
                f"{key}={values.get(key)}: run {interrupted.run_id} ({interrupted.status}) had entered the point of no "
                f"return moving from region {interrupted.from_region} to {interrupted.to_region}; finish that move "
                f"first (-e from_region={interrupted.from_region} -e to_region={interrupted.to_region}), nothing "
                "was changed"))


def _name(name: str | Runbook) -> str:
    return name.name if isinstance(name, Runbook) else str(name)


def _defaults(runbook: Runbook) -> Dict[str, Any]:
    return {key: option.get("default") for key, option in runbook.parameters.items()}


@contextmanager
def inventory_handed_over(view: inventory_module.InventoryView, run_id: str) -> Iterator[Optional[str]]:
    """The inventory's files as this run parsed them (view.parsed), in a private folder of the run's own for its child
    runs (warm/parsed_inventory.py: a child's warm ansible-playbook takes a file's parse while the file is unchanged),
    removed at the end (a killed run's by the next run's sweep, as a private data dir). None when nothing was kept or
    the file cannot be written: each child then parses the inventory itself."""
    from erlmcp_dr import runner

    if not view.parsed:
        yield None
        return
    folder: Optional[Path] = None
    path: Optional[str] = None
    try:
        folder = runner.make_private_data_dir(f"{run_id}.inventory")
        path = parsed_inventory.write(view.parsed, str(folder))
    except OSError as exc:  # a full disk: the children parse it, as without this
        log.warning("run %s: the inventory's parse is not handed to its steps (%s); each parses it", run_id, exc)
    try:
        yield path
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def hold_locks(lock_settings: Mapping[str, Any] | str, keys: List[str], run_id: str, runbook: str,
               operator: Optional[str], inventory: str, owner: Optional[str] = None) -> Iterator[move_lock.MoveLock]:
    """Every key taken under `run_id` with this process as the holder, or none and RunBusy naming the holder, in the
    store the settings name (a str: the directory store's folder); compose/move_lock.py. With `owner` (the run
    this one is a child of, LOCK_OWNER_VAR) holding every key: the owner's lock, used as it is and left to it."""
    with move_lock.hold(lock_settings, keys, run_id, runbook, operator, inventory, owner) as held:
        yield held


class ComposedRun:
    def __init__(self, runbook: Runbook, run_id: str, run_dir: Path, inventory: Path,
                 view: inventory_module.InventoryView, parameters: Dict[str, Any], given: Dict[str, Any],
                 operator: Optional[str], playbooks_dir: Any, listener: Optional[Callable[[StepRecord], None]],
                 resumes: Optional[journal_module.Journal] = None) -> None:
        self.runbook, self.run_id, self.run_dir, self.inventory = runbook, run_id, run_dir, inventory
        self.view, self.parameters, self.given, self.operator = view, parameters, given, operator
        self.playbooks_dir, self.listener, self.resumes = playbooks_dir, listener, resumes
        self.move_lock: Optional[move_lock.MoveLock] = None  # set once the lock over the move is held
        self.parsed_inventory: Optional[str] = None  # the inventory's parse for the children (inventory_handed_over)
        self.lock_run_id = run_id  # the run id the lock records name: the owner's when run under its lock
        self.workflow: Optional[spec.Workflow] = None  # the mode's steps, in order (execute sets it)
        self.verified_summaries: Dict[str, Dict[str, Any]] = {}  # forward step id -> its summary, once verified
        self.journal = journal_module.Journal(
            run_id=run_id, runbook=runbook.name, from_region=str(parameters["from_region"]),
            to_region=str(parameters["to_region"]), incident_id=str(parameters.get("incident_id") or ""),
            inventory=str(inventory), locks=sorted(view.lock_keys()),
            entered_point_of_no_return=bool(resumes and resumes.entered_point_of_no_return),
            resumes=resumes.run_id if resumes else None,
            # Carried on: a resumed built-in step reads what the interrupted run changed (its undo covers it).
            changes=copy.deepcopy(resumes.changes) if resumes else {})

    def execute(self, workflow: spec.Workflow, targets: Dict[str, Any], keys: List[str]) -> RunResult:
        started_at, started = _now_iso(), time.monotonic()
        self.run_dir.mkdir(mode=0o700, parents=True)
        redacted = params.redact(self.runbook, self.given)
        audit.append_quietly(audit.run_start(self.run_id, self.runbook.name, redacted, check=False,
                                             operator=self.operator, inventory=str(self.inventory)))
        self.journal.save(self.run_dir)
        if self.resumes is not None:
            self.mark_resumed(self.resumes)
        context = {"params": self.parameters, "targets": targets, "run": {
            "id": self.run_id, "resumed_past_point_of_no_return": self.journal.entered_point_of_no_return}}
        self.workflow = workflow
        # Every step first checks the lock over the move is still held (a lost lease stops the move there).
        steps = self.move_lock.guard(self.run_step) if self.move_lock is not None else self.run_step
        outcome = Engine(workflow, context, steps, self.ended, starting=self.starting,
                         resumed_past_point_of_no_return=self.journal.entered_point_of_no_return,
                         settle_before=os.environ.get(STOP_AT_BOUNDARY_ENV)).run()
        stop_here_if_asked(END_BOUNDARY)
        result = self.result(outcome, targets, keys, started_at, time.monotonic() - started)
        self.journal.status = outcome.status
        self.journal.save(self.run_dir)
        end = audit.append_quietly(audit.run_end(
            self.run_id, self.runbook.name, operator=self.operator, status=result.status, rc=result.rc, check=False,
            duration_seconds=result.duration_seconds, failing_step=outcome.failed_step,
            targets=sorted({str(v) for side in targets.values() for k, v in side.items() if k != "app_url" and v})))
        result.audit_head = audit.anchor_of(end)
        result.save(self.run_dir)
        try:
            paths.write_private_atomic(self.run_dir / REPORT_FILE, report.render_markdown(result))
        except Exception:  # the result is written; a report that cannot be drawn is not a failed recovery
            log.exception("could not write the report of run %s", self.run_id)
        return result

    # -------------------------------------------------------- the journal

    def starting(self, step: spec.WorkflowStep, phase: str) -> None:
        if phase == "forward":
            stop_here_if_asked(step.id)
            self.journal.entered.append(step.id)
            # Recorded BEFORE the child starts: a kill inside it leaves a journal that says it may have passed.
            self.journal.entered_point_of_no_return |= step.point_of_no_return
        else:
            self.journal.undo_entered.append(step.id)
        self.journal.save(self.run_dir)

    def ended(self, record: StepRecord) -> None:
        if record.phase == "forward" and record.verified:
            self.verified_summaries[record.step] = record.summary  # what a runbook's stand-in reads (hooks.py)
            self.journal.verified.append(record.step)
            # In the workflow's order: a background step (declare) may be verified after the steps that follow it.
            if self.workflow is not None:
                self.journal.verified.sort(key=self.workflow.position)
            self.journal.save(self.run_dir)
        if self.listener is not None:
            self.listener(record)

    def action_journal(self, step_id: str) -> hooks.ActionJournal:
        """The journal entry of built-in step `step_id`: what was recorded for it so far (an interrupted run's
        record, carried on) and a writer that saves the journal at once, before the step changes anything."""

        def record(entry: Dict[str, Any]) -> None:
            self.journal.changes[step_id] = dict(entry)
            self.journal.save(self.run_dir)

        return hooks.ActionJournal(run_id=self.run_id, previous=copy.deepcopy(self.journal.changes.get(step_id) or {}),
                                   record=record)

    def mark_resumed(self, interrupted: journal_module.Journal) -> None:
        """The interrupted run's journal says who finished it: it is no longer a run to resume."""
        was = "interrupted" if interrupted.interrupted else interrupted.status
        interrupted.status = f"{was} (resumed by run {self.run_id})"
        try:
            interrupted.save(paths.state_home() / "runs" / interrupted.run_id)
        except OSError:
            log.exception("could not mark run %s as resumed", interrupted.run_id)

    # -------------------------------------------------------- one step

    def run_step(self, step: spec.WorkflowStep, call: spec.Call, arguments: Dict[str, Any], phase: str) -> StepOutcome:
        if call.action == "residency_guard":
            return self.residency(arguments)
        if call.action == "app_write":
            return app_write(str(arguments["url"]), self.run_id)
        own = hooks.of(self.runbook.name)
        instead = own.stand_in(step.id, arguments, self.verified_summaries, self.view.hosts) if phase == "forward" \
            else None
        if instead is not None:
            return instead
        if call.action in own.actions:
            return own.run_action(str(call.action), arguments, self.view.hosts, self.inventory,
                                  self.action_journal(step.id))
        return self.child(step, call, arguments, phase)

    def residency(self, arguments: Dict[str, Any]) -> StepOutcome:
        data = self.view.all_vars
        guard = inventory_module._module("_region.residency")
        verdict = guard.check(str(arguments["to_region"]), data.get("dr_regions") or {},
                              data.get("dr_datasets") or {}, data.get("dr_residency_rules"),
                              arguments.get("justification"))
        problems = [] if verdict.allowed else verdict.problems + (verdict.refusals if not verdict.problems else [])
        summary = {"details": verdict.to_dict(), "end_state": {"ok": verdict.allowed, "problems": problems},
                   "did": ["nothing was changed"]}
        return StepOutcome(ok=verdict.allowed, summary=summary, message=verdict.message)

    def child(self, step: spec.WorkflowStep, call: spec.Call, arguments: Dict[str, Any], phase: str) -> StepOutcome:
        from erlmcp_dr import runner

        child_id = f"{self.run_id}.{step.id}" + (".undo" if phase == "undo" else "")
        config = runner.RunConfig.prepare(str(call.runbook), inventory=self.inventory, extravars=arguments,
                                          run_id=child_id, operator=self.operator, playbooks_dir=self.playbooks_dir)
        # Not a parameter of the child (params.validate would refuse it): the lock plugins read it.
        config.extravars[LOCK_OWNER_VAR] = self.lock_run_id
        config.parsed_inventory = self.parsed_inventory
        try:
            result = runner.run(config=config)
        except RunBusy as exc:
            return StepOutcome(ok=False, run_id=child_id, rc=3, message=f"{call.runbook} was refused: {exc}",
                               summary=exc.result.summary if exc.result is not None else {})
        summary = result.summary
        did = [sentence for sentence in summary.get("did") or [] if sentence != "nothing was changed"]
        return StepOutcome(ok=result.succeeded, summary=summary, run_id=result.run_id, rc=result.rc,
                           changed=bool(did) if summary else any(s.changed for s in result.steps),
                           message="" if result.succeeded else _failure(result))

    # -------------------------------------------------------- the parent's result

    def result(self, outcome: engine_module.ComposedOutcome, targets: Dict[str, Any], keys: List[str],
               started_at: str, elapsed: float) -> RunResult:
        envelope = self.envelope(outcome, targets, keys)
        return RunResult(
            run_id=self.run_id, runbook=self.runbook.name, status="successful" if outcome.ok else "failed",
            rc=0 if outcome.ok else 1, check=False, started_at=started_at, ended_at=_now_iso(),
            duration_seconds=round(elapsed, 3), inventory=str(self.inventory),
            extravars=params.redact(self.runbook, self.given), steps=[_step(record) for record in outcome.records],
            facts={"summary": envelope}, run_dir=str(self.run_dir), title=self.runbook.title,
            rto_target_seconds=self.runbook.rto_seconds, rpo_target_seconds=self.runbook.rpo_seconds,
            error="" if outcome.ok else outcome.message, point_of_no_return=self.runbook.point_of_no_return,
            operator=self.operator, os_user=audit.os_user())

    def envelope(self, outcome: engine_module.ComposedOutcome, targets: Dict[str, Any], keys: List[str]
                 ) -> Dict[str, Any]:
        summary_module = inventory_module._module("_common.summary")
        did = [f"{record.step}{' (undo)' if record.phase == 'undo' else ''}: {sentence}"
               for record in outcome.records for sentence in (record.summary.get("did") or [])
               if sentence != summary_module.NOTHING_CHANGED]
        from_region, to_region = self.parameters["from_region"], self.parameters["to_region"]
        after = to_region if outcome.ok else (from_region if outcome.status == engine_module.UNDONE else None)
        resume = self.resume_command() if outcome.status == engine_module.STOPPED else None
        details = {
            "status": outcome.status, "from_region": from_region, "to_region": to_region,
            "mode": self.parameters.get("mode"), "incident_id": self.parameters.get("incident_id"),
            "targets": targets, "locks": sorted(keys), "point_of_no_return": outcome.point_of_no_return,
            "failed_step": outcome.failed_step, "done": outcome.done, "not_done": outcome.not_done,
            "undone": outcome.undone, "undo_failed": outcome.undo_failed, "resume_command": resume,
            "steps": [{"step": r.step, "phase": r.phase, "runs": r.runs, "run_id": r.run_id, "verified": r.verified,
                       "changed": r.changed, "problems": r.problems, "duration": r.duration,
                       "point_of_no_return": r.point_of_no_return} for r in outcome.records],
            "residency": next((r.summary.get("details") for r in outcome.records if r.step == "residency"), None),
            "resumed_from": None if self.resumes is None else {
                "run_id": self.resumes.run_id, "verified": self.resumes.verified, "entered": self.resumes.entered,
                "entered_point_of_no_return": self.resumes.entered_point_of_no_return},
            "recovery": recovery.measure(  # time vs RTO, data lost vs RPO, the point of no return, what was undone
                outcome.records, self.runbook.rto_seconds, self.runbook.rpo_seconds,
                self.parameters.get("max_lag_bytes"), outcome.undone, outcome.point_of_no_return, outcome.ok),
            **hooks.of(self.runbook.name).summary_details(outcome.records),  # e.g. failback's grace and rejoin
        }
        problems = [] if outcome.ok else [outcome.message]
        return summary_module.envelope(
            self.runbook.name, action="failover", reason=outcome.message, completed=outcome.ok, did=did,
            end={"ok": outcome.ok, "problems": problems}, lock_key=", ".join(sorted(keys)),
            passed_point_of_no_return=outcome.point_of_no_return_passed, details=details,
            serving=summary_module.served(from_region, after),
            recovery=summary_module.recovery_point(lost_bytes=details["recovery"]["lost_bytes"],
                                                   target_seconds=self.runbook.rpo_seconds))

    def resume_command(self) -> str:
        """The command that finishes a move stopped after the point of no return: the same parameters, the same
        incident, the same inventory."""
        values = dict(self.given, incident_id=self.parameters["incident_id"])
        words = ["runbook", "run", self.runbook.name, "-i", str(self.inventory)]
        for key, value in values.items():
            if self.runbook.parameters.get(key, {}).get("no_log"):
                continue
            words += ["-e", f"{key}={value}"]
        if self.operator:
            words += ["--operator", self.operator]
        return " ".join(shlex.quote(word) for word in words) + " --yes"


def stop_here_if_asked(boundary: str) -> None:
    """The kill matrix's fault injection (STOP_AT_BOUNDARY_ENV): this process stops itself at that boundary."""
    if os.environ.get(STOP_AT_BOUNDARY_ENV) == boundary:
        os.kill(os.getpid(), signal.SIGSTOP)


def app_write(url: str, run_id: str, timeout: float = APP_WRITE_TIMEOUT) -> StepOutcome:
    """One write through the target region's application (POST <url>/write), polled until it is accepted or the
    deadline: the promotions are done, the app re-reads its config files on each request."""
    wait = inventory_module._module("_common.wait")
    body = json.dumps({"note": f"regional failover {run_id}"}).encode()
    last: Dict[str, Any] = {}

    def accepted() -> Optional[Dict[str, Any]]:
        request = urllib.request.Request(url.rstrip("/") + "/write", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310 - the inventory's URL
                answer = json.loads(response.read() or b"{}")
                return answer if isinstance(answer, dict) else {"answer": answer}
        except urllib.error.HTTPError as exc:
            last.update(status=exc.code, error=exc.read(2000).decode(errors="replace"))
        except (OSError, ValueError) as exc:
            last.update(status=None, error=str(exc))
        return None

    try:
        answer, waited = wait.wait_for(accepted, timeout, interval=0.2, what=f"a write accepted by {url}")
    except wait.WaitTimeout:
        return StepOutcome(ok=False, summary={"details": last, "end_state": {"ok": False, "problems": []}},
                           message=f"the application at {url} did not accept a write within {timeout:g} s: last "
                                   f"answer {last.get('status')} {last.get('error')}")
    # A probe, not a change: its row is the proof the target serves, so it is not listed among what the run did.
    return StepOutcome(ok=True, summary={"details": dict(answer, url=url, waited_seconds=round(waited, 3)),
                                         "end_state": {"ok": True, "problems": []}},
                       message=f"wrote row {answer.get('id')} through {url} (database {answer.get('database')}, "
                               f"Redis {answer.get('redis')})")


def _failure(result: RunResult) -> str:
    failing = result.failing_step
    text = (failing.message if failing else "") or result.error or f"{result.runbook} failed"
    return f"{result.runbook} failed (run {result.run_id}): {' '.join(text.split())[:600]}"


def _step(record: StepRecord) -> Step:
    undo = " (undo)" if record.phase == "undo" else ""
    return Step(task=f"{record.step}{undo}: {record.title}", host="localhost", action=record.runs,
                start=record.started_at, end=record.ended_at, duration=record.duration, changed=record.changed,
                failed=not record.verified, message="; ".join(record.problems) or record.message,
                data={"child_run_id": record.run_id, "phase": record.phase, "arguments": record.arguments,
                      "point_of_no_return": record.point_of_no_return})


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
