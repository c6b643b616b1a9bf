#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: redis_info
short_description: Role, replication offsets and links, persistence, keys and versions of every Redis node
version_added: "0.1.0"
description:
  - Connects to each node in O(nodes) (from wherever it runs; it only speaks the Redis protocol) and reports
    whether it is reachable (with a clear error when not), primary or replica, its replication offset and,
    for a replica, whom it follows, its link status and how many bytes it is behind the one reachable primary.
  - Persistence state (AOF on or off, rewrite or BGSAVE in progress, last save time and status), keys per
    database, the server's version and the RDB format version it writes, and where its RDB file lives
    (C(dir), C(dbfilename), C(appenddirname)).
  - An unreachable node carries RV(nodes.error) and RV(nodes.error_kind) (C(auth), C(refused), C(timeout),
    C(dns), C(other)).
  - Never changes anything; RV(ignore:changed) is always false.
author:
  - erlmcp.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - erlmcp.dr.redis.credentials
options:
  nodes:
    description:
      - The Redis nodes. Each one carries its own host and port; the login options are shared.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the node (the inventory host name), the key of RV(nodes).
        type: str
        required: true
      host:
        description: Host name or IP address to connect to.
        type: str
        default: 127.0.0.1
      port:
        description: TCP port to connect to.
        type: int
        default: 6379
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Changes nothing, so there is nothing to show.
notes:
  - When the task's target (its delegated host, with C(delegate_to)) is reached with a local connection and no
    C(become), its action plugin runs this module's code in the controller's worker process instead of copying the
    module to the host and starting a Python there (same options, results and check mode). Set the variable
    C(erlmcp_dr_pg_on_controller=false) to have the module copied and run as any module is.
  - More than one entry in RV(primaries) means split brain.
"""

EXAMPLES = r"""
- name: The nodes of the inventory's redis group (redis_host and redis_port per host)
  ansible.builtin.set_fact:
    redis_nodes: >-
      {{ redis_nodes | default([]) + [{'name': item, 'host': hostvars[item].redis_host,
                                       'port': hostvars[item].redis_port}] }}
  loop: "{{ groups['redis'] }}"

- name: Look at every one of them
  erlmcp.dr.redis_info:
    nodes: "{{ redis_nodes }}"
    login_password: "{{ redis_password }}"
  register: info

- name: Spelled out
  erlmcp.dr.redis_info:
    nodes:
      - {name: redis-a, host: 10.0.1.20, port: 6379}
      - {name: redis-b, host: 10.0.2.20, port: 6379}
    login_password: "{{ vault_redis_password }}"
  register: info

- name: Stop on split brain
  ansible.builtin.assert:
    that: info.primaries | length <= 1
    fail_msg: "split brain: {{ info.primaries | join(', ') }}"
"""

RETURN = r"""
nodes:
  description: Facts per node, keyed by node name. Values are null when unknown (for example when unreachable).
  returned: always
  type: dict
  contains:
    name:
      description: The node's name.
      type: str
    host:
      description: The host connected to.
      type: str
    port:
      description: The port connected to.
      type: int
    reachable:
      description: Whether the module could connect and read the node's INFO.
      type: bool
    error:
      description: Why the node is unreachable, in words an operator can act on; null when reachable.
      type: str
    error_kind:
      description: C(auth), C(refused), C(timeout), C(dns) or C(other); null when reachable.
      type: str
    role:
      description: C(primary) or C(replica); null when unreachable.
      type: str
    redis_version:
      description: The server's version (C(redis_version)).
      type: str
    rdb_version:
      description: The RDB format version this server writes, and the newest it can load (Redis 7.0 writes 10,
        7.2 writes 11, 7.4 writes 12).
      type: int
    run_id:
      description: The server process's run id (changes on every restart).
      type: str
    config_file:
      description: The config file the server was started with (C(CONFIG REWRITE) writes it); null when none.
      type: str
    replid:
      description: The replication id of the dataset's history (C(master_replid)).
      type: str
    repl_offset:
      description: The replication offset - C(master_repl_offset) on a primary, C(slave_repl_offset) on a replica.
      type: int
    keys_per_db:
      description: "Keys per database that holds any, for example C({\"db0\": 12})."
      type: dict
    total_keys:
      description: Keys in all databases.
      type: int
    loading:
      description: Whether the server is loading its dataset (C(loading:1)).
      type: bool
    persistence:
      description: C(aof_enabled), C(aof_rewrite_in_progress), C(aof_rewrite_scheduled), C(aof_last_bgrewrite_status),
        C(aof_last_write_status), C(rdb_bgsave_in_progress), C(rdb_last_bgsave_status), C(rdb_last_save_time)
        (Unix time, what LASTSAVE says), C(rdb_changes_since_last_save), C(rdb_saves).
      type: dict
    dir:
      description: The server's working directory (C(CONFIG GET dir)), where its RDB file and AOF directory live.
      type: str
    dbfilename:
      description: The RDB file's name in RV(nodes.dir).
      type: str
    appenddirname:
      description: The AOF directory's name in RV(nodes.dir) (Redis 7 multi-part AOF).
      type: str
    upstream_host:
      description: The host a replica follows (C(master_host)); null on a primary.
      type: str
    upstream_port:
      description: The port a replica follows (C(master_port)); null on a primary.
      type: int
    upstream:
      description: The name of the node of O(nodes) at RV(nodes.upstream_host):RV(nodes.upstream_port), else
        that host:port; null on a primary.
      type: str
    link_status:
      description: A replica's C(master_link_status) (C(up) or C(down)); null on a primary.
      type: str
    link_down_seconds:
      description: Seconds the replica's link has been down; null when up.
      type: int
    lag_bytes:
      description: The one reachable primary's offset minus this replica's; null unless it follows that primary.
      type: int
    replicas:
      description: On a primary, its replicas as it sees them (host, port, state, offset, lag in seconds).
      type: list
      elements: dict
  sample:
    redis-a: {name: redis-a, reachable: true, role: primary, repl_offset: 1234, keys_per_db: {db0: 10}, rdb_version: 10}
    redis-b: {name: redis-b, reachable: true, role: replica, upstream: redis-a, link_status: up, lag_bytes: 0}
primary:
  description: Name of the one reachable primary; null when there is none or more than one.
  returned: always
  type: str
  sample: redis-a
primaries:
  description: Names of every reachable primary, sorted. More than one means split brain.
  returned: always
  type: list
  elements: str
split_brain:
  description: Whether more than one node is a reachable primary.
  returned: always
  type: bool
replicas:
  description: Names of the reachable replicas, sorted.
  returned: always
  type: list
  elements: str
unreachable_nodes:
  description: Names of the nodes that could not be asked, sorted (see RV(nodes.error)).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.client import connection_argument_spec, execute  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._redis.info import run  # noqa: E402


def argument_spec():
    spec = connection_argument_spec()
    del spec["login_host"], spec["login_port"]
    spec["nodes"] = dict(type="list", elements="dict", required=True, options=dict(
        name=dict(type="str", required=True),
        host=dict(type="str", default="127.0.0.1"),
        port=dict(type="int", default=6379),
    ))
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    execute(module, run)


if __name__ == "__main__":
    main()
