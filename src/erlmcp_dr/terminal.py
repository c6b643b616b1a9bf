"""What `runbook run` and `runbook plan` show a person at a terminal.

Only on a terminal (the stream is a TTY); piped or redirected output keeps the plain, stable lines of
report.render_terminal / report.step_line that scripts and tests parse.

- the plan first: a check-mode run's summary (what would change), before the confirmation prompt;
- the step that is running, with its elapsed time, on one line rewritten in place (a carriage return and
  padding: no cursor escape), by a ticker thread; each finished step then as one line, internal plumbing
  (argument-spec validation, runbook_params, inventory_contract) left out unless it failed;
- the outcome as a readable block.

Colours (SGR escapes) only when the stream is a TTY, NO_COLOR is unset or empty (https://no-color.org) and
TERM is not `dumb`; without them the output holds no escape sequence at all. No terminal library: the few
escapes used here cost nothing at start-up (rich's import alone takes ~40 ms; docs/reports.md).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from typing import IO, Any, Dict, List, Optional, Tuple

from erlmcp_dr.reporting import report
from erlmcp_dr.result import RunResult, Step

TICK = 0.25  # seconds between two redraws of the running step's line
_SGR = {
    "ok": "32", "changed": "33", "skipped": "2", "ignored": "35", "failed": "1;31", "unreachable": "1;31",
    "bold": "1", "dim": "2", "good": "1;32", "bad": "1;31", "warn": "33",
}
_MARKS = {"ok": "ok", "changed": "changed", "skipped": "skip", "ignored": "ignored", "failed": "FAILED",
          "unreachable": "UNREACH"}
_SUMMARY_KEYS = ("action", "old_primary", "new_primary", "primary", "lag_bytes_at_gate", "timeline_before",
                 "timeline_after", "lost_bytes_max", "promote_seconds", "streaming", "left_out", "end_state_ok",
                 "end_state_problems", "app_config", "reason")


def colour_wanted(stream: IO[str], environ: Optional[Dict[str, str]] = None) -> bool:
    environ = os.environ if environ is None else environ
    return is_tty(stream) and not environ.get("NO_COLOR") and environ.get("TERM", "") != "dumb"


def is_tty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):
        return False


class Style:
    def __init__(self, colour: bool) -> None:
        self.colour = colour

    def __call__(self, text: str, style: str) -> str:
        code = _SGR.get(style)
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour and code else text


# ---------------------------------------------------------------- live progress


class Progress:
    """The event callbacks of a run on a terminal: `started(task, host, action)` and `finished(step)`.

    A ticker thread redraws the running step's line (task, host, seconds so far) every TICK; a finished step
    replaces it with its result line. `close()` stops the ticker and clears the line."""

    def __init__(self, stream: IO[str], colour: Optional[bool] = None, show_steps: bool = True,
                 label: str = "") -> None:
        self.stream = stream
        self.style = Style(colour_wanted(stream) if colour is None else colour)
        self.show_steps = show_steps
        self.label = label
        self.running: Dict[Tuple[str, str], float] = {}
        self.shown = 0  # width of the status line on screen
        self.drawn = ""  # the status line on screen
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._tick, name="runbook-progress", daemon=True)
        self.thread.start()

    def started(self, task: str, host: str, action: str = "") -> None:
        if _internal(task, action):
            return
        with self.lock:
            self.running[(task, host)] = time.monotonic()
            self._draw()

    def finished(self, step: Step) -> None:
        with self.lock:
            self.running.pop((step.task, step.host), None)
            if self.show_steps and (not report.is_internal(step) or step.failed):
                self._clear()
                self.stream.write(step_line(step, self.style) + "\n")
            self._draw()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        with self.lock:
            self._clear()
            self.stream.flush()

    def _tick(self) -> None:
        while not self.stop.wait(TICK):
            with self.lock:
                self._draw()

    def _draw(self) -> None:
        line = self.status_line()
        if not line and not self.shown:
            return
        width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
        line = line[:width]
        if line == self.drawn:
            return  # redrawn only when it changes (a new step, one more second)
        self.stream.write("\r" + line + " " * max(0, self.shown - len(line)))
        self.stream.flush()
        self.shown, self.drawn = len(line), line

    def _clear(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * self.shown + "\r")
            self.shown, self.drawn = 0, ""

    def status_line(self) -> str:
        if not self.running:
            return ""
        (task, host), since = max(self.running.items(), key=lambda item: item[1])
        others = len(self.running) - 1
        more = f" (+{others} more)" if others else ""
        prefix = f"{self.label} " if self.label else ""
        return f"  .. {prefix}{task} on {host}{more}  {time.monotonic() - since:.0f}s"


def _internal(task: str, action: str) -> bool:
    return action in report.INTERNAL_ACTIONS or task.startswith("Validating arguments against arg spec")


def step_line(step: Step, style: Style) -> str:
    mark = style(f"{_MARKS.get(step.status, step.status):<8}", step.status)
    duration = "" if step.duration is None else f"  {step.duration:.1f}s"
    text = f"  {mark}{step.host:<14} {step.task}{style(duration, 'dim')}"
    if step.status in ("failed", "unreachable", "ignored") and step.message:
        text += "\n" + "\n".join(f"           {line}" for line in step.message.splitlines()[:12])
    return text


# ---------------------------------------------------------------- the plan and the outcome


def plan_lines(result: RunResult) -> List[str]:
    """What a check-mode run says would change: the summary's `did` sentences (with the lag at the gate on the
    promotion), its `will_change` lines (what serves or holds what, before -> after; dns_cutover: each record's
    old -> new values), the `guard` the confirmed run will hold, its `may_lose` lines (what the change gives up),
    its warnings, or the plan's failure."""
    summary = report.summary_of(result.facts)
    if not result.succeeded:
        failing = result.failing_step
        why = (failing.message if failing else result.error) or result.status
        return [f"the plan FAILED: {why}"]
    details = report.details_of(result.facts)
    did = [str(item) for item in summary.get("did") or [] if str(item) != "nothing was changed"]
    lag = details.get("lag_bytes_at_gate")
    lines = [_with_lag(item, details.get("new_primary"), lag) for item in did]
    plan = summary.get("plan") or {}
    lines.extend(f"will change: {item}" for item in plan.get("will_change") or [])
    if plan.get("guard"):
        lines.append(f"guard: {plan['guard']}")
    changed = [step for step in result.steps if step.changed and not report.is_internal(step)]
    if not lines and changed:  # a runbook without a `did` summary: the steps that would change something
        lines = [f"would change: {step.task} on {step.host}" for step in changed]
    if not lines:
        lines = ["nothing to change: the end state already holds"]
    lines.extend(f"may lose: {item}" for item in plan.get("may_lose") or [])
    lines.extend(f"warning: {warning}" for warning in details.get("warnings") or [])
    return lines


def _with_lag(sentence: str, candidate: Any, lag: Any) -> str:
    if candidate and lag not in (None, "") and sentence.startswith(f"would promote {candidate}"):
        return f"{sentence} (lag {lag} B)"
    return sentence


def render_plan(result: RunResult, inventory: str, style: Style) -> str:
    head = style(f"Plan for {result.runbook}", "bold") + f" against {inventory} (check mode, nothing changed):"
    lines = [head]
    for line in plan_lines(result):
        kind = "bad" if line.startswith("the plan FAILED") else "warn" if line.startswith(("warning:", "may lose:")) \
            else ""
        lines.append(f"  - {style(line, kind) if kind else line}")
    lines.append(style(f"  plan report: runbook report {result.run_id}", "dim"))
    return "\n".join(lines)


def render_summary(result: RunResult, style: Style) -> str:
    """The outcome as a block: verdict, what was done, the key facts, counts, where the report is."""
    ok = result.succeeded
    verdict = style(" OK " if ok else f" {result.status.upper()} ", "good" if ok else "bad")
    width = min(88, max(40, shutil.get_terminal_size((100, 24)).columns - 1))
    lines = ["-" * width, f"{verdict} {result.runbook}: {report.duration_vs_target(result)}"]
    if result.check:
        lines.append("  check mode: this was a plan, nothing was changed")
    summary = report.summary_of(result.facts)
    did = [str(item) for item in summary.get("did") or []]
    if did:
        lines.append("  " + style("what was done" if not result.check else "what would be done", "bold"))
        lines.extend(f"    - {item}" for item in did)
    end = summary.get("end_state") or {}
    facts = dict(report.details_of(result.facts), action=summary.get("action"), reason=summary.get("reason"),
                 end_state_ok=end.get("ok"), end_state_problems=end.get("problems"))
    rows = [(key.replace("_", " "), _value(facts[key])) for key in _SUMMARY_KEYS
            if facts.get(key) not in (None, "", [], {})]
    if rows:
        pad = max(len(name) for name, _ in rows)
        lines.extend(f"  {name:<{pad}}  {value}" for name, value in rows)
    lines.append(f"  steps  {report.step_counts(result.steps)}")
    if not ok:
        failing = result.failing_step
        if failing is not None:
            lines.append("  " + style(f"failed at: {failing.task} on {failing.host}", "bad"))
            lines.extend(f"    {line}" for line in (failing.message or "(no message)").splitlines())
        elif result.error:
            lines.extend(f"    {line}" for line in result.error.splitlines()[-10:])
        lines.append(f"  next: {report.next_step(result)}")
    lines.append(f"  report: runbook report {result.run_id}   (--html: {result.run_dir}/report.html)")
    lines.append("-" * width)
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def write(stream: IO[str], text: str) -> None:
    stream.write(text + "\n")
    stream.flush()
