"""Failover wall against an older checkout, each with its own runner, collection and virtualenv (measured, not
asserted).

Issue 6 asks for a failover wall at most 0.6x "today's", the day the issue was written (the tree at commit b0bf8e9,
on ansible-core 2.17). paired_variants.py swaps only the collection under today's runner; this script runs each
whole tree: for each of `--rounds` rounds, every tree in turn (A B A B ...: pairing keeps the comparison fair while
the machine's load drifts) runs one sample in its own virtualenv's Python: a lab of its own (the tree's lab code),
a kill -9 of the primary's postmaster, then database_failover through the tree's own `erlmcp_dr.run`. The wall is
from the kill to the run's return. Prints one JSON line per sample, then the medians and the ratio.

    git worktree add --detach ../wt-baseline b0bf8e9 && make -C ../wt-baseline setup
    .venv/bin/python benchmarks/failover_vs_tree.py --rounds 5 then=../wt-baseline now=.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# Runs inside each tree's virtualenv: only the lab/run API both trees share (LabConfig, free_port_base, reset,
# write_inventory, status, node.server().postmaster_pid(), node.conn_params(), erlmcp_dr.run).
SAMPLE = r"""
import json, os, signal, shutil, sys, tempfile, time
from pathlib import Path
import psycopg
import erlmcp_dr
from erlmcp_dr.lab import lifecycle as lab

def streaming(cfg, primary):
    with psycopg.connect(**cfg.node(primary).conn_params(), autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' "
                            "AND replay_lsn = pg_current_wal_lsn()").fetchone()[0] == len(cfg.nodes) - 1

root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-tree-"))
root.chmod(0o755)
cfg = lab.LabConfig(root=root / "lab", port_base=lab.free_port_base())
inventory = cfg.root / "inventory" / "hosts.yml"
try:
    lab.reset(cfg)
    lab.write_inventory(cfg, inventory)
    primary = lab.status(cfg)["primary"]
    deadline = time.monotonic() + 60
    while not streaming(cfg, primary):
        if time.monotonic() > deadline:
            raise SystemExit("the standbys did not catch up within 60 s")
        time.sleep(0.05)
    pid = cfg.node(primary).server().postmaster_pid()
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    result = erlmcp_dr.run("database_failover", inventory=str(inventory))
    wall = time.monotonic() - started
    print(json.dumps({"ok": result.succeeded, "wall_s": round(wall, 3)}))
finally:
    lab.down(cfg)
    shutil.rmtree(root, ignore_errors=True)
"""


def sample(tree: Path) -> dict[str, Any]:
    """One failover in `tree`'s own virtualenv, with a state home of its own."""
    with tempfile.TemporaryDirectory(prefix="erlmcp-dr-tree-home-") as home:
        env = dict(os.environ, ERLMCP_DR_HOME=home, ANSIBLE_COLLECTIONS_PATH=str(tree / ".collections"),
                   ANSIBLE_CONFIG=str(tree / "ansible.cfg"))
        env.pop("ERLMCP_DR_COLLECTION", None)
        proc = subprocess.run([str(tree / ".venv" / "bin" / "python"), "-c", SAMPLE], cwd=tree, env=env,
                              capture_output=True, text=True, timeout=600, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"the sample in {tree} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("trees", nargs=2, metavar="NAME=PATH", help="the older tree first, then the newer")
    args = parser.parse_args()
    trees = {name: Path(path).resolve() for name, path in (item.split("=", 1) for item in args.trees)}
    walls: dict[str, list[float]] = {name: [] for name in trees}
    for round_no in range(args.rounds):
        for name, tree in trees.items():
            row = sample(tree)
            row.update(tree=name, round=round_no, load_1m=round(os.getloadavg()[0], 2))
            print(json.dumps(row), flush=True)
            if not row["ok"]:
                raise SystemExit(f"database_failover failed in {tree}")
            walls[name].append(row["wall_s"])
    medians = {name: round(statistics.median(values), 3) for name, values in walls.items()}
    older, newer = list(trees)
    print(json.dumps({"median_wall_s": medians, "ratio": round(medians[newer] / medians[older], 3)}))


if __name__ == "__main__":
    sys.exit(main())
