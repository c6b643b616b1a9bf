"""A composed runbook's own built-in steps and summary keys come from one registry keyed by the runbook
(compose/hooks.py): failback's steps load for failback only, and no other runbook's summary gets failback's keys."""

from __future__ import annotations

import dataclasses

import pytest

from erlmcp_dr import catalog
from erlmcp_dr.compose import failback, hooks, isolate, spec
from erlmcp_dr.compose import run as composed
from erlmcp_dr.compose.engine import StepRecord


def rejoin_record() -> StepRecord:
    return StepRecord(step="rejoin", title="Rejoin", phase="forward", runs="database_rejoin",
                      arguments={"node": "pg-a"}, verified=True, changed=True, run_id="r.rejoin", rc=0, problems=[],
                      message="", point_of_no_return=False, passed_point_of_no_return=False, started_at="",
                      ended_at="", duration=1.0,
                      summary={"details": {"methods": ["rewind"], "copied_bytes": {"pg-a": 4096}}})


def test_failback_workflow_loads_with_its_own_steps_from_the_registry() -> None:
    workflow = composed.workflow_of(catalog.load("failback"))
    own = {step.call.action for step in workflow.steps if step.call.action} - set(composed.BUILTIN_ACTIONS)
    assert own == set(failback.BUILTIN_ACTIONS) == set(hooks.of("failback").actions)
    assert hooks.of("failback").summary_details([rejoin_record()])["rejoin"] == {
        "node": "pg-a", "method": "rewind", "copied_bytes": 4096}


def test_another_runbook_cannot_name_failbacks_steps_and_gets_no_failback_summary_keys() -> None:
    stranger = dataclasses.replace(catalog.load("failback"), name="not_failback")
    with pytest.raises(spec.WorkflowError) as caught:
        composed.workflow_of(stranger)
    assert any("unknown built-in action 'grace_gate'" in problem for problem in caught.value.problems)
    assert not set(hooks.of("regional_failover").actions) & set(failback.BUILTIN_ACTIONS)
    assert hooks.of("regional_failover").summary_details([rejoin_record()]) == {}
    assert hooks.of("not_a_composed_runbook") is hooks.NO_HOOKS


def test_the_regional_failover_takes_its_isolation_from_the_registry_and_failback_cannot_name_it() -> None:
    workflow = composed.workflow_of(catalog.load("regional_failover"))
    own = {step.call.action for step in workflow.steps if step.call.action} - set(composed.BUILTIN_ACTIONS)
    undo = {step.undo.action for step in workflow.steps if step.undo is not None and step.undo.action}
    assert own | undo == set(isolate.BUILTIN_ACTIONS) == set(hooks.of("regional_failover").actions)
    assert not set(isolate.BUILTIN_ACTIONS) & set(hooks.of("failback").actions)
