"""readiness's wall time on the lab (issue 20: "runs in <= 2 s on the lab, checks run concurrently").

Builds a lab template, copies it with the application and the DNS servers, and runs `runbook readiness --json`
`--runs` times. Reports, per run, the checks' own wall time (the engine's `elapsed`: every probe at once) and the
whole command's (ansible-playbook's start-up included), with their medians, and the verdict counts. Small by
default (5 runs); measured, never asserted. Result: benchmarks/results/<date>-readiness.json.

    .venv/bin/python benchmarks/readiness.py --runs 5
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fresh_lab import FreshLab

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / f"{datetime.date.today().isoformat()}-readiness.json")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="erlmcp-dr-bench-readiness-"))  # runs and locks: private
    # The lab in a folder under /tmp the servers can enter: they run as the lab's OS user, not as us.
    labs_root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-bench-lab-"))
    labs_root.chmod(0o755)
    labs = None
    try:
        labs = FreshLab(labs_root, app=True, dns=True, own_lock_dir=True)
        labs.reset()
        env = dict(os.environ, ERLMCP_DR_HOME=str(home / "home"))
        runs = [one_run(labs.inventory, env) for _ in range(args.runs)]
    finally:
        if labs is not None:
            labs.remove()
        shutil.rmtree(labs_root, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    result = dict(
        benchmark="readiness", date=datetime.datetime.now(datetime.UTC).isoformat(), runs=runs,
        cpus=os.cpu_count(), load_average=os.getloadavg(),
        median_checks_seconds=statistics.median(r["checks_seconds"] for r in runs),
        median_command_seconds=statistics.median(r["command_seconds"] for r in runs),
        checks=runs[-1]["checks"],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    return 0


def one_run(inventory: Path, env: dict[str, str]) -> dict[str, object]:
    command = [str(Path(sys.executable).parent / "runbook"), "readiness", "-i", str(inventory), "--json"]
    started = time.monotonic()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall = time.monotonic() - started
    out = json.loads(proc.stdout)
    return dict(exit_code=proc.returncode, verdict=out["verdict"], counts=out["counts"],
                checks=len(out["checks"]), checks_seconds=out["elapsed"], command_seconds=round(wall, 3),
                probe_seconds=out["probe_seconds"],
                not_passed=sorted(c["name"] for c in out["checks"] if c["verdict"] != "pass"))


if __name__ == "__main__":
    sys.exit(main())
