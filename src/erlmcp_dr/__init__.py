"""Runs the erlmcp.dr disaster-recovery runbooks: from Python, the `runbook` CLI and AWX."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["run", "__version__"]


def __getattr__(name: str) -> Any:
    """`erlmcp_dr.run` imported on first use: a run's guard imports erlmcp_dr.warm.client without the runner."""
    if name == "run":
        from erlmcp_dr.runner import run

        return run
    raise AttributeError(f"module 'erlmcp_dr' has no attribute {name!r}")
