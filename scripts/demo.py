"""The demo a new user runs first (`make demo`): the lab, then the runbooks, through the real CLI.

Works from whatever healthy state the lab is in, so running it twice in a row works:
it switches over to one standby, fails over from it to the other, rejoins the fenced
node, points the public name at the region that now holds the primary, and checks
every region's health, printing each run's report. It ends with an unplanned regional
failover: the region serving everything is killed (`runbook lab fail-region`), one
command moves the whole service to another region, then the killed region comes back
(`runbook lab restore-region`) and `failback` moves the service back to it: a grace period
of health, its former primary rewound and caught up, its Redis resynced, then the planned
regional move back.
"""

from __future__ import annotations

import json
import subprocess
import sys


def runbook(*args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    command = ["runbook", *args]
    print(f"\n$ {' '.join(command)}", flush=True)
    return subprocess.run(command, text=True, stdout=subprocess.PIPE if capture else None, check=False)


def must(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode != 0:
        print(f"\ndemo: {what} failed (exit {proc.returncode}); see the report above", file=sys.stderr)
        sys.exit(proc.returncode)


def lab_status() -> dict:
    proc = runbook("lab", "status", "--json", capture=True)
    return json.loads(proc.stdout)


def run_and_report(name: str, *extra: str) -> None:
    must(runbook("run", name, "--yes", *extra), f"runbook {name}")
    must(runbook("report", "latest"), "report")


def main() -> None:
    must(runbook("lab", "up"), "lab up")
    status = lab_status()
    if not status["ok"]:  # a fenced former primary from an earlier demo: bring it back first
        run_and_report("database_rejoin")
        status = lab_status()
    # Switch over to one standby, then fail over to the other: each demo leaves the primary in another region.
    first, second = sorted(row["name"] for row in status["nodes"] if row["role"] == "standby")[:2]
    run_and_report("database_switchover", "-e", f"candidate={first}")
    run_and_report("database_failover", "-e", f"away_from={first}", "-e", f"candidate={second}")
    run_and_report("database_rejoin")
    status = lab_status()
    primary_region = next(row["region"] for row in status["nodes"] if row["name"] == status["primary"])
    run_and_report("dns_cutover", "-e", f"region={primary_region}")  # a re-run finds it done and changes nothing
    run_and_report("region_health", "-e", "interval=0.2")
    regional_failover(primary_region)
    must(runbook("lab", "status"), "lab status")


def regional_failover(serving: str) -> None:
    """Region `serving` (the database primary's, where DNS points) fails as a whole; one command moves the service."""
    status = lab_status()
    redis_here = next(row["name"] for row in status["redis"] if row["region"] == serving)
    if status["redis_primary"] != redis_here:  # the whole service in one region first: database, Redis, DNS
        run_and_report("redis_failover", "-e", f"candidate={redis_here}")
    standbys = sorted(row["region"] for row in status["nodes"] if row["role"] == "standby" and row["region"] != serving)
    target = standbys[0]
    must(runbook("lab", "fail-region", serving), f"lab fail-region {serving}")
    # Prints its own report (every step, its child run, the point of no return) when it ends.
    must(runbook("run", "regional_failover", "--yes", "-e", f"from_region={serving}", "-e", f"to_region={target}",
                 "-e", "mode=unplanned", "-e", "health_interval=0.5"), "regional_failover (unplanned)")
    must(runbook("lab", "restore-region", serving), f"lab restore-region {serving}")
    fail_back(target, serving)


def fail_back(serving: str, back_to: str) -> None:
    """The way back (failback): region `back_to` healthy for the grace period (seconds on the lab; the seeds' hour in
    production), its former primary rewound and caught up, its Redis resynced, then the planned regional move back
    (zero acknowledged writes lost)."""
    must(runbook("run", "failback", "--yes", "-e", f"from_region={serving}", "-e", f"to_region={back_to}",
                 "-e", "grace_seconds=3", "-e", "grace_interval=0.5", "-e", "grace_wait=30"), "failback")


if __name__ == "__main__":
    main()
