"""N identical drills of a kind on one lab (issue 20: "spread of measured RTO (p90 - p10) <= 20 % of the median,
median reported against the seeds' targets"); by default database_primary.

Builds a lab template, copies it with the application and the DNS servers, and runs `runbook run dr_drill -e
kind=database_primary --yes --json` `--runs` times on that lab (each drill restores the steady state, so the next
starts from one; the primary moves around the regions). Reports per drill the client-measured RTO, the client's
outage, RPO, lost writes, sessions lost, the verdict and the drill's wall time; then the RTO's median, p10, p90
and the spread (p90 - p10) as a share of the median, beside the seed target. Measured, never asserted; the drill's
own RTO target is set to MISSION's 300 s in the inventory so that the verdict reflects restore and data, while the
seed's target for the kind is reported beside the median. Result: benchmarks/results/<date>-drill.json.

    .venv/bin/python benchmarks/drill.py --runs 3
    .venv/bin/python benchmarks/drill.py --runs 5 --kind dns_server --signal SIGSTOP --ttl 1

`--ttl` sets the public name's (api's) TTL on the lab first (the lab's is 30 s): a drill whose recovery moves or
needs a new DNS answer (app_instance, dns_server) waits up to one TTL for its client's next resolution.
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

import yaml
from fresh_lab import FreshLab

from erlmcp_dr.drill import judge as drill_judge
from erlmcp_dr.lab import dns as lab_dns

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kind", default="database_primary", choices=drill_judge.KINDS)
    parser.add_argument("--signal", default="SIGKILL", choices=("SIGKILL", "SIGSTOP"))
    parser.add_argument("--ttl", type=int, default=None, help="api's TTL on the lab before the drills (seconds)")
    parser.add_argument("--out", type=Path, default=RESULTS / f"{datetime.date.today().isoformat()}-drill.json")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="erlmcp-dr-bench-drill-"))  # runs and locks: private
    labs_root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-bench-lab-"))
    labs_root.chmod(0o755)  # the servers run as the lab's OS user below it
    labs = None
    try:
        labs = FreshLab(labs_root, app=True, dns=True, own_lock_dir=True)
        labs.reset()
        inventory = labs.inventory
        data = yaml.safe_load(inventory.read_text())
        data["all"]["vars"]["dr_drill"] = {"targets": {"rto_seconds": 300}}
        inventory.write_text(yaml.safe_dump(data, sort_keys=False))
        env = dict(os.environ, ERLMCP_DR_HOME=str(home / "home"))
        if args.ttl is not None:
            lab_dns.set_ttl(labs.cfg, "api", args.ttl)
        if args.kind == "redis_backup":  # its fault corrupts the newest verified backup: there must be one
            made = subprocess.run([str(Path(sys.executable).parent / "runbook"), "run", "redis_backup", "-i",
                                   str(inventory), "--yes"], capture_output=True, text=True, env=env, check=False)
            if made.returncode != 0:
                raise SystemExit(f"redis_backup failed (rc {made.returncode}): {made.stderr[-2000:]}")
        drills = [one_drill(inventory, env, args.kind, args.signal) for _ in range(args.runs)]
    finally:
        if labs is not None:
            labs.remove()
        shutil.rmtree(labs_root, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)
    rtos = sorted(d["rto_seconds"] for d in drills if d["rto_seconds"] is not None)
    median = statistics.median(rtos) if rtos else None
    p10, p90 = (percentile(rtos, 10), percentile(rtos, 90)) if rtos else (None, None)
    result = dict(
        benchmark="drill", date=datetime.datetime.now(datetime.UTC).isoformat(), kind=args.kind,
        signal=args.signal, api_ttl_seconds=args.ttl,
        runs=len(drills), cpus=os.cpu_count(), load_average=os.getloadavg(), drills=drills,
        rto_median_seconds=median, rto_p10_seconds=p10, rto_p90_seconds=p90,
        rto_spread_share_of_median=round((p90 - p10) / median, 3) if median else None,
        issue_spread_target_share=0.2,
        seed_rto_target_seconds=drill_judge.RTO_BY_KIND[args.kind],
        median_meets_seed_target=(median is not None and median < drill_judge.RTO_BY_KIND[args.kind]),
        verdicts=[d["verdict"] for d in drills],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "drills"}, indent=2))
    return 0


def percentile(values: list[float], share: int) -> float:
    """Linear interpolation between closest ranks (values sorted)."""
    if len(values) == 1:
        return values[0]
    position = (len(values) - 1) * share / 100
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return round(values[low] + (values[high] - values[low]) * (position - low), 3)


def one_drill(inventory: Path, env: dict[str, str], kind: str, signal_name: str) -> dict[str, object]:
    started = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).parent / "runbook"), "run", "dr_drill", "-i", str(inventory),
                           "-e", f"kind={kind}", "-e", f"signal={signal_name}", "--yes", "--json"],
                          capture_output=True, text=True,
                          env=env, stdin=subprocess.DEVNULL, check=False)
    wall = round(time.monotonic() - started, 3)
    try:
        details = json.loads(proc.stdout)["facts"]["summary"]["details"]
    except (ValueError, KeyError):
        return {"rc": proc.returncode, "verdict": "no result", "rto_seconds": None, "wall_seconds": wall,
                "stderr": proc.stderr[-2000:]}
    measured = details.get("measured") or {}
    return {"rc": proc.returncode, "verdict": details.get("verdict"), "reason": details.get("verdict_reason"),
            "fault": (details.get("fault") or {}).get("target"), "rto_seconds": measured.get("rto_seconds"),
            "rto_resolution_seconds": measured.get("resolution_seconds"),
            "client_outage_seconds": measured.get("client_outage_seconds"),
            "rpo_seconds": measured.get("rpo_seconds"), "lost_writes": measured.get("lost_writes_count"),
            "acknowledged_writes": measured.get("acknowledged_writes"), "sessions_lost": measured.get("sessions_lost"),
            "recovery_seconds": measured.get("recovery_seconds"), "wall_seconds": wall,
            "steady_state_after": details.get("steady_state_after"),
            "restore_problems": details.get("restore_problems"),
            "steps": [(s.get("task"), s.get("duration"), s.get("failed")) for s in json.loads(proc.stdout)["steps"]]}


if __name__ == "__main__":
    sys.exit(main())
