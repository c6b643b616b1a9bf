#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# The argument spec is here, with the documentation; the work is done on the controller by the action plugin
# plugins/action/redis_guard.py, which validates its task against argument_spec().

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_guard
short_description: Take the Redis guard - one promoting run per Redis member set, whatever controller it runs from
version_added: "0.1.0"
description:
  - The run lock lives on the controller; two controllers that share no lock folder never meet at it. The Redis
    guard lives with the Redis members instead, as named client connections held by a holder process on the
    controller (see docs/design.md, section The Redis guard).
  - The holder announces on every member of O(members) (a connection named C(erlmcp-dr-guard:want:<token>)), then
    lists the guard connections there (C(CLIENT LIST)). It wins when a strict majority of the members carry its
    announcement and show no other run's guard connection, and renames its connections
    C(erlmcp-dr-guard:hold:<token>). Otherwise it withdraws (closes them) and retries after a random back-off for
    up to O(acquire_seconds) while other runs only announce; a run that holds the guard refuses it at once.
  - The holder keeps the guard until the C(ansible-playbook) process ends (normally or killed), re-taking a member
    whose connection dropped (a restarted member) when no other run's connection is there.
  - When another run announces or holds the guard, the task fails with RV(busy) and RV(holder) (what the
    C(runbook) CLI maps to exit code 3). When too few members answer and no other run is in sight, the task
    succeeds with RV(guard.held) false; M(erlmcp.dr.redis_promote) then refuses to promote.
  - Not taken in check mode. The inventory variable C(dr_redis_guard=false) opts out (a controller that cannot
    reach the members' Redis ports) - then only the run lock, and a lock folder shared by every controller, keep
    two runs apart.
author:
  - erlmcp.dr developers (!UNKNOWN)
options:
  members:
    description: Every node of the deployment (the inventory's redis group, C(erlmcp.dr.redis_nodes)).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The node's name (inventory host).
        type: str
        required: true
      host:
        description: Host name or IP address the controller connects to.
        type: str
        default: 127.0.0.1
      port:
        description: TCP port.
        type: int
        default: 6379
  run_id:
    description: The run's id (the run lock's C(run_id)); the token is this id and a random suffix.
    type: str
  login_user:
    description: Redis ACL user.
    type: str
  login_password:
    description: Redis password (given to the holder on its stdin, never its command line).
    type: str
  acquire_seconds:
    description: How long the start contends while other runs only announce.
    type: float
    default: 5.0
attributes:
  check_mode:
    support: full
    description: Takes nothing.
  diff_mode:
    support: none
    description: Nothing is changed on the members but the names of the guard's own connections.
  action:
    support: full
    description: Runs as an action plugin on the controller.
  platform:
    support: full
    platforms: all
    description: The controller connects to every member's Redis port and needs redis-py.
"""

EXAMPLES = r"""
- name: Take the Redis guard
  erlmcp.dr.redis_guard:
    members: "{{ groups['redis'] | erlmcp.dr.redis_nodes(hostvars) }}"
    run_id: "{{ redis_begin_lock.run_id }}"
    login_password: "{{ redis_password }}"
  register: redis_begin_guard
"""

RETURN = r"""
guard:
  description: The guard as taken; pass it to O(erlmcp.dr.redis_promote#module:guard).
  returned: always
  type: dict
  contains:
    enabled:
      description: False in check mode and with C(dr_redis_guard=false).
      type: bool
    held:
      description: Whether a majority is held.
      type: bool
    token:
      description: This run's token (when held) - what the promotion re-checks and records.
      type: str
    pid:
      description: The holder process (when held).
      type: int
    held_on:
      description: The members held.
      type: list
      elements: str
    missing:
      description: The members not held.
      type: list
      elements: str
    majority:
      description: How many members a run must hold.
      type: int
    total:
      description: How many members there are.
      type: int
    holders:
      description: Other runs' guard connections seen (member, state C(want) or C(hold), token, addr, age).
      type: list
      elements: dict
    msg:
      description: What happened, in one sentence.
      type: str
  sample: {"enabled": true, "held": true, "token": "20261206T081500Z-redis_failover-1a2b-9f3e", "pid": 4242,
           "held_on": ["redis-a", "redis-b", "redis-c"], "missing": [], "majority": 2, "total": 3, "holders": []}
busy:
  description: Another run announces or holds the guard.
  returned: when the guard is busy
  type: bool
holder:
  description: The other run (C(run_id), C(host), C(since), C(guard) tokens, C(members)).
  returned: when the guard is busy
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import controller_only  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._guards.redis_guard import ACQUIRE_SECONDS  # noqa: E402


def argument_spec():
    """The options of erlmcp.dr.redis_guard (its action plugin validates the task against them)."""
    return dict(
        members=dict(type="list", elements="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            host=dict(type="str", default="127.0.0.1"),
            port=dict(type="int", default=6379),
        )),
        run_id=dict(type="str"),
        login_user=dict(type="str"),
        login_password=dict(type="str", no_log=True),
        acquire_seconds=dict(type="float", default=ACQUIRE_SECONDS),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    controller_only(module, "erlmcp.dr.redis_guard")


if __name__ == "__main__":
    main()
