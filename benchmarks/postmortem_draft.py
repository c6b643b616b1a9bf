"""Benchmark (measured, not asserted): `runbook postmortem` as an incident commander runs it, against its 1 s goal.

For each round, a new `runbook postmortem` process over the recorded state folder of tests/fixtures/postmortem
(the regional failover stand-in: a parent and two real child runs, 90+ audit records), once in Markdown and once
in HTML; its wall time (process start to exit: the imports, the chain check, the draft) and, in-process, the time
of build()+render() alone. A second series on a trail grown to --records records (copies of the recorded runs'
records, chained) shows what the whole-chain check costs as the trail grows.

Writes benchmarks/results/<date>-postmortem-draft.json and prints it.

    .venv/bin/python benchmarks/postmortem_draft.py --rounds 5 --records 5000
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from erlmcp_dr import audit
from erlmcp_dr.reporting import postmortem, postmortem_render

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "postmortem"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
GOAL_SECONDS = 1.0


def runs() -> dict[str, str]:
    return dict(line.split() for line in (FIXTURES / "runs.txt").read_text().splitlines())


def command_seconds(home: Path, run_id: str, form: str) -> tuple[float, float]:
    """(wall, cpu) seconds of one `runbook postmortem` process: the CPU time (user + system) is what the draft
    costs; the wall time on a shared machine adds the wait for a core."""
    runbook = Path(sys.executable).parent / "runbook"
    env = dict(os.environ, ERLMCP_DR_HOME=str(home), ERLMCP_DR_LOCK_DIR=str(home / "locks"))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run([str(runbook), "postmortem", run_id, "--format", form], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def in_process_seconds(home: Path, run_id: str, form: str) -> float:
    began = time.perf_counter()
    postmortem_render.render(postmortem.build(run_id, home=home), form)
    return time.perf_counter() - began


def grow_trail(home: Path, records: int) -> int:
    """Appends filler runs (start and end records of a made-up runbook) until the trail holds `records`."""
    trail = home / audit.AUDIT_DIR / audit.AUDIT_FILE
    count = len(audit.read_lines(trail))
    number = 0
    while count < records:
        run_id = f"filler-{number}"
        audit.append(audit.run_start(run_id, "filler", {}, check=True, operator=None, inventory="-"), trail)
        audit.append(audit.run_end(run_id, "filler", operator=None, status="successful", rc=0, check=True,
                                   duration_seconds=0.1, failing_step=None, targets=[]), trail)
        count += 2
        number += 1
    return count


def series(home: Path, run_id: str, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for form in ("md", "html"):
        measured = [command_seconds(home, run_id, form) for _ in range(rounds)]
        walls, cpus = [wall for wall, _ in measured], [cpu for _, cpu in measured]
        inner = [in_process_seconds(home, run_id, form) for _ in range(rounds)]
        out[form] = {"command_wall_median_s": round(statistics.median(walls), 3),
                     "command_wall_max_s": round(max(walls), 3),
                     "command_cpu_median_s": round(statistics.median(cpus), 3),
                     "build_render_median_s": round(statistics.median(inner), 4),
                     "wall_within_goal": max(walls) <= GOAL_SECONDS,
                     "cpu_within_goal": max(cpus) <= GOAL_SECONDS}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=5000)
    args = parser.parse_args()
    run_id = runs()["regional"]
    with tempfile.TemporaryDirectory(prefix="erlmcp-dr-pm-bench-") as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(FIXTURES / "home", home)
        os.environ.update(ERLMCP_DR_HOME=str(home), ERLMCP_DR_LOCK_DIR=str(home / "locks"))
        recorded = len(audit.read_lines(home / audit.AUDIT_DIR / audit.AUDIT_FILE))
        small = series(home, run_id, args.rounds)
        grown = grow_trail(home, args.records)
        large = series(home, run_id, args.rounds)
    result = {"date": datetime.date.today().isoformat(), "goal_seconds": GOAL_SECONDS, "rounds": args.rounds,
              "load_average": os.getloadavg(), "run": run_id,
              f"trail_{recorded}_records": small, f"trail_{grown}_records": large}
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{result['date']}-postmortem-draft.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
