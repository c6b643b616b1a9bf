# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for erlmcp.dr.pg_begin: the start of a database runbook in ONE task.

The order, the lock and its release on failure live in the shared start (plugins/plugin_utils/begin.py, also
erlmcp.dr.dns_begin's); this file supplies PostgreSQL's parts. It runs, in this worker and in this order, the action
plugins the start was made of (each loaded through the action loader with a copy of this task, so their code, checks
and messages are the ones used everywhere):
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

from ansible.module_utils.parsing.convert_bool import boolean
from ansible_collections.erlmcp.dr.plugins.filter.failover import pg_failover_plan, pg_rejoin_plan, pg_switchover_plan
from ansible_collections.erlmcp.dr.plugins.filter.runbook import pg_nodes
from ansible_collections.erlmcp.dr.plugins.module_utils._guards import postgres_guard as _cluster_guard
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import kept_connections
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.failover_plan import lock_key
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import warm_driver
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import POSTGRES
from ansible_collections.erlmcp.dr.plugins.modules.pg_begin import argument_spec
from ansible_collections.erlmcp.dr.plugins.plugin_utils.begin import BeginAction

# The reads run in this task's worker: psycopg imported once, before the fork (see _common/module.py).
warm_driver(POSTGRES)

# The plans that promote take the cluster guard (_guards/postgres_guard.py) by default: the run lock only excludes runs
# that share its folder, the guard excludes runs from any controller.
GUARDED_PLANS = ("switchover", "failover")
# How long a switchover refused for its candidate's lag reads again before it refuses (plan(): a WAL segment switch's
# padding), and how often.
LAG_SETTLE_SECONDS = 5.0
LAG_SETTLE_INTERVAL = 0.1
GUARD_VAR = "dr_cluster_guard"
# The inventory variables the reads and the lock use (the PostgreSQL contract's names); templated only once the
# parameters have passed, so a hostile parameter is refused before any of them is rendered.
LOGIN_VARS = (("login_user", "pg_login_user"), ("login_password", "pg_login_password"), ("login_db", "pg_login_db"))
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


class ActionModule(BeginAction):
    """PostgreSQL's parts of the one-task start (plugin_utils/begin.py runs them in order): its contract is the
    role's `contract` option, its reader erlmcp.dr.pg_replication_info, its lock key the live system identifier,
    beside the run lock it holds the cluster guard, and its plans are PLANS."""

    TRANSFERS_FILES = False  # the reads ship erlmcp.dr.pg_replication_info through this task's connection when the
    # database nodes are not reachable from here (see _module.run_on_controller), so the connection stays required
    ARGUMENT_SPEC = staticmethod(argument_spec)
    KEY_NEEDS_READ = True  # the key is the cluster's system identifier, read from the nodes
    READ_PHASES = ("assess", "reassess")
    PLAN_SOURCE = "cluster's read"

    def run(self, tmp=None, task_vars=None):
        # The cluster guard's holder is started first, when this start may take the guard: its interpreter and its
        # psycopg import (about 0.3 s of CPU, most of the guard's time) run while the parameters, the inventory and
        # the cluster are checked, read and locked. It is told nothing (no member, no password) and contends for
        # nothing until hold() hands it its config, after the run lock; a start that ends before that, or that turns
        # out not to take the guard (the inventory's opt-out), ends it.
        self._holder = _cluster_guard.spawn() if self._may_take_guard() else None
        try:
            # The read under the lock (and a lag refusal's reads again) take the connections the first read opened,
            # instead of a new SCRAM handshake and backend per node (kept_connections); closed when the start ends.
            with kept_connections.kept():
                return super(ActionModule, self).run(tmp, task_vars)
        finally:
            if self._holder is not None:
                _cluster_guard.abandon(self._holder)
                self._holder = None

    def prepare(self, start):
        return {"read_args": self._read_args(start.args["group"], start.task_vars)}

    def read(self, start):
        return self.sub_action("erlmcp.dr.pg_replication_info", start.prepared["read_args"], start.task_vars,
                               check_mode=False)

    def lock_key(self, start):
        key = lock_key(start.first)
        if start.args["lock_scope"] == "backups":
            # Backups and scratch restores never change a role: they must not turn a 3 a.m. failover away as busy
            # (nor wait for it). They exclude each other only; pgBackRest's own lock keeps two backups of a stanza
            # apart too.
            return key.replace("postgres", "postgres-backups", 1)
        return key

    def hold(self, start):
        if not self._guarded(start.args, start.task_vars):
            return None
        guard = start.held = start.timed("guard", self._take_guard, start.prepared["read_args"],
                                         start.lock.get("run_id"))
        start.result["guard"] = guard
        if not guard.get("ok") and guard.get("holders"):
            # Another run holds it (from this controller or another): the same "busy" as a held run lock.
            return dict(msg=guard.get("msg"), busy=True, holder=_guard_holder(guard))
        return None

    def let_go(self, start):
        guard = start.held
        if guard is not None and guard.get("ok"):
            _cluster_guard.release(guard.get("pid"), guard.get("token"))

    def plan_name(self, start):
        return start.args["plan"]

    def plan(self, start):
        record = self.rendered_or(start.task_vars, RECORD_VAR)
        plan = PLANS[start.args["plan"]](start.read, start.dr, record)
        deadline = time.monotonic() + LAG_SETTLE_SECONDS
        while _lag_refusal(plan, start.dr) and time.monotonic() < deadline:
            # A switchover refused for lag against a live primary: read again for a moment before refusing. A WAL
            # segment switch (archive_timeout, pg_switch_wal) makes the primary's position jump to the next segment
            # at once while the standby still receives that segment's zero padding (16 MB by default): for a few
            # hundred milliseconds it looks that far behind though no transaction is missing. A standby truly behind
            # is still refused, a moment later.
            time.sleep(LAG_SETTLE_INTERVAL)
            read = self.read(start)
            if read.get("failed"):
                break
            start.read = read
            plan = PLANS[start.args["plan"]](start.read, start.dr, record)
        return plan

    def check_plan(self, start):
        guard = start.held
        if guard is not None and not guard.get("ok") and _changes_cluster(start.plan):
            # Too few members answered the guard (no other run holds it): a plan that only refuses or finds nothing
            # to do goes on, so the runbook says what its read found (a wrong password, nodes down); one that would
            # change the cluster stops here, before anything is fenced.
            return dict(msg=guard.get("msg"))
        if start.args["fail_on_refusal"] and (start.plan or {}).get("action") == "refuse":
            # The runbook's gate, in this task: a refusal fails here, its locks released, instead of in a task of
            # its own that every other run forks a worker for only to skip it. The plan and the read go with the
            # failure (a failed task sets no fact): the runbook's summary and the report read them there.
            return dict(_read_facts(start.read), msg=start.plan.get("reason") or "the plan refuses",
                        plan=start.plan, refused=True)
        return None

    def facts(self, start):
        facts = dict(pg_assess_result=start.read, pg_begin_lock=start.lock)
        if start.held is not None and start.held.get("ok"):
            facts["pg_begin_guard"] = _guard_fact(start.held)
        if start.args["plan"]:
            facts["dr_plan"] = start.plan
        return facts

    def returned(self, start):
        return _read_facts(start.read)

    # ------------------------------------------------------------------ PostgreSQL's reads and guard

    def _read_args(self, group, task_vars):
        hostvars = task_vars.get("hostvars") or {}
        hosts = list((task_vars.get("groups") or {}).get(group) or [])
        read = {"nodes": pg_nodes(hosts, hostvars)}
        for option, name in LOGIN_VARS:
            if name in task_vars:
                read[option] = self.rendered(task_vars, name)
        return read

    def _may_take_guard(self):
        """Whether this start may take the cluster guard, from the task's own options only (nothing rendered: the
        parameters have not passed yet): _guarded decides, later."""
        args = self._task.args
        if self._task.check_mode:
            return False
        if args.get("guard") not in (None, ""):
            return boolean(args["guard"], strict=False)
        return args.get("plan") in GUARDED_PLANS

    def _guarded(self, args, task_vars):
        """Whether this start takes the cluster guard: for the plans that promote, never in check mode (which
        changes nothing, and takes no run lock either)."""
        if self._task.check_mode:
            return False
        if args["guard"] is not None:
            return args["guard"]
        # The inventory's explicit opt-out, for controllers that cannot reach the members (the reads then run on the
        # nodes): the run lock alone holds runs apart there.
        if task_vars.get(GUARD_VAR) is not None and not boolean(self.rendered(task_vars, GUARD_VAR), strict=False):
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
        holder, self._holder = self._holder, None
        return _cluster_guard.start(members, _cluster_guard.new_token(run_id), os.getppid(), holder=holder)


def _lag_refusal(plan, dr):
    """A switchover plan refused because its candidate is more than max_lag_bytes behind the live primary."""
    lag, limit = plan.get("lag_bytes"), dr.get("max_lag_bytes")
    return plan.get("action") == "refuse" and lag is not None and limit is not None and lag > limit \
        and plan.get("old_primary") is not None


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
