"""Where a database runbook's time goes (measured, not asserted): per task, and outside the tasks.

Runs database_switchover (or database_failover after a kill -9 of the primary's postmaster) `--runs`
times on a lab of its own, reset between runs, and prints for each task the median of its duration
(the run folder's events: start/end of every task), then the median of: the runner and playbook start
(process start to the first task's start), the gaps between tasks, the end (last task to the result),
the whole wall, and for a failover the time from the kill to the promotion task's end.

    .venv/bin/python benchmarks/profile_runbook.py --runs 3 [--failover] [--json]
    PROFILE_TIMELINE=1 .venv/bin/python benchmarks/profile_runbook.py --runs 1   # each task's start and duration too
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import erlmcp_dr
from erlmcp_dr.lab import lifecycle as lab

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fresh_lab import FreshLab  # noqa: E402


def _ts(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.datetime.fromisoformat(text).timestamp()


def profile_once(labs: FreshLab, failover: bool) -> dict[str, Any]:
    cfg, inventory = labs.reset(), labs.inventory
    status = lab.status(cfg)
    primary = status["primary"]
    candidate = sorted(r["name"] for r in status["nodes"] if r["role"] == "standby")[0]
    started = time.time()
    if failover:
        pid = cfg.node(primary).server().postmaster_pid()
        if pid is None:
            raise SystemExit(f"no postmaster pid for {primary}")
        os.kill(pid, signal.SIGKILL)
        result = erlmcp_dr.run("database_failover", inventory=str(inventory))
    else:
        result = erlmcp_dr.run("database_switchover", inventory=str(inventory), extravars={"candidate": candidate})
    ended = time.time()
    if not result.succeeded:
        raise SystemExit(f"the runbook failed: {result.run_dir}")
    tasks: list[tuple[str, float, float]] = []
    for step in result.steps:
        start, end = _ts(step.start), _ts(step.end)
        if start is None or end is None or step.skipped:
            continue
        tasks.append((step.task, start, end))
    tasks.sort(key=lambda row: row[1])
    if os.environ.get("PROFILE_TIMELINE"):  # each task's start (seconds after the run began) and duration
        for name, start, end in tasks:
            print(f"{start - started:7.3f} {end - start:6.3f}  {name}")
    busy = sum(end - start for _, start, end in tasks)
    first, last = tasks[0][1], max(end for _, _, end in tasks)
    promote_end = next((end for name, _, end in tasks if "promote the candidate" in name.lower()), None)
    return {
        "tasks": [(name, round(end - start, 3)) for name, start, end in tasks],
        "start_s": round(first - started, 3),
        "between_tasks_s": round((last - first) - busy, 3),
        "in_tasks_s": round(busy, 3),
        "end_s": round(ended - last, 3),
        "wall_s": round(ended - started, 3),
        "to_promoted_s": round(promote_end - started, 3) if promote_end else None,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    per_task: dict[str, list[float]] = defaultdict(list)
    order: list[str] = []
    for run in runs:
        for name, seconds in run["tasks"]:
            if name not in per_task:
                order.append(name)
            per_task[name].append(seconds)
    out: dict[str, Any] = {"tasks": {name: round(statistics.median(per_task[name]), 3) for name in order},
                           "task_count": statistics.median(len(run["tasks"]) for run in runs)}
    for key in ("start_s", "between_tasks_s", "in_tasks_s", "end_s", "wall_s", "to_promoted_s"):
        values = [run[key] for run in runs if run[key] is not None]
        out[key] = round(statistics.median(values), 3) if values else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--failover", action="store_true", help="kill -9 the primary, then database_failover")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-profile-"))
    root.chmod(0o755)
    labs = None
    try:
        labs = FreshLab(root)
        runs = [profile_once(labs, args.failover) for _ in range(args.runs)]
    finally:
        if labs is not None:
            labs.close()
        shutil.rmtree(root, ignore_errors=True)
    summary = summarize(runs)
    summary["load_1m"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    for name, seconds in summary["tasks"].items():
        print(f"{seconds:7.3f}  {name}")
    print(" ".join(f"{key}={summary[key]}" for key in
                   ("task_count", "start_s", "between_tasks_s", "in_tasks_s", "end_s", "wall_s", "to_promoted_s",
                    "load_1m")))


if __name__ == "__main__":
    main()
