#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_restore
short_description: Point-in-time restore of a pgBackRest backup into a scratch PostgreSQL instance, started and proven
version_added: "0.1.0"
description:
  - Restores into a B(scratch) directory (O(scratch_dir)), never into a live data directory - one of
    O(live_data_dirs), inside one or holding one is refused before anything is read from the repository - and starts
    it on its own port on 127.0.0.1 (O(scratch_port), default a free one). The live cluster is not touched.
    To restore the live primary itself, M(erlmcp.dr.pg_restore_in_place).
  - "The target (O(target_type)): C(latest) (the end of the archive), C(time) (commits at or before it are
    replayed, later ones not), C(lsn), or C(name) (a restore point made with C(pg_create_restore_point))."
  - The backup is chosen from C(pgbackrest info --output=json), by O(backup_label), else the newest whose stop
    LSN (or stop time) lies before the target; never by a file's time. A target before the oldest backup is refused.
  - "Before anything is written, every WAL segment from the backup's start to the target is looked up in the
    archive's listing (C(pgbackrest repo-ls)), following timeline history files (for a time, a name or latest, whose
    WAL position is unknown before replay: up to the newest archived segment of the target timeline); the first
    missing one is named and nothing is restored."
  - Recovery pauses at the target (C(recovery_target_action=pause)) - the scratch never promotes, makes no new
    timeline and does not archive (C(archive_mode=off)). The module waits until replay paused (latest - until
    recovery ended) and reports the last transaction replayed and its commit time (RV(proof)).
  - A marker beside the scratch directory (C(<scratch_dir>.erlmcp-dr.json)) makes a re-run safe - a run killed
    mid-restore is cleaned and redone; a proven restore of the same backup and target is found done.
  - Check mode chooses the backup and checks the WAL, and writes nothing.
author:
  - erlmcp.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - erlmcp.dr.postgres
  - erlmcp.dr.pgbackrest
  - erlmcp.dr.pgbackrest.scratch
options:
  pg_data_dir:
    description: A live data directory of the cluster; its owner runs pgBackRest and owns the scratch instance.
    type: path
    required: true
  target_type:
    description: What to restore to.
    type: str
    choices: [latest, time, lsn, name]
    default: latest
  target:
    description:
      - The target - a time with its zone (ISO 8601, e.g. C(2026-12-06T11:40:00.123456+00:00)), an LSN (C(0/3000028))
        or a restore point's name; none for C(latest).
    type: str
  backup_label:
    description: Restore from this backup (a label of C(pgbackrest info)); default the newest that reaches the target.
    type: str
  scratch_dir:
    description: A new directory (absent or empty) for the scratch instance.
    type: path
    required: true
  after:
    description: What becomes of the scratch instance once proven - left C(running), C(stopped), or C(removed).
    type: str
    choices: [running, stopped, removed]
    default: running
  check_query:
    description: A read-only query run on the scratch instance once it reached the target (its rows in RV(proof)).
    type: str
  recovery_timeout:
    description: Seconds replay gets to reach the target once started.
    type: int
    default: 600
attributes:
  check_mode:
    support: full
    description: Chooses the backup and checks the WAL archive; writes nothing.
  diff_mode:
    support: none
    description: A restore creates a new instance; there is no value to show before and after.
"""

EXAMPLES = r"""
- name: The cluster as it was at 11:40 UTC, in a scratch instance beside it
  erlmcp.dr.pg_restore:
    stanza: main
    pg_data_dir: /var/lib/postgresql/15/main
    live_data_dirs: [/var/lib/postgresql/15/main]
    target_type: time
    target: "2026-12-06T11:40:00+00:00"
    scratch_dir: /var/lib/postgresql/15/pitr-1140
    login_user: postgres
  register: restored
"""

RETURN = r"""
backup:
  description: The backup restored (label, type, lsn_start, lsn_stop, wal_start, wal_stop, size, ...).
  returned: always
  type: dict
wal:
  description: The WAL check - archive_id, timeline, first, last, segments (how many), missing (none).
  returned: always
  type: dict
target:
  description: The target as understood (type, value; epoch for a time).
  returned: always
  type: dict
scratch_dir:
  description: The scratch instance's data directory.
  returned: always
  type: str
scratch_port:
  description: Its port on 127.0.0.1.
  returned: when a restore is or would be done
  type: int
proof:
  description:
    - What the scratch instance replayed - last_xact_time (commit time of the last transaction replayed),
      replay_lsn, paused, port, and check_rows (the rows of O(check_query)).
  returned: when a restore was done
  type: dict
found_done:
  description: A proven restore of the same backup and target was found in O(scratch_dir).
  returned: when true
  type: bool
missing_segment:
  description: The first WAL segment the archive lacks, when the restore was refused for it.
  returned: on that failure
  type: str
repository:
  description: The stanza and pgBackRest configuration read (and O(repo) when given).
  returned: always
  type: str
cleaned_leftover:
  description: Whether a scratch instance a cut-off run of ours left in O(scratch_dir) was removed first.
  returned: when a restore is or would be done
  type: bool
scratch_state:
  description: What the scratch instance was left as (O(after)) - C(running), C(stopped) or C(removed).
  returned: when a restore was done
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import execute  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr.restore import run  # noqa: E402
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
        target_type=dict(type="str", choices=["latest", "time", "lsn", "name"], default="latest"),
        target=dict(type="str"),
        backup_label=dict(type="str"),
        after=dict(type="str", choices=["running", "stopped", "removed"], default="running"),
        check_query=dict(type="str"),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    execute(module, run, needs=POSTGRES)


if __name__ == "__main__":
    main()
