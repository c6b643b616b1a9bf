"""The run's timeline: ansible-runner's events turned into steps (Step) and facts (set_stats), secrets scrubbed.

RunbookRun (runner.py) hands a Timeline to ansible-runner as its event handler; reports, the terminal and the audit
trail read the steps it made. No process handling here (guard.py) and no run folder (runner.py).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Dict, List, Mapping, Optional

from erlmcp_dr.redaction import MIN_SCRUB_LENGTH, scrub_text
from erlmcp_dr.result import Step

log = logging.getLogger(__name__)

StepCallback = Callable[[Step], None]
StartCallback = Callable[[str, str, str], None]  # (task, host, action): a task has started on a host
# A step that changed something; its before/after (the module's diff) and the strings of its arguments.
AuditCallback = Callable[[Step, Dict[str, Any], List[str]], None]

STEP_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}
# Keys of a module result that are bookkeeping, not the facts a step reports.
_DROPPED_RESULT_KEYS = frozenset({"invocation", "changed", "failed", "msg", "diff"})
_COLLECTION_PREFIX = "erlmcp.dr."



class Timeline:
    """ansible-runner event handler: steps from runner_on_* events, facts from set_stats."""

    def __init__(self, secrets: List[str], on_step: Optional[StepCallback] = None,
                 on_start: Optional[StartCallback] = None, on_change: Optional[AuditCallback] = None) -> None:
        self.secrets = [value for value in secrets if len(value) >= MIN_SCRUB_LENGTH]
        self.on_step = on_step
        self.on_start = on_start
        self.on_change = on_change
        self.steps: List[Step] = []
        self.facts: Dict[str, Any] = {}
        self.stats: Dict[str, Any] = {}
        self.leaks = 0

    def __call__(self, event: Dict[str, Any]) -> bool:
        kind = event.get("event")
        data = event.get("event_data") or {}
        if kind in STEP_EVENTS:
            step = self._scrubbed(make_step(STEP_EVENTS[kind], data))
            self.steps.append(step)
            if step.changed and self.on_change is not None:
                res = data.get("res") if isinstance(data.get("res"), dict) else {}
                self._call(self.on_change, step, self._scrubbed(before_after(step.action, res)),
                           self._scrubbed(named_in(res)))
            self._notify(step)
        elif kind == "runner_on_start" and self.on_start is not None:
            task = str(data.get("task") or data.get("task_action") or "")
            action = str(data.get("resolved_action") or data.get("task_action") or "")
            self._call(self.on_start, task, str(data.get("host") or ""), action)
        elif kind == "playbook_on_stats":
            self.facts = self._scrubbed(data.get("artifact_data") or {})
            self.stats = {key: data.get(key) or {} for key in
                          ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored")}
        return True  # keep the event: ansible-runner writes it to job_events/

    def _notify(self, step: Step) -> None:
        if self.on_step is not None:
            self._call(self.on_step, step)

    @staticmethod
    def _call(callback: Callable[..., None], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:  # a broken progress display or audit write must not stop a failover
            log.exception("run callback %r failed", getattr(callback, "__name__", callback))

    def _scrubbed(self, value: Any) -> Any:
        if not self.secrets:
            return value
        is_step = isinstance(value, Step)
        text = json.dumps(value.to_dict() if is_step else value, default=str)
        clean = scrub_text(text, self.secrets)
        if clean == text:
            return value
        self.leaks += 1
        loaded = json.loads(clean)
        return Step.from_dict(loaded) if is_step else loaded


def make_step(outcome: str, data: Dict[str, Any]) -> Step:
    res = data.get("res") if isinstance(data.get("res"), dict) else {}
    action = str(data.get("resolved_action") or data.get("task_action") or "")
    failed = outcome == "failed"
    return Step(
        task=str(data.get("task") or action or "(unnamed task)"),
        host=str(data.get("host") or ""),
        action=action,
        start=text_or_none(data.get("start")),
        end=text_or_none(data.get("end")),
        duration=float(data["duration"]) if data.get("duration") is not None else None,
        changed=bool(res.get("changed")) and outcome == "ok",
        failed=failed,
        skipped=outcome == "skipped",
        unreachable=outcome == "unreachable",
        message=step_message(res, failed),
        data=step_data(action, res),
        ignored=failed and bool(data.get("ignore_errors")),
        role=str(data.get("role") or ""),
    )


def named_in(res: Mapping[str, Any]) -> List[str]:
    """What a task result names directly: its top-level string values, its module's top-level string arguments
    and its loop items (not nested lists: a member list names every node, not the one acted on)."""
    invocation = res.get("invocation") if isinstance(res.get("invocation"), dict) else {}
    arguments = invocation.get("module_args") if isinstance(invocation.get("module_args"), dict) else {}
    items = [item.get("item") for item in res.get("results") or [] if isinstance(item, dict)
             and (item.get("changed") or item.get("failed"))]
    values = [*res.values(), *arguments.values(), *items]
    return [value for value in values if isinstance(value, str) and len(value) < 256]


def before_after(action: str, res: Any) -> Dict[str, Any]:
    """An erlmcp.dr module's diff as {'before': ..., 'after': ...} (a list of them for a loop), else {}."""
    if not action.startswith(_COLLECTION_PREFIX) or not isinstance(res, dict):
        return {}
    diffs = res.get("diff")
    if isinstance(diffs, dict):
        diffs = [diffs]
    if not isinstance(diffs, list):
        return {}
    pairs = [{"before": item.get("before"), "after": item.get("after")} for item in diffs
             if isinstance(item, dict) and ("before" in item or "after" in item)]
    if not pairs:
        return {}
    if len(pairs) == 1:
        return pairs[0]
    return {"before": [pair["before"] for pair in pairs], "after": [pair["after"] for pair in pairs]}


def step_message(res: Mapping[str, Any], failed: bool) -> str:
    message = as_text(res.get("msg"))
    if failed:
        item_messages = [as_text(item.get("msg")) for item in res.get("results") or []
                         if isinstance(item, dict) and item.get("failed") and item.get("msg")]
        details = item_messages or [tail(as_text(res.get("stderr")), 10)]
        extra = "; ".join(detail for detail in details if detail and detail not in message)
        message = f"{message}: {extra}" if message and extra else (message or extra)
    return message


def step_data(action: str, res: Mapping[str, Any]) -> Dict[str, Any]:
    """The machine-readable facts an erlmcp.dr module returned (LSNs, lag, key counts, ...)."""
    if not action.startswith(_COLLECTION_PREFIX):
        return {}
    return {key: value for key, value in res.items()
            if key not in _DROPPED_RESULT_KEYS and not key.startswith("_ansible")}


# ---------------------------------------------------------------- the run


def text_or_none(value: Any) -> Optional[str]:
    return None if value is None else str(value)


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return " ".join(item.strip() for item in value)
    return json.dumps(value, default=str)


def tail(text: str, lines: int) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
