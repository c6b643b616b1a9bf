# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one summary envelope every runbook publishes (set_stats `summary`, then result.json's facts.summary).

Each system's summary producer (_db_summary, _redis_plan.summary, _dns_plan.summary, _notify.summary_of, the
region_health filter) ends by calling envelope(): the keys a reader relies on are the same for every runbook and
the system's own facts go under `details`. So a report, the terminal, the audit trail, erlmcp_dr.run() and a
composing runbook (regional failover) read one shape. The shape is versioned (`schema`) and published as a JSON
Schema in the controller package (src/erlmcp_dr/summary.schema.json); docs/reports.md describes each key.

Private to the collection (leading underscore): the API may change between releases.
"""

from __future__ import annotations

SCHEMA_VERSION = 1
NOTHING_CHANGED = "nothing was changed"


def end_state(result=None):
    """{ok, problems} from an end-state check's result (ok None: the end state was not checked)."""
    result = result or {}
    ok = result.get("ok")
    return {"ok": None if ok is None else bool(ok), "problems": [str(p) for p in result.get("problems") or []]}


def point_of_no_return_passed(meta, irreversible_done):
    """Whether the run passed its runbook's point of no return: the runbook must declare one
    (`point_of_no_return` in vars.runbook) and the system's facts must say the step it names acted."""
    return bool((meta or {}).get("point_of_no_return")) and bool(irreversible_done)


def served(before=None, after=None):
    """Which node or region served before the run and after it (None when the runbook does not move service)."""
    if before is None and after is None:
        return None
    return {"before": before, "after": after}


def recovery_point(lost_bytes=None, lost_seconds=None, target_seconds=None):
    """The recovery point the run achieved: data the run may have lost, in bytes (PostgreSQL) or seconds (a
    Redis restore), beside the runbook's RPO target. None when the runbook does not risk data."""
    if lost_bytes is None and lost_seconds is None:
        return None
    return {"lost_bytes": lost_bytes, "lost_seconds": lost_seconds, "target_seconds": target_seconds}


def confirmation(will_change=None, may_lose=None, guard=None, confirm_guard=None):
    """What a plan (check mode) shows before the operator confirms: what will change (before -> after), what may be
    lost, the guard the confirmed run will hold (a sentence), and `confirm_guard`: the parameters the confirmed run
    receives so that it guards on exactly the values shown (the CLI passes them on, docs/design.md)."""
    return {"will_change": [str(line) for line in will_change or []],
            "may_lose": [str(line) for line in may_lose or []],
            "guard": guard, "confirm_guard": dict(confirm_guard or {})}


def envelope(runbook, action=None, reason=None, completed=False, check_mode=False, did=None, end=None,
             lock_key=None, rollback=None, passed_point_of_no_return=False, details=None, serving=None,
             recovery=None, plan=None, lock_token=None):
    """The summary every runbook publishes; pure. lock_token is the run lock's fencing token (etcd store only).
    `end` is an end-state result ({ok, problems}) or None; `plan`
    is confirmation(...) for a plan that shows what it will change."""
    return {
        "schema": SCHEMA_VERSION,
        "runbook": runbook,
        "action": action,
        "reason": reason,
        "completed": bool(completed),
        "check_mode": bool(check_mode),
        "did": [str(sentence) for sentence in did or []] or [NOTHING_CHANGED],
        "end_state": end_state(end),
        "lock": dict({"key": lock_key}, **({} if lock_token is None else {"token": lock_token})),
        "rollback": [str(command) for command in rollback or []],
        "point_of_no_return_passed": bool(passed_point_of_no_return),
        "served": serving,
        "recovery_point": recovery,
        "plan": plan or confirmation(),
        "details": dict(details or {}),
    }
