#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_replication_info
short_description: Role, timeline, LSNs and replication lag of every node of a PostgreSQL cluster
version_added: "0.1.0"
description:
  - Connects to each node in O(nodes) (from the controller; it only speaks SQL) and reports whether it is
    reachable (with a clear error when not), primary or standby, its timeline, system identifier,
    current, receive and replay LSNs, whether replay is paused, its WAL receiver and whether it is read-only.
  - From the primary's C(pg_stat_replication) it adds, per standby, the lag in bytes and seconds and the
    sync state, matching standbys to nodes by C(application_name) equal to the node's O(nodes[].name).
  - When exactly one primary is reachable, each standby's RV(nodes.lag_bytes) is computed as the
    primary's current LSN minus the standby's replay LSN.
  - Never changes anything; RV(ignore:changed) is always false.
author:
  - erlmcp.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - erlmcp.dr.postgres.credentials
options:
  nodes:
    description:
      - The nodes of the cluster. Each one carries its own host and port; the login options are shared.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Name of the node (the inventory host name). Standbys are matched to the primary's
            C(pg_stat_replication) by C(application_name) equal to this name.
        type: str
        required: true
      host:
        description: Host name or IP address to connect to.
        type: str
        default: 127.0.0.1
      port:
        description: TCP port to connect to.
        type: int
        default: 5432
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
notes:
  - More than one entry in RV(primaries) means split brain.
"""

EXAMPLES = r"""
- name: Look at every database node of the inventory (group postgres, pg_host and pg_port per host)
  erlmcp.dr.pg_replication_info:
    nodes: "{{ groups['postgres'] | erlmcp.dr.pg_nodes(hostvars) }}"
    login_user: "{{ pg_login_user }}"
    login_password: "{{ pg_login_password }}"
  register: info

- name: Same, spelled out
  erlmcp.dr.pg_replication_info:
    nodes:
      - {name: pg-a, host: 10.0.1.10, port: 5432}
      - {name: pg-b, host: 10.0.2.10, port: 5432}
    login_user: erlmcp_dr
    login_password: "{{ vault_pg_password }}"
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
      description: Whether the module could connect and read the node's state.
      type: bool
    error:
      description: Why the node is unreachable, in words an operator can act on; null when reachable.
      type: str
    role:
      description: C(primary) or C(standby); null when unreachable.
      type: str
    in_recovery:
      description: The result of C(pg_is_in_recovery).
      type: bool
    timeline:
      description: The node's timeline (a standby's is the one its WAL receiver streams, else its checkpoint's).
      type: int
    system_identifier:
      description: The cluster's system identifier (C(pg_control_system)), as a string.
      type: str
    server_version:
      description: The server's version.
      type: str
    cluster_name:
      description: The server's C(cluster_name) setting.
      type: str
    current_lsn:
      description: C(pg_current_wal_lsn) on a primary; null on a standby.
      type: str
    receive_lsn:
      description: C(pg_last_wal_receive_lsn) on a standby.
      type: str
    replay_lsn:
      description: C(pg_last_wal_replay_lsn) on a standby.
      type: str
    position_lsn:
      description:
        - How far the node has WAL - the current LSN of a primary, the higher of receive and replay on a standby.
      type: str
    replay_paused:
      description: Whether WAL replay is paused (C(pg_wal_replay_pause)).
      type: bool
    last_replay_at:
      description: Commit time of the last transaction replayed (ISO 8601), on a standby.
      type: str
    read_only:
      description: Whether C(default_transaction_read_only) is on (for example fenced by M(erlmcp.dr.pg_fence)).
      type: bool
    wal_receiver:
      description: The standby's row of C(pg_stat_wal_receiver) (status, received_tli, sender_host, sender_port,
        slot_name, flushed_lsn, latest_end_lsn); null when it has none.
      type: dict
    receiver_status:
      description: The WAL receiver's status (C(streaming) when healthy); null when it has none.
      type: str
    upstream_host:
      description: The host the standby streams from.
      type: str
    upstream_port:
      description: The port the standby streams from.
      type: int
    upstream:
      description: The name of the node the standby streams from, when it is one of O(nodes).
      type: str
    streaming:
      description: Whether the standby's WAL receiver is streaming.
      type: bool
    lag_bytes:
      description: Primary's current LSN minus this standby's replay LSN; null unless exactly one primary is reachable.
      type: int
    receive_lag_bytes:
      description: Primary's current LSN minus this standby's receive LSN; null unless exactly one primary is reachable.
      type: int
    lag_seconds:
      description: C(replay_lag) of this standby in the primary's C(pg_stat_replication), in seconds; null when
        the primary does not list it or has no recent measure (an idle primary).
      type: float
    sync_state:
      description: C(sync_state) of this standby in the primary's C(pg_stat_replication) (C(async), C(sync), ...).
      type: str
    replication:
      description: This standby's row of the primary's C(pg_stat_replication) (application_name, client_addr,
        state, sync_state, sent_lsn, write_lsn, flush_lsn, replay_lsn, lag_bytes, replay_lag_seconds); null when absent.
      type: dict
    replicas:
      description: On a primary, every row of its C(pg_stat_replication); null on a standby.
      type: list
      elements: dict
  sample:
    pg-a: {name: pg-a, host: 127.0.0.1, port: 54321, reachable: true, error: null, role: primary, timeline: 1,
           current_lsn: 0/3000148, read_only: false}
    pg-b: {name: pg-b, reachable: true, role: standby, timeline: 1, replay_lsn: 0/3000148, lag_bytes: 0,
           upstream: pg-a, streaming: true, sync_state: async}
primary:
  description: Name of the one reachable primary; null when there is none or more than one.
  returned: always
  type: str
  sample: pg-a
primaries:
  description: Names of every reachable primary, sorted. More than one means split brain.
  returned: always
  type: list
  elements: str
split_brain:
  description: Whether more than one node is a reachable primary.
  returned: always
  type: bool
standbys:
  description: Names of the reachable standbys, sorted.
  returned: always
  type: list
  elements: str
unreachable_nodes:
  description:
    - Names of the nodes that could not be asked, sorted (see RV(nodes.error)).
    - Not called C(unreachable), which Ansible would take as the managed host itself being unreachable.
  returned: always
  type: list
  elements: str
system_identifiers_agree:
  description: Whether every reachable node has the same system identifier (true when at most one is reachable).
  returned: always
  type: bool
system_identifier:
  description: The system identifier shared by the reachable nodes; null when they disagree or none is reachable.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._module import execute  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import connection_argument_spec  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._replication_info import run  # noqa: E402


def argument_spec():
    spec = connection_argument_spec()
    del spec["login_host"], spec["login_port"]
    spec["nodes"] = dict(type="list", elements="dict", required=True, options=dict(
        name=dict(type="str", required=True),
        host=dict(type="str", default="127.0.0.1"),
        port=dict(type="int", default=5432),
    ))
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    execute(module, run)


if __name__ == "__main__":
    main()
