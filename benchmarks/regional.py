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
   Region b's services (the seven of service_recovery) start in one of two states (`--services`, default both, each
   on a fresh lab): warm, already running and healthy before region a is killed (the usual warm-standby region: the
   move's services step finds them healthy and starts nothing), or cold, not running (`lab up` leaves them to the
   runbook: the move starts all seven, each with its start delay). Both numbers are printed and written: cold is
   what a region whose services are down costs, and it is not hidden behind the warm one.
For every composed run, per step run as a child run, its fixed cost (issue 19: <= 0.3 s): the child's start (the
parent's step start -> the child's first task) plus its end (the child's last task -> the parent's step end), the part
of it outside the child run (the parent's time around the step minus the child's own duration), and the steps whose
child starts overlapped its start (the background steps fork beside the steps after them: on 2 cores they share the
CPUs); the summary gives, per kind of run, the median and the largest over the steps, the medians of the steps
started alone and together, and which steps started together (regional_breakdown.step_costs).

The unplanned run's breakdown (where the time from the confirmation to the first write goes): for each step, the
child's start (the parent's step start -> its first task: the run folder, ansible-runner, the guard, the warm
zygote's fork, the playbook parsed), each task (with the timings its module returns: the start's `durations`,
`*_seconds`), the gaps between tasks, the child's end (its last task -> the parent's step end: result.json and the
reports); and the moments a client sees: region b's application accepting a write asked directly (a second writer
on b's own address, no DNS), each authoritative server answering b's address for the public name, the first write
acknowledged through the public name. Each child says whether ansible-playbook was forked by the warm zygote.
Every run is `runbook run` in a process of its own, as an operator starts it (cli_runs.py; until round 20 the runs
were erlmcp_dr.run() in this process, beside the probes' threads, whose interpreter lock they shared: busy, that
made each step's fixed cost about a fifth larger, results/2026-12-07-paired-regional-api-vs-cli-busy.txt).
Before each move one read-only run (region_health) starts the warm zygotes (the CLI's and ansible-playbook's), so
that neither the move nor a step pays their start: the benchmark's zygotes live in a folder of its own
(ERLMCP_DR_WARM_DIR, unless set), stopped at its end.

Writes benchmarks/results/<date>-regional.json and prints a table.

    .venv/bin/python benchmarks/regional.py --runs 2
    .venv/bin/python benchmarks/regional.py --unplanned-only --runs 1          # the breakdown alone
    .venv/bin/python benchmarks/regional.py --unplanned-only --runs 3 base=/tmp/v/base new=.   # paired variants
    .venv/bin/python benchmarks/regional.py --unplanned-only --runs 1 --services cold         # one starting state

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

from erlmcp_dr import paths, regional_probe
from erlmcp_dr.lab import dns as lab_dns
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.lab import regions as lab_regions
from erlmcp_dr.probe import WritersSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))
import regional_breakdown as breakdown  # noqa: E402
from burners import start_burners, stop_burners  # noqa: E402
from cli_runs import cold_starts, run_cli, wait_for_cli_zygote  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
GOALS = {"unplanned_first_write_s_max": 5.0, "planned_gap_vs_floor_max": 2.0, "fixed_cost_per_step_s_max": 0.3}
WRITE_INTERVAL = 0.02
AFTER_TIMEOUT = 120.0  # seconds the client gets to see a write acknowledged after an action
SERVICE_STATES = ("warm", "cold")  # region b's services before the unplanned move: running and healthy, or not

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
    """`runbook run NAME` as an operator runs it (cli_runs.run_cli: in a process of its own, not beside this
    process's probe threads); its result."""
    return run_cli(name, inventory, **extravars)[0]


def warm_up(inventory: Path) -> None:
    """One read-only run (region_health) before a move, so that the move's `runbook` and its child runs find their
    warm zygotes standing, as a controller that ran anything in the last 15 minutes does: their start (seconds, once
    per key and ERLMCP_DR_WARM_DIR, which is the benchmark's own and starts empty) would otherwise be the move's."""
    run_ok("region_health", inventory, regions="b", interval=0.05)
    wait_for_cli_zygote()


def planned_once(cfg: lab.LabConfig, inventory: Path) -> Row:
    warm_up(inventory)

    def move() -> Any:
        return run_ok("regional_failover", inventory, from_region="a", to_region="b", mode="planned",
                      health_interval=0.2)

    result, row = watched(cfg, move, "b")
    lost = regional_probe.missing(cfg, row.pop("writer"), "pg-b", "redis-b")
    row.update(lost_rows=len(lost["rows"]), lost_sessions=len(lost["sessions"]),
               step_costs=breakdown.step_costs(result, paths.state_home() / "runs"))
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


def start_region_services(cfg: lab.LabConfig, region: str) -> None:
    """The warm starting state: `region`'s services started (as its start command does) and healthy, before the move.
    (A service shuts down on lab.down's SIGINT even when this benchmark runs in the background, which ignores SIGINT:
    lab/stop_signals.py; before, lab.down waited 60 s per service, after the measurement.)"""
    from erlmcp_dr.lab import services as lab_services

    region_services = [svc for svc in lab_services.services(cfg) if svc.region == region]
    for svc in region_services:
        lab_services.start(svc.folder, svc.host_name, svc.host, svc.port)
    for svc in region_services:
        lab.wait_for(lambda svc=svc: _healthy(f"{svc.url}/health"), lab_services.START_TIMEOUT, interval=0.05,
                     what=f"{svc.host_name} healthy (warm starting state)")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:  # noqa: S310 - the lab's loopback service
            return response.status == 200
    except Exception:  # noqa: BLE001 - starting (503) or not listening yet: not healthy
        return False


def services_started(result: Any, runs: Path) -> list[str] | None:
    """What the move's services step started (its child's summary): none when the region's services were warm."""
    step = next((step for step in result.steps if step.task.startswith("services:")), None)
    child = breakdown.child_result(runs, ((step.data or {}) if step else {}).get("child_run_id"))
    details = (((child or {}).get("facts") or {}).get("summary") or {}).get("details") or {}
    started = details.get("started")
    return None if started is None else [str(name) for name in started]


def unplanned_once(cfg: lab.LabConfig, inventory: Path, services: str = "cold") -> Row:
    """Region a killed, then regional_failover a -> b; the client's view, and where the time went (the breakdown).
    services: region b's services before the move, "warm" (started and healthy first) or "cold" (not running)."""
    from erlmcp_dr.lab import app as lab_app

    if services == "warm":
        start_region_services(cfg, "b")
    warm_up(inventory)
    to_app = next(app for app in lab_app.apps(cfg) if app.region == "b")
    with regional_probe.PublicNameWriter(cfg, WRITE_INTERVAL) as writer:
        lab.wait_for(lambda: writer.report.first_in("a"), AFTER_TIMEOUT, interval=0.02, what="a write in region a")
        lab_regions.fail_region(cfg, "a")
        with DirectWriter(cfg, to_app.host, WRITE_INTERVAL) as direct, \
                breakdown.DnsWatcher(lab_dns.servers(cfg), regional_probe.PUBLIC_NAME, to_app.host) as dns:
            started = time.time()
            result, stderr = run_cli("regional_failover", inventory, from_region="a", to_region="b",
                                     mode="unplanned", health_interval=0.2)
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
    children = [step for step in result.steps if (step.data or {}).get("child_run_id")]
    cold = cold_starts(stderr)
    return {"services": services, "services_started_by_the_move": services_started(result, runs),
            "confirmed_to_first_write_s": round(first.wall - confirmed_at, 3), "wall_s": result.duration_seconds,
            "recovery_seconds": recovery["recovery_seconds"], "lost": recovery["lost"],
            "step_costs": breakdown.step_costs(result, runs),
            "moments_after_confirmed_s": {key: None if at is None else round(at - confirmed_at, 3)
                                          for key, at in moments.items()},
            "children": {"warm": len(children) - len(cold), "cold": len(cold), "cold_reasons": cold[:3]},
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
        return regional_probe.acknowledged_write(answer)


def summarize(rounds: list[Row]) -> Row:
    out: Row = {"goals": GOALS}
    # Per starting state of region b's services (warm, cold): the times, each state's median and whether it meets.
    unplanned = {state: [r["unplanned"][state]["confirmed_to_first_write_s"] for r in rounds
                         if state in r.get("unplanned", {})] for state in SERVICE_STATES}
    unplanned = {state: values for state, values in unplanned.items() if values}
    meets: Row = {}
    # Per kind of composed run (planned; unplanned with region b's services warm, cold): its steps' fixed costs.
    costs = {kind: breakdown.costs_summary([cost for row in rows for cost in row["step_costs"]])
             for kind, rows in _composed_runs(rounds).items()}
    out["fixed_cost_per_step"] = {kind: summary for kind, summary in costs.items() if summary}
    for kind, summary in out["fixed_cost_per_step"].items():
        meets[f"fixed_cost_per_step_{kind}_median"] = summary["fixed_s_median"] <= GOALS["fixed_cost_per_step_s_max"]
        meets[f"fixed_cost_per_step_{kind}_every_step"] = summary["fixed_s_max"] <= GOALS["fixed_cost_per_step_s_max"]
    if unplanned:
        out["unplanned_confirmed_to_first_write_s"] = unplanned
        out["unplanned_median_s"] = {state: round(statistics.median(v), 3) for state, v in unplanned.items()}
        for state, values in unplanned.items():
            meets[f"unplanned_first_write_{state}"] = all(v <= GOALS["unplanned_first_write_s_max"] for v in values)
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
        # rounds[i]["variants"][name][state]: one move per variant and starting state; ratios pair the same state.
        out["variants"] = {name: {state: _variant_summary([r["variants"][name][state] for r in rounds
                                                           if state in r["variants"].get(name, {})])
                                  for state in SERVICE_STATES
                                  if any(state in r["variants"].get(name, {}) for r in rounds)}
                           for name in variants}
        base = variants[0] if "base" not in variants else "base"
        out["ratio_of_pairs_vs_" + base] = {
            name: {state: round(statistics.median(
                r["variants"][name][state]["confirmed_to_first_write_s"]
                / r["variants"][base][state]["confirmed_to_first_write_s"]
                for r in rounds if state in r["variants"].get(name, {}) and state in r["variants"].get(base, {})), 3)
                for state in out["variants"][name] if state in out["variants"][base]}
            for name in variants if name != base}
    out["meets"] = meets
    return out


def _composed_runs(rounds: list[Row]) -> dict[str, list[Row]]:
    """The rounds' composed runs by kind: planned, unplanned_warm, unplanned_cold (the variants' are summed apart)."""
    kinds = {"planned": [r["planned"] for r in rounds if "planned" in r]}
    for state in SERVICE_STATES:
        kinds[f"unplanned_{state}"] = [r["unplanned"][state] for r in rounds if state in r.get("unplanned", {})]
    return kinds


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
            "fixed_cost_per_step": breakdown.costs_summary([cost for row in rows for cost in row["step_costs"]]),
            "load_1m": [row["load_1m"] for row in rows]}


def table(out: Row) -> str:
    s = out["summary"]
    lines: list[str] = []
    if "planned_gap_s" in s:
        lines.append(f"{'round':6} {'planned gap':>12} {'floor sum':>10} {'ratio':>6} {'lost':>5}")
        for i, gap in enumerate(s["planned_gap_s"]):
            lost = out["rounds"][i]["planned"]["lost_rows"] + out["rounds"][i]["planned"]["lost_sessions"]
            lines.append(f"{i + 1:<6} {gap:>11.2f}s {s['floor_sum_s'][i]:>9.2f}s "
                         f"{s['planned_gap_vs_floor'][i] or 0:>6.2f} {lost:>5}")
        lines.append("floors per system (last round): " + ", ".join(
            f"{name} {row['client_gap_s']:.2f}s" for name, row in out["rounds"][-1]["floors"].items()))
    for state, values in s.get("unplanned_confirmed_to_first_write_s", {}).items():
        lines.append(f"unplanned, region b's services {state}, confirmed -> first write through the public name: "
                     f"{values} s (median {s['unplanned_median_s'][state]} s)")
    for state in SERVICE_STATES:
        last = next((r["unplanned"][state] for r in reversed(out["rounds"]) if state in r.get("unplanned", {})), None)
        if last is None:
            continue
        lines.append(f"breakdown of the last unplanned run, services {state} (load {last['load_1m']}; started by the "
                     f"move: {last['services_started_by_the_move']}; children warm {last['children']['warm']}, cold "
                     f"{last['children']['cold']}); seconds after the confirmation:")
        lines.append(breakdown.print_rows(last["breakdown"]))
        lines.append("moments: " + ", ".join(f"{k} {v}" for k, v in last["moments_after_confirmed_s"].items()))
        lines.append(f"fixed cost per step of that run (seconds):\n{breakdown.print_costs(last['step_costs'])}")
    for name, states in s.get("variants", {}).items():
        for state, summary in states.items():
            median = summary["median_confirmed_to_first_write_s"]
            fixed = summary["fixed_cost_per_step"]
            lines.append(f"variant {name}, services {state}: confirmed -> first write "
                         f"{summary['confirmed_to_first_write_s']} (median {median} s), wall median "
                         f"{summary['median_wall_s']} s, fixed cost per step median {fixed.get('fixed_s_median')} s "
                         f"(max {fixed.get('fixed_s_max')} s), load {summary['load_1m']}")
            lines.append(f"  moments (medians): {summary['median_moments_after_confirmed_s']}")
    for key, value in s.items():
        if key.startswith("ratio_of_pairs_vs_"):
            lines.append(f"{key}: {value}")
    for kind, summary in s["fixed_cost_per_step"].items():
        lines.append(f"fixed cost per step (child start + child end), {kind}: median {summary['fixed_s_median']} s, "
                     f"max {summary['fixed_s_max']} s ({summary['fixed_s_max_step']}); started alone "
                     f"{summary['fixed_s_median_started_alone']} s, started together "
                     f"{summary['fixed_s_median_started_together']} s (median); started together: "
                     + ("; ".join(f"{step} with {', '.join(others)}"
                                  for step, others in summary["started_together"].items()) or "none")
                     + f"; outside the child runs {summary['composition_s_median']} s (median)")
    lines.append(f"goals: {s['goals']}  met: {s['meets']}")
    return "\n".join(lines)


def sample_unplanned(template_root: Path, services: str = "cold") -> Row:
    """One unplanned move on a fresh copy of the template, in this process (ERLMCP_DR_COLLECTION: the variant)."""
    record = json.loads((template_root / lab.TEMPLATE_MARKER).read_text())
    template = lab.LabConfig(root=template_root, port_base=record["port_base"])
    root = Path(tempfile.mkdtemp(prefix="lab-", dir=template_root.parent))
    root.chmod(0o711)
    cfg, inventory = fresh_lab(root, template, 0)
    try:
        return unplanned_once(cfg, inventory, services)
    finally:
        lab.down(cfg)
        shutil.rmtree(root, ignore_errors=True)


def variant_rounds(variants: dict[str, str], runs: int, template_root: Path, states: tuple[str, ...]) -> list[Row]:
    """`runs` rounds, each one unplanned move per starting state and variant (A B A B ...), each in a process of its
    own."""
    rounds: list[Row] = []
    for _ in range(runs):
        row: Row = {"variants": {name: {} for name in variants}}
        for state, (name, spec) in ((state, item) for state in states for item in variants.items()):
            tree, _, start = spec.partition("@")
            env = dict(os.environ, ERLMCP_DR_COLLECTION=str(Path(tree).resolve()),
                       ERLMCP_DR_WARM_DIR=str(template_root.parent / "w"))
            env.pop("ANSIBLE_COLLECTIONS_PATH", None)  # the runner derives it from ERLMCP_DR_COLLECTION
            if start:
                env["ERLMCP_DR_WARM"] = {"cold": "0", "warm": "1"}[start]
            done = subprocess.run([sys.executable, __file__, "--sample", str(template_root), "--services", state],
                                  env=env,
                                  capture_output=True, text=True, timeout=1800, check=False)
            if done.returncode != 0:
                raise SystemExit(f"variant {name} failed:\n{done.stderr[-4000:]}")
            sample = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{name}, services {state}: confirmed -> first write {sample['confirmed_to_first_write_s']} s, "
                  f"wall {sample['wall_s']} s, load {sample['load_1m']}", flush=True)
            row["variants"][name][state] = sample
        rounds.append(row)
    return rounds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", help="name=collection source tree[@cold|@warm]: paired unplanned moves")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--unplanned-only", action="store_true", help="only the unplanned move and its breakdown")
    parser.add_argument("--services", choices=("warm", "cold", "both"), default="both",
                        help="region b's services before the unplanned move: running and healthy (warm), not "
                             "running (cold), or one move of each per round (both, the default)")
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="keep N CPU-bound processes running throughout the moves (results in ...-busy.json)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--sample", type=Path, help=argparse.SUPPRESS)  # internal: one unplanned move, JSON out
    args = parser.parse_args(argv)
    if args.sample:
        print(json.dumps(sample_unplanned(args.sample, "cold" if args.services == "both" else args.services)))
        return 0
    states = SERVICE_STATES if args.services == "both" else (args.services,)
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-bench-regional-", dir="/dev/shm" if os.path.isdir("/dev/shm")
                                 else None))
    root.chmod(0o711)  # the servers run as `postgres`, who must traverse it to reach their own folders
    os.environ.setdefault("ERLMCP_DR_HOME", str(root / "home"))
    # The runs' warm zygotes in a folder of the benchmark's own, which it stops at the end (in the shared default
    # folder they outlived it, up to their idle timeout, and a zygote another process started could serve its runs).
    os.environ.setdefault("ERLMCP_DR_WARM_DIR", str(root / "w"))
    template = lab.LabConfig(root=root / "template", port_base=lab.free_port_base())
    lab.build_template(template)
    rounds: list[Row] = []
    burners = start_burners(args.busy)
    try:
        if args.variants:
            rounds = variant_rounds(dict(item.split("=", 1) for item in args.variants), args.runs, template.root,
                                    states)
        for index in range(0 if args.variants else args.runs):
            rounds.append(local_round(root, template, index, states, planned=not args.unplanned_only))
    finally:
        stop_burners(burners)
        lab.down(template)
        _stop_zygotes(root / "w")
        shutil.rmtree(root, ignore_errors=True)
    out = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
           "runs": args.runs, "variants": args.variants, "services": list(states), "busy_workers": args.busy,
           "rounds": rounds}
    out["summary"] = summarize(rounds)
    suffix = "-regional-variants" if args.variants else "-regional-unplanned" if args.unplanned_only else "-regional"
    suffix += "-busy" if args.busy else ""
    path = args.out or RESULTS_DIR / f"{datetime.date.today().isoformat()}{suffix}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(table(out))
    print(f"wrote {path}")
    return 0


def local_round(root: Path, template: lab.LabConfig, index: int, states: tuple[str, ...], planned: bool) -> Row:
    """One round in this process: the planned move and its floors (unless `planned` is false) on a lab of their own
    (the planned move starts region b's services: a later unplanned move there would always be warm), then one
    unplanned move per starting state, each on a fresh lab."""
    row: Row = {"unplanned": {}}
    labs = (["planned"] if planned else []) + list(states)
    for offset, what in enumerate(labs):
        cfg, inventory = fresh_lab(root, template, index * len(labs) + offset)
        try:
            if what == "planned":
                row["planned"] = planned_once(cfg, inventory)
                row["floors"] = floors_once(cfg, inventory)
            else:
                row["unplanned"][what] = unplanned_once(cfg, inventory, what)
        finally:
            lab.down(cfg)
    row["load_1m"] = round(os.getloadavg()[0], 2)
    return row


def _stop_zygotes(folder: Path) -> None:
    from erlmcp_dr.warm import client

    if folder.is_dir():
        for zygote in client.zygotes(str(folder)):
            client.stop(zygote["socket"])


if __name__ == "__main__":
    sys.exit(main())
