#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# The argument spec is here, with the documentation; the work is done on the controller by the action plugin
# plugins/action/redis_begin.py, which validates its task against argument_spec().

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_begin
short_description: Start a Redis runbook in one task - parameters, inventory, lock, guard, read, plan
version_added: "0.1.0"
description:
  - The start the Redis runbooks (C(redis_backup), C(redis_restore), C(redis_failover)) share, as one task on the
    controller. In this order, it runs M(erlmcp.dr.runbook_params) (the runbook's parameters are read raw and
    refused when they hold template markers, before anything else is templated or run),
    M(erlmcp.dr.inventory_contract) with the Redis inventory contract (docs/redis.md; the one contract of the three
    runbooks, kept in this plugin), takes M(erlmcp.dr.run_lock) keyed by the members' endpoints
    (C(redis:<sorted host:port>)), for O(plan=failover) takes the Redis guard (M(erlmcp.dr.redis_guard)), reads
    every member with M(erlmcp.dr.redis_info) once the lock is held, and makes the plan from that read.
  - The plan (the fact C(dr_plan)) is C(action) (C(act) or C(refuse)), C(target) and C(reason); for a failover also
    C(demote). Backup - the node to save from (the runbook's C(node), else the one primary); restore - the node to
    restore into (C(node), else the one primary, else the node every answering replica follows); failover - the
    candidate (C(candidate), else the one primary, else the replica with the most data; with two primaries, the one
    the application's Redis config at C(dr_app_redis_config_path) names). A backup or restore whose C(store) the
    inventory does not name (C(redis_backup_dir) on the target, C(redis_s3_bucket)) is refused. A refusal does not
    fail this task - the runbook's gate fails on it, and its summary still shows the plan.
  - Sets the facts C(dr) (the validated parameters, secrets left out), C(dr_plan), C(redis_assess_result) (the read
    under the lock), C(redis_begin_nodes) (the members), C(redis_begin_lock) (the lock's result; C(key) is what the
    caller releases) and C(redis_begin_guard) (the guard M(erlmcp.dr.redis_promote) re-checks; empty when not
    taken).
  - When another run holds the lock or the Redis guard, the task fails with its message, RV(busy) and RV(holder)
    (what the C(runbook) CLI maps to exit code 3) and sets no fact, so the caller's C(always) section releases
    nothing. When a step after the lock fails, the lock (and the guard) are released before the task fails.
  - The reads and the guard use C(redis_login_user) and C(redis_password), the lock C(dr_lock_dir), each templated
    only after the parameters passed.
author:
  - erlmcp.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - erlmcp.dr.begin
options:
  plan:
    description: Which plan to make from the read (and the contract's per-runbook requirements).
    type: str
    required: true
    choices: [backup, restore, failover]
  guard:
    description: Whether to take the Redis guard; default for O(plan=failover) only. The inventory's
      C(dr_redis_guard=false) still opts out, and check mode takes none.
    type: bool
attributes:
  check_mode:
    support: full
    description: Reads the members and only inspects the lock (takes nothing, nor the guard).
  platform:
    support: full
    platforms: all
    description: The reads and the guard speak the Redis protocol from the controller (redis-py needed here).
notes:
  - Used by the runbooks C(playbooks/redis_backup.yml), C(redis_restore.yml) and C(redis_failover.yml).
"""

EXAMPLES = r"""
- name: Start - parameters, inventory, lock the deployment, read every Redis node under the lock, plan
  erlmcp.dr.redis_begin:
    runbook: redis_failover
    plan: failover

- name: Gate - refuse, touching nothing, when no node can take over
  vars:
    dr_plan: "{{ ansible_facts['dr_plan'] }}"
  ansible.builtin.fail:
    msg: "{{ dr_plan.reason }}"
  when: dr_plan.action == 'refuse'
"""

RETURN = r"""
ansible_facts:
  description: What the start read and decided, as facts (a play names them as its variables).
  type: dict
  returned: success
  contains:
    dr:
      description: The runbook's validated parameters (defaults filled in, secrets left out).
      type: dict
      returned: success
    dr_plan:
      description: The plan made from the read taken under the lock (C(action), C(target), C(reason), C(demote)).
      type: dict
      returned: success
      sample: {"action": "act", "target": "redis-b", "reason": "named by the candidate parameter", "demote": []}
    redis_assess_result:
      description: What M(erlmcp.dr.redis_info) returned for every member, read under the lock.
      type: dict
      returned: success
    redis_begin_nodes:
      description: The members (C(name), C(host), C(port)), from the inventory's redis group.
      type: list
      elements: dict
      returned: success
    redis_begin_lock:
      description: The result of M(erlmcp.dr.run_lock); C(key) is the lock's key.
      type: dict
      returned: success
    redis_begin_guard:
      description: The Redis guard (M(erlmcp.dr.redis_guard)'s C(guard)); empty when not taken.
      type: dict
      returned: success
nodes:
  description: The read's C(nodes), and RV(primaries) the members that take writes (as M(erlmcp.dr.redis_info) says).
  returned: success
  type: dict
primaries:
  description: See RV(nodes).
  returned: success
  type: list
  elements: str
guard:
  description: The Redis guard as taken (or not), when the plan takes it.
  returned: when the guard was tried
  type: dict
durations:
  description: Seconds per step (C(parameters), C(inventory), C(members), C(lock), C(guard), C(read), C(plan)).
  returned: once the inventory passed
  type: dict
busy:
  description: True when another run holds the lock or the Redis guard; RV(holder) then says who (run id, host,
    since), as M(erlmcp.dr.run_lock) or M(erlmcp.dr.redis_guard) does.
  returned: when the lock or the guard was tried and not taken
  type: bool
holder:
  description: See RV(busy).
  returned: when RV(busy)
  type: dict
lock:
  description: The same as the fact C(redis_begin_lock); RV(lock_released) says whether a failure after it released it.
  returned: once the lock was tried
  type: dict
lock_released:
  description: See RV(lock).
  returned: when the guard, the read or the plan failed after the lock
  type: bool
msg:
  description: What failed, the failing step's own message; RV(parameters), RV(hosts) and RV(inventory_sources) are
    as M(erlmcp.dr.pg_begin) returns them.
  returned: failure
  type: str
parameters:
  description: The validated parameters (secrets masked).
  returned: once the parameters passed
  type: dict
hosts:
  description: The redis group's hosts the contract checked (and RV(inventory_sources), where they came from).
  type: dict
  returned: once the inventory passed
inventory_sources:
  description: See RV(hosts).
  type: list
  elements: str
  returned: once the inventory passed
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import controller_only  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.begin_spec import begin_argument_spec  # noqa: E402


def argument_spec():
    """The options of erlmcp.dr.redis_begin (its action plugin validates the task against them)."""
    spec = begin_argument_spec(contract=False)  # the Redis contract is the plugin's own (docs/redis.md)
    spec.update(
        plan=dict(type="str", required=True, choices=["backup", "restore", "failover"]),
        guard=dict(type="bool"),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    controller_only(module, "erlmcp.dr.redis_begin")


if __name__ == "__main__":
    main()
