"""The demo a new user runs first (`make demo`): the lab, then the runbooks, through the real CLI.

Works from whatever healthy state the lab is in, so running it twice in a row works:
it switches over to one standby, fails over from it to the other, rejoins the fenced
node, points the public name at the region that now holds the primary, and checks
every region's health, printing each run's report. It ends with an unplanned regional
failover: the region serving everything is killed (`runbook lab fail-region`), one
command moves the whole service to another region, then the killed region comes back
(`runbook lab restore-region`, its former primary rejoined as a standby).
"""

from __future__ import annotations

import json
import subprocess
import sys

from erlmcp_dr import catalog


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
    run_and_report("database_rejoin")  # the killed region's former primary comes back as a standby
    planned_move_back(target, serving)


def planned_move_back(serving: str, back_to: str) -> None:
    # HOOK (issue 17, the planned mode, built by another helper): the planned move back to the restored region.
    # It runs as soon as regional_failover's `mode` offers `planned`; until then the demo says it is not built.
    modes = catalog.load("regional_failover").parameters["mode"].get("choices") or []
    if "planned" not in modes:
        print(f"\ndemo: the planned move back to region {back_to} is not built yet (regional_failover mode=planned)")
        return
    must(runbook("run", "regional_failover", "--yes", "-e", f"from_region={serving}", "-e", f"to_region={back_to}",
                 "-e", "mode=planned"), "regional_failover (planned, back)")


if __name__ == "__main__":
    main()
