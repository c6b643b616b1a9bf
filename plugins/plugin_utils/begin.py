# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one-task start of a state-changing runbook, shared by every system (erlmcp.dr.pg_begin, erlmcp.dr.dns_begin).

BeginAction runs, in this worker and in this order:

1. the runbook's parameters (erlmcp.dr.runbook_params: values are data, nothing below is templated before they
   pass),
2. the system's inventory contract (erlmcp.dr.inventory_contract),
3. `prepare`: the system's checks that need no server (DNS: the records and the target), and the settings it
   renders from the inventory, only now that the parameters passed,
4. a live read, when the lock's key comes from it (PostgreSQL: the system identifier; `KEY_NEEDS_READ`),
5. the run lock (erlmcp.dr.run_lock) keyed by the target's identity (`lock_key`),
6. `hold`: what else the system holds beside the lock (PostgreSQL: the cluster guard),
7. the read again (or for the first time), under the lock: the plan never decides from a state another run changes,
8. the plan (`plan`), made from that read, and `check_plan`, a last refusal that needs the plan.

Each composed step is the action plugin of its module, loaded through the action loader with a copy of this task, so
its code, checks and messages are the ones used everywhere. One task instead of five or more: every task costs a
worker fork and its result handling on the runbook's critical path.

What this class guarantees to every system (and its tests rely on):
- a lock held by another run fails the task with the run lock's message, `busy` and `holder` (what
  erlmcp_dr.runner.busy_holder reads: the runbook CLI maps it to exit 3), and sets no fact, so the runbook's `always`
  section does not release someone else's lock;
- a failure after the lock was taken releases it (and what `hold` took) before the task fails: a failed start holds
  nothing;
- `durations` says how long each step took; `parameters`, `hosts` and `inventory_sources` are returned once they
  passed;
- on success the facts are `dr` (the validated parameters, secrets left out) and what `facts` returns (the read
  under the lock, the lock's result, the plan), as ansible_facts: the one way one task returns several values that
  outlive it. The playbook (or the role) names them as its variables, so they read the same whether or not
  ansible-core injects facts as variables.

A system supplies (docs/architecture.md, "The one-task start"): ARGUMENT_SPEC (staticmethod(argument_spec) of its
module file, which adds its own options to _common/begin_spec.py's),
READ_PHASES, `contract`, `prepare`, `read`, `lock_key`, `plan`, `facts`, and optionally `hold`/`let_go`,
`check_plan`, `returned`.

Private to the collection: the API may change between releases.
"""

from __future__ import annotations

import time

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible_collections.erlmcp.dr.plugins.module_utils._common.begin_spec import begin_argument_spec
from ansible_collections.erlmcp.dr.plugins.plugin_utils.sub_action import run_action

STORE_DIR_VAR = "dr_lock_dir"  # where the run locks live: the inventory's (or the environment's), never -e's
# A plan function that breaks on the read it was given is a refusal with its reason, not a traceback.
PLAN_ERRORS = (AnsibleError, KeyError, TypeError, ValueError)


class BeginRefusal(Exception):
    """Raised by a system's `prepare`: the start stops before any server is asked, with this message and facts."""

    def __init__(self, msg, **facts):
        super(BeginRefusal, self).__init__(msg)
        self.facts = facts


class Start(object):
    """What one start has learned so far; the hooks read and fill it."""

    def __init__(self, args, task_vars, result):
        self.args = args
        self.task_vars = task_vars
        self.result = result
        self.started = time.time()  # wall clock: what a system counts an RTO budget from
        self.timings = {}
        self.warnings = []
        self.dr = None  # the validated parameters
        self.prepared = None  # what `prepare` returned
        self.first = None  # the read before the lock (KEY_NEEDS_READ)
        self.lock = None  # the run lock's result
        self.held = None  # what `hold` took (its own shape; `let_go` releases it)
        self.read = None  # the read under the lock
        self.plan = None

    def timed(self, phase, call, *args, **kwargs):
        started = time.monotonic()
        try:
            return call(*args, **kwargs)
        finally:
            self.timings[phase] = round(time.monotonic() - started, 4)

    def add_warnings(self, result):
        self.warnings.extend((result or {}).get("warnings") or [])


class BeginAction(ActionBase):
    """The start's order and its failure paths; subclasses supply the system's parts (see the module's docstring)."""

    TRANSFERS_FILES = False
    # The module's argument_spec (plugins/modules/<system>_begin.py), never a copy; the base's options by default.
    ARGUMENT_SPEC = staticmethod(begin_argument_spec)
    # Whether the lock's key is read from the target (PostgreSQL: its system identifier), so the target is read once
    # before the lock and once under it; False when the inventory names the target (DNS: the zone): one read, under
    # the lock.
    KEY_NEEDS_READ = True
    READ_PHASES = ("assess", "reassess")  # names of the two reads in `durations`
    PREPARE_PHASE = None  # the name of `prepare` in `durations` (None: not timed, a prepare that does nothing)
    PLAN_SOURCE = "read"  # how the plan's failure message names what the plan is made from

    # ------------------------------------------------------------------ what a system supplies

    def contract(self, start):
        """The inventory contract (erlmcp.dr.inventory_contract's options); by default the `contract` option."""
        return start.args["contract"]

    def prepare(self, start):
        """Checks and settings that need no server, after the parameters and the inventory passed; raise
        BeginRefusal to stop (nothing read, nothing locked). Returns what `read`, `lock_key` and `plan` use."""
        return {}

    def read(self, start):
        """The live read of the target: a result dict (`failed` and `msg` when it could not be read)."""
        raise NotImplementedError

    def lock_key(self, start):
        """The run lock's key: the target's identity (start.first holds the read when KEY_NEEDS_READ)."""
        raise NotImplementedError

    def hold(self, start):
        """Take what the system holds beside the run lock (start.held); a failure dict ({msg, busy, holder}) to
        stop, the run lock then released. None: go on."""
        return None

    def let_go(self, start):
        """Release what `hold` took, when the start fails after it."""

    def plan_name(self, start):
        """The plan's name in messages; None: this start makes no plan."""
        return None

    def plan(self, start):
        """The plan from start.read (under the lock), start.dr and start.prepared."""
        return None

    def check_plan(self, start):
        """A refusal that needs the plan (a failure dict), the locks then released; None: go on."""
        return None

    def facts(self, start):
        """The facts set on success besides `dr`."""
        return {}

    def returned(self, start):
        """What the task returns at its top level on success besides the lock (reports and tests read it)."""
        return {}

    # ------------------------------------------------------------------ the order, and how it fails

    def run(self, tmp=None, task_vars=None):
        result = super(BeginAction, self).run(tmp, task_vars)
        task_vars = task_vars or {}
        _validation, args = self.validate_argument_spec(argument_spec=self.ARGUMENT_SPEC())
        start = Start(args, task_vars, result)
        params = start.timed("parameters", self.sub_action, "erlmcp.dr.runbook_params",
                             {} if args.get("spec") is None else {"spec": args["spec"]}, task_vars)
        if params.get("failed"):
            return dict(result, **params)
        start.dr = params["ansible_facts"]["dr"]
        contract = start.timed("inventory", self.sub_action, "erlmcp.dr.inventory_contract", self.contract(start),
                               task_vars)
        if contract.get("failed"):
            return dict(result, **contract)
        result.update(changed=False, parameters=params.get("parameters"), hosts=contract.get("hosts"),
                      inventory_sources=contract.get("inventory_sources"), durations=start.timings)
        try:
            start.prepared = start.timed(self.PREPARE_PHASE, self.prepare, start) if self.PREPARE_PHASE \
                else self.prepare(start)
        except BeginRefusal as exc:
            return dict(result, **dict(exc.facts, failed=True, msg=str(exc)))
        if self.KEY_NEEDS_READ:
            start.first = start.timed(self.READ_PHASES[0], self.read, start)
            start.add_warnings(start.first)
            if start.first.get("failed"):
                return dict(result, **dict(start.first, durations=start.timings))
        start.lock = lock = start.timed("lock", self.sub_action, "erlmcp.dr.run_lock", self._lock_args(start),
                                        task_vars)
        start.add_warnings(lock)
        if lock.get("failed"):
            # A busy lock keeps the run lock's facts (busy, holder): the runbook CLI maps this step to exit 3.
            return dict(result, failed=True, msg=lock.get("msg"), lock=lock, busy=bool(lock.get("busy")),
                        holder=lock.get("holder"))
        failure = self.hold(start)
        if failure:
            return self._failed(start, failure)
        start.read = start.timed(self.READ_PHASES[1], self.read, start)
        start.add_warnings(start.read)
        if start.read.get("failed"):
            return self._failed(start, start.read)
        if self.plan_name(start):
            try:
                start.plan = start.timed("plan", self.plan, start)
            except PLAN_ERRORS as exc:
                return self._failed(start, {"msg": "the %s plan could not be made from the %s: %s" % (
                    self.plan_name(start), self.PLAN_SOURCE, exc)})
        failure = self.check_plan(start)
        if failure:
            return self._failed(start, failure)
        facts = dict(self.facts(start), dr=start.dr)
        return _with_warnings(dict(result, ansible_facts=facts, lock=lock, **self.returned(start)), start.warnings)

    def _failed(self, start, failure):
        """The start fails after the lock was taken: what it took is released first (lock_released says so)."""
        released = self.release(start)
        return dict(start.result, **dict(failure, failed=True, lock=start.lock, lock_released=released,
                                         durations=start.timings))

    def release(self, start):
        """Release what this start took (check mode took no lock); whether the run lock was released."""
        self.let_go(start)
        lock = start.lock or {}
        if self._task.check_mode or not lock.get("held"):
            return False
        released = self.sub_action("erlmcp.dr.run_lock", {
            "key": lock["key"], "state": "absent", "run_id": lock["run_id"], "store_dir": lock["store_dir"]},
            start.task_vars)
        return bool(released.get("released"))

    def _lock_args(self, start):
        lock = {"key": self.lock_key(start), "state": "present", "runbook": start.args["runbook"]}
        if start.task_vars.get(STORE_DIR_VAR) is not None:
            lock["store_dir"] = self.rendered(start.task_vars, STORE_DIR_VAR)
        return lock

    # ------------------------------------------------------------------ helpers for the systems

    def sub_action(self, name, args, task_vars, check_mode=None):
        """Run the action plugin `name` in this worker on a copy of this task with `args` (plugin_utils/sub_action)."""
        return run_action(self, name, args, task_vars, check_mode=check_mode)

    def rendered(self, task_vars, name):
        """The variable's value, templated with the play's variables (call it only once the parameters passed: an
        inventory value may name a parameter)."""
        templar = self._templar.copy_with_new_env(available_variables=task_vars)
        return templar.template(task_vars[name])

    def rendered_or(self, task_vars, name, default=None):
        return self.rendered(task_vars, name) if task_vars.get(name) is not None else default


def _with_warnings(result, warnings):
    if warnings:
        result["warnings"] = list(warnings)
    return result
