# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.pg_begin: the start of a database runbook in ONE task.

It runs, in this worker and in this order, the action plugins the start was made of (each loaded through the
action loader with a copy of this task, so their code, checks and messages are the ones used everywhere):
erlmcp.dr.runbook_params (values are data: nothing below is templated before they pass), erlmcp.dr.inventory_contract,
erlmcp.dr.pg_replication_info, erlmcp.dr.run_lock keyed by the live system identifier, and erlmcp.dr.pg_replication_info
again once the lock is held. Every task of a runbook costs a worker fork and its result handling; one task instead of
five takes four of them off the critical path (for a failover, all of it is write-unavailable time).

How the results reach the play: as ansible_facts (the way erlmcp.dr.runbook_params exposes its own), the one way a
single task can return several values that outlive it: `dr` (the validated parameters), `pg_assess_result` (the read
taken under the lock) and `pg_begin_lock` (the lock's result). The role erlmcp.dr.pg_begin names them as its variables
(roles/pg_begin/vars/main.yml), so they read the same whether or not ansible-core injects facts as variables
(INJECT_FACTS_AS_VARS, deprecated in 2.20); with `include_role`, `public: true` exposes them. A later
`register: pg_assess_result` (the runbooks' rescue reads the cluster again) still wins.

A lock held by another run fails this task with the run lock's message, `busy` and `holder` (what the runbook CLI
maps to exit 3), and sets no fact: `pg_begin_lock` stays undefined, so the runbook's `always` section does not release
someone else's lock. A failure after the lock was taken releases it before the task fails: a failed start holds
nothing.
"""

from __future__ import annotations

import os
import time

from ansible.errors import AnsibleError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible_collections.erlmcp.dr.plugins.filter.failover import pg_failover_plan, pg_rejoin_plan, pg_switchover_plan
from ansible_collections.erlmcp.dr.plugins.filter.runbook import pg_nodes
from ansible_collections.erlmcp.dr.plugins.module_utils import _cluster_guard
from ansible_collections.erlmcp.dr.plugins.module_utils._failover import lock_key
from ansible_collections.erlmcp.dr.plugins.module_utils._module import warm_driver
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import POSTGRES

warm_driver(POSTGRES)  # the reads run in this task's worker: psycopg imported once, before the fork (see _module.py)

ARGUMENT_SPEC = {
    "runbook": {"type": "str", "required": True},
    "contract": {"type": "dict", "required": True},
    "group": {"type": "str", "default": "postgres"},
    "spec": {"type": "dict"},
    "plan": {"type": "str", "choices": ["switchover", "failover", "rejoin"]},
    "guard": {"type": "bool"},
}
# The plans that promote take the cluster guard (_cluster_guard.py) by default: the run lock only excludes runs that
# share its folder, the guard excludes runs from any controller.
GUARDED_PLANS = ("switchover", "failover")
GUARD_VAR = "dr_cluster_guard"
# The inventory variables the reads and the lock use (the PostgreSQL contract's names); templated only once the
# parameters have passed, so a hostile parameter is refused before any of them is rendered.
LOGIN_VARS = (("login_user", "pg_login_user"), ("login_password", "pg_login_password"), ("login_db", "pg_login_db"))
STORE_DIR_VAR = "dr_lock_dir"
RECORD_VAR = "dr_primary_of_record"
READ_KEYS_LEFT_OUT = ("changed", "failed", "msg", "warnings", "deprecations", "invocation", "ansible_facts")
# The plan filters (plugins/filter/failover.py) on the read taken under the lock, with the runbooks' parameters: what
# each runbook's "Plan" set_fact computed, in this task instead of one more (dr: the validated parameters).
PLANS = {
    "switchover": lambda info, dr, record: pg_switchover_plan(info, dr["candidate"], dr["max_lag_bytes"], record),
    "failover": lambda info, dr, record: pg_failover_plan(
        info, dr.get("away_from") or record, dr.get("candidate"), dr["max_lag_bytes"], dr["force"],
        dr["fence_method"], dr["primary_confirmed_down"]),
    "rejoin": lambda info, dr, record: pg_rejoin_plan(info, dr.get("node")),
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False  # the reads ship erlmcp.dr.pg_replication_info through this task's connection when the
    # database nodes are not reachable from here (see _module.run_on_controller), so the connection stays required

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        timings = {}
        params = self._timed(timings, "parameters", "erlmcp.dr.runbook_params",
                             {} if args["spec"] is None else {"spec": args["spec"]}, task_vars)
        if params.get("failed"):
            return dict(result, **params)
        contract = self._timed(timings, "inventory", "erlmcp.dr.inventory_contract", args["contract"], task_vars)
        if contract.get("failed"):
            return dict(result, **contract)
        facts = {"dr": params["ansible_facts"]["dr"]}
        result.update(changed=False, parameters=params.get("parameters"), hosts=contract.get("hosts"),
                      inventory_sources=contract.get("inventory_sources"), durations=timings)
        read_args = self._read_args(args["group"], task_vars)
        first = self._timed(timings, "assess", "erlmcp.dr.pg_replication_info", read_args, task_vars, check_mode=False)
        warnings = list(first.get("warnings") or [])
        if first.get("failed"):
            return dict(result, **dict(first, durations=timings))
        lock = self._timed(timings, "lock", "erlmcp.dr.run_lock", self._lock_args(args, first, task_vars), task_vars)
        warnings.extend(lock.get("warnings") or [])
        if lock.get("failed"):
            # A busy lock keeps the run lock's facts (busy, holder): the runbook CLI maps this step to exit 3.
            return dict(result, failed=True, msg=lock.get("msg"), lock=lock, busy=bool(lock.get("busy")),
                        holder=lock.get("holder"))
        guard = None
        if self._guarded(args, task_vars):
            started = time.monotonic()
            guard = self._take_guard(read_args, lock.get("run_id"))
            timings["guard"] = round(time.monotonic() - started, 4)
            result["guard"] = guard
            if not guard.get("ok") and guard.get("holders"):
                # Another run holds it (from this controller or another): the same "busy" as a held run lock.
                released = self._release(lock, task_vars)
                return dict(result, failed=True, msg=guard.get("msg"), lock=lock, lock_released=released,
                            busy=True, holder=_guard_holder(guard), durations=timings)
        again = self._timed(timings, "reassess", "erlmcp.dr.pg_replication_info", read_args, task_vars,
                            check_mode=False)
        warnings.extend(again.get("warnings") or [])
        if again.get("failed"):
            released = self._release(lock, task_vars, guard)
            return dict(result, **dict(again, lock=lock, lock_released=released, durations=timings))
        facts.update(pg_assess_result=again, pg_begin_lock=lock)
        if guard is not None and guard.get("ok"):
            facts["pg_begin_guard"] = _guard_fact(guard)
        if args["plan"]:
            try:
                facts["dr_plan"] = self._plan(args["plan"], again, facts["dr"], task_vars, timings)
            except (AnsibleError, KeyError, TypeError, ValueError) as exc:
                released = self._release(lock, task_vars, guard)
                return dict(result, failed=True, lock=lock, lock_released=released, durations=timings,
                            msg="the %s plan could not be made from the cluster's read: %s" % (args["plan"], exc))
        if guard is not None and not guard.get("ok") and _changes_cluster(facts.get("dr_plan")):
            # Too few members answered the guard (no other run holds it): a plan that only refuses or finds nothing
            # to do goes on, so the runbook says what its read found (a wrong password, nodes down); one that would
            # change the cluster stops here, before anything is fenced.
            released = self._release(lock, task_vars)
            return dict(result, failed=True, msg=guard.get("msg"), lock=lock, lock_released=released,
                        durations=timings)
        return _with_warnings(dict(result, ansible_facts=facts, lock=lock, **_read_facts(again)), warnings)

    # ------------------------------------------------------------------ the composed steps

    def _timed(self, timings, phase, name, args, task_vars, check_mode=None):
        started = time.monotonic()
        try:
            return self._sub_action(name, args, task_vars, check_mode)
        finally:
            timings[phase] = round(time.monotonic() - started, 4)

    def _sub_action(self, name, args, task_vars, check_mode=None):
        """Run the action plugin `name` in this worker on a copy of this task with `args` (how
        ansible.builtin.template runs copy)."""
        task = self._task.copy()
        task.args = dict(args)
        if check_mode is not None:
            task.check_mode = check_mode
        action = self._shared_loader_obj.action_loader.get(
            name, task=task, connection=self._connection, play_context=self._play_context, loader=self._loader,
            templar=self._templar, shared_loader_obj=self._shared_loader_obj)
        return action.run(task_vars=task_vars)

    def _plan(self, kind, info, dr, task_vars, timings):
        started = time.monotonic()
        record = self._rendered(task_vars, RECORD_VAR) if task_vars.get(RECORD_VAR) is not None else None
        plan = PLANS[kind](info, dr, record)
        timings["plan"] = round(time.monotonic() - started, 4)
        return plan

    def _rendered(self, task_vars, name):
        """The variable's value, templated with the play's variables (after the parameter check only)."""
        templar = self._templar.copy_with_new_env(available_variables=task_vars)
        return templar.template(task_vars[name])

    def _read_args(self, group, task_vars):
        hostvars = task_vars.get("hostvars") or {}
        hosts = list((task_vars.get("groups") or {}).get(group) or [])
        read = {"nodes": pg_nodes(hosts, hostvars)}
        for option, name in LOGIN_VARS:
            if name in task_vars:
                read[option] = self._rendered(task_vars, name)
        return read

    def _lock_args(self, args, info, task_vars):
        lock = {"key": lock_key(info), "state": "present", "runbook": args["runbook"]}
        if task_vars.get(STORE_DIR_VAR) is not None:
            lock["store_dir"] = self._rendered(task_vars, STORE_DIR_VAR)
        return lock

    def _guarded(self, args, task_vars):
        """Whether this start takes the cluster guard: for the plans that promote, never in check mode (which
        changes nothing, and takes no run lock either)."""
        if self._task.check_mode:
            return False
        if args["guard"] is not None:
            return args["guard"]
        # The inventory's explicit opt-out, for controllers that cannot reach the members (the reads then run on the
        # nodes): the run lock alone holds runs apart there.
        if task_vars.get(GUARD_VAR) is not None and not boolean(self._rendered(task_vars, GUARD_VAR), strict=False):
            return False
        return args["plan"] in GUARDED_PLANS

    def _take_guard(self, read_args, run_id):
        """Start the guard's holder on every member (_cluster_guard.start); it watches this worker's parent, the
        ansible-playbook process, and lets go when it ends."""
        members = []
        for node in read_args["nodes"]:
            conn = dict(host=node["host"], port=node["port"], user=read_args.get("login_user"))
            if read_args.get("login_password"):
                conn["password"] = read_args["login_password"]
            members.append(dict(name=node["name"], conn=conn))
        return _cluster_guard.start(members, _cluster_guard.new_token(run_id), os.getppid())

    def _release(self, lock, task_vars, guard=None):
        """Release a lock (and the guard) this task took, when a later step of the start failed (check mode took
        none)."""
        if guard is not None and guard.get("ok"):
            _cluster_guard.release(guard.get("pid"), guard.get("token"))
        if self._task.check_mode or not lock.get("held"):
            return False
        released = self._sub_action("erlmcp.dr.run_lock", {
            "key": lock["key"], "state": "absent", "run_id": lock["run_id"], "store_dir": lock["store_dir"]},
            task_vars)
        return bool(released.get("released"))


def _read_facts(read):
    """The read's facts (nodes, primary, ...) at the top of the result too, as a pg_replication_info step shows them
    (reports and tests read a start's nodes there)."""
    return dict((key, value) for key, value in read.items() if key not in READ_KEYS_LEFT_OUT)


def _changes_cluster(plan):
    """Whether a plan would change anything (fence, promote, repoint): anything but a refusal or nothing to do."""
    return not plan or plan.get("action") not in ("refuse", "none")


def _guard_fact(guard):
    """What the later steps need of the guard: its token (the promotion re-checks it), the members it was taken on,
    and the holder's pid."""
    return dict((key, guard.get(key)) for key in ("token", "pid", "held", "missing", "majority", "total"))


def _guard_holder(guard):
    """The other run that holds the guard, in the run lock's holder shape (run_id, host, since: what the CLI's
    "busy" message names), with the members it holds."""
    holders = guard.get("holders") or []
    if not holders:
        return None
    first = holders[0]
    return {"run_id": _cluster_guard.run_id_of(first.get("application_name")), "host": first.get("client_addr") or "",
            "since": first.get("since") or "", "guard": sorted(set(h.get("application_name") for h in holders)),
            "members": sorted(set(h.get("member") for h in holders))}


def _with_warnings(result, warnings):
    if warnings:
        result["warnings"] = warnings
    return result
