"""Where a composed run's time goes, from its step records and its children's run folders (benchmarks/regional.py).

Measured, not asserted. Every moment is a wall-clock time (seconds since the epoch) taken from what the runs left:
the parent's step records (ISO, milliseconds), each child's result.json (its tasks' start and end from
ansible-runner's events, microseconds), and the client-side moments the benchmark's watchers saw (time.time()).
The rows are offsets from a reference moment (the end of the confirmation step in the unplanned benchmark).

For one child step the rows are:
- `<step>: child start`: the parent's step start -> the child's first task start (the run folder, the parameters
  checked, ansible-runner, the guard, the warm zygote's fork or a cold ansible-playbook, the playbook parsed);
- `<step>: <task>`: each task, with the timings its module returned (`durations` of a one-task start, `*_seconds`);
- `<step>: between tasks`: the sum of the gaps between one task's end and the next one's start (the strategy's
  templating and worker forks);
- `<step>: child end`: the last task's end -> the parent's step end (the child's result.json and reports, the
  parent's journal).
A built-in step (run in the parent) is one row.

Per child step, its fixed cost (`step_costs`: the child start and the child end above, their sum, and the steps that
started beside it) and their median and largest over one or more runs (`costs_summary`).
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def epoch(text: str | None) -> float | None:
    """An ISO timestamp (with Z or an offset; naive means UTC) as seconds since the epoch."""
    if not text:
        return None
    moment = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def child_result(runs_dir: Path, run_id: str | None) -> dict[str, Any] | None:
    if not run_id:
        return None
    path = runs_dir / run_id / "result.json"
    return json.loads(path.read_text()) if path.exists() else None


def module_timings(data: dict[str, Any]) -> dict[str, Any]:
    """The timings a task's module returned: a start's `durations`, and its numeric `*_seconds` / `waited*`."""
    found: dict[str, Any] = {}
    durations = data.get("durations")
    if isinstance(durations, dict):
        found.update({f"durations.{key}": value for key, value in durations.items()
                      if isinstance(value, (int, float))})
    for key, value in data.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (
                key.endswith("_seconds") or key.startswith("waited")):
            found[key] = value
    return found


def _timed_tasks(child: dict[str, Any]) -> list[dict[str, Any]]:
    return [task for task in child.get("steps") or [] if task.get("start") and task.get("end")]


def child_edges(step: dict[str, Any], child: dict[str, Any] | None) -> tuple[float, float, float, float] | None:
    """(the parent's step start, the child's first task start, its last task end, the parent's step end), seconds
    since the epoch; None for a built-in step, a child without task timings, or a step not timed."""
    start, end = epoch(step.get("start")), epoch(step.get("end"))
    tasks = _timed_tasks(child) if child is not None else []
    if start is None or end is None or not tasks:
        return None
    first, last = epoch(tasks[0]["start"]), epoch(tasks[-1]["end"])
    assert first is not None and last is not None
    return start, first, last, end


def step_rows(step: dict[str, Any], child: dict[str, Any] | None, zero: float) -> list[Row]:
    """The rows of one parent step (a record of the engine, as in result.json's steps)."""
    name = str(step["task"]).split(":")[0]
    start, end = epoch(step.get("start")), epoch(step.get("end"))
    if start is None or end is None:
        return []
    if child is None:
        return [{"step": name, "what": "built-in (in the parent)", "at_s": round(start - zero, 3),
                 "s": round(end - start, 3)}]
    edges = child_edges(step, child)
    if edges is None:
        return [{"step": name, "what": "child run (no task timings)", "at_s": round(start - zero, 3),
                 "s": round(end - start, 3)}]
    tasks = _timed_tasks(child)
    rows: list[Row] = []
    _, first, last, _ = edges
    rows.append({"step": name, "what": "child start", "at_s": round(start - zero, 3), "s": round(first - start, 3)})
    between = 0.0
    previous_end = first
    for task in tasks:
        task_start, task_end = epoch(task["start"]), epoch(task["end"])
        assert task_start is not None and task_end is not None
        between += max(0.0, task_start - previous_end)
        previous_end = task_end
        row: Row = {"step": name, "what": str(task["task"])[:70], "at_s": round(task_start - zero, 3),
                    "s": round(task_end - task_start, 3), "status": _status(task)}
        timings = module_timings(task.get("data") or {})
        if timings:
            row["timings"] = timings
        rows.append(row)
    rows.append({"step": name, "what": "between tasks (sum)", "at_s": None, "s": round(between, 3)})
    rows.append({"step": name, "what": "child end", "at_s": round(last - zero, 3), "s": round(end - last, 3)})
    return rows


def _status(task: dict[str, Any]) -> str:
    if task.get("skipped"):
        return "skipped"
    if task.get("failed"):
        return "ignored" if task.get("ignored") else "failed"
    return "changed" if task.get("changed") else "ok"


def run_rows(result: Any, runs_dir: Path, zero: float, from_step: str | None = None) -> list[Row]:
    """Every step's rows (from `from_step` on, when given), in order."""
    rows: list[Row] = []
    started = from_step is None
    for step in result.steps:
        name = step.task.split(":")[0]
        started = started or name == from_step
        if not started:
            continue
        child = child_result(runs_dir, (step.data or {}).get("child_run_id"))
        rows.extend(step_rows(step.to_dict(), child, zero))
    return rows


def step_costs(result: Any, runs_dir: Path) -> list[Row]:
    """Per step run as a child run, what running it as a run of its own costs (seconds, the r14 file's figures):
    `child_start_s` (the parent's step start -> the child's first task), `child_end_s` (its last task -> the parent's
    step end), `fixed_s` their sum; `composition_s`, the parent's time around the step minus the child's own
    duration (its result.json: the part of the fixed cost outside the child run). Which steps shared the CPUs with
    its start (its step start -> first task): `started_with`, the steps whose own child start overlapped it (the
    forks and parses at once: the background steps and the step after them), and `beside`, every step whose child
    run was under way meanwhile (those, and a background step waiting in a task). Built-in steps run in the parent,
    for a millisecond: not counted."""
    timed = []
    for step in result.steps:
        child = child_result(runs_dir, (step.data or {}).get("child_run_id"))
        edges = child_edges(step.to_dict(), child)
        if child is not None and edges is not None:
            timed.append((step.task.split(":")[0], step, child, edges))
    costs: list[Row] = []
    for index, (name, step, child, (start, first, last, end)) in enumerate(timed):
        others = [(other, other_edges) for at, (other, _, _, other_edges) in enumerate(timed) if at != index]
        costs.append({
            "step": name, "child_start_s": round(first - start, 3), "child_end_s": round(end - last, 3),
            "fixed_s": round(first - start + end - last, 3),
            "composition_s": round(step.duration - float(child.get("duration_seconds") or 0.0), 3),
            "started_with": [other for other, (a, b, _, _) in others if a < first and b > start],
            "beside": [other for other, (a, _, _, d) in others if a < first and d > start]})
    return costs


def costs_summary(costs: list[Row]) -> Row:
    """Over the steps of one or more composed runs (step_costs): the median and the largest fixed cost; the median of
    the steps whose child started alone and of those whose start overlapped another's (which, with whom); the steps
    under way beside others at their start; the median composition cost."""
    def median(values: list[float]) -> float | None:
        return round(statistics.median(values), 3) if values else None

    def union(key: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for cost in costs:
            for other in cost[key]:
                if other not in found.setdefault(cost["step"], []):
                    found[cost["step"]].append(other)
        return found

    if not costs:
        return {}
    largest = max(costs, key=lambda cost: cost["fixed_s"])
    return {"steps": len(costs), "fixed_s_median": median([cost["fixed_s"] for cost in costs]),
            "fixed_s_max": largest["fixed_s"], "fixed_s_max_step": largest["step"],
            "fixed_s_median_started_alone": median([cost["fixed_s"] for cost in costs if not cost["started_with"]]),
            "fixed_s_median_started_together": median([cost["fixed_s"] for cost in costs if cost["started_with"]]),
            "started_together": union("started_with"), "beside_others_at_start": union("beside"),
            "composition_s_median": median([cost["composition_s"] for cost in costs])}


def print_costs(costs: list[Row]) -> str:
    lines = [f"{'step':10} {'child start':>11} {'child end':>10} {'fixed':>7}  started with; under way beside"]
    for cost in costs:
        lines.append(f"{cost['step']:10} {cost['child_start_s']:11.3f} {cost['child_end_s']:10.3f} "
                     f"{cost['fixed_s']:7.3f}  {', '.join(cost['started_with']) or '-'}; "
                     f"{', '.join(cost['beside']) or '-'}")
    return "\n".join(lines)


def task_end(result: Any, runs_dir: Path, step_name: str, action: str) -> float | None:
    """When a task running `action` ended in the child run of `step_name` (e.g. the app config's rewrite)."""
    for step in result.steps:
        if step.task.split(":")[0] != step_name:
            continue
        child = child_result(runs_dir, (step.data or {}).get("child_run_id"))
        for task in (child or {}).get("steps") or []:
            if task.get("action") == action and not task.get("skipped"):
                return epoch(task.get("end"))
    return None


def print_rows(rows: list[Row]) -> str:
    lines = [f"{'at':>8} {'seconds':>8}  step: what"]
    for row in rows:
        at = "" if row.get("at_s") is None else f"{row['at_s']:8.3f}"
        timings = row.get("timings")
        extra = "  " + ", ".join(f"{k}={v}" for k, v in timings.items()) if timings else ""
        lines.append(f"{at:>8} {row['s']:8.3f}  {row['step']}: {row['what']}{extra}")
    return "\n".join(lines)


class DnsWatcher:
    """Asks every authoritative server, every `interval` seconds, what the public name answers; remembers when each
    first answered `address` (time.time())."""

    def __init__(self, servers: list[Any], name: str, address: str, interval: float = 0.02) -> None:
        self.servers, self.name, self.address, self.interval = servers, name, address, interval
        self.first: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dns-watcher", daemon=True)

    def __enter__(self) -> DnsWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        from erlmcp_dr.lab import dns as lab_dns

        while not self._stop.is_set() and len(self.first) < len(self.servers):
            for server in self.servers:
                if server.name in self.first:
                    continue
                try:
                    answered = lab_dns.answers(server, self.name)
                except Exception:  # noqa: BLE001 - a server that does not answer has not moved yet
                    continue
                if self.address in answered:
                    self.first[server.name] = time.time()
            self._stop.wait(self.interval)
