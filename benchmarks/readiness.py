"""readiness's wall time on the lab (issue 20: "runs in <= 2 s on the lab, checks run concurrently").

Builds a lab template, copies it with the application and the DNS servers, and runs `runbook readiness --json`
`--runs` times. Reports, per run, the checks' own wall time (the engine's `elapsed`: every probe at once) and the
whole command's (ansible-playbook's start-up included), with their medians, and the verdict counts; and whether
the lab is as it was after all the runs (issue 20: "100 runs change nothing": each node's role, upstream and
timeline, each Redis node's role and upstream, each DNS server's serial, compared before the first run and after
the last). Small by default (5 runs); measured, never asserted. Result: benchmarks/results/<date>-readiness.json.

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

from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import lifecycle as lab

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
        before = fingerprint(labs.cfg)
        runs = [one_run(labs.inventory, env) for _ in range(args.runs)]
        after = fingerprint(labs.cfg)
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
        lab_unchanged=before == after, lab_before=before, lab_after=after,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("runs", "lab_before", "lab_after")}, indent=2))
    return 0


def fingerprint(cfg: lab.LabConfig) -> dict[str, object]:
    """What readiness must never change (read-only, no lock): roles, upstreams, timelines, zone serials."""
    status = lab.status(cfg)
    return {"postgres": [(r["name"], r["role"], r.get("upstream"), r.get("timeline")) for r in status["nodes"]],
            "redis": [(r["name"], r["role"], r["upstream"]) for r in status["redis"]],
            "serials": [r["serial"] for r in lab_dns.status(cfg)]}


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
