"""Benchmark-style witness of the run lock in etcd (measured and reported, not asserted): 1,000 acquisition attempts
racing from 3 processes through the store's API, and a few rounds of 3 racing ansible-playbook runs.

Three real etcd members on loopback (src/erlmcp_dr/lab/etcd.py, free ports, a temporary folder). Each API attempt
takes the lock, marks its critical section with mkdir (a second holder inside would fail it: a double execution)
and releases. Afterwards etcd's revision history of the key is replayed revision by revision: every holder it
shows must be exactly one take, and no holder may appear while another holds the key. The playbook rounds run
tests/fixtures/lock/etcd_hold.yml (take, critical section, release) three at a time.

Prints a summary and writes benchmarks/results/<date>-etcd-lock-race.json.

    .venv/bin/python benchmarks/etcd_lock_race.py                       # 1,000 API attempts, 5 playbook rounds
    .venv/bin/python benchmarks/etcd_lock_race.py --attempts 30 --rounds 1
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attempts", type=int, default=1000, help="API attempts in all (split over 3 processes)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of 3 racing ansible-playbook runs")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="erlmcp-dr-etcd-bench-"))
    cluster = lab_etcd.free_cluster(workdir / "etcd")
    started = time.monotonic()
    try:
        lab_etcd.up(cluster)
        per_process = -(-args.attempts // PROCESSES)
        race = api_race(settings(cluster), KEY, PROCESSES, per_process, str(workdir / "inside"))
        takes_ms = sorted(s * 1000 for s in race["take_seconds"])
        api = {
            "processes": PROCESSES, "attempts": per_process * PROCESSES, "took": len(race["tokens"]),
            "refused_busy": race["busy"], "double_executions": race["doubles"],
            "holders_in_etcd_history": len(race["history"]), "history_matches_takes": race["history"] == race["tokens"],
            "racer_exit_codes": race["exit_codes"],
            "take_ms_median": round(statistics.median(takes_ms), 2),
            "take_ms_p95": round(takes_ms[int(len(takes_ms) * 0.95) - 1], 2),
        }
        playbooks = playbook_rounds(cluster, workdir, args.rounds) if args.rounds else {}
    finally:
        lab_etcd.down(cluster)
        shutil.rmtree(workdir, ignore_errors=True)
    result = {"date": datetime.date.today().isoformat(), "etcd_members": 3, "api": api,
              "ansible_playbook": {k: v for k, v in playbooks.items() if k != "tokens"},
              "seconds": round(time.monotonic() - started, 1), "cpu_count": os.cpu_count()}
    print(json.dumps(result, indent=2))
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"{result['date']}-etcd-lock-race.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
