#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: app_redis_config
short_description: Write the application's Redis endpoint file (primary and replicas) from the live deployment
version_added: "0.1.0"
description:
  - Writes the JSON file the application reads its Redis endpoints from, derived from an M(erlmcp.dr.redis_info)
    result (never from inventory labels).
  - 'The content is C({"redis": {"primary": "host:port", "replicas": ["host:port", ...], "primary_node": name,
    "replica_nodes": [names]}}): the primary is the one reachable primary, the replicas are the nodes that replicate
    from it now with their link up (name order).'
  - The file is written atomically (temporary file in the same folder, fsync, rename). The version it replaces is
    kept as C(<path>.previous).
  - Idempotent - when the file already holds the same content (and mode) nothing is written.
  - Fails, touching nothing, when the result has no single primary or the folder of O(path) does not exist.
  - Runs where the file lives; it never connects to Redis.
author:
  - erlmcp.dr developers (!UNKNOWN)
options:
  path:
    description: The config file to write (the inventory's C(dr_app_redis_config_path)). Its folder must exist.
    type: path
    required: true
  info:
    description: The registered result of M(erlmcp.dr.redis_info), taken after the change.
    type: dict
    required: true
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
  - module: erlmcp.dr.redis_info
notes:
  - When the task's target (its delegated host, with C(delegate_to)) is reached with a local connection and no
    C(become), its action plugin runs this module's code in the controller's worker process instead of copying the
    module to the host and starting a Python there (same options, results and check mode). Set the variable
    C(erlmcp_dr_pg_on_controller=false) to have the module copied and run as any module is.
"""

EXAMPLES = r"""
- name: Point the application at the Redis primary and its replicas
  erlmcp.dr.app_redis_config:
    path: "{{ dr_app_redis_config_path }}"
    info: "{{ redis_after }}"
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
  sample: {"redis": {"primary": "127.0.0.1:54325", "replicas": ["127.0.0.1:54324"], "primary_node": "redis-b",
           "replica_nodes": ["redis-a"]}}
previous:
  description: What the file held before (its JSON, or its text when it was not JSON); null when it did not exist.
  returned: always
  type: raw
previous_path:
  description: Where the replaced version is kept (C(<path>.previous)); null when nothing was replaced.
  returned: always
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._app.redis_config import run  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import execute  # noqa: E402


def argument_spec():
    return dict(
        path=dict(type="path", required=True),
        info=dict(type="dict", required=True),
        mode=dict(type="raw", default="0644"),
        fencing_token=dict(type="int", no_log=False),  # a revision number, not a secret
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    execute(module, run)


if __name__ == "__main__":
    main()
