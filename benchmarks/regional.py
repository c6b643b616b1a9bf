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

The unplanned run's breakdown (where the time from the confirmation to the first write goes): for each step, the
child's start (the parent's step start -> its first task: the run folder, ansible-runner, the guard, the warm
zygote's fork, the playbook parsed), each task (with the timings its module returns: the start's `durations`,
`*_seconds`), the gaps between tasks, the child's end (its last task -> the parent's step end: result.json and the
reports); and the moments a client sees: region b's application accepting a write asked directly (a second writer
on b's own address, no DNS), each authoritative server answering b's address for the public name, the first write
acknowledged through the public name. Each child says whether ansible-playbook was forked by the warm zygote.

Writes benchmarks/results/<date>-regional.json and prints a table.

    .venv/bin/python benchmarks/regional.py --runs 2
    .venv/bin/python benchmarks/regional.py --unplanned-only --runs 1          # the breakdown alone
    .venv/bin/python benchmarks/regional.py --unplanned-only --runs 3 base=/tmp/v/base new=.   # paired variants

Variants (`name=<collection source tree>[@cold|@warm]`, as in paired_variants.py): each round runs one unplanned
move per variant, alternating (A B A B ...), each in a process of its own with ERLMCP_DR_COLLECTION naming the tree;
the composition engine is this checkout's, the playbooks (the workflow's data) and plugins are the variant's.
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
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import erlmcp_dr
from erlmcp_dr import paths, regional_probe
from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import regions as lab_regions
from erlmcp_dr.probe import WritersSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
import regional_breakdown as breakdown  # noqa: E402

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
    """Region a killed, then regional_failover a -> b; the client's view, and where the time went (the breakdown)."""
    from erlmcp_dr.lab import app as lab_app

    to_app = next(app for app in lab_app.apps(cfg) if app.region == "b")
    with regional_probe.PublicNameWriter(cfg, WRITE_INTERVAL) as writer:
        lab.wait_for(lambda: writer.report.first_in("a"), AFTER_TIMEOUT, interval=0.02, what="a write in region a")
        lab_regions.fail_region(cfg, "a")
        with DirectWriter(cfg, to_app.host, WRITE_INTERVAL) as direct, \
                breakdown.DnsWatcher(lab_dns.servers(cfg), regional_probe.PUBLIC_NAME, to_app.host) as dns, \
                breakdown.StartModes() as starts:
            started = time.time()
            result = run_ok("regional_failover", inventory, from_region="a", to_region="b", mode="unplanned",
                            health_interval=0.2)
            confirmed = next(step for step in result.steps if step.task.startswith("confirm:"))
            confirmed_at = breakdown.epoch(confirmed.end)
            assert confirmed_at is not None
            first, _ = lab.wait_for(lambda: next((w for w in writer.report.acknowledged
                                                  if w.region == "b" and w.wall >= confirmed_at), None),
                                    AFTER_TIMEOUT, interval=0.02, what="a write acknowledged by region b")
    recovery = result.facts["summary"]["details"]["recovery"]
    runs = paths.state_home() / "runs"
    serves = next((w.wall for w in direct.report.acknowledged if w.wall >= confirmed_at), None)
    moments = {  # seconds after the confirmation
        "run_started": started, "target_app_accepts_direct_write": serves,
        "app_redis_config_written": breakdown.task_end(result, runs, "redis", "erlmcp.dr.app_redis_config"),
        "app_db_config_written": breakdown.task_end(result, runs, "database", "erlmcp.dr.app_db_config"),
        **{f"dns_{name}_answers_target": at for name, at in dns.first.items()},
        "first_write_through_public_name": first.wall}
    rows = breakdown.run_rows(result, runs, confirmed_at, from_step="declare")
    return {"confirmed_to_first_write_s": round(first.wall - confirmed_at, 3), "wall_s": result.duration_seconds,
            "recovery_seconds": recovery["recovery_seconds"], "lost": recovery["lost"],
            "composition_cost_s": composition_cost(result),
            "moments_after_confirmed_s": {key: None if at is None else round(at - confirmed_at, 3)
                                          for key, at in moments.items()},
            "children": {"warm": starts.warm, "cold": len(starts.cold), "cold_reasons": starts.cold[:3]},
            "breakdown": rows, "load_1m": round(os.getloadavg()[0], 2)}


class DirectWriter(regional_probe.PublicNameWriter):
    """The same writes, to one region's application by its own address (no DNS): when that region serves."""

    def __init__(self, cfg: lab.LabConfig, address: str, interval: float) -> None:
        super().__init__(cfg, interval)
        self.address = address

    def _write_once(self) -> regional_probe.AcknowledgedWrite | None:
        try:
            request = urllib.request.Request(f"http://{self.address}:{self.port}/write", method="POST",
                                             data=json.dumps({"note": "direct writer"}).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=regional_probe.HTTP_TIMEOUT) as response:  # noqa: S310
                answer = json.loads(response.read())
        except Exception:  # noqa: BLE001 - not accepted (yet): counted as an error, like the public-name writer's
            return None
        if not isinstance(answer, dict) or "id" not in answer:
            return None
        return regional_probe.AcknowledgedWrite(row_id=int(answer["id"]), session_key=str(answer.get("session_key")),
                                                region=str(answer.get("region")), database=answer.get("database"),
                                                redis=answer.get("redis"), at=time.monotonic(), wall=time.time())


def summarize(rounds: list[Row]) -> Row:
    out: Row = {"goals": GOALS}
    unplanned = [r["unplanned"]["confirmed_to_first_write_s"] for r in rounds if "unplanned" in r]
    costs = [v for r in rounds for kind in ("planned", "unplanned") if kind in r
             for v in r[kind]["composition_cost_s"].values()]
    out["composition_cost_per_step_s_median"] = round(statistics.median(costs), 3) if costs else None
    meets: Row = {}
    if unplanned:
        out["unplanned_confirmed_to_first_write_s"] = unplanned
        meets["unplanned_first_write"] = all(v <= GOALS["unplanned_first_write_s_max"] for v in unplanned)
    if all("planned" in r for r in rounds) and rounds:
        planned_gaps = [r["planned"]["client_gap_s"] for r in rounds]
        floor_sums = [round(sum(f["client_gap_s"] for f in r["floors"].values()), 3) for r in rounds]
        ratios = [round(g / f, 2) if f else None for g, f in zip(planned_gaps, floor_sums, strict=True)]
        out.update({
            "planned_gap_s": planned_gaps, "floor_sum_s": floor_sums, "planned_gap_vs_floor": ratios,
            "planned_lost_writes": sum(r["planned"]["lost_rows"] + r["planned"]["lost_sessions"] for r in rounds),
            "max_writable_databases": max(r["planned"]["max_writable_databases"] for r in rounds),
            "max_redis_primaries": max(r["planned"]["max_redis_primaries"] for r in rounds)})
        meets["planned_gap_vs_floor"] = all(r is not None and r <= GOALS["planned_gap_vs_floor_max"] for r in ratios)
    variants = sorted({name for r in rounds for name in r.get("variants", {})})
    if variants:
        out["variants"] = {name: _variant_summary([r["variants"][name] for r in rounds if name in r["variants"]])
                           for name in variants}
        base = variants[0] if "base" not in variants else "base"
        out["ratio_of_pairs_vs_" + base] = {
            name: round(statistics.median(r["variants"][name]["confirmed_to_first_write_s"]
                                          / r["variants"][base]["confirmed_to_first_write_s"]
                                          for r in rounds if name in r["variants"] and base in r["variants"]), 3)
            for name in variants if name != base}
    out["meets"] = meets
    return out


def _variant_summary(rows: list[Row]) -> Row:
    def median(key: str) -> float | None:
        values = [row[key] for row in rows if row.get(key) is not None]
        return round(statistics.median(values), 3) if values else None

    moments: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.get("moments_after_confirmed_s", {}).items():
            if value is not None:
                moments.setdefault(key, []).append(value)
    return {"confirmed_to_first_write_s": [row["confirmed_to_first_write_s"] for row in rows],
            "median_confirmed_to_first_write_s": median("confirmed_to_first_write_s"),
            "median_wall_s": median("wall_s"),
            "median_moments_after_confirmed_s": {key: round(statistics.median(values), 3)
                                                 for key, values in sorted(moments.items())},
            "median_composition_cost_per_step_s": round(statistics.median(
                [v for row in rows for v in row["composition_cost_s"].values()]), 3),
            "load_1m": [row["load_1m"] for row in rows]}


def table(out: Row) -> str:
    s = out["summary"]
    lines: list[str] = []
    if "planned_gap_s" in s:
        lines.append(f"{'round':6} {'planned gap':>12} {'floor sum':>10} {'ratio':>6} {'lost':>5} {'unplanned':>10}")
        for i, gap in enumerate(s["planned_gap_s"]):
            lost = out["rounds"][i]["planned"]["lost_rows"] + out["rounds"][i]["planned"]["lost_sessions"]
            lines.append(f"{i + 1:<6} {gap:>11.2f}s {s['floor_sum_s'][i]:>9.2f}s "
                         f"{s['planned_gap_vs_floor'][i] or 0:>6.2f} {lost:>5} "
                         f"{s['unplanned_confirmed_to_first_write_s'][i]:>9.2f}s")
        lines.append("floors per system (last round): " + ", ".join(
            f"{name} {row['client_gap_s']:.2f}s" for name, row in out["rounds"][-1]["floors"].items()))
    last = next((r["unplanned"] for r in reversed(out["rounds"]) if "unplanned" in r), None)
    if last is not None:
        lines.append(f"unplanned, confirmed -> first write through the public name: "
                     f"{s['unplanned_confirmed_to_first_write_s']} s")
        lines.append(f"breakdown of the last unplanned run (load {last['load_1m']}; children warm "
                     f"{last['children']['warm']}, cold {last['children']['cold']}); seconds after the confirmation:")
        lines.append(breakdown.print_rows(last["breakdown"]))
        lines.append("moments: " + ", ".join(f"{k} {v}" for k, v in last["moments_after_confirmed_s"].items()))
    for name, summary in s.get("variants", {}).items():
        lines.append(f"variant {name}: confirmed -> first write {summary['confirmed_to_first_write_s']} "
                     f"(median {summary['median_confirmed_to_first_write_s']} s), wall median "
                     f"{summary['median_wall_s']} s, composition cost per step "
                     f"{summary['median_composition_cost_per_step_s']} s, load {summary['load_1m']}")
        lines.append(f"  moments (medians): {summary['median_moments_after_confirmed_s']}")
    for key, value in s.items():
        if key.startswith("ratio_of_pairs_vs_"):
            lines.append(f"{key}: {value}")
    lines.append(f"composition cost per step (median): {s['composition_cost_per_step_s_median']} s")
    lines.append(f"goals: {s['goals']}  met: {s['meets']}")
    return "\n".join(lines)


def sample_unplanned(template_root: Path) -> Row:
    """One unplanned move on a fresh copy of the template, in this process (ERLMCP_DR_COLLECTION: the variant)."""
    record = json.loads((template_root / lab.TEMPLATE_MARKER).read_text())
    template = lab.LabConfig(root=template_root, port_base=record["port_base"])
    root = Path(tempfile.mkdtemp(prefix="lab-", dir=template_root.parent))
    root.chmod(0o711)
    cfg, inventory = fresh_lab(root, template, 0)
    try:
        return unplanned_once(cfg, inventory)
    finally:
        lab.down(cfg)
        shutil.rmtree(root, ignore_errors=True)


def variant_rounds(variants: dict[str, str], runs: int, template_root: Path) -> list[Row]:
    """`runs` rounds, each one unplanned move per variant (A B A B ...), each in a process of its own."""
    rounds: list[Row] = []
    for _ in range(runs):
        row: Row = {"variants": {}}
        for name, spec in variants.items():
            tree, _, start = spec.partition("@")
            env = dict(os.environ, ERLMCP_DR_COLLECTION=str(Path(tree).resolve()),
                       ERLMCP_DR_WARM_DIR=str(template_root.parent / "w"))
            env.pop("ANSIBLE_COLLECTIONS_PATH", None)  # the runner derives it from ERLMCP_DR_COLLECTION
            if start:
                env["ERLMCP_DR_WARM"] = {"cold": "0", "warm": "1"}[start]
            done = subprocess.run([sys.executable, __file__, "--sample", str(template_root)], env=env,
                                  capture_output=True, text=True, timeout=1800, check=False)
            if done.returncode != 0:
                raise SystemExit(f"variant {name} failed:\n{done.stderr[-4000:]}")
            sample = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{name}: confirmed -> first write {sample['confirmed_to_first_write_s']} s, wall "
                  f"{sample['wall_s']} s, load {sample['load_1m']}", flush=True)
            row["variants"][name] = sample
        rounds.append(row)
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", help="name=collection source tree[@cold|@warm]: paired unplanned moves")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--unplanned-only", action="store_true", help="only the unplanned move and its breakdown")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--sample", type=Path, help=argparse.SUPPRESS)  # internal: one unplanned move, JSON out
    args = parser.parse_args(argv)
    if args.sample:
        print(json.dumps(sample_unplanned(args.sample)))
        return 0
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-bench-regional-", dir="/dev/shm" if os.path.isdir("/dev/shm")
                                 else None))
    root.chmod(0o711)  # the servers run as `postgres`, who must traverse it to reach their own folders
    os.environ.setdefault("ERLMCP_DR_HOME", str(root / "home"))
    template = lab.LabConfig(root=root / "template", port_base=lab.free_port_base())
    lab.build_template(template)
    rounds: list[Row] = []
    try:
        if args.variants:
            rounds = variant_rounds(dict(item.split("=", 1) for item in args.variants), args.runs, template.root)
        for index in range(0 if args.variants else args.runs):
            cfg, inventory = fresh_lab(root, template, index)
            try:
                row: Row = {}
                if not args.unplanned_only:
                    row["planned"] = planned_once(cfg, inventory)
                    row["floors"] = floors_once(cfg, inventory)
                row["unplanned"] = unplanned_once(cfg, inventory)
                row["load_1m"] = round(os.getloadavg()[0], 2)
                rounds.append(row)
            finally:
                lab.down(cfg)
    finally:
        lab.down(template)
        _stop_zygotes(root / "w")
        shutil.rmtree(root, ignore_errors=True)
    out = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
           "runs": args.runs, "variants": args.variants, "rounds": rounds}
    out["summary"] = summarize(rounds)
    suffix = "-regional-variants" if args.variants else "-regional-unplanned" if args.unplanned_only else "-regional"
    path = args.out or RESULTS_DIR / f"{datetime.date.today().isoformat()}{suffix}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(table(out))
    print(f"wrote {path}")
    return 0


def _stop_zygotes(folder: Path) -> None:
    from erlmcp_dr.warm import client

    if folder.is_dir():
        for zygote in client.zygotes(str(folder)):
            client.stop(zygote["socket"])


if __name__ == "__main__":
    sys.exit(main())
