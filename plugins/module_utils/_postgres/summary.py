# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a database runbook reports: built from what its steps returned, never from what it meant to do.

One pure function for the three runbooks (the summary dict used to be written out three times in
Jinja): the plan says what was missing, the step results say what was done, and `did` lists the
changes one sentence each, so a failed or killed run never claims "nothing was changed" when
something was.
"""

from __future__ import annotations

from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.failover_plan import writable_primaries
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.follow_plan import follow_items
from ansible_collections.erlmcp.dr.plugins.module_utils._common.summary import (
    confirmation,
    envelope,
    point_of_no_return_passed,
    recovery_point,
    served,
)


def _changed(result):
    return bool(result) and bool(result.get("changed")) and not result.get("failed")


def _fence_sentences(fence, unfence, check_mode):
    did = []
    if _changed(fence):
        verb = "would fence" if check_mode else "fenced"
        lsn = " (final LSN %s)" % fence["final_lsn"] if fence.get("final_lsn") else ""
        did.append("%s %s by %s%s" % (verb, fence.get("node"), fence.get("method"), lsn))
    elif fence and fence.get("failed"):
        did.append("fencing %s failed: %s" % (fence.get("node"), fence.get("msg") or "see the step"))
    if _changed(unfence):
        did.append("lifted the fence on %s again (the candidate was not promoted)" % unfence.get("node"))
    elif unfence and unfence.get("failed"):
        did.append("lifting the fence on %s FAILED: %s" % (unfence.get("node"), unfence.get("msg") or "see the step"))
    return did


def _promote_sentence(plan, promote, check_mode):
    if promote.get("promoted"):
        return "promoted %s: timeline %s -> %s" % (
            plan.get("candidate"), promote.get("timeline_before"), promote.get("timeline_after"))
    if check_mode and promote.get("would_promote"):
        return "would promote %s" % plan.get("candidate")
    return None


def _follow_sentences(follow):
    did, joined = [], []
    for item in follow_items(follow):
        name = item.get("item")
        if item.get("failed"):
            did.append("%s did not come to stream: %s" % (name, item.get("msg") or "see the step"))
        elif item.get("changed"):
            did.append("%s streams from the new primary (%s)" % (name, item.get("action")))
            joined.append(name)
        elif not item.get("skipped"):
            joined.append(name)
    return did, joined


def db_summary(plan, steps, completed=False, check_mode=False, runbook=None, meta=None):
    """The run's summary envelope (_summary.envelope) from its plan and step results; the database's facts
    go under `details`.

    steps: {'fence', 'unfence', 'promote', 'follow' (pg_standby_follow's registered result, see follow_items),
    'app_config', 'end_state', 'lock', 'guard'}: each the registered result, absent or {} when the step did not
    run ('guard': the fact pg_begin_guard). runbook is the runbook's name, meta its metadata (vars.runbook:
    point_of_no_return, rpo_seconds).
    """
    plan, meta = plan or {}, meta or {}
    steps = dict((k, v or {}) for k, v in (steps or {}).items())
    fence, promote, app = steps.get("fence", {}), steps.get("promote", {}), steps.get("app_config", {})
    did = _fence_sentences(dict(fence, node=plan.get("fence"), method=fence.get("method")),
                           dict(steps.get("unfence", {}), node=plan.get("fence")), check_mode)
    promoted = _promote_sentence(plan, promote, check_mode)
    if promoted:
        did.append(promoted)
    follow_did, joined = _follow_sentences(steps.get("follow"))
    did.extend(follow_did)
    if check_mode and plan.get("follow") and not follow_did:
        did.append("would repoint %s to %s" % (", ".join(plan["follow"]), plan.get("candidate")))
    if _changed(app):
        did.append("%s the application's database config %s" % (
            "would rewrite" if check_mode else "rewrote", app.get("path") or ""))
    new_primary = plan.get("candidate") if plan.get("action") in ("promote", "converge", "none") else None
    details = {
        "old_primary": plan.get("old_primary"),
        "new_primary": new_primary,
        "primary": plan.get("candidate") if plan.get("action") != "refuse" else None,
        "lag_bytes_at_gate": plan.get("lag_bytes"),
        "old_primary_final_lsn": fence.get("final_lsn"),
        "timeline_before": promote.get("timeline_before") or plan.get("timeline"),
        "timeline_after": promote.get("timeline_after"),
        "lsn_at_promotion": promote.get("lsn_before"),
        "lost_bytes_max": promote.get("lost_bytes_max"),
        "promote_seconds": promote.get("promote_seconds"),
        "streaming": joined,
        "methods": [item.get("action") for item in follow_items(steps.get("follow")) if not item.get("skipped")],
        # per node rewound or re-cloned: the bytes pg_rewind copied, or the re-cloned data directory's size
        "copied_bytes": dict((item.get("item"), item["copied_bytes"]) for item in follow_items(steps.get("follow"))
                             if item.get("copied_bytes") is not None),
        "left_out": plan.get("left_out") or [],
        "warnings": (plan.get("warnings") or []) + ([app["writes_wait"]] if app.get("writes_wait") else []),
        "app_config": app.get("path"),
        # The cluster guard's token: the fencing value of this run's promotion (pg_promote re-checked it right
        # before promoting and returns it as guard_token).
        "guard": steps.get("guard", {}).get("token"),
        "promoted_under_guard": promote.get("guard_token"),
    }
    moved = bool(promote.get("promoted"))
    return envelope(
        runbook, action=plan.get("action"), reason=plan.get("reason"), completed=completed, check_mode=check_mode,
        did=did, end=steps.get("end_state"), lock_key=steps.get("lock", {}).get("key"),
        lock_token=steps.get("lock", {}).get("token"),
        passed_point_of_no_return=point_of_no_return_passed(meta, moved), details=details,
        serving=_serving(plan, moved),
        recovery=recovery_point(lost_bytes=promote.get("lost_bytes_max") if moved else None,
                                target_seconds=meta.get("rpo_seconds")),
        # The plan shown before the confirmation: the node that serves writes, before -> after.
        plan=confirmation(will_change=["primary: %s -> %s" % (plan.get("old_primary") or "none", plan.get("candidate"))]
                          if check_mode and promote.get("would_promote") else []))


def _serving(plan, moved):
    """The primary before and after the run: the candidate once promoted (or when it already was the primary, or
    the run only repoints standbys to it), else the old primary still."""
    keeps = plan.get("action") in ("none", "rejoin", "converge")
    before = plan.get("old_primary") or (plan.get("candidate") if keeps else None)
    return served(before, plan.get("candidate") if moved or keeps else before)


def _unfence_outcome(old, fence, unfence):
    if unfence.get("failed"):
        return "starting %s again failed (%s)" % (old, unfence.get("msg") or "see the step")
    if unfence.get("changed"):
        return "%s was started again (unfenced)" % old
    if fence.get("failed") or fence.get("changed"):
        return "%s was not stopped by this run" % old
    if fence.get("was_fenced") or fence.get("fenced"):
        return "%s was already fenced before this run and is left so" % old
    return "nothing was changed"


def _writers_now(after):
    """Who takes writes after the rescue, read from the cluster (never assumed)."""
    if not after or "nodes" not in after:
        return "the cluster could not be read again: check it with `runbook plan`"
    writers = writable_primaries(after)
    if not writers:
        return "now no node takes writes: fix the cause and run this runbook again, or run database_failover"
    if len(writers) > 1:
        return "now %s ALL take writes (split brain): fence all but one at once" % " and ".join(writers)
    return "now %s takes writes, as before; nothing else changed" % writers[0]


def abort_message(plan, failure, fence=None, promote=None, unfence=None, after=None):
    """What a database runbook says when a step before or at the promotion failed: what failed, what
    the run did about it, and who takes writes now (read from the cluster after the rescue)."""
    plan, fence, promote, unfence = plan or {}, fence or {}, promote or {}, unfence or {}
    old, candidate = plan.get("fence") or plan.get("old_primary"), plan.get("candidate")
    if promote.get("promoted"):
        return ("%s was promoted, then: %s. Run the runbook again to finish what is missing (it never promotes "
                "twice)" % (candidate, failure))
    if fence.get("failed"):
        head = "fencing %s failed: %s" % (old, failure)
    else:
        head = "%s was not promoted: %s" % (candidate, failure)
    if not old:
        return "%s. Nothing was changed" % head
    return "%s; then %s; %s" % (head, _unfence_outcome(old, fence, unfence), _writers_now(after))
