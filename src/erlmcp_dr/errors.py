"""The errors the controller raises before or instead of running a runbook.

Each one carries a message meant for the person at the terminal: what was found,
what was expected, and what to do about it.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional


class RunbookError(Exception):
    """Base class: anything that stops a runbook from being planned or run."""


class UnknownRunbook(RunbookError):
    """No runbook of that name in the catalog."""

    def __init__(self, name: str, known: Iterable[str], suggestion: Optional[str] = None) -> None:
        self.name = name
        self.known = sorted(known)
        self.suggestion = suggestion
        listing = ", ".join(self.known) if self.known else "(none: no playbook declares vars.runbook)"
        hint = f" Did you mean '{suggestion}'?" if suggestion else ""
        super().__init__(f"unknown runbook '{name}'.{hint} Known runbooks: {listing}")


class ParameterError(RunbookError):
    """An extra var is unknown, missing or of the wrong type; names the parameter."""

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        super().__init__(message)


class RunBusy(RunbookError):
    """Another run holds the run lock (the playbook's erlmcp.dr.run_lock) on the same target."""

    def __init__(self, inventory: str, run_id: str = "", pid: Optional[int] = None, since: str = "",
                 host: str = "", runbook: str = "", result: Any = None) -> None:
        self.inventory = inventory
        self.run_id = run_id
        self.pid = pid
        self.since = since
        self.host = host
        self.runbook = runbook
        self.result = result  # the RunResult of the run that was turned away, when it started
        who = f"run {run_id}" if run_id else "another run"
        if runbook:
            who += f" of {runbook}"
        details = []
        if pid:
            details.append(f"pid {pid}" + (f" on {host}" if host else ""))
        if since:
            details.append(f"since {since}")
        held_by = f"{who} ({', '.join(details)})" if details else who
        stop = f" or stop it (kill -TERM {pid}{' on ' + host if host else ''})" if pid else ""
        report = f"; `runbook report {run_id}` shows its outcome once it ends" if run_id else ""
        super().__init__(
            f"another run is using this inventory: {held_by} holds the lock on {inventory}. "
            f"Wait for it to finish{stop}, then try again{report}."
        )


class ConfirmationRequired(RunbookError):
    """The runbook changes production state and nobody confirmed it."""

    def __init__(self, name: str, inventory: str) -> None:
        self.name = name
        self.inventory = inventory
        super().__init__(
            f"runbook '{name}' needs confirmation before it runs against {inventory}: "
            "no terminal to ask on, so pass --yes to confirm (or `runbook plan` to see what it would do)"
        )
