"""Runs the erlmcp.dr disaster-recovery runbooks: from Python, the `runbook` CLI and AWX."""

from __future__ import annotations

# typing only for the annotations (never evaluated): the guard imports this module, and typing costs its start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

__all__ = ["run", "__version__"]


def run(name: Any = None, config: Any = None, event_callback: Any = None, **kwargs: Any) -> Any:
    """Runs a runbook (erlmcp_dr.runner.run); a composed one (its playbook declares `runbook.workflow`, e.g.
    regional_failover) through erlmcp_dr.compose, each step a child run (its plan, check=True, is its playbook's).
    Returns the RunResult.

    The runner is imported here, on first use, not with the package: a run's guard imports erlmcp_dr.warm.client
    without loading the runner (the warm start, docs/speed-warm.md)."""
    from erlmcp_dr import runner

    if config is None and name is not None and not kwargs.get("check"):
        from erlmcp_dr import catalog

        runbook = catalog.load(name, kwargs.get("playbooks_dir"))
        if runbook.name == "dr_drill":  # the drill's client, fault and restore run here (erlmcp_dr/drill/run.py)
            from erlmcp_dr.drill import run as drill

            return drill.run(runbook, **kwargs)
        if runbook.workflow is not None:
            from erlmcp_dr.compose import run as composed

            return composed.run(runbook, **kwargs)
    return runner.run(name, config, event_callback, **kwargs)
