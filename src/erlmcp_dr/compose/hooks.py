"""What one composed runbook adds to the composition, keyed by the runbook's name: its own built-in steps and the
keys its summary adds beside the engine's outcome.

compose/run.py keeps the built-ins every composed runbook may use (residency_guard, app_write) and asks this
registry for the rest, so a runbook's own steps are declared in one place and no other runbook's workflow can name
them (spec.load is given the common built-ins plus the runbook's own). failback's are its grace gate, the
database position, the standby catch-up and the Redis resync (compose/failback.py), its summary's grace verdict
and rejoin method, and its stand-in (a handover under way: the rejoin and the catch-up are then read-only checks
that the state still holds, the switchover finishing the move); regional_failover's are the isolation of the region
left and its undo (compose/isolate.py). A new composed runbook with steps of its own adds one entry here.

A built-in step that changes something gets an ActionJournal: it records in the run's journal what it is about to
change BEFORE changing it, and reads what an interrupted run it resumes recorded for the same step
(compose/journal.py, `changes`), so its undo covers the killed run's change too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from erlmcp_dr.compose import failback, isolate
from erlmcp_dr.compose.engine import StepOutcome, StepRecord

Hosts = Mapping[str, Mapping[str, Mapping[str, Any]]]  # group -> host -> its variables (compose/inventory.py)
# step id, its arguments, the summaries of the forward steps verified so far, hosts -> the outcome that answers for
# the step instead of running it, or None (the step runs as written). Read-only: it never changes anything.
StandIn = Callable[[str, Mapping[str, Any], Mapping[str, Mapping[str, Any]], Hosts], Optional[StepOutcome]]


@dataclass(frozen=True)
class ActionJournal:
    """One built-in step's entry in the run's journal. `previous`: what was recorded for this step when the step
    started (an interrupted run's record, carried on by this run; {} when none); `record` writes this step's entry
    (the journal saved at once, 0600, before the caller changes anything)."""

    run_id: str
    previous: Mapping[str, Any] = field(default_factory=dict)
    record: Callable[[Dict[str, Any]], None] = lambda entry: None


# action, arguments, hosts, inventory, the step's journal entry
ActionRunner = Callable[[str, Mapping[str, Any], Hosts, Path, ActionJournal], StepOutcome]


def _no_action(name: str, arguments: Mapping[str, Any], hosts: Hosts, inventory: Path,
               journal: ActionJournal) -> StepOutcome:
    raise KeyError(f"no built-in action {name!r}")  # unreachable: spec.load refuses a workflow naming one


def _no_details(records: List[StepRecord]) -> Dict[str, Any]:
    return {}


def _no_stand_in(step_id: str, arguments: Mapping[str, Any], verified: Mapping[str, Mapping[str, Any]],
                 hosts: Hosts) -> Optional[StepOutcome]:
    return None


@dataclass(frozen=True)
class RunbookHooks:
    actions: Mapping[str, Tuple[str, ...]] = field(default_factory=dict)  # built-in action -> its argument names
    run_action: ActionRunner = _no_action
    summary_details: Callable[[List[StepRecord]], Dict[str, Any]] = _no_details
    stand_in: StandIn = _no_stand_in


NO_HOOKS = RunbookHooks()
REGISTRY: Dict[str, RunbookHooks] = {
    # failback's built-ins read and compare; none has a change a resumed run would need to know of.
    "failback": RunbookHooks(actions=failback.BUILTIN_ACTIONS,
                             run_action=lambda name, arguments, hosts, inventory, journal: failback.run_builtin(
                                 name, arguments, hosts, inventory),
                             summary_details=failback.summary_details, stand_in=failback.stand_in),
    "regional_failover": RunbookHooks(actions=isolate.BUILTIN_ACTIONS, run_action=isolate.run_builtin),
}


def of(runbook: str) -> RunbookHooks:
    """The hooks of `runbook`; none (no own action, nothing added to the summary) for a runbook without an entry."""
    return REGISTRY.get(runbook, NO_HOOKS)
