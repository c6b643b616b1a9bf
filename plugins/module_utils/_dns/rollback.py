# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What `rollback_of` reads of an earlier dns_cutover run, in the controller: its result.json; for a run cut off
before it wrote one (killed, or its host lost), the plan it made, read back from its events (ansible-runner's
job_events in its run folder, written as they happen). Wrapped as the erlmcp.dr.dns_rollback_source filter."""

from __future__ import annotations

import json
import os

from ansible_collections.erlmcp.dr.plugins.module_utils._dns import plan

# The dns_cutover task that sets dr_plan: erlmcp.dr.dns_begin (by its action, whatever the task's name), or in runs
# recorded before it, the set_fact task of this name.
PLAN_ACTIONS = ("erlmcp.dr.dns_begin", "dns_begin")
PLAN_TASK = "Plan what is missing"
RUNBOOK = "dns_cutover"  # the only runbook whose runs rollback_of reads


class RollbackError(Exception):
    """The earlier run cannot be rolled back from what it left; the message says why and what to do instead."""


def rollback_source(run_dir, run_id):
    """The earlier run's result (a dict with facts.summary.records, as result.json holds it). For a run without
    result.json: every record its plan meant to change, as if applied, with `interrupted: true` - the rollback
    then puts back each one that holds the run's new value and leaves alone one the run never reached (its guard
    and plan see it unchanged). Raises ValueError for a text that is not a run id, RollbackError when the run left
    nothing to roll back from."""
    path = plan.rollback_path(run_dir, run_id)
    folder = os.path.dirname(path)
    instead = ("roll back with explicit values instead: values=<the values it replaced> "
               "expected_values=<the values it set>")
    if os.path.isfile(path):
        with open(path) as handle:
            earlier = json.load(handle)
        _refuse_another_runbook(run_id, earlier.get("runbook"), instead)
        return earlier
    _refuse_another_runbook(run_id, _marker_runbook(folder), instead)
    if not os.path.isdir(folder):
        raise RollbackError("rollback_of=%s: there is no run %s (no folder %s beside this run's); %s"
                            % (run_id, run_id, folder, instead))
    planned = plan_from_events(os.path.join(folder, "artifacts", run_id, "job_events"))
    if planned is None:
        raise RollbackError("rollback_of=%s: run %s has no result.json (it was cut off, or it still runs) and its "
                            "events hold no plan: it stopped before it planned a change, so it changed no record; "
                            "if a record still holds a value it set, %s" % (run_id, run_id, instead))
    records = [dict(name=rec["name"], applied=True, previous=dict(values=rec.get("current"), ttl=rec.get("ttl")),
                    new=dict(values=rec.get("target")))
               for rec in planned.get("records") or [] if rec.get("change") and rec.get("current") is not None]
    return dict(run_id=run_id, interrupted=True, facts=dict(summary=dict(records=records)))


def _refuse_another_runbook(run_id, runbook, instead):
    """rollback_of names a run of another runbook (a redis_failover's, say): say so, not that it changed nothing."""
    if runbook and runbook != RUNBOOK:
        raise RollbackError("rollback_of=%s: run %s is a run of runbook %s, not of %s: only a %s run's record changes "
                            "can be rolled back (`runbook audit show --runbook %s` lists them); %s"
                            % (run_id, run_id, runbook, RUNBOOK, RUNBOOK, RUNBOOK, instead))


def _marker_runbook(folder):
    """The runbook named in a run folder's run.json (written when the run starts), or None."""
    try:
        with open(os.path.join(folder, "run.json")) as handle:
            marker = json.load(handle)
    except (OSError, ValueError):
        return None
    return marker.get("runbook") if isinstance(marker, dict) else None


def plan_from_events(folder):
    """The dr_plan the run's start (erlmcp.dr.dns_begin, or an older run's `Plan what is missing` task) set, from
    its job_events (the last one), or None."""
    found = None
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(folder, name)) as handle:
                event = json.load(handle)
        except (OSError, ValueError):
            continue  # cut off while being written
        data = event.get("event_data") or {}
        if event.get("event") != "runner_on_ok" or not _sets_the_plan(data):
            continue
        facts = (data.get("res") or {}).get("ansible_facts") or {}
        if isinstance(facts.get("dr_plan"), dict) and (found is None or event.get("counter", 0) > found[0]):
            found = (event.get("counter", 0), facts["dr_plan"])
    return found[1] if found else None


def _sets_the_plan(event_data):
    return (str(event_data.get("task_action") or "") in PLAN_ACTIONS
            or str(event_data.get("task") or "").startswith(PLAN_TASK))


RECORDED_RUNS_READ = 200  # the newest run folders read for the last recorded cutover (older ones are not opened)


def recorded_values(run_dir, names=None):
    """{record name: values} that the newest recorded dns_cutover runs beside `run_dir` set, per record the
    newest run that applied a change to it (a rollback included). Only finished runs (result.json) count, and
    only the newest RECORDED_RUNS_READ folders are read. The dns_cutover guard accepts these values as known
    besides the regions' addresses."""
    parent = os.path.dirname(str(run_dir).rstrip("/"))
    wanted = None if names is None else set(str(name).lower() for name in names)
    this_run = os.path.basename(str(run_dir).rstrip("/"))
    try:
        folders = sorted(((_mtime(os.path.join(parent, entry)), entry) for entry in os.listdir(parent)
                          if entry != this_run), reverse=True)
    except OSError:
        return {}
    found = {}
    for _when, folder in folders[:RECORDED_RUNS_READ]:
        for rec in _applied_records(os.path.join(parent, folder, "result.json")):
            name = str(rec.get("name") or "").lower()
            if name and name not in found and (wanted is None or name in wanted):
                found[name] = sorted((rec.get("new") or {}).get("values") or [])
    return found


def _mtime(folder):
    """When the run in `folder` finished (its result.json was written): the order of the runs whatever their ids
    (--run-id may give any). Not the folder's own time, which a later `runbook report --html` changes."""
    try:
        return os.stat(os.path.join(folder, "result.json")).st_mtime
    except OSError:
        return 0.0


def _applied_records(path):
    try:
        with open(path) as handle:
            result = json.load(handle)
    except (OSError, ValueError):
        return []
    if not isinstance(result, dict) or result.get("runbook") != "dns_cutover" or result.get("check"):
        return []
    records = plan.published_records((result.get("facts") or {}).get("summary"))
    return [rec for rec in records if isinstance(rec, dict) and rec.get("applied")]
