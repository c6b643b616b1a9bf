"""Runbooks run as an operator runs them, `runbook run NAME` in a process of its own (benchmarks/regional.py and
switchover.py's fixed cost).

Not erlmcp_dr.run() in the benchmark's own process: there the benchmark's probe threads (writers every 20 ms, a DNS
watcher) share one interpreter lock with the run's engine and its children's ansible-runner loops, which an
operator's `runbook` never does (measured: benchmarks/results/2026-12-07-paired-regional-api-vs-cli-busy.txt).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from erlmcp_dr import runner
from erlmcp_dr.lab.lifecycle import wait_for  # the lab makes the collection importable first
from erlmcp_dr.result import RunResult

RUNBOOK = Path(sys.executable).parent / "runbook"
COLD_START = "started cold"  # the runner's warning (printed by the CLI) for a run whose ansible-playbook was not forked


def run_cli(name: str, inventory: Path, **extravars: Any) -> tuple[RunResult, str]:
    """`runbook run NAME -e <extravars as JSON>`: its result (the run folder's result.json) and its stderr. Raises
    SystemExit when it fails or leaves no result."""
    run_id = runner.new_run_id(name)
    done = subprocess.run([str(RUNBOOK), "run", name, "-i", str(inventory), "--yes", "--run-id", run_id,
                           "-e", json.dumps(extravars)], capture_output=True, text=True, check=False)
    result_file = runner.run_dir_of(run_id) / "result.json"
    if done.returncode != 0 or not result_file.is_file():
        raise SystemExit(f"runbook run {name} {extravars} failed ({done.returncode}): {done.stderr[-2000:]}")
    return RunResult.load(result_file.parent), done.stderr


def cold_starts(stderr: str) -> list[str]:
    """The runs of that command (a composed run's children included) that started ansible-playbook cold, and why."""
    return [line for line in stderr.splitlines() if COLD_START in line]


def wait_for_cli_zygote(env: dict[str, str] | None = None) -> None:
    """The CLI zygote a first `runbook run` started in the background serves the next ones (when the warm start is
    on): waits until it stands."""
    from erlmcp_dr.warm import client, enabled

    env = dict(os.environ) if env is None else env
    if not enabled(env) or env.get("ERLMCP_DR_WARM_CLI", "1").strip() == "0":
        return
    wait_for(lambda: any(z["kind"] == "cli" and z["alive"] for z in client.zygotes()), 120, interval=0.1,
             what="the CLI zygote")
