"""Paired benchmark of collection variants (measured, not asserted): what one change buys.

Each variant is a source tree of the collection (for a commit: `git archive <commit> | tar -x -C <dir>`). For each of
`--rounds` rounds, every variant in turn (A B C A B C ...: pairing keeps the comparison fair while the machine's load
drifts) gets a lab of its own, reset, then one database_switchover (or, with --failover, a kill -9 of the primary's
postmaster and database_failover) through erlmcp_dr.run with ERLMCP_DR_COLLECTION naming the variant. Each sample is
the run's wall seconds, the CPU seconds of its processes (this process and its children: the runner, ansible-playbook
and its workers) and its task count; a failover's also the seconds from the kill to the first write a client
(writing every 10 ms, as in benchmarks/switchover.py) had acknowledged (`first_write_s`). Prints one JSON line per
sample, then the medians per variant and each variant's ratios to the first, pair by pair.

    .venv/bin/python benchmarks/paired_variants.py --rounds 4 base=/tmp/v/base final=/tmp/v/final

A variant tree that has `src/erlmcp_dr` runs with that package too (PYTHONPATH names it: the runner, the guard and
the warm start of that tree, in the sample's process and in its zygote, whose key includes PYTHONPATH).

A variant may end with `@cold` or `@warm` (issue 19): its runs start ansible-playbook cold (ERLMCP_DR_WARM=0) or from
the warm zygote (one per variant tree, in a folder of this benchmark's, stopped at the end; its start is paid by the
variant's first sample). A warm run's CPU adds what the zygote's run servers used (they are not this process's
children). `--busy N` keeps N CPU-bound processes running throughout.

    .venv/bin/python benchmarks/paired_variants.py --rounds 6 cold=.@cold warm=.@warm [--failover] [--busy 4]

`--redis-failover` measures redis_failover instead (candidate redis-b, the primary answering: Redis's coordinated
FAILOVER), on the same fresh labs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
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
from erlmcp_dr.lab import lifecycle as lab
from erlmcp_dr.probe import WriteProbe, multi_host_conninfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fresh_lab import FreshLab  # noqa: E402


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _served_cpu() -> float:
    """CPU of the runs this benchmark's zygotes served (see erlmcp_dr.warm.client.served_cpu_seconds)."""
    folder = os.environ.get("ERLMCP_DR_WARM_DIR")
    if not folder:
        return 0.0
    from erlmcp_dr.warm import client

    return sum(client.served_cpu_seconds(z["pid"]) or 0.0 for z in client.zygotes(folder) if z["alive"])


def _run_cpu() -> float:
    """This process's CPU, its children's, and the zygote's run servers' (a warm run's ansible-playbook)."""
    own = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)) + _cpu(resource.getrusage(resource.RUSAGE_SELF))
    return own + _served_cpu()


def sample(kind: str, template: Path) -> dict[str, Any]:
    """One run on a fresh copy of the template, in this process (ERLMCP_DR_COLLECTION names the variant)."""
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-paired-"))
    root.chmod(0o755)
    labs = FreshLab(root, template)
    try:
        cfg, inventory = labs.reset(), labs.inventory
        cpu_before = _run_cpu()
        started = time.monotonic()
        first_write = None
        if kind == "failover":
            result, first_write = _failover(cfg, inventory)
        elif kind == "redis_failover":
            result = erlmcp_dr.run("redis_failover", inventory=str(inventory), extravars={"candidate": "redis-b"})
        else:
            result = erlmcp_dr.run("database_switchover", inventory=str(inventory), extravars={"candidate": "pg-b"})
        wall = time.monotonic() - started
        cpu = _run_cpu()
        row = {"ok": result.succeeded, "wall_s": round(wall, 3), "cpu_s": round(cpu - cpu_before, 3),
               "tasks": len([step for step in result.steps if not step.skipped]),
               "load_1m": round(os.getloadavg()[0], 2)}
        if first_write is not None:
            row["first_write_s"] = first_write
        return row
    finally:
        labs.close()
        shutil.rmtree(root, ignore_errors=True)


def _failover(cfg: lab.LabConfig, inventory: Path) -> tuple[Any, float | None]:
    """kill -9 of pg-a's postmaster, then database_failover, while a client writes every 10 ms through a multi-host
    read-write connection (benchmarks/switchover.py's): the run's result, and the seconds from the kill to the
    client's first acknowledged write (None when none came within 60 s)."""
    with WriteProbe(_conninfo(cfg)) as probe:
        pid = cfg.node("pg-a").server().postmaster_pid()
        if pid is None:
            raise SystemExit("no postmaster pid for pg-a")
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        result = erlmcp_dr.run("database_failover", inventory=str(inventory))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            after = [t for t in probe.report.commit_times if t > killed]
            if after or not result.succeeded:
                break
            time.sleep(0.01)
    after = [t for t in probe.report.commit_times if t > killed]
    return result, (round(after[0] - killed, 3) if after else None)


def _conninfo(cfg: lab.LabConfig) -> str:
    return multi_host_conninfo([("127.0.0.1", n.port) for n in cfg.nodes], lab.SUPERUSER, lab.LAB_PASSWORD)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="*", help="name=source tree of the collection")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--failover", action="store_true")
    parser.add_argument("--redis-failover", action="store_true", help="measure redis_failover (candidate redis-b)")
    parser.add_argument("--busy", type=int, default=0, help="CPU-bound processes kept running throughout")
    parser.add_argument("--sample", help=argparse.SUPPRESS)  # internal: one sample in a process of its own
    parser.add_argument("--template", type=Path, help=argparse.SUPPRESS)  # internal: the lab template to copy
    args = parser.parse_args()
    kind = "redis_failover" if args.redis_failover else "failover" if args.failover else "switchover"
    if args.sample:
        print(json.dumps({"variant": args.sample, "kind": kind, **sample(kind, args.template)}))
        return
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-paired-template-", dir="/tmp"))
    root.chmod(0o755)
    burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(args.busy)]
    try:
        template = root / "template"
        lab.build_template(lab.LabConfig(root=template, port_base=lab.free_port_base()))
        for burner in burners:
            burner.start()
        rows = paired_rows(dict(item.split("=", 1) for item in args.variants), args.rounds, kind, template)
    finally:
        for burner in burners:
            if burner.is_alive():
                burner.terminate()
        _stop_zygotes(template.parent / "w")
        shutil.rmtree(root, ignore_errors=True)
    for name, samples in rows.items():
        writes = [r["first_write_s"] for r in samples if r.get("first_write_s") is not None]
        print(f"{name:12} wall {statistics.median(r['wall_s'] for r in samples):6.3f} s"
              f"  cpu {statistics.median(r['cpu_s'] for r in samples):6.3f} s"
              f"  tasks {statistics.median(r['tasks'] for r in samples):4.0f}"
              + (f"  kill -> first write {statistics.median(writes):6.3f} s" if writes else "")
              + f"  ok {all(r['ok'] for r in samples)}")
    _print_pair_ratios(rows)


Rows = dict[str, list[dict[str, Any]]]


def paired_rows(variants: dict[str, str], rounds: int, kind: str, template: Path) -> Rows:
    """`rounds` samples of every variant, alternating (A B A B ...), each in a process of its own."""
    rows: Rows = {name: [] for name in variants}
    for _ in range(rounds):
        for name, spec in variants.items():
            tree, _, start = spec.partition("@")
            env = dict(os.environ, ERLMCP_DR_COLLECTION=str(Path(tree).resolve()),
                       ERLMCP_DR_WARM_DIR=str(template.parent / "w"))
            env.pop("ANSIBLE_COLLECTIONS_PATH", None)  # the runner derives it from ERLMCP_DR_COLLECTION
            source = Path(tree).resolve() / "src"
            if (source / "erlmcp_dr").is_dir():  # the tree's own package too (runner, warm start), not only plugins
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source), os.environ.get("PYTHONPATH")]))
            if start:
                env["ERLMCP_DR_WARM"] = {"cold": "0", "warm": "1"}[start]
            argv = [sys.executable, __file__, "--sample", name, "--template", str(template)]
            argv += {"failover": ["--failover"], "redis_failover": ["--redis-failover"]}.get(kind, [])
            done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True, timeout=900)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            rows[name].append(row)
    return rows



def _print_pair_ratios(rows: Rows) -> None:
    """Each variant against the first, pair by pair (the samples of one round): the median ratio per figure."""
    names = list(rows)
    for name in names[1:]:
        for key in ("wall_s", "cpu_s", "first_write_s"):
            ratios = [b[key] / a[key] for a, b in zip(rows[names[0]], rows[name], strict=False)
                      if a.get(key) and b.get(key) is not None]
            if ratios:
                print(f"{name}/{names[0]} {key}: median of {len(ratios)} pairs {statistics.median(ratios):.3f}")


def _burn() -> None:
    while True:
        pass


def _stop_zygotes(folder: Path) -> None:
    from erlmcp_dr.warm import client

    for zygote in client.zygotes(str(folder)):
        client.stop(zygote["socket"])


if __name__ == "__main__":
    main()
