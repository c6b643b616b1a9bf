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
  - Membership is by identity. The cluster's system identifier (RV(system_identifier)) is the writable primary's,
    else the one most reachable nodes share; reachable nodes with another one are RV(foreign_nodes) and left out
    of RV(primaries), RV(fenced_primaries) and RV(standbys). A standby's RV(nodes.upstream) is the node at its WAL
    receiver's sender host:port with the same system identifier, and RV(nodes.configured_upstream) the one its
    C(primary_conninfo) names; never matched by C(application_name).
  - Only writable primaries count in RV(primaries) (and RV(split_brain)); a primary fenced read-only is listed in
    RV(fenced_primaries).
  - When exactly one writable primary (or, with none, one fenced primary) is reachable, each standby's
    RV(nodes.lag_bytes) is that primary's current LSN minus the standby's replay LSN; for the standbys streaming
    from it, its C(pg_stat_replication) row (picked by C(application_name) once the upstream is established by
    identity) adds the lag in seconds and the sync state.
  - An unreachable node carries RV(nodes.error) and RV(nodes.error_kind) (C(auth), C(refused), C(timeout), C(dns),
    C(other)), so a plan can say "cannot log in to pg-a as erlmcp_dr" rather than "no primary is up".
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
          - Name of the node (the inventory host name), the key of RV(nodes).
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
  - When the task's target (its delegated host, with C(delegate_to)) is reached with a local connection and no
    C(become), its action plugin runs this module's code in the controller's worker process instead of copying the
    module to the host and starting a Python there (same options, results and check mode). Set the variable
    C(erlmcp_dr_pg_on_controller=false) to have the module copied and run as any module is.
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
      description: Why the node is unreachable, in words an operator can act on (an authentication failure names
        the user, host and port); null when reachable.
      type: str
    error_kind:
      description: What kind of failure made it unreachable - C(auth) (wrong password, no pg_hba.conf entry),
        C(refused) (nothing listening), C(timeout), C(dns) or C(other); null when reachable.
      type: str
    writable:
      description: A reachable primary with C(default_transaction_read_only) off (it takes writes); false on a
        standby or a read-only (fenced) primary.
      type: bool
    foreign:
      description: Whether the node is reachable but its system identifier differs from the cluster's
        (RV(system_identifier)); such nodes are left out of RV(primaries), RV(fenced_primaries) and RV(standbys).
      type: bool
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
    synchronous_standby_names:
      description: >-
        The server's C(synchronous_standby_names) setting (empty: asynchronous). A primary with it set acknowledges
        a commit only once enough of the standbys it names have it (none streaming: no write is acknowledged).
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
      description:
        - The name of the node the standby streams from - the node of O(nodes) at its WAL receiver's sender
          host:port with the same system identifier (never matched by C(application_name)); null otherwise.
        - An unreachable node at that host:port is named by host and port alone (its identity cannot be read).
      type: str
    configured_upstream_host:
      description: The host the node's C(primary_conninfo) names (what a standby follows even when it does not
        stream now; for a promoted primary, the node it was promoted away from); the password is never read out.
      type: str
    configured_upstream_port:
      description: The port the standby's C(primary_conninfo) names (5432 when it names none).
      type: int
    configured_upstream:
      description: The name of the node at RV(nodes.configured_upstream_host):RV(nodes.configured_upstream_port)
        with the same system identifier (an unreachable node there, say a stopped primary, is named by host and
        port alone, its identity being unknown); null otherwise.
      type: str
    streaming:
      description: Whether the standby's WAL receiver is streaming.
      type: bool
    lag_bytes:
      description: The primary's current LSN minus this standby's replay LSN; null unless exactly one writable
        primary (or, with none, exactly one fenced primary) is reachable.
      type: int
    receive_lag_bytes:
      description: The same primary's current LSN minus this standby's receive LSN.
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
  description: Name of the one reachable writable primary of the cluster; null when there is none or more than one.
  returned: always
  type: str
  sample: pg-a
primaries:
  description: Names of every reachable WRITABLE primary of the cluster, sorted. More than one means split brain.
  returned: always
  type: list
  elements: str
fenced_primaries:
  description: Names of the reachable primaries of the cluster fenced read-only (C(default_transaction_read_only)
    on), sorted; they take no writes.
  returned: always
  type: list
  elements: str
split_brain:
  description: Whether more than one node of the cluster is a reachable writable primary.
  returned: always
  type: bool
foreign_nodes:
  description: Names of the reachable nodes whose system identifier differs from the cluster's, sorted.
  returned: always
  type: list
  elements: str
standbys:
  description: Names of the reachable standbys of the cluster (foreign nodes left out), sorted.
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
  description: The cluster's system identifier - the one writable primary's, else the one most reachable nodes
    share; null when none is reachable or there is a tie.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import execute  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import POSTGRES, connection_argument_spec  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.replication_info import run  # noqa: E402


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
    execute(module, run, needs=POSTGRES)


if __name__ == "__main__":
    main()
