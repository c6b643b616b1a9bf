#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_promote
short_description: Make a Redis replica the primary, never with two writable primaries, and repoint the others
version_added: "0.1.0"
description:
  - Reads every node of O(members) and plans from what it finds.
  - When the old primary answers, the hand-over is Redis's own coordinated C(FAILOVER TO <candidate>) run on it
    (Redis 6.2+) - it pauses its writes, waits up to O(catchup_timeout) until the candidate has its whole offset,
    then becomes a replica of the candidate and hands it the primary role. Two nodes never take writes at once and
    nothing acknowledged is lost; when the candidate cannot catch up, Redis aborts and unpauses and the module fails
    saying nothing changed. Before that, the lag gate - the candidate at most O(max_lag_bytes) behind - is checked
    on the replication offsets.
  - When no primary answers, the candidate must hold the most data of the replicas that answer (within
    O(max_lag_bytes) of the best; O(force) relaxes this gate only). Right before C(REPLICAOF NO ONE) every member is
    read again, and the promotion is refused if any of them takes writes. The old primary stays unfenced until it
    answers again; a later run with it in O(demote) makes it a replica of the candidate.
  - Every other member that answers is repointed (C(REPLICAOF) the candidate) and waited for until its link is up.
    Each node changed persists its role with C(CONFIG REWRITE) when it has a config file.
  - Once the candidate is the only primary and every member that answers replicates from it, nothing is done.
author:
  - erlmcp.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - erlmcp.dr.redis.credentials
options:
  members:
    description: Every node of the deployment (the inventory's redis group).
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: The node's name (inventory host).
        type: str
        required: true
      host:
        description: Host name or IP address to connect to, also the address the others replicate from.
        type: str
        default: 127.0.0.1
      port:
        description: TCP port.
        type: int
        default: 6379
  candidate:
    description: The member that must end up as the primary.
    type: str
    required: true
  max_lag_bytes:
    description:
      - The most replication offset the candidate may be behind before anything changes (the old primary's offset
        when it answers, else the best replica's).
    type: int
    default: 0
  force:
    description:
      - Promote even when the candidate is further behind than O(max_lag_bytes).
      - Never relaxes the single-writer checks.
    type: bool
    default: false
  demote:
    description:
      - Members that may be made replicas of the candidate when they take writes beside it (an old primary back
        after a failover; its writes since then are given up). Any other second writer is refused.
    type: list
    elements: str
    default: []
  guard:
    description:
      - The Redis guard this run holds, the C(guard) returned by M(erlmcp.dr.redis_guard) (C(enabled), C(held),
        C(token)). When enabled, right before C(REPLICAOF NO ONE) or C(FAILOVER) a strict majority of O(members)
        must show this run's holder connection (named C(erlmcp-dr-guard:hold:<token>)) and no other run's, read on
        this step's own connections; otherwise nothing is promoted and the module fails naming C(redis_guard). An
        enabled guard that was not held refuses any promotion.
      - Omitted, or not enabled (C(dr_redis_guard=false), check mode), no re-check is made.
    type: dict
  catchup_timeout:
    description: Seconds the candidate gets to reach the old primary's offset during the C(FAILOVER) (writes paused).
    type: float
    default: 10
  wait_timeout:
    description: Seconds each other wait gets (the candidate taking the role, each node linking).
    type: float
    default: 60
  poll_interval:
    description: Seconds between two looks while waiting.
    type: float
    default: 0.1
attributes:
  check_mode:
    support: full
    description: Reads and plans; changes nothing.
  diff_mode:
    support: full
    description: Each node's role before and after.
notes:
  - When the task's target (its delegated host, with C(delegate_to)) is reached with a local connection and no
    C(become), its action plugin runs this module's code in the controller's worker process instead of copying the
    module to the host and starting a Python there (same options, results and check mode). Set the variable
    C(erlmcp_dr_pg_on_controller=false) to have the module copied and run as any module is.
"""

EXAMPLES = r"""
- name: Make redis-b the primary
  erlmcp.dr.redis_promote:
    members: "{{ groups['redis'] | erlmcp.dr.redis_nodes(hostvars) }}"
    candidate: redis-b
    login_password: "{{ redis_password }}"
    max_lag_bytes: 1048576
"""

RETURN = r"""
candidate:
  description: The node that is (or would be) the primary.
  returned: always
  type: str
promoted:
  description: Whether this run handed the candidate the primary role.
  returned: always
  type: bool
plan:
  description: C(none), C(failover) (the old primary answered), C(promote) (none answered) or C(refuse).
  returned: when the members were read
  type: str
old_primary:
  description: The primary before (or the node the candidate followed when no primary answered).
  returned: always
  type: str
fence:
  description: How the old primary was kept from taking writes - C(failover) (it is a replica now) or C(unreachable).
  returned: always
  type: str
lag_bytes_at_gate:
  description: How far behind the candidate was when the gate was checked.
  returned: always
  type: int
repointed:
  description: The members made to replicate from the candidate.
  returned: always
  type: list
  elements: str
persisted:
  description: >-
    Members whose config file this run rewrote to the role they run (C(CONFIG REWRITE) on every answering member,
    every run; listed when the file, readable from where the module runs, changed - a run cut off between the
    hand-over and its rewrite). Not in check mode.
  returned: when the module ran a change or found nothing to change, not in check mode
  type: list
  elements: str
unreachable_nodes:
  description: Members that did not answer.
  returned: always
  type: list
  elements: str
before:
  description: Each member's role, upstream, offset and link before.
  returned: when the members were read
  type: dict
after:
  description: The same, after.
  returned: when something was done, or nothing was needed
  type: dict
guard_token:
  description: >-
    The token of the Redis guard the promotion was re-checked under (the promotion's fencing value); null when no
    promotion was made or no guard was given.
  returned: always
  type: str
durations:
  description: Seconds spent promoting, repointing, in total.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.client import connection_argument_spec, execute  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.promote import run  # noqa: E402


def argument_spec():
    spec = connection_argument_spec()
    del spec["login_host"], spec["login_port"]
    spec.update(
        members=dict(type="list", elements="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            host=dict(type="str", default="127.0.0.1"),
            port=dict(type="int", default=6379),
        )),
        candidate=dict(type="str", required=True),
        max_lag_bytes=dict(type="int", default=0),
        force=dict(type="bool", default=False),
        demote=dict(type="list", elements="str", default=[]),
        guard=dict(type="dict"),
        catchup_timeout=dict(type="float", default=10),
        wait_timeout=dict(type="float", default=60),
        poll_interval=dict(type="float", default=0.1),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    execute(module, run)


if __name__ == "__main__":
    main()
