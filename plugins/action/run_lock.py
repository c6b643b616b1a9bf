# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.run_lock: runs on the controller; the store is module_utils/_lock/store.py (the
default, a
folder of this controller) or module_utils/_lock/etcd.py (dr_lock_store: etcd in the inventory), chosen by
_lock.store_settings / _lock.make_store."""

from __future__ import annotations

import multiprocessing
import os
import re

from ansible.plugins.action import ActionBase
from ansible_collections.erlmcp.dr.plugins.module_utils._common import audit as _audit
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import store as _lock
from ansible_collections.erlmcp.dr.plugins.module_utils._lock import etcd as _lock_etcd
from ansible_collections.erlmcp.dr.plugins.modules.run_lock import argument_spec

RUN_ID_VAR = "erlmcp_dr_run_id"
OPERATOR_VAR = "erlmcp_dr_operator"  # set by the runner from --operator / operator=
# Set by a composed run (regional_failover) for its steps: the parent's run id, which holds the lock for the whole
# move; the step runs under it and never writes or releases the record (see _inherited).
LOCK_OWNER_VAR = "erlmcp_dr_lock_owner"
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:@+-]{1,200}$")


def playbook_pid():
    """PID of the ansible-playbook (or ansible) process running this task.

    Action plugins run in a worker that ansible-core forks from the main process (multiprocessing 'fork'
    context), so the worker's multiprocessing parent is that process; outside a worker, this process is it.
    """
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None else os.getpid()


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        _validation, args = self.validate_argument_spec(argument_spec=argument_spec())
        problem = self._check_args(args)
        if problem:
            return dict(result, failed=True, msg=problem)
        pid = playbook_pid()
        run_id = args["run_id"] or self._default_run_id(task_vars, pid)
        if not RUN_ID_PATTERN.match(run_id):
            return dict(result, failed=True, msg=(
                "run_id %r is not a run id: expected 1-200 letters, digits or '.', '_', ':', '@', '+', '-' "
                "(set the run_id option or the %s variable)" % (run_id[:200], RUN_ID_VAR)))
        result.update(key=args["key"], run_id=run_id, changed=False, busy=False)
        try:
            store = _lock.make_store(_lock.store_settings(_lock.lock_variables(self._templar, task_vars),
                                                          store_dir=args["store_dir"]))
            result.update(store=store.kind, store_dir=store.store_dir)
            owner = task_vars.get(LOCK_OWNER_VAR)
            if owner is not None and str(owner):
                return self._inherited(result, store, args, str(owner))
            if args["state"] == "absent":
                return self._release(result, store, args, run_id, task_vars)
            return self._acquire(result, store, args, run_id, pid, task_vars)
        except (_lock.LockStoreError, OSError) as exc:
            return dict(result, failed=True, msg="the run lock for %s could not be used: %s" % (args["key"], exc))

    @staticmethod
    def _check_args(args):
        if not args["key"].strip():
            return "key is empty: expected the identity of what the run changes, e.g. 'postgres:<system identifier>'"
        if args["lease_seconds"] < _lock.MIN_LEASE_SECONDS:
            return "lease_seconds is %d: expected at least %d (seconds a holder on another host keeps the lock)" % (
                args["lease_seconds"], _lock.MIN_LEASE_SECONDS)
        return None

    @staticmethod
    def _default_run_id(task_vars, pid):
        """The runner's run id when it set one, else one naming this ansible-playbook process (so the release at
        the end of the same run matches)."""
        given = task_vars.get(RUN_ID_VAR)
        if given is not None and str(given):
            return str(given)
        return _lock.playbook_run_id(pid)

    def _acquire(self, result, store, args, run_id, pid, task_vars):
        if self._task.check_mode:
            return self._inspect(result, store, args, run_id)
        operator = args["operator"] or str(task_vars.get(OPERATOR_VAR) or "")
        record = _lock.holder_record(args["key"], run_id, pid, args["lease_seconds"], runbook=args["runbook"],
                                     operator=operator)
        started = self._audit_fallback("run_start", args, run_id, operator, task_vars)
        if started:
            record["audit_head"] = _audit.anchor_of(started)
        outcome = store.acquire(record)
        decision, found = outcome["decision"], outcome["holder"]
        result.update(path=outcome["path"])
        if decision == _lock.BUSY:
            self._audit_fallback("run_end", args, run_id, operator, task_vars, "refused: the run lock is busy")
            return dict(result, failed=True, busy=True, held=False, holder=found, msg=_busy_message(
                args["key"], found, outcome["reason"], store, outcome["path"]))
        result.update(held=True, holder=outcome["record"], acquired=decision != _lock.HELD)
        if store.kind == _lock.STORE_ETCD:
            result["token"] = self._keep_etcd_lease(store, outcome, pid, run_id)
        if decision == _lock.TAKE_OVER:
            result["took_over"] = found
            result["warnings"] = ["took over the run lock for %s from %s, because %s" % (
                args["key"], _lock.describe_holder(found), outcome["reason"])]
        return result

    def _inherited(self, result, store, args, owner):
        """A step of a composed run: its parent took this key under its own run id before its first step and holds
        it until its end. The step only checks that the parent still holds it; it never rewrites the record (which
        must keep naming the parent's process, so the lock outlives this step's ansible-playbook) nor releases it.
        With etcd it notes the parent's fencing token and lease as this process's (no keeper: the parent's keeps the
        lease), so the fencing check of each of its changing steps checks the move's token."""
        if not RUN_ID_PATTERN.match(owner):
            return dict(result, failed=True, msg="%s %r is not a run id" % (LOCK_OWNER_VAR, owner[:200]))
        outcome = store.inspect(args["key"], owner)
        decision, found = outcome["decision"], outcome["holder"]
        result.update(run_id=owner, path=outcome["path"], inherited_from=owner)
        if args["state"] == "absent":
            if store.kind == _lock.STORE_ETCD and not self._task.check_mode:
                _lock_etcd.forget_held(playbook_pid(), args["key"])  # the note only: the lease is the parent's
            return dict(result, held=decision == _lock.HELD, released=False)
        if decision == _lock.HELD:
            if store.kind == _lock.STORE_ETCD:
                result["token"] = found["token"]
                if not self._task.check_mode:
                    _lock_etcd.record_held(playbook_pid(), args["key"], found["token"], found["lease_id"],
                                           (None, None), owner)
            return dict(result, held=True, holder=found, acquired=False)
        if found is None or decision != _lock.BUSY:
            return dict(result, failed=True, held=False, holder=found, msg=(
                "this step runs under run %s, which should hold the run lock for %s for the whole move, but %s: the "
                "composed run did not take this key (or lost it); nothing was changed" % (
                    owner, args["key"], "nobody holds it" if found is None else "the record found is " +
                    _lock.describe_holder(found))))
        return dict(result, failed=True, busy=True, held=False, holder=found, msg=_busy_message(
            args["key"], found, outcome["reason"], store, outcome["path"]))

    @staticmethod
    def _keep_etcd_lease(store, outcome, pid, run_id):
        """Start the keeper of the lease just taken (or of a held lease this process does not keep yet) and note
        the token for the fencing check of every later step. A keeper that cannot start gives the lock back: the
        run fails closed. Returns the fencing token."""
        stored = outcome["record"]
        key, token, lease_id = stored["key"], stored["token"], stored["lease_id"]
        kept = [note for note in _lock_etcd.held_by(pid) if note.get("key") == key and note.get("lease_id") == lease_id]
        if kept:
            return token
        try:
            keeper = _lock_etcd.start_keeper(store.config, lease_id, pid)
        except _lock.LockStoreError:
            if outcome["decision"] == _lock.TAKE:
                store.release(key, run_id)
            raise
        _lock_etcd.record_held(pid, key, token, lease_id, keeper, run_id)
        return token

    def _audit_fallback(self, kind, args, run_id, operator, task_vars, status=None):
        """Start and end records when nobody else writes this run's trail: not the runbook CLI or API (they set
        ERLMCP_DR_AUDIT_WRITER) and not the erlmcp.dr.audit_trail callback (it sets ERLMCP_DR_AUDIT_CALLBACK
        while it records). So a playbook run wherever the callback is not enabled still leaves its start (when it
        takes the lock) and its end (when it lets it go). Returns the record written, or None."""
        if os.environ.get(_audit.WRITER_ENV) == "runner" or os.environ.get("ERLMCP_DR_AUDIT_CALLBACK"):
            return None
        entry = "awx" if task_vars.get("awx_job_id") or os.environ.get("JOB_ID") else "ansible-playbook"
        runbook = self._playbook_name() or args["runbook"]
        note = "steps not recorded: enable the erlmcp.dr.audit_trail callback to record each change"
        try:
            if kind == "run_start":
                parameters = _given_parameters(task_vars)
                record = _audit.run_start(run_id, runbook, parameters, False, operator or None,
                                          ",".join(task_vars.get("ansible_inventory_sources") or []), None, entry)
            else:
                record = _audit.run_end(run_id, runbook, operator or None, status, None, False, None, None,
                                        [], entry)
            record["note"] = note
            return _audit.append(record)
        except Exception as exc:  # a recovery does not stop for its paper trail
            self._display.warning("could not append the %s record of run %s to the audit trail: %s" % (
                kind, run_id, exc))
            return None

    def _playbook_name(self):
        """The playbook's file name without .yml (its play's, not a role's tasks file): the runbook's name as the
        runbook CLI and the audit_trail callback record it, so a start and an end record agree."""
        try:
            path = self._task._parent._play.get_path() or ""
        except AttributeError:  # a task without a play (a sub-action's copy keeps its parent)
            return ""
        return os.path.splitext(os.path.basename(path.split(":")[0]))[0]

    def _inspect(self, result, store, args, run_id):
        """Check mode (a plan): report whether the lock is free, take nothing."""
        outcome = store.inspect(args["key"], run_id)
        decision, found = outcome["decision"], outcome["holder"]
        would_take = decision in (_lock.TAKE, _lock.TAKE_OVER)
        result.update(held=False, would_take=would_take, path=outcome["path"])
        if found is not None:
            result["holder"] = found
        if decision == _lock.BUSY:
            result.update(busy=True, warnings=["a run would be refused now: the run lock for %s is held by %s (%s)" % (
                args["key"], _lock.describe_holder(found), outcome["reason"])])
        elif decision == _lock.TAKE_OVER:
            result["warnings"] = ["a run would take over the run lock for %s from %s, because %s" % (
                args["key"], _lock.describe_holder(found), outcome["reason"])]
        return result

    def _release(self, result, store, args, run_id, task_vars):
        if self._task.check_mode:
            outcome = store.inspect(args["key"], run_id)
            would_release = outcome["decision"] == _lock.HELD
            return dict(result, held=False, would_release=would_release, path=outcome["path"])
        if store.kind == _lock.STORE_ETCD:
            note = _lock_etcd.forget_held(playbook_pid(), args["key"])
            _lock_etcd.stop_keeper((note or {}).get("keeper_pid"), (note or {}).get("keeper_start_ticks"))
        outcome = store.release(args["key"], run_id)
        result.update(held=False, released=outcome["outcome"] == _lock.RELEASED, path=outcome["path"])
        if outcome["outcome"] == _lock.RELEASED:
            self._audit_fallback("run_end", args, run_id, str(task_vars.get(OPERATOR_VAR) or ""), task_vars,
                                 "lock released (the outcome is in the play's recap: without the audit_trail "
                                 "callback, the lock sees only its own start and end)")
        if outcome["outcome"] == _lock.HELD_BY_OTHER:
            result["holder"] = outcome["holder"]
            result["warnings"] = ["did not release the run lock for %s: it is held by %s, not by run %s" % (
                args["key"], _lock.describe_holder(outcome["holder"]), run_id)]
        return result


def _given_parameters(task_vars):
    """The runbook's parameters that have a value (raw, never rendered), no_log ones masked: what the start
    record shows. The lock is taken after erlmcp.dr.runbook_params validated them."""
    runbook = task_vars.get("runbook")
    spec = runbook.get("parameters") if isinstance(runbook, dict) else None
    shown = {}
    for name, option in (spec or {}).items() if isinstance(spec, dict) else ():
        if name in task_vars:
            secret = isinstance(option, dict) and option.get("no_log") and task_vars[name] not in (None, "")
            shown[name] = "********" if secret else task_vars[name]
    return shown


def _busy_message(key, holder, reason, store, path):
    if holder.get("run_id") is None:
        return "the run lock for %s is held by %s" % (key, _lock.describe_holder(holder))
    if store.kind == _lock.STORE_ETCD:
        return (
            "Another run holds the run lock for %s in %s: %s (fencing token %s). It is considered alive because %s. "
            "Wait for that run to end and run again; if it was killed, its lock is free once its lease expires."
            % (key, store.where(), _lock.describe_holder(holder), holder.get("token"), reason))
    store_dir = store.store_dir
    return (
        "Another run holds the run lock for %s: %s. It is considered alive because %s. Wait for that run to end "
        "and run again. If that run is really gone, release its lock with: ansible localhost -m erlmcp.dr.run_lock "
        "-a 'key=%s state=absent run_id=%s store_dir=%s' (or delete %s)."
        % (key, _lock.describe_holder(holder), reason, key, holder.get("run_id"), store_dir, path))
