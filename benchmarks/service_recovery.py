"""service_recovery's wall time against its critical path (issue 18: "wall <= the critical path's sum of (start +
first healthy sample) + 1 s").

Builds a lab, then runs `runbook run service_recovery` `--runs` times per delay profile on region a, stopping the
services between runs (lab_services.down). Per run, from the summary's rows:
- each service's cost = its first healthy sample's time - its start command's time (start + first healthy sample);
- the critical path = the dependency path with the largest sum of costs (the least any order could take);
- the engine's wall = the last first-healthy sample - the first start command; the command's wall includes
  ansible-playbook's start-up, the parameters, the inventory, the lock and level 0.
Profiles: `uniform` (every service the same start delay) and `seeds` (delays in the ratio of the seeds' recovery
times, 15 to 180 min, scaled): with unequal delays a level waits for its slowest service, the cost of starting by
levels rather than by each service's own dependencies; the margin shows it. Measured, never asserted.
Result: benchmarks/results/<date>-service-recovery.json.

    .venv/bin/python benchmarks/service_recovery.py --runs 3
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
from typing import Any

from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import services as lab_services

RESULTS = Path(__file__).resolve().parent / "results"
# The seeds' recovery times (SEEDS-CHECKLIST §6: 15, 30, 45, 60, 90, 120, 180 min), one second per 100 minutes.
SEEDS_DELAYS = {"auth": 0.15, "api_gateway": 0.3, "session_manager": 0.45, "tool_orchestration": 0.6,
                "resource_management": 0.9, "monitoring": 1.2, "dashboard": 1.8}
PROFILES = {"uniform": dict.fromkeys(SEEDS_DELAYS, 0.3), "seeds": SEEDS_DELAYS}
SLACK_SECONDS = 1.0  # the allowance over the critical path


def critical_path(rows: list[dict[str, Any]]) -> tuple[float, list[str]]:
    """The longest dependency path by the services' costs (rows in start order, dependencies first)."""
    cost = {row["name"]: row["healthy_at"] - row["started_at"] for row in rows}
    best: dict[str, tuple[float, list[str]]] = {}
    for row in rows:
        before = max((best[dep] for dep in row["depends_on"]), default=(0.0, []), key=lambda item: item[0])
        best[row["name"]] = (before[0] + cost[row["name"]], [*before[1], row["name"]])
    return max(best.values(), key=lambda item: item[0])


def one_run(inventory: Path, env: dict[str, str]) -> dict[str, Any]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "erlmcp_dr", "run", "service_recovery", "-i", str(inventory),
                           "-e", "region=a", "-e", "interval=0.05", "--yes", "--json"],
                          capture_output=True, text=True, env=env, check=False)
    command = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"service_recovery exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    rows = json.loads(proc.stdout)["facts"]["summary"]["details"]["services"]
    path_seconds, path = critical_path(rows)
    wall = max(row["healthy_at"] for row in rows) - min(row["started_at"] for row in rows)
    return dict(command_seconds=round(command, 3), engine_wall_seconds=round(wall, 3),
                critical_path_seconds=round(path_seconds, 3), critical_path=path,
                margin_seconds=round(path_seconds + SLACK_SECONDS - wall, 3),
                within_bound=wall <= path_seconds + SLACK_SECONDS,
                costs={row["name"]: round(row["healthy_at"] - row["started_at"], 3) for row in rows})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path,
                        default=RESULTS / f"{datetime.date.today().isoformat()}-service-recovery.json")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="erlmcp-dr-bench-services-home-"))
    cfg = lab.LabConfig(root=Path(tempfile.mkdtemp(prefix="erlmcp-dr-bench-services-")), port_base=lab.free_port_base())
    profiles: dict[str, list[dict[str, Any]]] = {}
    try:
        lab.reset(cfg)
        lab.wait_streaming(cfg)
        inventory = lab.write_inventory(cfg, cfg.root / "inventory" / "hosts.yml", own_lock_dir=True)
        env = dict(os.environ, ERLMCP_DR_HOME=str(home))
        for profile, delays in PROFILES.items():
            runs = []
            for _ in range(args.runs):
                lab_services.down(cfg)
                for name, delay in delays.items():
                    lab_services.set_delay(lab_services.service(cfg, name, "a"), delay)
                runs.append(one_run(inventory, env))
            profiles[profile] = runs
    finally:
        lab.down(cfg)
        shutil.rmtree(cfg.root, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    result = dict(
        benchmark="service_recovery", date=datetime.datetime.now(datetime.UTC).isoformat(), cpus=os.cpu_count(),
        load_average=os.getloadavg(), slack_seconds=SLACK_SECONDS, delays=PROFILES,
        profiles={name: dict(runs=runs, all_within_bound=all(r["within_bound"] for r in runs),
                             median_engine_wall_seconds=statistics.median(r["engine_wall_seconds"] for r in runs),
                             median_critical_path_seconds=statistics.median(r["critical_path_seconds"] for r in runs),
                             median_margin_seconds=statistics.median(r["margin_seconds"] for r in runs),
                             median_command_seconds=statistics.median(r["command_seconds"] for r in runs))
                  for name, runs in profiles.items()},
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({name: {k: v for k, v in p.items() if k != "runs"} for name, p in result["profiles"].items()},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
