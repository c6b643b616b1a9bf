"""Benchmark (measured, not asserted): regional_failover as a client sees it, on the lab (PostgreSQL, Redis, Knot DNS,
the lab's application), with a client writing through the public name every 20 ms (erlmcp_dr.regional_probe).

Each of `--runs` rounds, on a fresh copy of the lab, alternates:
1. planned: `regional_failover mode=planned a -> b`: the client's longest gap between two acknowledged writes, and
   the acknowledged writes missing afterwards;
2. floors: the three single-system runbooks the planned move is made of, back b -> a, each alone with the same
   client: database_switchover (to pg-a), redis_failover (to redis-a), dns_cutover (region a). The sum of their
   client-observed gaps is the floor the planned gap is compared with (goal: planned <= 2x the floor). They also
   put the service back in region a for step 3;
3. unplanned: region a killed (`runbook lab fail-region a`), then `regional_failover mode=unplanned a -> b`: from
   the end of its confirmation step (the failure confirmed) to the first write acknowledged through the public name
   by region b (goal: <= 5 s; the seeds ask < 10 s).
For every composed run, the fixed cost the composition adds per step: the parent's time around a step minus the
child run's own duration (its result.json).

Writes benchmarks/results/<date>-regional.json and prints a table.

    .venv/bin/python benchmarks/regional.py --runs 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import erlmcp_dr
from erlmcp_dr import lab, lab_dns, lab_regions, paths, regional_probe
from erlmcp_dr.probe import WritersSampler

RESULTS_DIR = Path(__file__).resolve().parent / "results"
GOALS = {"unplanned_first_write_s_max": 5.0, "planned_gap_vs_floor_max": 2.0}
WRITE_INTERVAL = 0.02
AFTER_TIMEOUT = 120.0  # seconds the client gets to see a write acknowledged after an action

Row = dict[str, Any]


def fresh_lab(root: Path, template: lab.LabConfig, index: int) -> tuple[lab.LabConfig, Path]:
    cfg = lab.LabConfig(root=root / f"lab-{index}", port_base=lab.free_port_base())
    lab.clone(template, cfg, app=True)
    lab_dns.up(cfg)
    inventory = lab.write_inventory(cfg, cfg.root / "inventory" / "hosts.yml", own_lock_dir=True)
    return cfg, inventory


def watched(cfg: lab.LabConfig, action: Callable[[], Any], region_after: str) -> tuple[Any, Row]:
    """action() while the client writes through the public name and both samplers watch; the client's view."""
    databases = {node.name: node.conn_params() for node in cfg.nodes}
    with WritersSampler(databases) as pg, regional_probe.RedisPrimariesSampler(cfg) as redis, \
            regional_probe.PublicNameWriter(cfg, WRITE_INTERVAL) as writer:
        started = time.monotonic()
        outcome = action()
        ended = time.monotonic()
        lab.wait_for(lambda: writer.report.first_in(region_after, ended), AFTER_TIMEOUT, interval=0.02,
                     what=f"a write acknowledged by region {region_after} after the action")
    report = writer.report
    return outcome, {"wall_s": round(ended - started, 3), "client_gap_s": round(report.max_gap_seconds, 3),
                     "acknowledged": len(report.acknowledged), "client_errors": report.errors,
                     "max_writable_databases": pg.report.max_writable,
                     "max_redis_primaries": redis.report.max_primaries, "writer": report}


def run_ok(name: str, inventory: Path, **extravars: Any) -> Any:
    result = erlmcp_dr.run(name, inventory=str(inventory), extravars=extravars)
    if not result.succeeded:
        raise SystemExit(f"{name} {extravars} failed: {result.error or result.run_dir}")
    return result


def composition_cost(result: Any) -> dict[str, float]:
    """Per step: the parent's time around the step minus the child run's own duration (seconds)."""
    runs = paths.state_home() / "runs"
    cost: dict[str, float] = {}
    for step in result.steps:
        child = (step.data or {}).get("child_run_id")
        if not child or not (runs / child / "result.json").exists():
            continue
        own = json.loads((runs / child / "result.json").read_text()).get("duration_seconds") or 0.0
        cost[step.task.split(":")[0]] = round(step.duration - float(own), 3)
    return cost


def planned_once(cfg: lab.LabConfig, inventory: Path) -> Row:
    def move() -> Any:
        return run_ok("regional_failover", inventory, from_region="a", to_region="b", mode="planned",
                      health_interval=0.2)

    result, row = watched(cfg, move, "b")
    lost = regional_probe.missing(cfg, row.pop("writer"), "pg-b", "redis-b")
    row.update(lost_rows=len(lost["rows"]), lost_sessions=len(lost["sessions"]),
               composition_cost_s=composition_cost(result))
    return row


def floors_once(cfg: lab.LabConfig, inventory: Path) -> dict[str, Row]:
    floors: dict[str, Row] = {}
    actions = {"database_switchover": {"candidate": "pg-a"},
               "redis_failover": {"candidate": "redis-a", "away_from": "redis-b"},
               "dns_cutover": {"region": "a"}}
    for name, extravars in actions.items():
        _, row = watched(cfg, lambda name=name, extravars=extravars: run_ok(name, inventory, **extravars),
                         "b" if name != "dns_cutover" else "a")
        row.pop("writer")
        floors[name] = row
    return floors


def unplanned_once(cfg: lab.LabConfig, inventory: Path) -> Row:
    with regional_probe.PublicNameWriter(cfg, WRITE_INTERVAL) as writer:
        lab.wait_for(lambda: writer.report.first_in("a"), AFTER_TIMEOUT, interval=0.02, what="a write in region a")
        lab_regions.fail_region(cfg, "a")
        result = run_ok("regional_failover", inventory, from_region="a", to_region="b", mode="unplanned",
                        health_interval=0.2)
        confirmed = next(step for step in result.steps if step.task.startswith("confirm:"))
        confirmed_at = datetime.datetime.fromisoformat(confirmed.end.replace("Z", "+00:00")).timestamp()
        first, _ = lab.wait_for(lambda: next((w for w in writer.report.acknowledged
                                              if w.region == "b" and w.wall >= confirmed_at), None),
                                AFTER_TIMEOUT, interval=0.02, what="a write acknowledged by region b")
    recovery = result.facts["summary"]["details"]["recovery"]
    return {"confirmed_to_first_write_s": round(first.wall - confirmed_at, 3), "wall_s": result.duration_seconds,
            "recovery_seconds": recovery["recovery_seconds"], "lost": recovery["lost"],
            "composition_cost_s": composition_cost(result)}


def summarize(rounds: list[Row]) -> Row:
    planned_gaps = [r["planned"]["client_gap_s"] for r in rounds]
    floor_sums = [round(sum(f["client_gap_s"] for f in r["floors"].values()), 3) for r in rounds]
    ratios = [round(g / f, 2) if f else None for g, f in zip(planned_gaps, floor_sums, strict=True)]
    unplanned = [r["unplanned"]["confirmed_to_first_write_s"] for r in rounds]
    costs = [v for r in rounds for kind in ("planned", "unplanned") for v in r[kind]["composition_cost_s"].values()]
    return {
        "planned_gap_s": planned_gaps, "floor_sum_s": floor_sums, "planned_gap_vs_floor": ratios,
        "planned_lost_writes": sum(r["planned"]["lost_rows"] + r["planned"]["lost_sessions"] for r in rounds),
        "max_writable_databases": max(r["planned"]["max_writable_databases"] for r in rounds),
        "max_redis_primaries": max(r["planned"]["max_redis_primaries"] for r in rounds),
        "unplanned_confirmed_to_first_write_s": unplanned,
        "composition_cost_per_step_s_median": round(statistics.median(costs), 3) if costs else None,
        "goals": GOALS,
        "meets": {"unplanned_first_write": all(v <= GOALS["unplanned_first_write_s_max"] for v in unplanned),
                  "planned_gap_vs_floor": all(r is not None and r <= GOALS["planned_gap_vs_floor_max"]
                                              for r in ratios)},
    }


def table(out: Row) -> str:
    lines = [f"{'round':6} {'planned gap':>12} {'floor sum':>10} {'ratio':>6} {'lost':>5} {'unplanned':>10}"]
    s = out["summary"]
    for i, gap in enumerate(s["planned_gap_s"]):
        lost = out["rounds"][i]["planned"]["lost_rows"] + out["rounds"][i]["planned"]["lost_sessions"]
        lines.append(f"{i + 1:<6} {gap:>11.2f}s {s['floor_sum_s'][i]:>9.2f}s {s['planned_gap_vs_floor'][i] or 0:>6.2f}"
                     f" {lost:>5} {s['unplanned_confirmed_to_first_write_s'][i]:>9.2f}s")
    lines.append("floors per system (last round): " + ", ".join(
        f"{name} {row['client_gap_s']:.2f}s" for name, row in out["rounds"][-1]["floors"].items()))
    lines.append(f"composition cost per step (median): {s['composition_cost_per_step_s_median']} s")
    lines.append(f"goals: {s['goals']}  met: {s['meets']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-bench-regional-", dir="/dev/shm" if os.path.isdir("/dev/shm")
                                 else None))
    os.environ.setdefault("ERLMCP_DR_HOME", str(root / "home"))
    template = lab.LabConfig(root=root / "template", port_base=lab.free_port_base())
    lab.build_template(template)
    rounds: list[Row] = []
    try:
        for index in range(args.runs):
            cfg, inventory = fresh_lab(root, template, index)
            try:
                planned = planned_once(cfg, inventory)
                floors = floors_once(cfg, inventory)
                unplanned = unplanned_once(cfg, inventory)
                rounds.append({"planned": planned, "floors": floors, "unplanned": unplanned,
                               "load_1m": round(os.getloadavg()[0], 2)})
            finally:
                lab.down(cfg)
    finally:
        lab.down(template)
        shutil.rmtree(root, ignore_errors=True)
    out = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
           "runs": args.runs, "rounds": rounds}
    out["summary"] = summarize(rounds)
    path = args.out or RESULTS_DIR / f"{datetime.date.today().isoformat()}-regional.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(table(out))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
