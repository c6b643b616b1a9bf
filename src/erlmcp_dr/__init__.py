"""Runs the erlmcp.dr disaster-recovery runbooks: from Python, the `runbook` CLI and AWX."""

__version__ = "0.1.0"
