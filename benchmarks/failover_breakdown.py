"""Where a failover's write-unavailable time goes (measured, not asserted): issue 19, docs/speed-failover.md.

Each run: a fresh copy of the lab (pg-a primary, pg-b and pg-c streaming), the same writing client and writers'
sampler as benchmarks/switchover.py, kill -9 of pg-a's postmaster, then database_failover through erlmcp_dr.run in
this process, as switchover.py's `erlmcp_failover` does. From the kill to the client's first acknowledged write, the
run is cut into consecutive phases, each one the wall time between two marks:

    prepare          kill -> RunbookRun.run entered (RunConfig: the playbook's metadata, the parameters checked)
    run_folder       -> the guard's command built (stale-run sweep, run folder, audit start, private dir, the
                        space reserve, extra vars, ansible-runner's RunnerConfig.prepare)
    guard_to_served  -> the guard's start.json written (pexpect spawns the guard; a new interpreter, the warm
                        client's imports, the zygote's manifest checked, the run handed over; cold: just written)
    playbook_load    -> ansible-runner's playbook_on_start event (the forked or started ansible-playbook: settings,
                        command line, inventory, the playbook and its roles)
    to_first_task    -> the start task (erlmcp.dr.pg_begin) started (the play, its variables, the worker fork)
    begin            -> pg_begin ended (its own `durations`: parameters, inventory, assess, lock, guard,
                        reassess, plan are reported beside)
    between          -> the promotion task started
    promote_task     -> the promotion task ended (its fence and pg_promote's wait: `promote_seconds`, beside)
    client           -> the first acknowledged write (negative when the client wrote before the task's result
                        reached the runner: the promotion is done before its task ends)

The marks come from the run's own events (task start and end, playbook_on_start) and from three wrappers this
benchmark puts around the runner's functions (RunbookRun.run, guarded, start_record: the time the guard wrote its
start record is that file's mtime). Every figure is wall time on this machine: read them with the load.

    .venv/bin/python benchmarks/failover_breakdown.py --runs 3 [--cold] [--busy 4] [--json out.json]
        [--replication asynchronous|synchronous|both]

`--replication synchronous` gives every node `synchronous_standby_names = 'ANY 1 (*)'` first: the new primary then
acknowledges a write only once a standby streams from it (the repointed one), which the first write waits for.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

import erlmcp_dr
from erlmcp_dr import runner
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.probe import WriteProbe, WritersSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fresh_lab import FreshLab  # noqa: E402
from switchover import _lab_conninfo  # noqa: E402

PHASES = ("prepare", "run_folder", "guard_to_served", "playbook_load", "to_first_task", "begin", "between",
          "promote_task", "client")
BEGIN_ACTION = "erlmcp.dr.pg_begin"
PROMOTE_ACTION = "erlmcp.dr.pg_promote"


class Marks:
    """Wall-clock marks the wrappers around the runner's functions record for the current run."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.start_mode = ""

    def install(self) -> None:
        run, guarded, start_record = runner.RunbookRun.run, runner.guarded, runner.start_record
        marks = self

        def timed_run(this: runner.RunbookRun) -> Any:
            marks.times.setdefault("runbook_run", time.time())
            return run(this)

        def timed_guarded(command: list[str], private_data_dir: Path) -> list[str]:
            marks.times.setdefault("guarded", time.time())
            return guarded(command, private_data_dir)

        def timed_start_record(private_data_dir: Path) -> dict[str, Any]:
            try:
                marks.times.setdefault("start_record", (Path(private_data_dir) / "start.json").stat().st_mtime)
            except OSError:
                pass
            record = start_record(private_data_dir)
            marks.start_mode = str(record.get("mode") or "")
            return record

        runner.RunbookRun.run = timed_run  # type: ignore[method-assign]
        runner.guarded = timed_guarded  # type: ignore[assignment]
        runner.start_record = timed_start_record  # type: ignore[assignment]


def _ts(text: str | None) -> float | None:
    if not text:
        return None
    stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return stamp.timestamp()


def _events(run_dir: Path, run_id: str) -> list[dict[str, Any]]:
    folder = run_dir / "artifacts" / run_id / "job_events"
    events = []
    for path in folder.glob("*.json"):
        try:
            events.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(events, key=lambda event: event.get("counter", 0))


def one_failover(labs: FreshLab, marks: Marks, synchronous: bool = False) -> dict[str, Any]:
    cfg = labs.reset()
    if synchronous:
        lab.make_synchronous(cfg)
    conninfo = _lab_conninfo(cfg)
    nodes = {n.name: n.conn_params() for n in cfg.nodes}
    load = os.getloadavg()[0]
    marks.times.clear()
    killed_port = cfg.node("pg-a").port
    with WriteProbe(conninfo) as probe, WritersSampler(nodes) as sampler:
        pid = cfg.node("pg-a").server().postmaster_pid()
        if pid is None:
            raise SystemExit("no postmaster pid for pg-a")
        killed_mono, killed = time.monotonic(), time.time()
        os.kill(pid, signal.SIGKILL)
        result = erlmcp_dr.run("database_failover", inventory=str(labs.inventory))
        if not result.succeeded:
            raise SystemExit(f"database_failover failed: {result.run_dir}")
        lab.wait_for(lambda: _acknowledged_after(probe, killed_mono, killed_port, by_killed=False), 60, interval=0.01,
                 what="an acknowledged write on the new primary")
    with psycopg.connect(conninfo) as conn:
        lost = len(probe.missing_on(conn))
    after = _acknowledged_after(probe, killed_mono, killed_port, by_killed=False)
    first_write = killed + (after[0] - killed_mono)
    row = _breakdown(result, marks, killed, first_write)
    row.update(replication="synchronous" if synchronous else "asynchronous",
               kill_to_first_write_s=round(first_write - killed, 3), lost_writes=lost,
               # How an asynchronous failover loses writes here: pg-a's backends outlive its postmaster for a moment
               # and acknowledge the commits they were running, whose WAL no standby will receive.
               acknowledged_by_killed_after_kill=len(_acknowledged_after(probe, killed_mono, killed_port,
                                                                         by_killed=True)),
               max_writable_nodes=sampler.report.max_writable, start_mode=marks.start_mode, load_1m=round(load, 2))
    return row


def _acknowledged_after(probe: WriteProbe, since: float, killed_port: int, by_killed: bool) -> list[float]:
    """When the commits after `since` were acknowledged: by the killed primary's port (by_killed) or another's."""
    report = probe.report
    return [at for at, port in zip(report.commit_times, report.commit_ports, strict=False)
            if at > since and (port == killed_port) == by_killed]


def _breakdown(result: Any, marks: Marks, killed: float, first_write: float) -> dict[str, Any]:
    steps = [step for step in result.steps if not step.skipped]
    begin = next(step for step in steps if step.action == BEGIN_ACTION)
    promote = next(step for step in steps if step.action == PROMOTE_ACTION)
    events = _events(Path(result.run_dir), result.run_id)
    playbook_start = next(_ts(e.get("created")) for e in events if e.get("event") == "playbook_on_start")
    points = [killed, marks.times.get("runbook_run"), marks.times.get("guarded"), marks.times.get("start_record"),
              playbook_start, _ts(begin.start), _ts(begin.end), _ts(promote.start), _ts(promote.end), first_write]
    phases = {name: (round(b - a, 4) if a is not None and b is not None else None)
              for name, a, b in zip(PHASES, points[:-1], points[1:], strict=True)}
    fence = (promote.data.get("fence_result") or {})
    return {"phases": phases, "begin_durations": begin.data.get("durations") or {},
            "promote_seconds": promote.data.get("promote_seconds"), "fence_changed": fence.get("changed"),
            "tasks": len(steps)}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def median(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return round(statistics.median(present), 4) if present else None

    durations = sorted({key for row in rows for key in row["begin_durations"]})
    return {
        "kill_to_first_write_s": median([row["kill_to_first_write_s"] for row in rows]),
        "phases": {name: median([row["phases"][name] for row in rows]) for name in PHASES},
        "begin_durations": {key: median([row["begin_durations"].get(key) for row in rows]) for key in durations},
        "promote_seconds": median([row["promote_seconds"] for row in rows]),
        "lost_writes": sum(row["lost_writes"] for row in rows),
        "acknowledged_by_killed_after_kill": sum(row["acknowledged_by_killed_after_kill"] for row in rows),
        "max_writable_nodes": max(row["max_writable_nodes"] for row in rows),
        "start_modes": sorted({row["start_mode"] for row in rows}),
        "load_1m_median": median([row["load_1m"] for row in rows]),
    }


def _burn() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="ERLMCP_DR_WARM=0: ansible-playbook started cold")
    parser.add_argument("--busy", type=int, default=0, help="CPU-bound processes kept running throughout")
    parser.add_argument("--json", type=Path, help="also write the samples and medians here")
    parser.add_argument("--replication", choices=("asynchronous", "synchronous", "both"), default="asynchronous",
                        help="the lab's replication; both: the runs alternate, medians for each")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-breakdown-", dir="/tmp"))
    root.chmod(0o755)  # the lab runs as its OS user below it
    os.environ["ERLMCP_DR_WARM"] = "0" if args.cold else "1"
    os.environ["ERLMCP_DR_WARM_DIR"] = str(root / "w")  # this benchmark's zygote, stopped at the end
    marks = Marks()
    marks.install()
    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(args.busy)]
    labs = None
    try:
        labs = FreshLab(root)
        for burner in burners:
            burner.start()
        first = one_failover(labs, marks)  # warm: it starts the zygote (what only the first run pays)
        rows = []
        modes = {"asynchronous": [False], "synchronous": [True], "both": [False, True]}[args.replication]
        for _ in range(args.runs):
            for synchronous in modes:
                rows.append(one_failover(labs, marks, synchronous))
                print(json.dumps(rows[-1]), flush=True)
    finally:
        for burner in burners:
            if burner.is_alive():
                burner.terminate()
        from erlmcp_dr.warm import client

        for zygote in client.zygotes(str(root / "w")):
            client.stop(zygote["socket"])
        if labs is not None:
            labs.close()
        shutil.rmtree(root, ignore_errors=True)
    report = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "cold": args.cold,
              "busy": args.busy, "runs": args.runs, "replication": args.replication, "median": summarize(rows),
              "first_run": first, "samples": rows}
    if args.replication == "both":
        report["median_by_replication"] = {mode: summarize([row for row in rows if row["replication"] == mode])
                                           for mode in ("asynchronous", "synchronous")}
    print(json.dumps(report["median"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
