"""Runs the erlmcp.dr disaster-recovery runbooks: from Python, the `runbook` CLI and AWX."""

__version__ = "0.1.0"

from erlmcp_dr.runner import run  # noqa: E402

__all__ = ["run", "__version__"]
