#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_backup
short_description: A verified PostgreSQL base backup through pgBackRest (full, diff or incr), then retention
version_added: "0.1.0"
description:
  - Drives pgBackRest (it writes no backup code of its own) for one stanza; runs on the database host, as the owner
    of the data directory O(pg_data_dir) when called as root (PostgreSQL and pgBackRest refuse root).
  - "Preconditions, before anything is written: the stanza exists (C(pgbackrest info)) and archiving works
    (C(pgbackrest check): a WAL switch must reach the repository within O(archive_timeout); a failing
    C(archive_command) is reported with pgBackRest's own message)."
  - "Takes the backup (C(pgbackrest backup --type=full|diff|incr)), then verifies it with C(pgbackrest verify).
    pgBackRest 2.45's verify has no C(--set) option, so it checks the whole repository (every backup and the WAL)
    and the module reads the new backup's own line (C(status: valid)). A backup that does not verify fails the task,
    stays in the repository and retention does not run."
  - Retention (O(retention_full)) is pgBackRest's count retention of full backups (C(expire
    --repo1-retention-full)) - older fulls go with the diff and incr backups that depend on them, and pgBackRest keeps
    the WAL every kept backup needs. It runs only after the new backup verified, so the newest verified backup is
    never expired; a plan that would expire the backup the newest verified one depends on is refused.
  - Check mode reads the repository and reports the backup it would take and the backups retention would expire
    (RV(would_expire)); it runs no check, no backup, no expire.
  - Every run takes a new backup (there is no end state to find done); the C(pg_backup) runbook holds the cluster's
    run lock around it.
author:
  - erlmcp.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - erlmcp.dr.postgres
  - erlmcp.dr.pgbackrest
options:
  pg_data_dir:
    description:
      - The data directory of the node backed up (pgBackRest's C(pg1-path)); its owner runs pgBackRest.
    type: path
    required: true
  pg_port:
    description: The node's port (pgBackRest's C(pg1-port)); default O(login_port).
    type: int
  backup_type:
    description: C(full), C(diff) (changes since the last full) or C(incr) (since the last backup).
    type: str
    choices: [full, diff, incr]
    default: full
  retention_full:
    description: Keep this many full backups (and their dependents and WAL); omit to keep every backup.
    type: int
  archive_timeout:
    description: Seconds the archive check gives a switched WAL segment to reach the repository.
    type: int
    default: 60
  verify:
    description: Verify the backup after it is taken (C(pgbackrest verify)); false only to save time in a test.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description: Reads C(pgbackrest info) only; reports RV(would_take) and RV(would_expire).
  diff_mode:
    support: none
    description: A backup adds to the repository; there is no value to show before and after.
"""

EXAMPLES = r"""
- name: A full backup of the primary, verified, keeping two fulls
  erlmcp.dr.pg_backup:
    stanza: main
    pg_data_dir: /var/lib/postgresql/15/main
    login_port: 5432
    login_user: postgres
    backup_type: full
    retention_full: 2
"""

RETURN = r"""
label:
  description: The backup's label in the repository.
  returned: when a backup was taken
  type: str
  sample: 20261206-113025F
type:
  description: The backup's type as pgBackRest took it (a diff or incr without a full before it is taken full).
  returned: when a backup was taken
  type: str
lsn_start:
  description: The WAL position the backup starts at (recovery replays from there).
  returned: when a backup was taken
  type: str
lsn_stop:
  description: The position the backup is consistent from (a restore target must lie after it).
  returned: when a backup was taken
  type: str
wal_start:
  description: The first WAL segment the backup needs.
  returned: when a backup was taken
  type: str
wal_stop:
  description: The last WAL segment the backup needs.
  returned: when a backup was taken
  type: str
started_at:
  description: When the backup started (epoch seconds, as pgBackRest recorded it).
  returned: when a backup was taken
  type: int
stopped_at:
  description: When it stopped (epoch seconds, as pgBackRest recorded it).
  returned: when a backup was taken
  type: int
size:
  description: The cluster's size the backup covers, in bytes.
  returned: when a backup was taken
  type: int
repository_size:
  description: Bytes the backup takes in the repository (compressed).
  returned: when a backup was taken
  type: int
duration_seconds:
  description: Seconds the backup took (the check and the verify excluded).
  returned: when a backup was taken
  type: float
verified:
  description: Whether C(pgbackrest verify) found the backup valid.
  returned: when a backup was taken
  type: bool
verify_status:
  description: The backup's status in verify's output (C(valid), or what it found).
  returned: when a backup was taken
  type: str
repository:
  description: The stanza and config used.
  returned: always
  type: str
expired:
  description: Labels retention expired.
  returned: always
  type: list
  elements: str
would_take:
  description: The backup type check mode would take.
  returned: in check mode
  type: str
would_expire:
  description: Labels retention would expire after this run's backup.
  returned: in check mode
  type: list
  elements: str
backup_type:
  description: The backup type asked for (O(backup_type)); RV(type) is the one pgBackRest took.
  returned: always
  type: str
prior:
  description: The label of the backup a diff or incr builds on; null for a full.
  returned: when a backup was taken
  type: str
verify_line:
  description: The line of C(pgbackrest verify)'s output about this backup; null when not verified.
  returned: when a backup was taken
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import execute  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr.backup import run  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr.options import repository_argument_spec  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import connection_argument_spec  # noqa: E402


def argument_spec():
    spec = connection_argument_spec()
    spec.update(repository_argument_spec())
    spec.update(
        backup_type=dict(type="str", choices=["full", "diff", "incr"], default="full"),
        retention_full=dict(type="int"),
        archive_timeout=dict(type="int", default=60),
        verify=dict(type="bool", default=True),
        pg_port=dict(type="int"),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    execute(module, run)


if __name__ == "__main__":
    main()
