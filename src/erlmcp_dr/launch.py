"""The `runbook` command's entry point: a run or a plan is handed to the user's warm CLI zygote when a fresh one
serves, so it starts with a fork of a process that has imported the CLI, not with those imports (about 0.1 s of
every run: issue 19, docs/speed-warm.md); anything else, or when no CLI zygote serves yet, runs the CLI here.

Imports only what the hand-over needs (erlmcp_dr.warm's standard-library modules), never the CLI itself first.
ERLMCP_DR_WARM=0 (the whole warm start) or ERLMCP_DR_WARM_CLI=0 (this part) runs every command here.
"""

from __future__ import annotations

import os
import sys

SERVED_COMMANDS = frozenset({"run", "plan"})
WARM_CLI_ENV = "ERLMCP_DR_WARM_CLI"
# The kill matrix's fault injection (compose/run.py): a composed run stops its own process at a boundary, and the
# matrix then kills `runbook`'s process tree. Such a command runs here, so "its own process" is the `runbook` process.
STOP_AT_BOUNDARY_ENV = "ERLMCP_DR_STOP_AT_BOUNDARY"


def main() -> int:
    if served(sys.argv, os.environ):
        from erlmcp_dr.warm import cli_client

        code = cli_client.run_served(sys.argv)
        if code is not None:
            exit_at_once(code)
    from erlmcp_dr.cli import main as cli_main

    return cli_main()


def exit_at_once(code: int) -> None:
    """Ends the launcher of a served command without the interpreter's teardown (a few ms of every `runbook run`,
    more under load): it wrote nothing (the command wrote to the same descriptors) and registered no atexit handler."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def served(argv: list[str], environ: os._Environ[str] | dict[str, str]) -> bool:
    """Whether this command goes to a CLI zygote: a run or a plan, the warm start not turned off, no fault to inject."""
    from erlmcp_dr.warm import enabled

    return len(argv) > 1 and argv[1] in SERVED_COMMANDS and enabled(environ) \
        and environ.get(WARM_CLI_ENV, "1").strip() != "0" and not environ.get(STOP_AT_BOUNDARY_ENV)
