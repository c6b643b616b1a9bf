"""Benchmark (measured, not asserted): round trips a -> b -> a, the way back by `failback`, under two clients, against
the database_switchover floor measured in the same run.

For each of `--rounds` round trips on one lab (application and DNS included):
- region a killed (`lab_regions.fail_region`), `regional_failover` a -> b (unplanned), region a restarted;
- `failback` b -> a (grace period `--grace` seconds) while two clients write every 20 ms: one through the public
  name (resolved at the lab's DNS, written through that region's application: benchmarks/regional.py `watched`,
  the client the issue's goal is about) and one committing through a multi-host libpq connection
  (target_session_attrs=read-write); samplers ask every database node (every 10 ms) and every Redis node whether
  they take writes;
- then the floor, with the same two clients: `database_switchover` pg-a -> pg-b and back pg-b -> pg-a, alone (the
  planned database hand-over failback is built around). The floor is the switchover back to pg-a (the same
  hand-over as failback's, into the same node); the ratio failback gap / floor is the issue's goal (<= 1.5x).
Recorded per round: failback's wall time, each client's longest stretch without an acknowledged write (the write
gap) during failback and during each switchover, acknowledged writes missing afterwards (must be 0), the most
writable databases and Redis primaries seen at one sample (must be 1), how the old region's database rejoined
(pg_rewind or re-clone) and the bytes it copied.

Writes benchmarks/results/<date>-failback.json and prints a table (`--json`: the JSON instead).

    .venv/bin/python benchmarks/failback.py --rounds 3
    .venv/bin/python benchmarks/failback.py --rounds 20     # the issue's 20 round trips, on a quiet machine
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from regional import run_ok, watched  # noqa: E402  (the floors' measurement, shared with the regional benchmark)
from runbook_helpers import inventory_path, new_lab, plain_connect  # noqa: E402

import erlmcp_dr  # noqa: E402
from erlmcp_dr import regional_probe  # noqa: E402
from erlmcp_dr.lab import lifecycle as lab  # noqa: E402
from erlmcp_dr.lab import regions as lab_regions  # noqa: E402
from erlmcp_dr.probe import WriteProbe, multi_host_conninfo  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CLIENT_INTERVAL = 0.02  # the client: one write every 20 ms
GOAL_GAP_VS_FLOOR = 1.5  # issue 18: failback's client-observed write gap <= 1.5x the switchover floor


def measured(cfg: lab.LabConfig, action: Any, region_after: str) -> tuple[Any, dict[str, Any]]:
    """action() under both clients: the public-name writer (regional.watched, with the database and Redis samplers)
    and the multi-host libpq committer; what each saw, and what the serving database or Redis lack afterwards."""
    endpoints = [("127.0.0.1", node.port) for node in cfg.nodes]
    conninfo = multi_host_conninfo(endpoints, lab.SUPERUSER, lab.LAB_PASSWORD)
    with WriteProbe(conninfo, interval=CLIENT_INTERVAL) as probe:
        outcome, row = watched(cfg, action, region_after)
    writer = row.pop("writer")
    lost = regional_probe.missing(cfg, writer, f"pg-{region_after}", f"redis-{region_after}")
    with plain_connect(cfg, f"pg-{region_after}") as conn:
        missing = probe.missing_on(conn)
    row.update(public_name_gap_s=row.pop("client_gap_s"), lost_rows=len(lost["rows"]),
               lost_sessions=len(lost["sessions"]), libpq_gap_s=round(probe.report.max_gap_seconds, 4),
               libpq_committed=len(probe.report.committed), libpq_lost=len(missing))
    return outcome, row


def floor(cfg: lab.LabConfig, inventory: Path) -> dict[str, Any]:
    """database_switchover alone, away from pg-a and back (region a's application serves throughout)."""
    _, away = measured(cfg, lambda: run_ok("database_switchover", inventory, candidate="pg-b"), "a")
    _, back = measured(cfg, lambda: run_ok("database_switchover", inventory, candidate="pg-a"), "a")
    return {"away_to_pg_b": away, "back_to_pg_a": back}


def round_trip(cfg: lab.LabConfig, inventory: Path, grace: float) -> dict[str, Any]:
    lab_regions.fail_region(cfg, "a")
    away = erlmcp_dr.run("regional_failover", inventory=inventory, extravars={
        "from_region": "a", "to_region": "b", "mode": "unplanned", "health_interval": 0.2})
    if not away.succeeded:
        return {"ok": False, "failed": "regional_failover", "error": away.error}
    lab_regions.restore_region(cfg, "a")
    back, row = measured(cfg, lambda: erlmcp_dr.run("failback", inventory=inventory, extravars={
        "from_region": "b", "to_region": "a", "grace_seconds": grace, "grace_interval": 0.2, "grace_wait": 60}), "a")
    details = back.summary.get("details") or {}
    result = {"ok": back.succeeded, "error": back.error or None, "load_average": os.getloadavg(),
              "runbook_s": back.duration_seconds, **row,
              "write_gap_s": row["public_name_gap_s"], "lost": row["lost_rows"] + row["lost_sessions"]
              + row["libpq_lost"], "rejoin": details.get("rejoin"),
              "steps": {step["step"]: step["duration"] for step in details.get("steps") or []}}
    if not back.succeeded:
        return result
    try:
        result["floor"] = floor(cfg, inventory)
    except SystemExit as exc:  # run_ok's refusal: recorded, the round trips stop (the lab is not where it should be)
        result.update(ok=False, error=f"the floor: {exc}")
        return result
    floor_gap = result["floor"]["back_to_pg_a"]["public_name_gap_s"]
    result["floor_gap_s"] = floor_gap
    result["gap_vs_floor"] = round(result["write_gap_s"] / floor_gap, 2) if floor_gap else None
    return result


def summarize(rounds: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    done = [r for r in rounds if r["ok"]]
    gaps = [r["write_gap_s"] for r in done]
    ratios = [r["gap_vs_floor"] for r in done if r.get("gap_vs_floor") is not None]
    return {
        "date": datetime.date.today().isoformat(), "rounds_asked": args.rounds, "rounds_completed": len(done),
        "client_interval_s": CLIENT_INTERVAL, "grace_s": args.grace, "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "lost_writes_total": sum(r["lost"] for r in done),
        "max_writable_nodes": max((r["max_writable_databases"] for r in done), default=None),
        "max_redis_primaries": max((r["max_redis_primaries"] for r in done), default=None),
        "rejoin_methods": sorted({(r["rejoin"] or {}).get("method") for r in done}),
        "write_gap_s_median": statistics.median(gaps) if gaps else None, "write_gap_s_max": max(gaps, default=None),
        "floor_gap_s_median": statistics.median(r["floor_gap_s"] for r in done) if done else None,
        "gap_vs_floor": ratios, "gap_vs_floor_median": statistics.median(ratios) if ratios else None,
        "goal_gap_vs_floor_max": GOAL_GAP_VS_FLOOR,
        "meets_goal": bool(ratios) and all(ratio <= GOAL_GAP_VS_FLOOR for ratio in ratios),
        "failback_wall_s_median": statistics.median(r["wall_s"] for r in done) if done else None,
        "rounds": rounds,
    }


def print_table(result: dict[str, Any], out: Path) -> None:
    header = ("round", "ok", "wall s", "gap s", "floor s", "ratio", "lost", "writers", "rejoin", "bytes")
    print("{:>5} {:>3} {:>7} {:>6} {:>7} {:>5} {:>4} {:>7} {:>8} {:>10}".format(*header))
    for index, r in enumerate(result["rounds"], 1):
        rejoin = r.get("rejoin") or {}
        print(f"{index:>5} {str(r['ok'])[0]:>3} {r.get('wall_s', 0):>7.1f} {r.get('write_gap_s', 0):>6.2f} "
              f"{r.get('floor_gap_s') or 0:>7.2f} {r.get('gap_vs_floor') or 0:>5.2f} {r.get('lost', '-'):>4} "
              f"{r.get('max_writable_databases', '-'):>7} {rejoin.get('method', '-'):>8} "
              f"{rejoin.get('copied_bytes', '-'):>10}")
    print(f"gap vs floor (median) {result['gap_vs_floor_median']} (goal <= {GOAL_GAP_VS_FLOOR}): "
          f"{'met' if result['meets_goal'] else 'NOT met'}")
    print(f"written {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--grace", type=float, default=1.0, help="failback's grace period, seconds")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / f"{datetime.date.today().isoformat()}-failback.json")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("ERLMCP_DR_HOME", tempfile.mkdtemp(prefix="failback-bench-"))  # runs, locks, grace history
    rounds: list[dict[str, Any]] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with new_lab(app=True, dns=True) as cfg:
        inventory = inventory_path(cfg)
        for _ in range(args.rounds):
            rounds.append(round_trip(cfg, inventory, args.grace))
            # rewritten after every round: a run cut short still leaves the rounds it measured
            args.out.write_text(json.dumps(summarize(rounds, args), indent=2) + "\n")
            if not rounds[-1]["ok"]:
                break
    result = summarize(rounds, args)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result, args.out)
    return 0 if result["rounds_completed"] == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())
