#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: app_db_config
short_description: Write the application's database config (primary and replicas) from the live cluster
version_added: "0.1.0"
description:
  - Writes the JSON file the application reads its database endpoints from, derived from an
    M(erlmcp.dr.pg_replication_info) result (never from inventory labels).
  - 'The content is C({"database": {"primary": "host:port", "replicas": ["host:port", ...], "primary_node": name,
    "replica_nodes": [names]}}): the primary is the one writable primary, the replicas are the standbys that stream
    from it now (name order); endpoints are the nodes'' host and port in the result.'
  - The file is written atomically (temporary file in the same folder, fsync, rename). The version it replaces is
    kept as C(<path>.previous) (one file, overwritten on each change, not a backup per run).
  - Idempotent - when the file already holds the same content (and mode) nothing is written and
    RV(ignore:changed) is false.
  - Fails, touching nothing, when the result has no single writable primary or the folder of O(path) does not
    exist.
  - With O(nodes) instead of O(cluster), it reads the cluster itself first (what M(erlmcp.dr.pg_replication_info)
    reads, with the login options) and returns that read as RV(cluster), one task instead of two after a change.
  - With O(end_state), it also checks on the same read whether the runbook's end state holds (the filter
    C(erlmcp.dr.pg_end_state)) and returns the verdict as RV(end_state). The file names the live primary either way;
    with O(end_state.must_hold) a failed end state then fails the task, saying what does not hold (the runbook's
    verification, without a task of its own), else the runbook decides what to say. It also warns, as
    RV(writes_wait), when that primary asks for a synchronous standby and none streams from it (it acknowledges no
    write).
  - Runs where the file lives; it connects to PostgreSQL only with O(nodes).
author:
  - erlmcp.dr developers (!UNKNOWN)
options:
  path:
    description: The config file to write. Its folder must exist.
    type: path
    required: true
  cluster:
    description:
      - The registered result of M(erlmcp.dr.pg_replication_info), taken after the change.
      - Exactly one of O(cluster) and O(nodes) is required.
    type: dict
  nodes:
    description:
      - The database nodes to read instead of O(cluster) (the option of M(erlmcp.dr.pg_replication_info)).
      - Exactly one of O(cluster) and O(nodes) is required.
    type: list
    elements: dict
    suboptions:
      name:
        description: Inventory name of the node.
        type: str
        required: true
      host:
        description: Host the node listens on.
        type: str
        default: 127.0.0.1
      port:
        description: Port the node listens on.
        type: int
        default: 5432
  end_state:
    description: The end state to check on the read (the arguments of the filter C(erlmcp.dr.pg_end_state)).
    type: dict
    suboptions:
      primary:
        description: The node that must be the only writable primary, every other member streaming from it.
        type: str
        required: true
      fenced_ok:
        description: Members that may instead be fenced (not writable), such as a failover's old primary.
        type: list
        elements: str
        default: []
      left_out:
        description: Members the plan left out (names, or the plan's C(left_out) entries with C(node)).
        type: list
        elements: raw
        default: []
      must_hold:
        description:
          - Fail the task when the end state does not hold, once the file is written (it names the live primary),
            with a message that starts with C(The end state does not hold), then names the problems,
            O(end_state.also), O(end_state.hint) and what the file now says.
        type: bool
        default: false
      also:
        description: More failures the message names when the end state does not hold (a follow's, per node).
        type: list
        elements: str
        default: []
      hint:
        description: What to do when the end state does not hold, last in the message (how to finish the run).
        type: str
  login_user:
    description: The user to log in as, with O(nodes).
    type: str
    default: postgres
  login_password:
    description: The password of O(login_user), with O(nodes) (prefer a passfile or vault).
    type: str
  login_db:
    description: The database to connect to, with O(nodes).
    type: str
    default: postgres
  connect_timeout:
    description: Seconds to wait for each connection, with O(nodes).
    type: int
    default: 5
  mode:
    description: File mode of the config file, as an octal string.
    type: raw
    default: "0644"
  fencing_token:
    description:
      - The run lock's fencing token (C(token) returned by M(erlmcp.dr.run_lock) when the lock is in etcd), written into
        the file with a change as C(fencing_token), so the file names the lock holder that wrote it. It never makes a
        change by itself (a file whose content is right keeps the token of the run that wrote it).
    type: int
attributes:
  check_mode:
    support: full
    description: Reports whether the file would change and what it would hold; touches nothing.
  diff_mode:
    support: full
    description: Shows the file's JSON before and after.
seealso:
  - module: erlmcp.dr.pg_replication_info
"""

EXAMPLES = r"""
- name: Read the cluster after the promotion
  erlmcp.dr.pg_replication_info:
    nodes: "{{ pg_nodes }}"
    login_user: "{{ pg_login_user }}"
    login_password: "{{ pg_login_password }}"
  register: cluster

- name: Point the application at the new primary
  erlmcp.dr.app_db_config:
    path: /etc/erlmcp/database.json
    cluster: "{{ cluster }}"
    mode: "0640"

- name: Read the cluster, point the application at its primary, and check the end state on the same read
  erlmcp.dr.app_db_config:
    path: /etc/erlmcp/database.json
    nodes: "{{ groups['postgres'] | erlmcp.dr.pg_nodes(hostvars) }}"
    login_user: "{{ pg_login_user }}"
    end_state:
      primary: pg-b
  register: dr_app_config
"""

RETURN = r"""
path:
  description: The absolute path of the config file.
  returned: always
  type: str
config:
  description: What the file holds (or would hold, in check mode).
  returned: always
  type: dict
  sample: {"database": {"primary": "127.0.0.1:54322", "replicas": ["127.0.0.1:54321"], "primary_node": "pg-b",
           "replica_nodes": ["pg-a"]}}
previous:
  description: What the file held before (its JSON, or its text when it was not JSON); null when it did not exist.
  returned: always
  type: raw
previous_path:
  description: Where the replaced version is kept (C(<path>.previous)); null when nothing was replaced.
  returned: always
  type: str
cluster:
  description: The read of the cluster the config was made from (the result of M(erlmcp.dr.pg_replication_info)).
  returned: with O(nodes)
  type: dict
end_state:
  description: Whether the end state holds on that read.
  returned: with O(end_state)
  type: dict
  contains:
    ok:
      description: The end state holds.
      type: bool
      returned: always
    problems:
      description: What does not hold, one entry per member.
      type: list
      elements: str
      returned: always
    primary:
      description: O(end_state.primary).
      type: str
      returned: always
  sample: {"ok": false, "problems": ["pg-c is a standby streaming from pg-a, expected it to stream from pg-b"],
           "primary": "pg-b"}
writes_wait:
  description:
    - Why O(end_state.primary) acknowledges no write, also given as a warning; null when it does. It asks for a
      synchronous standby (C(synchronous_standby_names)) and none streams from it as one, which the end state does
      not judge (a new primary whose standbys were all lost with the old one's region). Never fails the task.
  returned: with O(end_state)
  type: str
  sample: "pg-b takes no write: it asks for a synchronous standby (synchronous_standby_names = 'ANY 1 (*)') and none
    streams from it; ..."
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._app.db_config import run  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import execute  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import POSTGRES, connection_argument_spec  # noqa: E402


def argument_spec():
    spec = connection_argument_spec()
    del spec["login_host"], spec["login_port"]
    spec.update(
        path=dict(type="path", required=True),
        cluster=dict(type="dict"),
        nodes=dict(type="list", elements="dict", options=dict(
            name=dict(type="str", required=True),
            host=dict(type="str", default="127.0.0.1"),
            port=dict(type="int", default=5432),
        )),
        end_state=dict(type="dict", options=dict(
            primary=dict(type="str", required=True),
            fenced_ok=dict(type="list", elements="str", default=[]),
            left_out=dict(type="list", elements="raw", default=[]),
            must_hold=dict(type="bool", default=False),
            also=dict(type="list", elements="str", default=[]),
            hint=dict(type="str"),
        )),
        mode=dict(type="raw", default="0644"),
        fencing_token=dict(type="int", no_log=False),  # a revision number, not a secret
    )
    return spec


# One source of the cluster: a read given, or the nodes to read.
SPEC_CHECKS = dict(required_one_of=[["cluster", "nodes"]], mutually_exclusive=[["cluster", "nodes"]])


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, **SPEC_CHECKS)
    execute(module, run, needs=POSTGRES if module.params["cluster"] is None else ())


if __name__ == "__main__":
    main()
