"""CPU time of a warm `runbook run`, paired between source trees (issue 19; measured, not asserted).

The CPU seconds (user + sys, from wait4's rusage) of a `runbook run trusted_params` process and of its guard (a child
it waits for), the run started warm (a first run per tree starts that tree's zygote), alternating the trees. CPU time
moves much less with the machine's load than wall clock, so on a shared machine it shows what a lever on the `runbook`
process's own work cut when the wall-clock pairs are noise. The forked ansible-playbook is the zygote's child: not
counted. Everything after the first task (the same in both trees) is in both figures.

    .venv/bin/python benchmarks/warm_start_cpu.py 8 base=/tmp/base new=/tmp/new > benchmarks/results/x.json

TREE: a source tree (`git archive <commit> | tar -x -C TREE`), run with its package, collection and ansible.cfg.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from erlmcp_dr.warm import client

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "playbooks" / "controller"
DROPPED = ("PYTHONDONTWRITEBYTECODE", "ANSIBLE_COLLECTIONS_PATH", "PYTHONPATH")  # bytecode written, as a wheel has it
CLI = "import sys; sys.argv[0] = 'runbook'; from erlmcp_dr.cli import main; sys.exit(main())"


def env_for(root: Path, tree: str) -> dict:
    env = {name: value for name, value in os.environ.items() if name not in DROPPED}
    env.update(ERLMCP_DR_HOME=str(root / "home"), ERLMCP_DR_PLAYBOOKS=str(FIXTURES), ERLMCP_DR_WARM_DIR=str(root / "w"),
               ERLMCP_DR_WARM="1", PYTHONPATH=f"{tree}/src", ERLMCP_DR_COLLECTION=tree,
               ANSIBLE_CONFIG=f"{tree}/ansible.cfg")
    return env


def one_run(root: Path, inventory: Path, tree: str) -> tuple:
    """(CPU s of the runbook process and its guard, wall s) of one warm run."""
    argv = [sys.executable, "-c", CLI, "run", "trusted_params", "-i", str(inventory), "--yes", "--json"]
    started = time.time()
    process = subprocess.Popen(argv, env=env_for(root, tree), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"the run in {tree} failed (wait status {status})")
    return usage.ru_utime + usage.ru_stime, time.time() - started


def main() -> None:
    runs, trees = int(sys.argv[1]), dict(item.split("=", 1) for item in sys.argv[2:])
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-warm-cpu-", dir="/tmp"))
    inventory = root / "hosts.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    rows: dict = {name: [] for name in trees}
    try:
        for tree in trees.values():
            one_run(root, inventory, tree)  # this tree's zygote and caches
        for _ in range(runs):
            for name, tree in trees.items():
                rows[name].append(one_run(root, inventory, tree))
    finally:
        for zygote in client.zygotes(str(root / "w")):
            client.stop(zygote["socket"])
    names = list(trees)
    pairs = zip(rows[names[0]], rows[names[-1]], strict=True)
    print(json.dumps({
        "what": "CPU s (user+sys) of a warm `runbook run trusted_params` process with its guard (wait4 rusage); wall s",
        "variants": trees, "load_1m_end": os.getloadavg()[0],
        "cpu_median": {name: round(statistics.median(cpu for cpu, _ in row), 4) for name, row in rows.items()},
        "wall_median": {name: round(statistics.median(wall for _, wall in row), 4) for name, row in rows.items()},
        "cpu_ratio_pairs_median": round(statistics.median(last[0] / first[0] for first, last in pairs), 3),
        "samples": {name: [[round(cpu, 4), round(wall, 4)] for cpu, wall in row] for name, row in rows.items()},
    }, indent=1))


if __name__ == "__main__":
    main()
