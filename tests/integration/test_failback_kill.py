"""The kill matrix of failback (issue 18): its boundaries come from the workflow. The lab case (killed inside the
database handover, the current primary fenced and the old region's node not yet promoted, two operators meanwhile)
runs in test_failback.py's lab run, on the same way there as the happy path (the CI budget: one lab); the whole
matrix of boundaries is benchmarks/failback_kill_matrix.py and its committed result."""

from __future__ import annotations

import pytest
from failback_kill import FENCED_NOT_PROMOTED, RUNBOOK, boundaries

from erlmcp_dr.compose import run as composed

pytestmark = pytest.mark.integration


def test_failback_boundaries_come_from_its_workflow_and_include_the_inside_of_the_handover() -> None:
    steps = [step.id for step in composed.workflow_of(composed.catalog.load(RUNBOOK)).steps]
    assert boundaries()[:len(steps) + 1] == [*steps, "end"]
    assert "inside:database" in boundaries() and "inside:rejoin" in boundaries()
    assert FENCED_NOT_PROMOTED in boundaries()
