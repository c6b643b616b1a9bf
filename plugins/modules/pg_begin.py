#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# The argument spec is here, with the documentation; the work is done on the controller by the action plugin
# plugins/action/pg_begin.py, which validates its task against argument_spec().

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_begin
short_description: Start a database runbook in one task - parameters, inventory, read, lock, read again
version_added: "0.1.0"
description:
  - The start every erlmcp.dr database runbook shares, as one task on the controller. In this order, it runs
    M(erlmcp.dr.runbook_params) (the runbook's parameters are read raw and refused when they hold template
    markers, before anything else is templated or run), M(erlmcp.dr.inventory_contract) (O(contract)),
    M(erlmcp.dr.pg_replication_info) on every host of O(group), M(erlmcp.dr.run_lock) keyed by the cluster's live
    system identifier (C(postgres:<system identifier>)), and M(erlmcp.dr.pg_replication_info) again once the lock
    is held, so that a plan decides from a state no other run is changing.
  - Each step is the action plugin of that module, run in this task's worker, with that module's checks and
    messages. One task instead of five saves four worker forks and their result handling on the runbooks'
    critical path.
  - Sets the facts C(dr) (the validated parameters, secrets left out), C(pg_assess_result) (the read taken under
    the lock) and C(pg_begin_lock) (the lock's result; C(pg_begin_lock.key) is what the caller releases).
  - When another run holds the lock, the task fails with the run lock's message, RV(busy) and RV(holder) (what the
    C(runbook) CLI maps to exit code 3) and sets no fact, so the caller's C(always) section releases nothing.
  - When a step after the lock fails, the lock is released before the task fails.
  - The reads use the variables C(pg_login_user), C(pg_login_password) and C(pg_login_db), and the lock the
    variable C(dr_lock_dir), each templated only after the parameters passed.
author:
  - erlmcp.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - erlmcp.dr.begin
  - erlmcp.dr.begin.contract
options:
  group:
    description: The inventory group of the database nodes.
    type: str
    default: postgres
  plan:
    description:
      - Also make this runbook's plan from the read taken under the lock, and set it as the fact C(dr_plan), with the
        filter C(erlmcp.dr.pg_switchover_plan), C(erlmcp.dr.pg_failover_plan) or C(erlmcp.dr.pg_rejoin_plan)
        called with the runbook's validated parameters (C(candidate), C(max_lag_bytes), C(away_from),
        C(force), C(fence_method), C(primary_confirmed_down), C(node)) and the variable C(dr_primary_of_record).
      - Saves the runbook the task that made the plan.
    type: str
    choices: [switchover, failover, rejoin]
  fail_on_refusal:
    description:
      - Fail this task with the plan's reason (RV(msg)) when the plan refuses (its C(action) is C(refuse)), after
        releasing the run lock and the cluster guard. The plan is then returned as RV(plan), since a failed task sets
        no fact.
      - Saves the runbook its gate, a task that would run (and be skipped) on every run that does not refuse.
    type: bool
    default: false
  lock_scope:
    description:
      - What the run lock excludes. C(cluster) keys it by the cluster's identity (C(postgres:<system identifier>)),
        the lock every runbook that changes a role takes.
      - C(backups) keys it apart (C(postgres-backups:<system identifier>)), for runbooks that never change a role
        (pg_backup, pg_restore into a scratch instance), so a failover is never turned away by a running backup.
    type: str
    choices: [cluster, backups]
    default: cluster
  guard:
    description:
      - Take the cluster guard right after the run lock, before the read the plan is made from - a session advisory
        lock on a strict majority of the group's members, held by a holder process until the C(ansible-playbook)
        process ends (see docs/design.md, section The cluster guard). Another run holding it fails this task as
        RV(busy). When too few members answer (and no other run holds it), the task fails only if the plan would
        change the cluster; a refusing or no-op plan is returned so the runbook reports what the read found.
      - Default true for O(plan=switchover) and O(plan=failover) (the plans that promote), false otherwise. Never
        taken in check mode.
    type: bool
attributes:
  check_mode:
    support: full
    description: Reads the cluster and only inspects the lock (takes nothing), as M(erlmcp.dr.run_lock) does.
  platform:
    support: full
    platforms: all
    description: The reads run where M(erlmcp.dr.pg_replication_info) runs (the controller for a local connection).
notes:
  - Use the role C(erlmcp.dr.pg_begin), which passes the PostgreSQL contract and turns a busy lock into the run
    lock's failure.
"""

EXAMPLES = r"""
- name: Read every database node's live role, timeline and LSNs; Lock the cluster and read it again
  erlmcp.dr.pg_begin:
    runbook: database_switchover
    plan: switchover
    contract:
      groups:
        postgres:
          min_hosts: 1
          host_vars:
            pg_host: {type: str, required: true}
            pg_port: {type: int, required: true}
      vars:
        pg_login_user: {type: str, required: true}
"""

RETURN = r"""
ansible_facts:
  description: Facts set by the task.
  returned: success
  type: dict
  contains:
    dr:
      description: Parameter names to their validated values, defaults filled in, secrets left out.
      type: dict
      returned: success
      sample: {"candidate": "pg-b", "wait_timeout": 60}
    pg_assess_result:
      description: The result of M(erlmcp.dr.pg_replication_info) taken once the lock is held.
      type: dict
      returned: success
    dr_plan:
      description: The plan (O(plan)), made from the read taken under the lock.
      type: dict
      returned: when O(plan) is given and the lock was taken
    pg_begin_lock:
      description: The result of M(erlmcp.dr.run_lock); C(key) is the lock's key.
      type: dict
      returned: success
      sample: {"key": "postgres:7301234567890123456", "held": true, "acquired": true, "busy": false}
    pg_begin_guard:
      description: The cluster guard held (O(guard)) - C(token) (what O(erlmcp.dr.pg_promote#module:guard) of
        M(erlmcp.dr.pg_promote) re-checks), C(held) and C(missing) (member names), C(majority), C(total) and the
        holder's C(pid).
      type: dict
      returned: when the guard was taken
      sample: {"token": "20261206T081500Z-database_switchover-1a2b-9f3e", "held": ["pg-a", "pg-b", "pg-c"],
               "missing": [], "majority": 2, "total": 3, "pid": 4242}
parameters:
  description: The validated parameters with defaults; secrets shown as C(********).
  returned: success
  type: dict
  sample: {"candidate": "pg-b", "wait_timeout": 60}
hosts:
  description: The inventory hosts checked, by group.
  returned: success
  type: dict
  sample: {"postgres": ["pg-a", "pg-b", "pg-c"]}
inventory_sources:
  description: The inventory sources checked.
  returned: success
  type: list
  elements: str
nodes:
  description:
    - The facts of the read in C(pg_assess_result) are also returned at the top level (C(nodes), C(primary),
      C(primaries), C(standbys), C(system_identifier), ...), as M(erlmcp.dr.pg_replication_info) returns them.
  returned: once the cluster was read
  type: dict
lock:
  description: The same as the fact C(pg_begin_lock).
  returned: once the lock was tried
  type: dict
durations:
  description: Seconds each step took (C(parameters), C(inventory), C(assess), C(lock), C(guard), C(reassess),
    C(plan)).
  returned: once the parameters passed
  type: dict
  sample: {"parameters": 0.002, "inventory": 0.003, "assess": 0.05, "lock": 0.004, "reassess": 0.03}
busy:
  description: True when the task failed because another run holds the lock or the cluster guard (see RV(holder)).
  returned: when the lock was tried and not taken
  type: bool
holder:
  description: Who holds the lock (run id, runbook, operator, PID, host, start time), as M(erlmcp.dr.run_lock) says.
  returned: when RV(busy)
  type: dict
guard:
  description: The cluster guard's answer (O(guard)) - ok, held, missing, majority, total, holders (the sessions of
    another run that hold it), errors (members that could not be asked) and msg.
  returned: when the guard was tried
  type: dict
lock_released:
  description: Whether a lock this task took was released because a step after it failed.
  returned: when a step after the lock failed (a read, the plan, a refusal with O(fail_on_refusal))
  type: bool
plan:
  description: The refusing plan (what the fact C(dr_plan) holds on success), with its C(reason).
  returned: when O(fail_on_refusal) failed the task
  type: dict
  sample: {"action": "refuse", "reason": "replay is paused on pg-b", "promote": false}
refused:
  description: True when the task failed because the plan refuses (O(fail_on_refusal)).
  returned: when O(fail_on_refusal) failed the task
  type: bool
msg:
  description: What failed, the failing step's own message.
  returned: failure
  type: str
parameter_errors:
  description: Every problem of the parameters, as M(erlmcp.dr.runbook_params) returns them.
  returned: when the parameters are wrong
  type: list
  elements: str
problems:
  description: Every problem of the inventory, as M(erlmcp.dr.inventory_contract) returns them.
  returned: when the inventory breaks the contract
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import controller_only  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.begin_spec import begin_argument_spec  # noqa: E402


def argument_spec():
    """The options of erlmcp.dr.pg_begin (its action plugin validates the task against them)."""
    spec = begin_argument_spec()
    spec.update(
        group=dict(type="str", default="postgres"),
        plan=dict(type="str", choices=["switchover", "failover", "rejoin"]),
        fail_on_refusal=dict(type="bool", default=False),
        lock_scope=dict(type="str", choices=["cluster", "backups"], default="cluster"),
        guard=dict(type="bool"),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    controller_only(module, "erlmcp.dr.pg_begin")


if __name__ == "__main__":
    main()
