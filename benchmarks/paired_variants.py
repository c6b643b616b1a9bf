"""Paired benchmark of collection variants (measured, not asserted): what one change buys.

Each variant is a source tree of the collection (for a commit: `git archive <commit> | tar -x -C <dir>`). For each of
`--rounds` rounds, every variant in turn (A B C A B C ...: pairing keeps the comparison fair while the machine's load
drifts) gets a lab of its own, reset, then one database_switchover (or, with --failover, a kill -9 of the primary's
postmaster and database_failover) through erlmcp_dr.run with ERLMCP_DR_COLLECTION naming the variant. Each sample is
the run's wall seconds, the CPU seconds of its processes (this process and its children: the runner, ansible-playbook
and its workers) and its task count. Prints one JSON line per sample, then the medians per variant.

    .venv/bin/python benchmarks/paired_variants.py --rounds 4 base=/tmp/v/base final=/tmp/v/final
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import erlmcp_dr
from erlmcp_dr import lab


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def sample(kind: str) -> dict[str, Any]:
    """One run on a fresh lab, in this process (ERLMCP_DR_COLLECTION names the variant)."""
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-paired-"))
    root.chmod(0o755)
    cfg = lab.LabConfig(root=root / "lab", port_base=lab.free_port_base())
    inventory = cfg.root / "inventory" / "hosts.yml"
    try:
        lab.reset(cfg)
        lab.write_inventory(cfg, inventory)
        lab.wait_streaming(cfg, caught_up=True)
        cpu_before = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)) + _cpu(resource.getrusage(resource.RUSAGE_SELF))
        started = time.monotonic()
        if kind == "failover":
            pid = cfg.node("pg-a").server().postmaster_pid()
            if pid is None:
                raise SystemExit("no postmaster pid for pg-a")
            os.kill(pid, signal.SIGKILL)
            result = erlmcp_dr.run("database_failover", inventory=str(inventory))
        else:
            result = erlmcp_dr.run("database_switchover", inventory=str(inventory), extravars={"candidate": "pg-b"})
        wall = time.monotonic() - started
        cpu = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)) + _cpu(resource.getrusage(resource.RUSAGE_SELF))
        return {"ok": result.succeeded, "wall_s": round(wall, 3), "cpu_s": round(cpu - cpu_before, 3),
                "tasks": len([step for step in result.steps if not step.skipped]),
                "load_1m": round(os.getloadavg()[0], 2)}
    finally:
        lab.down(cfg)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", help="name=source tree of the collection")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--failover", action="store_true")
    parser.add_argument("--sample", help=argparse.SUPPRESS)  # internal: one sample in a process of its own
    args = parser.parse_args()
    kind = "failover" if args.failover else "switchover"
    if args.sample:
        print(json.dumps({"variant": args.sample, "kind": kind, **sample(kind)}))
        return
    variants = dict(item.split("=", 1) for item in args.variants)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, tree in variants.items():
            env = dict(os.environ, ERLMCP_DR_COLLECTION=str(Path(tree).resolve()))
            env.pop("ANSIBLE_COLLECTIONS_PATH", None)  # the runner derives it from ERLMCP_DR_COLLECTION
            argv = [sys.executable, __file__, "--sample", name] + (["--failover"] if args.failover else [])
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, timeout=900)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            rows[name].append(row)
    for name, samples in rows.items():
        print(f"{name:12} wall {statistics.median(r['wall_s'] for r in samples):6.3f} s"
              f"  cpu {statistics.median(r['cpu_s'] for r in samples):6.3f} s"
              f"  tasks {statistics.median(r['tasks'] for r in samples):4.0f}"
              f"  ok {all(r['ok'] for r in samples)}")


if __name__ == "__main__":
    main()
