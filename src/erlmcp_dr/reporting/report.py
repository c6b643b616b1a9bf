"""Renders a RunResult: report.md for the run folder, and a short summary for the terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from erlmcp_dr import bia, paths
from erlmcp_dr.result import RunResult, Step

SUMMARY_FACT = "summary"
NEXT_STEP_FACT = "next_step"
RUNNING = "running"
INTERRUPTED = "interrupted"
_RESULT_EVENTS = ("runner_on_ok", "runner_on_failed", "runner_on_skipped", "runner_on_unreachable")
# Plumbing every runbook starts with: the live display and the timeline chart leave these out (unless they
# fail); report.md, result.json and the step counts keep them.
INTERNAL_ACTIONS = frozenset({
    "ansible.builtin.validate_argument_spec", "validate_argument_spec",
    "erlmcp.dr.runbook_params", "erlmcp.dr.inventory_contract",
})


def is_internal(step: Step) -> bool:
    """A role's argument-spec validation, or the runbook_params / inventory_contract checks."""
    return step.action in INTERNAL_ACTIONS or step.task.startswith("Validating arguments against arg spec")


# ---------------------------------------------------------------- report.md


def render_markdown(result: RunResult) -> str:
    parts = [
        f"# {result.title or result.runbook}: {status_word(result)}",
        _overview(result),
    ]
    if not result.succeeded:
        parts.append(_outcome(result))
    parts.extend(_facts(result.facts))
    parts.append(_steps(result.steps))
    return "\n\n".join(part for part in parts if part) + "\n"


def _overview(result: RunResult) -> str:
    rows = [
        ("Run", f"`{result.run_id}`"),
        ("Runbook", f"`{result.runbook}`"),
        ("Mode", "check (a plan: nothing was changed)" if result.check else "live (changes applied)"),
        ("Status", f"{result.status} (rc {result.rc})"),
        ("Started", result.started_at),
        ("Ended", result.ended_at),
        ("Duration", duration_vs_target(result)),
        ("Inventory", f"`{result.inventory}`"),
        ("Parameters", ", ".join(f"`{key}={_inline(value)}`" for key, value in result.extravars.items()) or "none"),
        ("Run folder", f"`{result.run_dir}`"),
    ]
    lines = ["| | |", "|---|---|"]
    lines.extend(f"| {name} | {_cell(value)} |" for name, value in rows)
    return "\n".join(lines)


def duration_vs_target(result: RunResult) -> str:
    took = f"{result.duration_seconds:.1f} s"
    target = result.rto_target_seconds
    if target is None:
        return took
    if result.check:
        return f"{took} (RTO target {target} s; a plan does not measure recovery time)"
    if not result.succeeded:
        return f"{took} (RTO target {target} s)"
    # The BIA's one rule for objectives (also postmortem, compliance, readiness): achieved <= limit meets it.
    verdict = "within" if bia.meets(result.duration_seconds, target) else "OVER"
    return f"{took}: {verdict} the RTO target of {target} s"


def _outcome(result: RunResult) -> str:
    lines = ["## What went wrong", ""]
    failing = result.failing_step
    if failing is not None:
        where = "unreachable" if failing.unreachable else "failed"
        lines.append(f"**{failing.task}** {where} on `{failing.host}`:")
        lines.append("")
        lines.append(_quote(failing.message or "(no message)"))
        earlier = [step for step in result.failed_steps if step is not failing]
        if earlier:
            lines.append("")
            lines.append("Earlier failures (the runbook's rescue or rollback steps ran after them; "
                         "the first is often the cause):")
            for step in earlier:
                lines.extend(["", f"- **{step.task}** on `{step.host}`:", "",
                              _quote(step.message or "(no message)", prefix="  > ")])
    elif result.status in ("canceled", "timeout"):
        lines.append(f"The run was {result.status} before it finished.")
    elif result.status in (INTERRUPTED, RUNNING):
        lines.append(_quote(result.error or f"The run is {result.status}."))
    if result.error and result.status not in (INTERRUPTED, RUNNING):
        lines.extend(["", "Output:", "", "```", result.error, "```"])
    lines.extend(["", f"**What to do next:** {next_step(result)}"])
    return "\n".join(lines)


def next_step(result: RunResult) -> str:
    """A published `next_step` fact wins; otherwise a pointer that fits how the run ended."""
    published = result.facts.get(NEXT_STEP_FACT) or details_of(result.facts).get(NEXT_STEP_FACT)
    if published:
        return str(published)
    failing = result.failing_step
    stdout = f"{result.run_dir}/artifacts/{result.run_id}/stdout"
    if failing is not None and failing.unreachable:
        return (f"host `{failing.host}` could not be reached: check it is up and that the inventory "
                f"`{result.inventory}` has the right address and credentials, then run again.")
    if failing is not None:
        return ("the message above says what was found, what was expected and which parameter overrides the "
                f"check, if any; later steps did not run. Fix the cause, preview with `runbook plan {result.runbook}`, "
                f"then run again. Full log: `{stdout}`")
    if result.status == "timeout":
        return "the run hit its time limit: check the last step in the table below, then run again."
    if result.status == INTERRUPTED:
        return (f"the run stopped without finishing (see where above). Every runbook converges from any state it "
                f"leaves behind: preview with `runbook plan {result.runbook}`, then run it again.")
    if result.status == RUNNING:
        return f"wait for it to end, then `runbook report {result.run_id}` again."
    if result.status == "canceled":
        return "the run was interrupted: check the steps below to see how far it got before running again."
    return f"read the output above and the full log at `{stdout}`."


def _facts(facts: Dict[str, Any]) -> List[str]:
    if not facts:
        return []
    sections = []
    ordered = sorted(facts, key=lambda key: (key != SUMMARY_FACT, key == NEXT_STEP_FACT))
    for key in ordered:
        if key == NEXT_STEP_FACT:
            continue
        title = "Summary" if key == SUMMARY_FACT else key.replace("_", " ").capitalize()
        value = facts[key]
        if key == SUMMARY_FACT and isinstance(value, dict) and isinstance(value.get("details"), dict):
            envelope = dict((name, item) for name, item in value.items() if name != "details")
            sections.append(f"## {title}\n\n{_fact_body(envelope)}")
            title, value = "Details", value["details"]
        sections.append(f"## {title}\n\n{_fact_body(value)}")
    return sections


def _fact_body(value: Any) -> str:
    if isinstance(value, dict) and value:
        lines = ["| | |", "|---|---|"]
        lines.extend(f"| {_cell(str(key))} | {_cell(_inline(item))} |" for key, item in value.items())
        return "\n".join(lines)
    if isinstance(value, list) and value and all(not isinstance(item, (dict, list)) for item in value):
        return "\n".join(f"- {item}" for item in value)
    if isinstance(value, (dict, list)):
        return "```json\n" + json.dumps(value, indent=2, default=str) + "\n```"
    return str(value)


def _steps(steps: List[Step]) -> str:
    if not steps:
        return "## Steps\n\nNo step ran."
    lines = ["## Steps", "", "| # | Task | Host | Duration | Result | Message |", "|---|---|---|---|---|---|"]
    for number, step in enumerate(steps, 1):
        message = _oneline(step.message, 200)
        lines.append(f"| {number} | {_cell(step.task)} | {_cell(step.host)} | {_seconds(step.duration)} "
                     f"| {step.status} | {_cell(message)} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- terminal


def render_terminal(result: RunResult) -> str:
    mark = "OK" if result.succeeded else result.status.upper()
    lines = [f"[{mark}] {result.runbook}: {result.status} in {duration_vs_target(result)}"]
    if result.check:
        lines.append("  check mode: this was a plan, nothing was changed")
    lines.append(f"  steps: {step_counts(result.steps)}")
    summary = summary_of(result.facts)
    if summary:
        shown = dict((key, value) for key, value in summary.items() if key != "details")
        shown.update(details_of(result.facts))  # the system's facts beside the envelope's, on one line
        lines.append("  summary: " + ", ".join(f"{key}={_inline(value)}" for key, value in shown.items()))
    if not result.succeeded:
        failing = result.failing_step
        if failing is not None:
            lines.append(f"  failed at: {failing.task} on {failing.host}")
            lines.extend(f"    {line}" for line in (failing.message or "(no message)").splitlines())
            lines.extend(f"  earlier failure: {step.task} on {step.host}: {_oneline(step.message, 240)}"
                         for step in result.failed_steps if step is not failing)
        elif result.error:
            lines.extend(f"    {line}" for line in result.error.splitlines()[-10:])
        lines.append(f"  next: {next_step(result)}")
    lines.append(f"  report: runbook report {result.run_id}  ({result.run_dir}/report.md)")
    return "\n".join(lines)


def step_line(step: Step) -> str:
    """One live progress line: status mark, host, task, duration."""
    return f"{'[' + step.status + ']':<14}{step.host:<16} {step.task} ({_seconds(step.duration)})"


def step_counts(steps: List[Step]) -> str:
    counts: Dict[str, int] = {}
    for step in steps:
        counts[step.status] = counts.get(step.status, 0) + 1
    order = ["ok", "changed", "skipped", "ignored", "failed", "unreachable"]
    listed = ", ".join(f"{counts[name]} {name}" for name in order if counts.get(name))
    return f"{len(steps)} ({listed})" if steps else "none ran"


# ---------------------------------------------------------------- helpers


def summary_of(facts: Dict[str, Any]) -> Dict[str, Any]:
    """The summary envelope a runbook published (plugins/module_utils/_common/summary.py), {} when none."""
    summary = facts.get(SUMMARY_FACT)
    return summary if isinstance(summary, dict) else {}


def details_of(facts: Dict[str, Any]) -> Dict[str, Any]:
    """The envelope's `details`: the system's own facts (primaries, LSNs, records, deliveries). A summary published
    before the envelope (an older run's result.json: no `details` key) held them at its top, so it is its own."""
    summary = summary_of(facts)
    if "details" not in summary:
        return summary
    details = summary.get("details")
    return details if isinstance(details, dict) else {}


def _seconds(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _inline(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _oneline(text: str, limit: int = 300) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", "<br>")


def _quote(text: str, prefix: str = "> ") -> str:
    return "\n".join(f"{prefix}{line}" if line else prefix.rstrip() for line in text.splitlines())


def status_word(result: RunResult) -> str:
    if result.succeeded:
        return "plan succeeded" if result.check else "succeeded"
    return {"failed": "FAILED", "canceled": "CANCELED", "timeout": "TIMED OUT", INTERRUPTED: "INTERRUPTED",
            RUNNING: "still running"}.get(result.status, result.status)


# ---------------------------------------------------------------- a run without result.json


def result_or_remains(run_dir: Path) -> Optional[RunResult]:
    """The run's result.json; else what the folder holds (unfinished_result: run.json and ansible-runner's
    events), saying what is missing: no result.json, or one that cannot be read (a full disk truncated it before
    results were written atomically). None when the folder holds neither."""
    from erlmcp_dr.result import RESULT_FILE

    path = run_dir / RESULT_FILE
    try:
        return RunResult.load(run_dir)
    except FileNotFoundError:
        missing = None
    except (OSError, ValueError, TypeError) as exc:
        missing = f"{RESULT_FILE} could not be read ({_oneline(str(exc), 160)})"
    remains = unfinished_result(run_dir)
    if remains is None or missing is None:
        return remains
    ended = paths.read_json_object(run_dir / "run.json").get("status")
    if ended and ended not in (RUNNING, INTERRUPTED):  # run.json's final status, written after result.json
        remains.status = str(ended)
        remains.error = f"The run ended {ended}."
    remains.error = (f"{missing}: this report is drawn from what the run folder holds ({path.parent}: run.json and "
                     f"ansible-runner's events); facts and the result's summary are missing. {remains.error}")
    return remains



def unfinished_result(run_dir: Path) -> Optional[RunResult]:
    """What a run folder without result.json says: still `running` (its process is alive) or `interrupted`
    (killed or crashed), with the steps that finished and the step it was at. None without a run.json marker."""
    from erlmcp_dr.guard import process_alive
    from erlmcp_dr.result import MARKER_FILE
    from erlmcp_dr.timeline import Timeline

    marker = paths.read_json_object(run_dir / MARKER_FILE)
    if not marker:
        return None
    run_id = str(marker.get("run_id") or run_dir.name)
    events = job_events(run_dir / "artifacts" / run_id / "job_events")
    timeline = Timeline([])
    for event in events:
        timeline(event)
    alive = process_alive(marker)
    status = RUNNING if alive else INTERRUPTED
    return RunResult(
        run_id=run_id, runbook=str(marker.get("runbook") or ""), status=status, rc=None,
        check=bool(marker.get("check")), started_at=str(marker.get("started_at") or ""), ended_at="",
        duration_seconds=0.0, inventory=str(marker.get("inventory") or ""),
        extravars=marker.get("extravars") if isinstance(marker.get("extravars"), dict) else {},
        steps=timeline.steps, facts={}, run_dir=str(run_dir), title=str(marker.get("title") or ""),
        rto_target_seconds=marker.get("rto_target_seconds"), rpo_target_seconds=marker.get("rpo_target_seconds"),
        error=_where(marker, alive, in_flight(events)),
    )


def job_events(directory: Path) -> List[Dict[str, Any]]:
    """ansible-runner's job_events/<counter>-<uuid>.json, in order."""
    found: List[Tuple[int, Dict[str, Any]]] = []
    for path in directory.glob("*.json") if directory.is_dir() else []:
        event = paths.read_json_object(path)
        if event:
            found.append((int(event.get("counter") or 0), event))
    return [event for _, event in sorted(found, key=lambda pair: pair[0])]


def in_flight(events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The tasks started on a host without a result: [{task, host, start}]."""
    started: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for event in events:
        data = event.get("event_data") or {}
        key = (str(data.get("task_uuid") or ""), str(data.get("host") or ""))
        if event.get("event") == "runner_on_start":
            started[key] = {"task": str(data.get("task") or ""), "host": key[1],
                            "start": str(event.get("created") or "")}
        elif event.get("event") in _RESULT_EVENTS:
            started.pop(key, None)
    return list(started.values())


def _where(marker: Dict[str, Any], alive: bool, pending: List[Dict[str, Any]]) -> str:
    pid, host = marker.get("pid"), marker.get("host") or "this host"
    at = "; ".join(f"**{item['task']}** on `{item['host']}` (started {item['start'] or '?'}, no result)"
                   for item in pending)
    if alive:
        return f"The run is still going (pid {pid} on {host})" + (f": at {at}." if at else ".")
    where = f"It was at {at}." if at else "No step was in progress (it stopped between steps or before the first)."
    return (f"The run was interrupted: its process (pid {pid} on {host}) is gone, killed or crashed before the "
            f"run ended, so it wrote no result. {where}")


