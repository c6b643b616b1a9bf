#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_restore_verify
short_description: Prove the newest pgBackRest backup restores - into a scratch instance, checked, recorded
version_added: "0.1.0"
description:
  - The scheduled proof of a backup. Restores the newest backup with the WAL archive to its end (target latest) into
    a B(scratch) instance, through the same engine as M(erlmcp.dr.pg_restore) - the backup chosen by LSN, every WAL
    segment checked in the archive before anything is written, a live data directory refused, the live cluster
    untouched.
  - Then runs O(checks) on the scratch instance, each a read-only query returning one number (a row count) that must
    be at least its C(min).
  - Only when every check holds, writes the verified-restore record (O(record)) that C(erlmcp.dr.readiness) reads
    (check C(pg_restore_verified_age)). A failed check leaves the previous record as it was.
  - Every run restores anew (a scratch this module left in O(scratch_dir) is removed first); the scratch is removed
    afterwards unless O(after) says otherwise.
  - Check mode chooses the backup and checks the WAL, and writes nothing.
author:
  - erlmcp.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - erlmcp.dr.postgres
  - erlmcp.dr.pgbackrest
  - erlmcp.dr.pgbackrest.scratch
options:
  pg_data_dir:
    description: A live data directory of the cluster; its owner runs pgBackRest and owns the scratch and the record.
    type: path
    required: true
  scratch_dir:
    description: A new directory (absent, empty, or a scratch this module left) for the scratch instance.
    type: path
    required: true
  checks:
    description:
      - Checks run on the scratch instance once restored, each C({name, query, min, database}) - C(query) returns one
        row of one number, which must be at least C(min) (default 1); C(database) defaults to O(login_db).
    type: list
    elements: dict
    default: []
  record:
    description:
      - The verified-restore record's path; default C(<stanza>.verified-restore.json) in the folder of O(config)
        (C(/etc/pgbackrest) when O(config) is not given). Readiness computes the same default.
    type: path
  after:
    description: What becomes of the scratch instance once checked - C(removed), C(stopped), or left C(running).
    type: str
    choices: [removed, stopped, running]
    default: removed
  recovery_timeout:
    description: Seconds replay gets to reach the end of the archive once started.
    type: int
    default: 600
attributes:
  check_mode:
    support: full
    description: Chooses the backup and checks the WAL archive; writes nothing.
  diff_mode:
    support: none
    description: A proof creates a new instance and a new record; there is no value to show before and after.
"""

EXAMPLES = r"""
- name: Prove last night's backup restores, with the orders in it
  erlmcp.dr.pg_restore_verify:
    stanza: main
    pg_data_dir: /var/lib/postgresql/15/main
    live_data_dirs: [/var/lib/postgresql/15/main]
    scratch_dir: /var/lib/postgresql/15/pitr-verify
    checks:
      - name: orders
        query: SELECT count(*) FROM orders
        min: 1000
        database: shop
    login_user: postgres
"""

RETURN = r"""
backup:
  description: The backup restored (label, type, lsn_start, lsn_stop, stopped_at, ...).
  returned: always
  type: dict
wal:
  description: The WAL check - archive_id, timeline, first, last, segments, missing (none).
  returned: always
  type: dict
proof:
  description: What the scratch instance replayed - last_xact_time, replay_lsn, port.
  returned: when a restore was done
  type: dict
checks:
  description: Each check's name, value, min, ok and detail.
  returned: when a restore was done
  type: list
  elements: dict
record:
  description: The verified-restore record's path.
  returned: always
  type: str
verified:
  description: What was written to the record (label, verified_at, last_xact_time, replay_lsn, checks, ...).
  returned: when every check held
  type: dict
target:
  description: The target restored to - always latest (type, value).
  returned: always
  type: dict
repository:
  description: The stanza and pgBackRest configuration read (and O(repo) when given).
  returned: always
  type: str
scratch_dir:
  description: The scratch instance's data directory.
  returned: always
  type: str
scratch_port:
  description: The scratch instance's port on 127.0.0.1.
  returned: always
  type: int
cleaned_leftover:
  description: Whether a scratch instance a cut-off run left in O(scratch_dir) was removed first.
  returned: always
  type: bool
scratch_state:
  description: What the scratch instance was left as (O(after)) - C(running), C(stopped) or C(removed).
  returned: when a restore was done
  type: str
would_check:
  description: The names of the checks a run would make.
  returned: in check mode
  type: list
  elements: str
found_done:
  description:
    - In check mode, a proven restore of the newest backup was found in O(scratch_dir) (left by a run with O(after)
      C(running) or C(stopped)); a run restores anew.
  returned: when true
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import execute  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr.verify import run  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr.options import (  # noqa: E402
    repository_argument_spec,
    scratch_argument_spec,
)
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import POSTGRES, connection_argument_spec  # noqa: E402


def argument_spec():
    spec = connection_argument_spec()
    spec.update(repository_argument_spec())
    spec.update(scratch_argument_spec())
    spec.update(
        checks=dict(type="list", elements="dict", default=[]),
        record=dict(type="path"),
        after=dict(type="str", choices=["removed", "stopped", "running"], default="removed"),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    execute(module, run, needs=POSTGRES)


if __name__ == "__main__":
    main()
