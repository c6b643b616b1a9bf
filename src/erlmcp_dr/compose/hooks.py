"""What one composed runbook adds to the composition, keyed by the runbook's name: its own built-in steps and the
keys its summary adds beside the engine's outcome.

compose/run.py keeps the built-ins every composed runbook may use (residency_guard, app_write) and asks this
registry for the rest, so a runbook's own steps are declared in one place and no other runbook's workflow can name
them (spec.load is given the common built-ins plus the runbook's own). failback's are its grace gate, the
database position, the standby catch-up and the Redis resync (compose/failback.py), its summary's grace verdict
and rejoin method, and its stand-in (a handover under way: the rejoin and the catch-up are then read-only checks
that the state still holds, the switchover finishing the move); regional_failover's are the isolation of the region
left and its undo (compose/isolate.py). A new composed runbook with steps of its own adds one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from erlmcp_dr.compose import failback, isolate
from erlmcp_dr.compose.engine import StepOutcome, StepRecord

Hosts = Mapping[str, Mapping[str, Mapping[str, Any]]]  # group -> host -> its variables (compose/inventory.py)
ActionRunner = Callable[[str, Mapping[str, Any], Hosts, Path], StepOutcome]  # action, arguments, hosts, inventory
# step id, its arguments, the summaries of the forward steps verified so far, hosts -> the outcome that answers for
# the step instead of running it, or None (the step runs as written). Read-only: it never changes anything.
StandIn = Callable[[str, Mapping[str, Any], Mapping[str, Mapping[str, Any]], Hosts], Optional[StepOutcome]]


def _no_action(name: str, arguments: Mapping[str, Any], hosts: Hosts, inventory: Path) -> StepOutcome:
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
    "failback": RunbookHooks(actions=failback.BUILTIN_ACTIONS, run_action=failback.run_builtin,
                             summary_details=failback.summary_details, stand_in=failback.stand_in),
    "regional_failover": RunbookHooks(actions=isolate.BUILTIN_ACTIONS, run_action=isolate.run_builtin),
}


def of(runbook: str) -> RunbookHooks:
    """The hooks of `runbook`; none (no own action, nothing added to the summary) for a runbook without an entry."""
    return REGISTRY.get(runbook, NO_HOOKS)
