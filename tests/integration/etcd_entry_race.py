"""Racing for the run lock in etcd through every entry point at once: the `runbook` CLI, `erlmcp_dr.run()`, plain
`ansible-playbook` and ansible-runner's `transmit | worker | process` (as AWX runs a job), each a controller process
of its own running the fixture runbook tests/fixtures/lock/runbooks/etcd_race_hold.yml. Checked against etcd's
revision history (etcd_race.holders_in_history): one holder at every revision, every holder one run that entered
its critical section, no double execution. Shared by tests/integration/test_etcd_lock.py (a small sample, in CI)
and benchmarks/etcd_lock_race.py (--entry-rounds)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml
from etcd_race import holders_in_history, revision
from runbook_helpers import VENV_BIN, playbook_env

from erlmcp_dr import paths

RUNBOOKS = Path(__file__).resolve().parents[1] / "fixtures" / "lock" / "runbooks"
RUNBOOK = "etcd_race_hold"
ENTRIES = ("ansible-playbook", "cli", "api", "awx")
BUSY_TEXT = "Another run holds the run lock for "  # the run_lock task's message (ansible-playbook, AWX's stdout)
BUSY_EXIT = 3  # the runbook CLI's and the API script's exit code for a run the lock turned away (RunBusy)
DEADLINE = 600  # seconds a run gets: a hang guard, never a timing assertion


def _extravars(key: str, critical: Path, entry: str, hold: int) -> dict[str, Any]:
    return {"lock_key": key, "critical_dir": str(critical), "entry": entry, "hold_seconds": hold}


def _command(entry: str, workdir: Path, inventory: Path, extravars: dict[str, Any], name: str) -> list[str]:
    dashes = [arg for key, value in extravars.items() for arg in ("-e", f"{key}={value}")]
    if entry == "ansible-playbook":
        return [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(RUNBOOKS / f"{RUNBOOK}.yml"), *dashes]
    if entry == "cli":
        return [str(VENV_BIN / "runbook"), "--playbooks-dir", str(RUNBOOKS), "run", RUNBOOK, "-i", str(inventory),
                *dashes, "--yes"]
    if entry == "api":
        script = textwrap.dedent(f"""
            import sys
            import erlmcp_dr
            from erlmcp_dr.errors import RunBusy
            try:
                result = erlmcp_dr.run({RUNBOOK!r}, inventory={str(inventory)!r}, extravars={extravars!r},
                                       playbooks_dir={str(RUNBOOKS)!r})
            except RunBusy as busy:
                print(busy)
                sys.exit(3)
            sys.exit(0 if result.succeeded else 1)
        """)
        return [sys.executable, "-c", script]
    if entry == "awx":
        job, worker = workdir / f"{name}-job", workdir / f"{name}-worker"
        (job / "project").mkdir(parents=True)
        (job / "project" / f"{RUNBOOK}.yml").write_text((RUNBOOKS / f"{RUNBOOK}.yml").read_text())
        (job / "inventory").mkdir()
        (job / "inventory" / "hosts.yml").write_text(inventory.read_text())
        (job / "env").mkdir()
        (job / "env" / "extravars").write_text(yaml.safe_dump(extravars))
        (job / "env" / "envvars").write_text(yaml.safe_dump({
            "ANSIBLE_COLLECTIONS_PATH": str(paths.collections_path()),
            "ERLMCP_DR_LOCK_DIR": os.environ.get("ERLMCP_DR_LOCK_DIR", str(workdir / "locks"))}))
        runner = str(VENV_BIN / "ansible-runner")
        pipeline = (f"{runner} transmit {job} -p {RUNBOOK}.yml --ident {name}"
                    f" | {runner} worker --private-data-dir {worker}"
                    f" | {runner} process {job} --ident {name}")
        return ["bash", "-o", "pipefail", "-c", pipeline]
    raise ValueError(f"entry {entry!r}: expected one of {', '.join(ENTRIES)}")


def entry_rounds(config: dict[str, Any], workdir: Path, key: str, rounds: int, controllers: int = 3,
                 hold: int = 1) -> dict[str, Any]:
    """`rounds` rounds of `controllers` runs started at once, each through another entry point (rotating over
    ENTRIES). Returns per-entry outcomes, the tokens the runs that entered noted, and etcd's holders meanwhile."""
    inventory = workdir / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
        "vars": {k: v for k, v in {"dr_lock_store": "etcd", "dr_lock_etcd_endpoints": config["endpoints"],
                                   "dr_lock_etcd_ttl": config["ttl"]}.items()}}}))
    critical = workdir / "critical"
    critical.mkdir(exist_ok=True)
    env = dict(playbook_env(), ERLMCP_DR_LOCK_DIR=str(workdir / "locks"), ERLMCP_DR_HOME=str(workdir / "home"))
    first = revision(config) + 1
    runs: list[dict[str, Any]] = []
    for round_ in range(rounds):
        started = []
        for index in range(controllers):
            entry = ENTRIES[(round_ + index) % len(ENTRIES)]
            name = f"r{round_}-{index}-{entry}"
            extravars = _extravars(key, critical, entry, hold)
            argv = _command(entry, workdir, inventory, extravars, name)
            out = open(workdir / f"{name}.out", "wb")  # noqa: SIM115 - closed once the run ended
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    cwd=workdir)
            started.append((entry, name, proc, out))
        for entry, name, proc, out in started:
            code = proc.wait(timeout=DEADLINE)
            out.close()
            text = " ".join((workdir / f"{name}.out").read_text(errors="replace").split())
            busy = BUSY_TEXT + key in text if entry in ("ansible-playbook", "awx") else code == BUSY_EXIT
            runs.append({"entry": entry, "name": name, "rc": code, "busy": busy,
                         "inside_taken": code != 0 and "another run is inside" in text and "fatal" in text.lower(),
                         "tail": text[-600:]})
    lines = (critical / "tokens").read_text().split("\n") if (critical / "tokens").exists() else []
    entered = [line.split() for line in lines if line.strip()]
    tokens = sorted(int(token) for token, _entry in entered)
    history = holders_in_history(config, config["prefix"] + key, first, revision(config))
    by_entry: dict[str, dict[str, int]] = {}
    for run in runs:
        counts = by_entry.setdefault(run["entry"], {"runs": 0, "refused_busy": 0, "other_failures": 0})
        counts["runs"] += 1
        counts["refused_busy"] += int(run["busy"])
        counts["other_failures"] += int(run["rc"] != 0 and not run["busy"])
    for _token, entry in entered:
        by_entry.setdefault(entry, {}).setdefault("took_lock_and_ran", 0)
        by_entry[entry]["took_lock_and_ran"] += 1
    return {"runs": runs, "by_entry": by_entry, "tokens": tokens, "history": history,
            "double_executions": len(tokens) - len(set(tokens)) + sum(run["inside_taken"] for run in runs),
            "left_inside": (critical / "inside").exists(),
            "history_matches_takes": history == tokens}
