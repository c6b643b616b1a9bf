"""Benchmark-style witness of the run lock in etcd (measured and reported, not asserted): 1,000 acquisition attempts
racing from 3 processes through the store's API, a few rounds of 3 racing ansible-playbook runs, and rounds of 3
controllers racing through different entry points (runbook CLI, erlmcp_dr.run(), ansible-playbook, ansible-runner
transmit | worker | process as AWX runs it; tests/integration/etcd_entry_race.py).

Three real etcd members on loopback (src/erlmcp_dr/lab/etcd.py, free ports, a temporary folder). Each API attempt
takes the lock, marks its critical section with mkdir (a second holder inside would fail it: a double execution)
and releases. Afterwards etcd's revision history of the key is replayed revision by revision: every holder it
shows must be exactly one take, and no holder may appear while another holds the key. The playbook rounds run
tests/fixtures/lock/etcd_hold.yml (take, critical section, release) three at a time.

Prints a summary and writes benchmarks/results/<date>-etcd-lock-race.json.

    .venv/bin/python benchmarks/etcd_lock_race.py                       # 1,000 API attempts, 5 playbook rounds
    .venv/bin/python benchmarks/etcd_lock_race.py --attempts 30 --rounds 1 --entry-rounds 1
    .venv/bin/python benchmarks/etcd_lock_race.py --attempts 0 --rounds 0 --entry-rounds 8 --name etcd-entry-race
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

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
from etcd_entry_race import ENTRIES, entry_rounds  # noqa: E402
from etcd_race import api_race, holders_in_history, revision  # noqa: E402
from runbook_helpers import playbook_env  # noqa: E402

from erlmcp_dr.lab import etcd as lab_etcd  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PLAYBOOK = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "lock" / "etcd_hold.yml"
KEY = "postgres:7301234567890123456"
PROCESSES = 3
PLAYBOOK_DEADLINE = 300


def settings(cluster: lab_etcd.EtcdCluster) -> dict[str, Any]:
    from ansible_collections.erlmcp.dr.plugins.module_utils._lock import store as _lock

    return _lock.store_settings(cluster.inventory_vars(), environ={})


def playbook_rounds(cluster: lab_etcd.EtcdCluster, workdir: Path, rounds: int) -> dict[str, Any]:
    inventory = workdir / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
        "vars": cluster.inventory_vars()}}))
    critical = workdir / "critical"
    critical.mkdir()
    env = dict(playbook_env(), ERLMCP_DR_LOCK_DIR=str(workdir / "locks"))
    config = settings(cluster)
    first = revision(config) + 1
    codes = []
    for _round in range(rounds):
        procs = [subprocess.Popen([str(Path(sys.executable).with_name("ansible-playbook")), "-i", str(inventory),
                                   str(PLAYBOOK), "-e", f"lock_key={KEY}", "-e", f"critical_dir={critical}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
                 for _ in range(PROCESSES)]
        codes += [proc.wait(timeout=PLAYBOOK_DEADLINE) for proc in procs]
    tokens = sorted(int(t) for t in (critical / "tokens").read_text().split()) if (critical / "tokens").exists() \
        else []
    history = holders_in_history(config, config["prefix"] + KEY, first, revision(config))
    return {"runs": len(codes), "took_lock_and_ran": codes.count(0), "refused_busy": codes.count(2),
            "other_exit_codes": [c for c in codes if c not in (0, 2)], "tokens": tokens,
            "history_matches_takes": history == tokens, "double_executions": len(tokens) - len(set(tokens))}


def api_attempts(cluster: lab_etcd.EtcdCluster, workdir: Path, attempts: int) -> dict[str, Any]:
    per_process = -(-attempts // PROCESSES)
    race = api_race(settings(cluster), KEY, PROCESSES, per_process, str(workdir / "inside"))
    takes_ms = sorted(s * 1000 for s in race["take_seconds"])
    return {
        "processes": PROCESSES, "attempts": per_process * PROCESSES, "took": len(race["tokens"]),
        "refused_busy": race["busy"], "double_executions": race["doubles"],
        "holders_in_etcd_history": len(race["history"]), "history_matches_takes": race["history"] == race["tokens"],
        "racer_exit_codes": race["exit_codes"],
        "take_ms_median": round(statistics.median(takes_ms), 2),
        "take_ms_p95": round(takes_ms[int(len(takes_ms) * 0.95) - 1], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=1000, help="API attempts in all (split over 3 processes)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of 3 racing ansible-playbook runs")
    parser.add_argument("--entry-rounds", type=int, default=4,
                        help=f"rounds of 3 racing runs, each through another entry point ({', '.join(ENTRIES)}, "
                        "rotating)")
    parser.add_argument("--name", default="etcd-lock-race",
                        help="the result file's name: benchmarks/results/<date>-<name>.json")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="erlmcp-dr-etcd-bench-"))
    cluster = lab_etcd.free_cluster(workdir / "etcd")
    started = time.monotonic()
    try:
        lab_etcd.up(cluster)
        api = api_attempts(cluster, workdir, args.attempts) if args.attempts else {}
        playbooks = playbook_rounds(cluster, workdir, args.rounds) if args.rounds else {}
        entries = {}
        if args.entry_rounds:
            (workdir / "entries").mkdir()
            raced = entry_rounds(settings(cluster), workdir / "entries", KEY + "-entries", args.entry_rounds)
            entries = {"rounds": args.entry_rounds, "controllers_per_round": PROCESSES, "runs": len(raced["runs"]),
                       "by_entry": raced["by_entry"], "took_lock_and_ran": len(raced["tokens"]),
                       "holders_in_etcd_history": len(raced["history"]),
                       "history_matches_takes": raced["history_matches_takes"],
                       "double_executions": raced["double_executions"],
                       "failures_other_than_busy": [run for run in raced["runs"] if run["rc"] and not run["busy"]]}
    finally:
        lab_etcd.down(cluster)
        shutil.rmtree(workdir, ignore_errors=True)
    result = {"date": datetime.date.today().isoformat(), "etcd_members": 3, "api": api,
              "ansible_playbook": {k: v for k, v in playbooks.items() if k != "tokens"},
              "entry_points": entries,
              "seconds": round(time.monotonic() - started, 1), "cpu_count": os.cpu_count()}
    print(json.dumps(result, indent=2))
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{result['date']}-{args.name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
