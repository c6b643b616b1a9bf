"""A run's fixed cost, cold against warm (measured, not asserted): issue 19.

Runs a two-task fixture runbook (tests/fixtures/playbooks/controller/trusted_params.yml: runbook_params, then a
debug) on localhost `--pairs` times each way, alternating (cold, warm, cold, warm ...: the pairing keeps the
comparison fair while the machine's load drifts), each run a `runbook run` process of its own, as an operator's.
Per run, from the run folder: start (the `runbook` process started -> the first task started), end (the last task
ended -> the process exited), wall, and the CPU of the whole run (the process and its children; the zygote's own
CPU is not a run's). The warm side's zygote is started once before the first pair (its start is the cold cost a
first warm run pays; reported apart as `zygote_start_s`).

    .venv/bin/python benchmarks/warm_start.py --pairs 10 [--busy 4] [--json benchmarks/results/x.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "playbooks" / "controller"
RUNBOOK = Path(sys.executable).parent / "runbook"


def _ts(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _served_cpu(env: dict[str, str]) -> float:
    """CPU of the runs the zygotes in this benchmark's folder served (their processes are not this one's children)."""
    from erlmcp_dr.warm import client

    return sum(client.served_cpu_seconds(zygote["pid"]) or 0.0
               for zygote in client.zygotes(env["ERLMCP_DR_WARM_DIR"]) if zygote["alive"])


def one_run(env: dict[str, str], inventory: Path) -> dict[str, Any]:
    served = _served_cpu(env)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    done = subprocess.run([str(RUNBOOK), "run", "trusted_params", "-i", str(inventory), "--yes", "--json"],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    ended = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    steps = [step for step in result["steps"] if step.get("start") and step.get("end")]
    first = min(_ts(step["start"]) for step in steps)
    last = max(_ts(step["end"]) for step in steps)
    return {"start_s": round(first - started, 3), "end_s": round(ended - last, 3), "wall_s": round(ended - started, 3),
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                           + _served_cpu(env) - served, 3),
            "load_1m": round(os.getloadavg()[0], 2)}


def _burn() -> None:
    while True:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--busy", type=int, default=0, help="CPU-bound processes kept running throughout")
    parser.add_argument("--json", type=Path, help="write the samples and medians here")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-warm-bench-", dir="/tmp"))
    inventory = root / "hosts.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    base = dict(os.environ, ERLMCP_DR_HOME=str(root / "home"), ERLMCP_DR_PLAYBOOKS=str(FIXTURES),
                ERLMCP_DR_WARM_DIR=str(root / "w"))
    variants = {"cold": dict(base, ERLMCP_DR_WARM="0"), "warm": dict(base, ERLMCP_DR_WARM="1")}
    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(args.busy)]
    for burner in burners:
        burner.start()
    try:
        first_warm = one_run(variants["warm"], inventory)  # starts the zygote: what the first warm run pays
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
        for _ in range(args.pairs):
            for name, env in variants.items():
                row = one_run(env, inventory)
                samples[name].append(row)
                print(json.dumps({"variant": name, **row}), flush=True)
    finally:
        for burner in burners:
            burner.terminate()
        _stop_zygotes(root / "w")
        shutil.rmtree(root, ignore_errors=True)
    report = summarize(samples)
    report.update(busy=args.busy, pairs=args.pairs, first_warm_run=first_warm,
                  date=datetime.date.today().isoformat(), samples=samples)
    for name in variants:
        print(f"{name:5} " + "  ".join(f"{key} {report['median'][name][key]:.3f}" for key in
                                       ("start_s", "end_s", "wall_s", "cpu_s")))
    print("warm/cold ratios of pairs (median): " + json.dumps(report["ratio_warm_to_cold"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def summarize(samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    keys = ("start_s", "end_s", "wall_s", "cpu_s")
    median = {name: {key: round(statistics.median(row[key] for row in rows), 3) for key in keys}
              for name, rows in samples.items()}
    ratios = {key: round(statistics.median(warm[key] / cold[key] for cold, warm in
                                           zip(samples["cold"], samples["warm"], strict=True) if cold[key] > 0), 3)
              for key in keys}
    return {"median": median, "ratio_warm_to_cold": ratios,
            "load_1m_median": round(statistics.median(row["load_1m"] for rows in samples.values() for row in rows), 2)}


def _stop_zygotes(folder: Path) -> None:
    from erlmcp_dr.warm import client

    for zygote in client.zygotes(str(folder)):
        client.stop(zygote["socket"])


if __name__ == "__main__":
    main()
