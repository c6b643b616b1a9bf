"""Stop and start one lab application instance, as the inventory's app_stop_command / app_start_command do.

The regional failover isolates the region it leaves (compose/isolate.py): it stops that region's application with
the inventory's `app_stop_command` and, when a step before the point of no return fails, starts it again with
`app_start_command`. In production those are whatever stops the service (`systemctl stop erlmcp`, an ssh to the
host...); in the lab they are this module:

    python -m erlmcp_dr.lab.app_control stop  --dir <lab>/app --name app-a --region a --host 127.0.1.1 --port N
    python -m erlmcp_dr.lab.app_control start --dir <lab>/app --name app-a --region a --host 127.0.1.1 --port N

`stop` stops the instance by the PID in its pid file, only if /proc shows it is that instance (lab/app.py's rule),
also when it is stopped by SIGSTOP (a hung process: it is continued so that it can take the signal); an instance
that is not running is already stopped (exit 0). `start` starts it unless it runs and returns once it answers.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from erlmcp_dr.lab import app as lab_app

if TYPE_CHECKING:
    from erlmcp_dr.lab.config import LabConfig

MODULE = "erlmcp_dr.lab.app_control"


def commands(app: lab_app.LabApp, folder: str) -> dict[str, list[str]]:
    """The instance's app_stop_command and app_start_command, as the inventory says them (`folder`: the lab's app
    folder as the inventory names it; the interpreter that runs ansible-playbook, which has erlmcp_dr)."""
    from erlmcp_dr.lab.services import PYTHON_EXPR

    identity = ["--dir", folder, "--name", app.name, "--region", app.region, "--host", app.host,
                "--port", str(app.port)]
    return {f"app_{verb}_command": [PYTHON_EXPR, "-m", MODULE, verb, *identity] for verb in ("stop", "start")}


def with_controls(group: dict[str, Any], cfg: LabConfig, root: str) -> dict[str, Any]:
    """The lab inventory's `app` group (lab_app.inventory_group) with each host's stop and start commands."""
    for app in lab_app.apps(cfg):
        group["hosts"][app.name].update(commands(app, f"{root}/app"))
    return group


def stop(app: lab_app.LabApp) -> str:
    from erlmcp_dr.lab.config import stop_pid

    pid = lab_app.app_pid(app)
    if pid is None:
        return f"{app.name} is not running"
    try:  # a stopped (SIGSTOP) process takes no signal but SIGKILL until it is continued
        os.kill(pid, signal.SIGINT)
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass
    stop_pid(pid, lab_app.STOP_TIMEOUT)
    app.pid_file.unlink(missing_ok=True)
    return f"stopped {app.name} (pid {pid})"


def start(app: lab_app.LabApp) -> str:
    started = lab_app._start(app)
    lab_app._wait_answering(app, started)
    return f"{'started' if started is not None else 'already running:'} {app.name} at {app.url}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.splitlines()[0])
    parser.add_argument("verb", choices=("stop", "start"))
    parser.add_argument("--dir", required=True, type=Path, help="the lab's app folder")
    parser.add_argument("--name", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", required=True, type=int)
    args = parser.parse_args(argv)
    app = lab_app.LabApp(args.name, args.region, args.host, args.port, args.dir)
    print(stop(app) if args.verb == "stop" else start(app))
    return 0


if __name__ == "__main__":
    sys.exit(main())
