"""Benchmark (measured, not asserted): the switchover as a writing client sees it, against Patroni.

One run, alternating, for each of `--runs` rounds:
- erlmcp: the database_switchover runbook (erlmcp_dr.run, all of Ansible included) on a lab of its own,
- patroni: `patronictl switchover` on a three-member Patroni cluster (raft, ttl 30 / loop_wait 10, the
  lab's PostgreSQL settings), when `--with-patroni` (its virtualenv is built the first time),
- floor: a bare fast stop of the primary + pg_promote() + poll, on the lab,
- erlmcp_failover: kill -9 of the primary's postmaster, then the database_failover runbook at once.
Each with the same client committing every 10 ms through a multi-host libpq connection
(target_session_attrs=read-write) and a sampler asking every node whether it takes writes.
Also a run's fixed cost (the `runbook` process's start -> its first task, its last task -> its exit) and the cost
of one task, through `runbook run` with its warm start: task_overhead.

Writes benchmarks/results/<date>-switchover.json and prints a table (`--json`: the JSON instead). `--busy N` keeps
N CPU-bound processes running throughout, so every tool meets the same busy machine (results in
<date>-switchover-busy.json).

    make bench            # or: .venv/bin/python benchmarks/switchover.py --runs 5 --with-patroni
    make bench-busy       # the same with --busy 4
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

import erlmcp_dr
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.paths import ensure_collection_importable
from erlmcp_dr.probe import WriteProbe, WritersSampler, multi_host_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_patroni  # noqa: E402
from burners import start_burners, stop_burners  # noqa: E402
from cli_runs import RUNBOOK, wait_for_cli_zygote  # noqa: E402
from fresh_lab import FreshLab  # noqa: E402

ensure_collection_importable()
from ansible_collections.erlmcp.dr.plugins.module_utils._common.wait import wait_for  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
NOOP_TASKS = 10
GOALS = {"unavailable_vs_floor_max": 1.5, "wall_vs_patroni_max": 0.6, "task_overhead_s_max": 0.150,
         "failover_unavailable_s_max": 1.5, "fixed_cost_s_max": 0.25}
# Issue 19 (the warm start): the fixed cost (start -> first task plus last task -> exit), the switchover's wall
# against Patroni's, and the failover's kill -9 -> first acknowledged write, quiet and busy (`--busy`).
GOALS_WARM = {"fixed_cost_total_s_max": 0.25, "wall_vs_patroni_max": 0.35, "failover_unavailable_s_max_quiet": 0.6,
              "failover_unavailable_s_max_busy": 1.0}

Run = dict[str, Any]


def _conninfo(endpoints: list[tuple[str, int]]) -> str:
    return multi_host_conninfo(endpoints, lab.SUPERUSER, lab.LAB_PASSWORD)


def _lab_conninfo(cfg: lab.LabConfig) -> str:
    return _conninfo([("127.0.0.1", n.port) for n in cfg.nodes])


def _primary_and_standby(cfg: lab.LabConfig) -> tuple[str, str]:
    status = lab.status(cfg)
    standbys = sorted(r["name"] for r in status["nodes"] if r["role"] == "standby")
    return status["primary"], standbys[0]


@contextmanager
def _watched(conninfo: str, nodes: dict[str, dict[str, Any]]) -> Iterator[tuple[WriteProbe, WritersSampler]]:
    with WriteProbe(conninfo) as probe, WritersSampler(nodes) as sampler:
        yield probe, sampler


def _measure(conninfo: str, nodes: dict[str, dict[str, Any]], action: Callable[[], None]) -> Run:
    """Run action() while the probe writes and the sampler watches; the client's view of it."""
    load = os.getloadavg()[0]
    with _watched(conninfo, nodes) as (probe, sampler):
        started = time.monotonic()
        action()
        wall = time.monotonic() - started
        wait_for(lambda: probe.report.commit_times and probe.report.commit_times[-1] > started + wall,
                 timeout=60, interval=0.01, what="a commit after the change")
    with psycopg.connect(conninfo) as conn:
        lost = len(probe.missing_on(conn))
    return {"unavailable_s": round(probe.report.max_gap_seconds, 4), "wall_s": round(wall, 4), "lost_writes": lost,
            "max_writable_nodes": sampler.report.max_writable, "client_errors": probe.report.errors,
            "load_1m": round(load, 2)}


def erlmcp_once(labs: FreshLab) -> Run:
    cfg, inventory = labs.reset(), labs.inventory
    _, candidate = _primary_and_standby(cfg)

    def action() -> None:
        result = erlmcp_dr.run("database_switchover", inventory=str(inventory), extravars={"candidate": candidate})
        if not result.succeeded:
            raise SystemExit(f"database_switchover failed: {result.run_dir}")

    return _measure(_lab_conninfo(cfg), {n.name: n.conn_params() for n in cfg.nodes}, action)


def failover_once(labs: FreshLab) -> Run:
    """Unplanned: kill -9 the primary's postmaster, then database_failover at once (trigger -> writes back)."""
    cfg, inventory = labs.reset(), labs.inventory
    primary, _ = _primary_and_standby(cfg)

    def action() -> None:
        pid = cfg.node(primary).server().postmaster_pid()
        if pid is None:
            raise SystemExit(f"no postmaster pid for {primary}")
        os.kill(pid, signal.SIGKILL)
        result = erlmcp_dr.run("database_failover", inventory=str(inventory))
        if not result.succeeded:
            raise SystemExit(f"database_failover failed: {result.run_dir}")

    return _measure(_lab_conninfo(cfg), {n.name: n.conn_params() for n in cfg.nodes}, action)


def floor_once(labs: FreshLab) -> Run:
    """The floor: stop the primary fast, pg_promote() a standby, poll until it takes writes."""
    cfg = labs.reset()
    primary, candidate = _primary_and_standby(cfg)

    def action() -> None:
        cfg.node(primary).server().stop(mode="fast")
        with psycopg.connect(**cfg.node(candidate).conn_params(), autocommit=True) as conn:
            conn.execute("SELECT pg_promote(wait => false)")
            wait_for(lambda: not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0], timeout=60,
                     interval=0.01, what="promotion")

    return _measure(_lab_conninfo(cfg), {n.name: n.conn_params() for n in cfg.nodes}, action)


def patroni_once(cluster: peer_patroni.PatroniCluster) -> Run:
    cluster.wait_healthy()
    leader = cluster.leader()
    candidate = sorted(m.name for m in cluster.members if m.name != leader)[0]

    def action() -> None:
        done = cluster.switchover(candidate)
        if done.returncode != 0:
            raise SystemExit(f"patronictl switchover failed (rc={done.returncode}): {done.stdout}{done.stderr}")

    conninfo = _conninfo([("127.0.0.1", m.pg_port) for m in cluster.members])
    return _measure(conninfo, {m.name: m.conn_params() for m in cluster.members}, action)


def _noop_runbook(name: str, tasks: list[dict[str, Any]]) -> str:
    """A runbook (metadata + tasks) the `runbook` CLI runs from ERLMCP_DR_PLAYBOOKS: JSON is YAML."""
    meta = {"title": name, "summary": "Fixed-cost probe of benchmarks/switchover.py.", "confirm": False,
            "parameters": {}}
    return json.dumps([{"name": name, "hosts": "localhost", "gather_facts": False, "vars": {"runbook": meta},
                        "tasks": tasks}])


def _cli_run(name: str, inventory: Path, env: dict[str, str]) -> dict[str, float]:
    """One `runbook run` process, as an operator starts it; from its result: the process's start to the first task's
    start, the last task's end to the process's exit, and the wall."""
    started = time.time()
    done = subprocess.run([str(RUNBOOK), "run", name, "-i", str(inventory), "--yes",
                           "--json"], env=env, capture_output=True, text=True, timeout=300, check=False)
    ended = time.time()
    if done.returncode != 0:
        raise SystemExit(f"runbook run {name} failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
    steps = [s for s in json.loads(done.stdout)["steps"] if s.get("start") and s.get("end")]
    first = min(_stamp(s["start"]) for s in steps)
    last = max(_stamp(s["end"]) for s in steps)
    return {"start_s": first - started, "end_s": ended - last, "wall_s": ended - started}


def _stamp(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def task_overhead(cfg: lab.LabConfig, inventory: Path, folder: Path, repeats: int = 3) -> dict[str, Any]:
    """The fixed cost of a run and the cost of one task, as an operator's `runbook run` pays them (the CLI, the
    runner, the guard and the warm start, as configured: ERLMCP_DR_WARM), medians of `repeats` runs:
    `runbook_start_to_first_task_s` and `last_task_to_exit_s` of a one-task runbook (issue 19's fixed cost; each
    sample in `fixed_cost_samples`), and per
    task the difference between runbooks of 1 + NOOP_TASKS and of 1 task, divided by NOOP_TASKS: a no-op shipped
    module (ansible.builtin.ping on localhost), and the erlmcp.dr step the runbooks repeat most
    (erlmcp.dr.pg_replication_info reading every lab node, run in the controller). Until round 10 these were
    timed on a bare `ansible-playbook` started cold (`playbook_start_s`): never the warm path."""
    read = {"nodes": [{"name": n.name, "host": "127.0.0.1", "port": n.port} for n in cfg.nodes],
            "login_user": lab.SUPERUSER, "login_password": lab.LAB_PASSWORD}
    ping = {"name": "ping", "ansible.builtin.ping": {}}
    tasks = {"ping": ping, "pg_replication_info": {"name": "read", "erlmcp.dr.pg_replication_info": read}}
    books = folder / "fixed-cost-books"
    books.mkdir(exist_ok=True)
    (books / "fixed_one.yml").write_text(_noop_runbook("fixed_one", [ping]))
    for name, task in tasks.items():
        (books / f"fixed_{name}.yml").write_text(_noop_runbook(f"fixed_{name}", [ping] + [task] * NOOP_TASKS))
    env = dict(os.environ, ERLMCP_DR_PLAYBOOKS=str(books), ERLMCP_DR_HOME=str(folder / "fixed-cost-home"))
    _cli_run("fixed_one", inventory, env)  # a first run starts the zygotes when there are none: not what a run pays
    wait_for_cli_zygote(env)
    one = [_cli_run("fixed_one", inventory, env) for _ in range(repeats)]
    out: dict[str, Any] = {
        "runbook_start_to_first_task_s": round(statistics.median(r["start_s"] for r in one), 3),
        "last_task_to_exit_s": round(statistics.median(r["end_s"] for r in one), 3),
        "warm": os.environ.get("ERLMCP_DR_WARM", "1").strip() != "0",
        "repeats": repeats,
        "fixed_cost_samples": [{"start_s": r["start_s"], "end_s": r["end_s"]} for r in one],
    }
    base = statistics.median(r["wall_s"] for r in one)
    for name in tasks:
        full = statistics.median(_cli_run(f"fixed_{name}", inventory, env)["wall_s"] for _ in range(repeats))
        out[f"{name}_per_task_s"] = round((full - base) / NOOP_TASKS, 3)
    return out


def summarize(runs: dict[str, list[Run]], overhead: dict[str, Any], busy: bool = False) -> dict[str, Any]:
    tools: dict[str, Any] = {}
    for tool, rows in runs.items():
        if not rows:
            continue
        tools[tool] = {
            "runs": rows,
            "unavailable_s": [r["unavailable_s"] for r in rows],
            "wall_s": [r["wall_s"] for r in rows],
            "unavailable_s_median": round(statistics.median(r["unavailable_s"] for r in rows), 3),
            "wall_s_median": round(statistics.median(r["wall_s"] for r in rows), 3),
            "lost_writes": sum(r["lost_writes"] for r in rows),
            "max_writable_nodes": max(r["max_writable_nodes"] for r in rows),
            "load_1m_median": round(statistics.median(r["load_1m"] for r in rows), 2),
        }
    out: dict[str, Any] = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                           "cpus": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()],
                           "tools": tools, "task_overhead": overhead}
    out["ratios"] = _ratios(tools, overhead, busy)
    return out


def _ratios(tools: dict[str, Any], overhead: dict[str, Any], busy: bool = False) -> dict[str, Any]:
    def ratio(a: str, b: str, key: str) -> float | None:
        if a not in tools or b not in tools or not tools[b][key]:
            return None
        return round(tools[a][key] / tools[b][key], 2)

    ratios = {"erlmcp_unavailable_vs_floor": ratio("erlmcp", "floor", "unavailable_s_median"),
              "erlmcp_unavailable_vs_patroni": ratio("erlmcp", "patroni", "unavailable_s_median"),
              "erlmcp_wall_vs_patroni": ratio("erlmcp", "patroni", "wall_s_median"),
              "patroni_unavailable_vs_floor": ratio("patroni", "floor", "unavailable_s_median")}
    safe = all(t["lost_writes"] == 0 and t["max_writable_nodes"] <= 1 for t in tools.values())
    ratios["goals"] = {
        "unavailable_vs_floor": _within(ratios["erlmcp_unavailable_vs_floor"], GOALS["unavailable_vs_floor_max"]),
        "wall_vs_patroni": _within(ratios["erlmcp_wall_vs_patroni"], GOALS["wall_vs_patroni_max"]),
        "task_overhead": _within(overhead.get("pg_replication_info_per_task_s"), GOALS["task_overhead_s_max"]),
        "fixed_cost_start": _within(overhead.get("runbook_start_to_first_task_s"), GOALS["fixed_cost_s_max"]),
        "fixed_cost_end": _within(overhead.get("last_task_to_exit_s"), GOALS["fixed_cost_s_max"]),
        "failover_unavailable": _within(tools.get("erlmcp_failover", {}).get("unavailable_s_median"),
                                        GOALS["failover_unavailable_s_max"]),
        "no_lost_writes_single_writer": safe,
    }
    start, end = overhead.get("runbook_start_to_first_task_s"), overhead.get("last_task_to_exit_s")
    failover_max = GOALS_WARM["failover_unavailable_s_max_busy" if busy else "failover_unavailable_s_max_quiet"]
    ratios["goals_warm_start"] = {
        "fixed_cost_total": _within(None if start is None or end is None else round(start + end, 3),
                                    GOALS_WARM["fixed_cost_total_s_max"]),
        "wall_vs_patroni": _within(ratios["erlmcp_wall_vs_patroni"], GOALS_WARM["wall_vs_patroni_max"]),
        "failover_unavailable": _within(tools.get("erlmcp_failover", {}).get("unavailable_s_median"), failover_max),
    }
    return ratios


def _within(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def table(summary: dict[str, Any]) -> str:
    lines = [f"{'tool':16} {'unavailable s (median)':>23} {'wall s (median)':>16} {'lost':>5} {'max writers':>12}"
             f" {'load':>5}"]
    for tool, t in summary["tools"].items():
        lines.append(f"{tool:16} {t['unavailable_s_median']:>23.3f} {t['wall_s_median']:>16.3f} {t['lost_writes']:>5}"
                     f" {t['max_writable_nodes']:>12} {t['load_1m_median']:>5.2f}")
    over = summary["task_overhead"]
    lines.append(f"per task: erlmcp.dr.pg_replication_info {over.get('pg_replication_info_per_task_s')} s,"
                 f" ansible.builtin.ping {over.get('ping_per_task_s')} s; fixed cost (`runbook run`,"
                 f" warm {over.get('warm')}): start -> first task {over.get('runbook_start_to_first_task_s')} s,"
                 f" last task -> exit {over.get('last_task_to_exit_s')} s")
    lines.extend(f"{name}: {value}" for name, value in summary["ratios"].items() if name != "goals")
    lines.append(f"goals met: {summary['ratios']['goals']}")
    return "\n".join(lines)


def write_results(summary: dict[str, Any], suffix: str = "") -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{datetime.date.today().isoformat()}-switchover{suffix}.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--with-patroni", action="store_true", help="also run Patroni (builds its virtualenv once)")
    parser.add_argument("--patroni-venv", type=Path, default=peer_patroni.DEFAULT_VENV)
    parser.add_argument("--json", action="store_true", help="print the JSON summary instead of the table")
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="keep N CPU-bound processes running throughout (every tool meets the same load)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-bench-"))
    root.chmod(0o755)  # the lab and Patroni run as the lab's OS user below it
    runs: dict[str, list[Run]] = {"erlmcp": [], "patroni": [], "floor": [], "erlmcp_failover": []}
    cluster = None
    labs = None
    burners = start_burners(args.busy)
    try:
        labs = FreshLab(root)
        if args.with_patroni:
            cluster = peer_patroni.PatroniCluster(root / "patroni", peer_patroni.ensure_venv(args.patroni_venv))
            cluster.start()
        for _ in range(args.runs):
            runs["erlmcp"].append(erlmcp_once(labs))
            if cluster is not None:
                runs["patroni"].append(patroni_once(cluster))
            runs["floor"].append(floor_once(labs))
            runs["erlmcp_failover"].append(failover_once(labs))
        # as many samples of the fixed cost as runs of each tool (a median of three moved 0.18-0.28 s busy)
        overhead = task_overhead(labs.reset(), labs.inventory, root, repeats=max(3, args.runs))
    finally:
        stop_burners(burners)
        if cluster is not None:
            cluster.stop()
        if labs is not None:
            labs.close()
        shutil.rmtree(root, ignore_errors=True)
    summary = summarize(runs, overhead, busy=args.busy > 0)
    summary["busy_workers"] = args.busy
    path = write_results(summary, "-busy" if args.busy else "")
    print(json.dumps(summary, indent=2) if args.json else table(summary) + f"\nwritten: {path}")


if __name__ == "__main__":
    main()
