"""Where a warm run's fixed cost goes, `runbook` started -> its first task started (measured, not asserted): issue 19.

Runs the two-task fixture runbook of benchmarks/warm_start.py (tests/fixtures/playbooks/controller/trusted_params.yml
on localhost) through `runbook run`, warm, `--runs` times after a first run that starts the zygote, and records
wall-clock marks on the whole path, in three processes:

- the `runbook` process (a launcher that imports the CLI as the console script does, then calls its main):
  interpreter up, the CLI imported, the runner imported, RunbookRun.run entered, the guard's command built;
- the guard: its start record written (start.json's mtime: the zygote has forked the run);
- the forked ansible-playbook, through a probe module the zygote imports at its start (ERLMCP_DR_WARM_PRELOAD; it
  wraps the zygote's become_run and, in the fork only, a few ansible-core functions with timers): the fork entered,
  Ansible's settings read again, the collection finder removed, ansible-playbook's script started, its command line
  parsed, the loader/inventory/variable manager made (inside it the inventory), the playbook loaded, the callbacks
  loaded, the strategy run, the first task's callback.

The report has each mark's median offset from the launch, and the consecutive phases between them (medians of
per-run differences). With `--profile`, another `--runs` runs are made with cProfile on in the fork (from the fork to
the first task's callback: the fork's own work, inflated by the profiler) and in the launcher (from its start to the
guard's command: the CLI's imports and the run folder); the top functions by cumulative time are reported.

    .venv/bin/python benchmarks/profile_warm_path.py --runs 5 [--profile] [--json benchmarks/results/x.json]

With `--variant NAME=TREE` (twice or more; TREE a source tree, e.g. `git archive <commit> | tar -x -C TREE`), the
runs alternate between the trees (A B A B ...: pairs while the load drifts), each with that tree's package
(PYTHONPATH), collection (ERLMCP_DR_COLLECTION) and ansible.cfg, each tree its own zygote (started by a first run
per tree, not counted); the report adds each variant's medians and, against the first, the median of the pairs'
ratios of start -> first task, last task -> exit and the whole wall.

    .venv/bin/python benchmarks/profile_warm_path.py --runs 6 --variant base=/tmp/base --variant new=/tmp/new

The probe is a benchmark's: nothing in the product reads its variables.
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
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "playbooks" / "controller"
PROBE_OUT = "WARM_PATH_PROBE_OUT"  # the fork's marks go to <this folder>/<run marker>.json
PROBE_PROFILE = "WARM_PATH_PROBE_PROFILE"  # "1": cProfile on in the fork and the launcher

# Imported by the zygote at its start (ERLMCP_DR_WARM_PRELOAD). The zygote runs as `python -m
# erlmcp_dr.warm.zygote`, so its functions are looked up in __main__ at call time: wrapping __main__.become_run
# puts the probe in every fork and nowhere else.
PROBE_SOURCE = '''
import json, os, sys, time

_zygote = sys.modules["__main__"]
_become_run = getattr(_zygote, "become_run", None)  # None when imported by the launcher (for top_functions)
# (module, attribute path): each wrapped in the fork; the first call's enter and exit times are marked
TIMED = (
    ("__main__", "refresh_ansible_settings"),
    ("__main__", "forget_collection_finder"),
    ("erlmcp_dr.guard", "run_script"),
    ("ansible.cli", "CLI.parse"),
    ("ansible.cli.playbook", "PlaybookCLI.run"),
    ("ansible.cli", "CLI._play_prereqs"),
    ("ansible.inventory.manager", "InventoryManager.__init__"),
    ("ansible.executor.playbook_executor", "PlaybookExecutor.__init__"),
    ("ansible.executor.playbook_executor", "PlaybookExecutor.run"),
    ("ansible.playbook", "Playbook.load"),
    ("ansible.executor.task_queue_manager", "TaskQueueManager.load_callbacks"),
    ("ansible.executor.task_queue_manager", "TaskQueueManager.run"),
)


def _wrap(marks, label, function):
    def timed(*args, **kwargs):
        first = label + ".enter" not in marks
        if first:
            marks[label + ".enter"] = time.time()
        try:
            return function(*args, **kwargs)
        finally:
            if first:
                marks[label + ".exit"] = time.time()
    return timed


def _install(marks):
    import importlib
    for module_name, path in TIMED:
        owner = importlib.import_module(module_name)
        parts = path.split(".")
        for part in parts[:-1]:
            owner = getattr(owner, part)
        raw = vars(owner)[parts[-1]] if isinstance(owner, type) else getattr(owner, parts[-1])
        if isinstance(raw, staticmethod):
            setattr(owner, parts[-1], staticmethod(_wrap(marks, path, raw.__func__)))
        elif isinstance(raw, classmethod):
            setattr(owner, parts[-1], classmethod(_wrap(marks, path, raw.__func__)))
        else:
            setattr(owner, parts[-1], _wrap(marks, path, raw))


def _until_first_task(marks, out, profiler):
    from ansible.executor.task_queue_manager import TaskQueueManager
    send = TaskQueueManager.send_callback

    def send_callback(self, method_name, *args, **kwargs):
        if method_name in ("v2_playbook_on_start", "v2_playbook_on_play_start", "v2_playbook_on_task_start") \\
                and method_name not in marks:
            marks[method_name] = time.time()
            if method_name == "v2_playbook_on_task_start":
                _dump(marks, out, profiler)
        return send(self, method_name, *args, **kwargs)
    TaskQueueManager.send_callback = send_callback


def _dump(marks, out, profiler):
    report = {"marks": dict(marks)}
    if profiler is not None:
        profiler.disable()
        report["profile"] = top_functions(profiler)
    with open(out, "w") as handle:
        json.dump(report, handle)


def top_functions(profiler, limit=45):
    import pstats
    stats = pstats.Stats(profiler).stats
    rows = []
    for (path, line, name), (_, calls, tottime, cumtime, _) in stats.items():
        rows.append({"function": f"{_short(path)}:{line}({name})", "calls": calls,
                     "tottime_s": round(tottime, 4), "cumtime_s": round(cumtime, 4)})
    by_cumulative = sorted(rows, key=lambda row: -row["cumtime_s"])[:limit]
    by_own = sorted(rows, key=lambda row: -row["tottime_s"])[:limit]
    return {"by_cumulative": by_cumulative, "by_own_time": by_own}


def _short(path):
    for marker in ("site-packages/", "/src/", "/lib/python"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def become_run(message, fds):
    out = message["env"].get("WARM_PATH_PROBE_OUT")
    if out:
        try:
            marks = {"fork": time.time()}
            profiler = None
            if message["env"].get("WARM_PATH_PROBE_PROFILE") == "1":
                import cProfile
                profiler = cProfile.Profile()
                profiler.enable()
            _install(marks)
            _until_first_task(marks, os.path.join(out, os.path.basename(str(message["marker"])) + ".json"),
                              profiler)
        except BaseException:
            import traceback
            with open(os.path.join(out, "probe-error.txt"), "a") as handle:
                traceback.print_exc(file=handle)
    _become_run(message, fds)


if _become_run is not None:
    _zygote.become_run = become_run
'''

# `runbook` as its console script is, with marks (and, profiling, cProfile until the guard's command is built).
LAUNCHER_SOURCE = '''
import time
_interp = time.time()
import atexit, json, os, sys
_profiler = None
if os.environ.get("WARM_PATH_PROBE_PROFILE") == "1":
    import cProfile
    _profiler = cProfile.Profile()
    _profiler.enable()
import warm_path_probe
from erlmcp_dr.cli import main
_cli = time.time()
from erlmcp_dr import runner
_runner = time.time()
marks = {"interp": _interp, "cli_imported": _cli, "runner_imported": _runner}
_run, _guarded = runner.RunbookRun.run, runner.guarded


def run(self):
    marks.setdefault("RunbookRun.run", time.time())
    return _run(self)


def guarded(command, private_data_dir):
    marks.setdefault("guarded", time.time())
    marks.setdefault("private_data_dir", str(private_data_dir))
    if _profiler is not None and "profile" not in marks:
        _profiler.disable()
        marks["profile"] = warm_path_probe.top_functions(_profiler)
    return _guarded(command, private_data_dir)


def write_marks():
    with open(out, "w") as handle:
        json.dump(marks, handle)


runner.RunbookRun.run = run
runner.guarded = guarded
out = sys.argv.pop(1)
sys.argv[0] = "runbook"
atexit.register(write_marks)  # main() ends a run's process with os._exit after the atexit handlers
sys.exit(main())
'''


def _ts(text: str) -> float:
    stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return stamp.timestamp()


def one_run(env: dict[str, str], inventory: Path, probe_dir: Path, out_dir: Path) -> dict[str, Any]:
    cli_out = out_dir / f"cli-{time.monotonic_ns()}.json"
    before = {path.name for path in out_dir.glob("*.json")}
    launched = time.time()
    done = subprocess.run([sys.executable, str(probe_dir / "launcher.py"), str(cli_out), "run", "trusted_params",
                           "-i", str(inventory), "--yes", "--json"],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    exited = time.time()
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    cli = json.loads(cli_out.read_text())
    fork_files = [path for path in out_dir.glob("*.json") if path.name not in before and path != cli_out]
    fork = json.loads(fork_files[0].read_text()) if fork_files else {"marks": {}}
    run_dir = Path(result["run_dir"])
    start_file = Path(cli.get("private_data_dir") or run_dir) / "start.json"
    steps = [step for step in result["steps"] if step.get("start") and step.get("end")]
    marks = {"launch": launched, **{k: v for k, v in cli.items() if isinstance(v, float)}}
    if start_file.exists():
        marks["guard_start_record"] = start_file.stat().st_mtime
    marks.update(fork["marks"])
    marks["first_task_started"] = min(_ts(step["start"]) for step in steps)
    marks["last_task_ended"] = max(_ts(step["end"]) for step in steps)
    marks["exited"] = exited
    row: dict[str, Any] = {"offsets": {name: round(stamp - launched, 4) for name, stamp in marks.items()},
                           "start_mode": (json.loads(start_file.read_text()).get("mode")
                                          if start_file.exists() else None),
                           "load_1m": round(os.getloadavg()[0], 2)}
    if "profile" in cli:
        row["cli_profile"] = cli["profile"]
    if "profile" in fork:
        row["fork_profile"] = fork["profile"]
    return row


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    names = [name for name in rows[0]["offsets"] if all(name in row["offsets"] for row in rows)]
    median = {name: round(statistics.median(row["offsets"][name] for row in rows), 4) for name in names}
    order = sorted(names, key=lambda name: median[name])
    phases = {}
    for earlier, later in zip(order, order[1:], strict=False):
        phases[f"{earlier} -> {later}"] = round(statistics.median(
            row["offsets"][later] - row["offsets"][earlier] for row in rows), 4)
    return {"offsets_median": {name: median[name] for name in order}, "phases_median": phases,
            "start_to_first_task_s": median.get("first_task_started"),
            "last_task_to_exit_s": round(statistics.median(
                row["offsets"]["exited"] - row["offsets"]["last_task_ended"] for row in rows), 4),
            "start_modes": sorted({str(row["start_mode"]) for row in rows}),
            "load_1m_median": round(statistics.median(row["load_1m"] for row in rows), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also --runs runs with cProfile (fork and launcher)")
    parser.add_argument("--json", type=Path, help="write the samples and medians here")
    parser.add_argument("--variant", action="append", default=[], help="NAME=TREE: pair source trees")
    args = parser.parse_args()
    if args.variant:
        paired(args)
        return
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-warm-path-", dir="/tmp"))
    probe_dir, out_dir, inventory = _setup(root)
    python_path = os.pathsep.join(filter(None, [str(probe_dir), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, ERLMCP_DR_HOME=str(root / "home"), ERLMCP_DR_PLAYBOOKS=str(FIXTURES),
               ERLMCP_DR_WARM_DIR=str(root / "w"), ERLMCP_DR_WARM="1", PYTHONPATH=python_path,
               ERLMCP_DR_WARM_PRELOAD="warm_path_probe", **{PROBE_OUT: str(out_dir)})
    try:
        first = one_run(env, inventory, probe_dir, out_dir)  # starts the zygote
        rows = []
        for _ in range(args.runs):
            rows.append(one_run(env, inventory, probe_dir, out_dir))
            print(json.dumps(rows[-1]["offsets"]), flush=True)
        profiled = []
        if args.profile:
            for _ in range(args.runs):
                profiled.append(one_run(dict(env, **{PROBE_PROFILE: "1"}), inventory, probe_dir, out_dir))
    finally:
        _stop_zygotes(root / "w")
        shutil.rmtree(root, ignore_errors=True)
    report: dict[str, Any] = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                              "runs": args.runs, "median": summarize(rows), "first_run_offsets": first["offsets"],
                              "samples": rows}
    if profiled:
        report["profiled"] = {"median": summarize(profiled), "cli_profile_last_run": profiled[-1].get("cli_profile"),
                              "fork_profile_last_run": profiled[-1].get("fork_profile")}
    print(json.dumps(report["median"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def _setup(root: Path) -> tuple[Path, Path, Path]:
    probe_dir, out_dir = root / "probe", root / "out"
    probe_dir.mkdir()
    out_dir.mkdir()
    (probe_dir / "warm_path_probe.py").write_text(textwrap.dedent(PROBE_SOURCE))
    (probe_dir / "launcher.py").write_text(textwrap.dedent(LAUNCHER_SOURCE))
    inventory = root / "hosts.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    return probe_dir, out_dir, inventory


def _variant_env(root: Path, probe_dir: Path, out_dir: Path, tree: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in ("ANSIBLE_COLLECTIONS_PATH", "PYTHONPATH")}
    env.update(ERLMCP_DR_HOME=str(root / "home"), ERLMCP_DR_PLAYBOOKS=str(FIXTURES), ERLMCP_DR_WARM_DIR=str(root / "w"),
               ERLMCP_DR_WARM="1", PYTHONPATH=os.pathsep.join([str(probe_dir), str(tree / "src")]),
               ERLMCP_DR_WARM_PRELOAD="warm_path_probe", ERLMCP_DR_COLLECTION=str(tree),
               ANSIBLE_CONFIG=str(tree / "ansible.cfg"), **{PROBE_OUT: str(out_dir)})
    return env


def paired(args: argparse.Namespace) -> None:
    trees = {name: Path(tree).resolve() for name, tree in (item.split("=", 1) for item in args.variant)}
    root = Path(tempfile.mkdtemp(prefix="erlmcp-dr-warm-path-", dir="/tmp"))
    probe_dir, out_dir, inventory = _setup(root)
    envs = {name: _variant_env(root, probe_dir, out_dir, tree) for name, tree in trees.items()}
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    try:
        for env in envs.values():
            one_run(env, inventory, probe_dir, out_dir)  # starts this tree's zygote
        for _ in range(args.runs):
            for name, env in envs.items():
                row = one_run(env, inventory, probe_dir, out_dir)
                rows[name].append(row)
                print(json.dumps({"variant": name, **{k: row["offsets"][k] for k in
                                                      ("first_task_started", "last_task_ended", "exited")},
                                  "load_1m": row["load_1m"]}), flush=True)
    finally:
        _stop_zygotes(root / "w")
        shutil.rmtree(root, ignore_errors=True)
    figures = {"start_to_first_task_s": lambda row: row["offsets"]["first_task_started"],
               "last_task_to_exit_s": lambda row: row["offsets"]["exited"] - row["offsets"]["last_task_ended"],
               "wall_s": lambda row: row["offsets"]["exited"]}
    names = list(trees)
    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "runs": args.runs,
        "variants": {name: str(tree) for name, tree in trees.items()},
        "median": {name: {key: round(statistics.median(get(row) for row in rows[name]), 4)
                          for key, get in figures.items()} for name in names},
        "ratios_to_first": {name: {key: round(statistics.median(get(b) / get(a) for a, b in
                                                                zip(rows[names[0]], rows[name], strict=True)), 3)
                                   for key, get in figures.items()} for name in names[1:]},
        "phases_median": {name: summarize(rows[name])["phases_median"] for name in names},
        "load_1m": sorted(row["load_1m"] for samples in rows.values() for row in samples),
        "samples": {name: [{key: round(get(row), 4) for key, get in figures.items()} | {"load_1m": row["load_1m"]}
                           for row in samples] for name, samples in rows.items()},
    }
    print(json.dumps({k: report[k] for k in ("median", "ratios_to_first", "phases_median")}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def _stop_zygotes(folder: Path) -> None:
    from erlmcp_dr.warm import client

    for zygote in client.zygotes(str(folder)):
        client.stop(zygote["socket"])


if __name__ == "__main__":
    main()
