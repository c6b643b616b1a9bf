#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_restore_in_place
short_description: Restore the live PostgreSQL primary's data directory to a point in time, promoted on a new timeline
version_added: "0.1.0"
description:
  - B(A point of no return.) What the cluster committed after the target is no longer served (it stays in the WAL
    archive, on the old timeline). The runbook C(erlmcp.dr.pg_restore_in_place) asks for confirmation and then
    makes the other members rejoin the new timeline; M(erlmcp.dr.pg_restore) restores into a scratch instance
    instead, touching nothing.
  - "Before anything changes: the target (O(target_type) C(time) not in the future, C(lsn) not ahead of the
    primary's WAL, or C(name)); the node at O(login_host):O(login_port) with data directory O(pg_data_dir) is a
    running primary, and its timeline is the one recovery follows (pgBackRest's C(--target-timeline)); the backup
    (O(backup_label), else the newest that reaches the target; never by a file's time); every WAL segment from the
    backup's start to the target on that timeline is in the archive (the first missing one is named)."
  - Then the primary's current WAL segment is switched and archived, the primary is stopped (fast),
    C(pgbackrest restore --delta) rewrites only the files that differ with recovery set to stop at the target and
    promote, the node's own configuration files are put back, it is started, and the module waits until it left
    recovery on a new timeline (RV(proof)).
  - A marker beside the data directory (C(<pg_data_dir>.erlmcp-dr-in-place.json), 0600) makes a re-run safe - a run
    cut off anywhere is finished by a run with the same target; another target is refused until then; a promoted
    restore of the same backup and target, the node still on the timeline it made, is found done.
  - Check mode reads the node, chooses the backup and checks the WAL, and changes nothing.
author:
  - erlmcp.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - erlmcp.dr.postgres
  - erlmcp.dr.pgbackrest
options:
  pg_data_dir:
    description: The primary's data directory, restored in place; its owner runs pgBackRest.
    type: path
    required: true
  pg_log_file:
    description: The server log the node is started with; default C(pg_ctl_start.log) in the data directory.
    type: path
  target_type:
    description: What to restore to (latest is refused - the primary holds it already).
    type: str
    choices: [time, lsn, name]
    required: true
  target:
    description:
      - A time with its zone (ISO 8601, e.g. C(2026-12-06T11:40:00.123456+00:00)), an LSN (C(0/3000028)) or a
        restore point's name.
    type: str
    required: true
  backup_label:
    description: Restore from this backup (a label of C(pgbackrest info)); default the newest that reaches the target.
    type: str
  check_query:
    description: A read-only query run on the node once promoted (its rows in RV(proof)).
    type: str
  pg_bin_dir:
    description: The folder holding pg_ctl; default a known install path or PATH.
    type: path
  start_timeout:
    description: Seconds pg_ctl gets to stop and to start the node.
    type: int
    default: 300
  recovery_timeout:
    description: Seconds replay gets to reach the target and promote once started.
    type: int
    default: 600
  archive_timeout:
    description: Seconds the primary's last WAL segment gets to reach the archive before the primary is stopped.
    type: int
    default: 60
attributes:
  check_mode:
    support: full
    description: Reads the node, chooses the backup and checks the WAL archive; changes nothing.
  diff_mode:
    support: none
    description: The change is a timeline, reported in RV(from_timeline) and RV(new_timeline).
"""

EXAMPLES = r"""
- name: The primary back to 11:40 UTC, on a new timeline (the runbook pg_restore_in_place then rejoins the standbys)
  erlmcp.dr.pg_restore_in_place:
    stanza: main
    pg_data_dir: /var/lib/postgresql/15/main
    target_type: time
    target: "2026-12-06T11:40:00+00:00"
    login_port: 5432
    login_user: postgres
  register: restored
"""

RETURN = r"""
action:
  description:
    - What the run did or would do - C(restore), C(finish) (a cut-off run's node had promoted already) or C(done).
  returned: always
  type: str
backup:
  description: The backup restored (label, type, lsn_start, lsn_stop, ...).
  returned: when a restore is or would be done
  type: dict
wal:
  description: The WAL check - archive_id, timeline, first, last, segments (how many), missing (none).
  returned: when a restore is or would be done
  type: dict
target:
  description: The target as understood (type, value; epoch for a time).
  returned: always
  type: dict
from_timeline:
  description: The timeline the primary served and recovery followed.
  returned: when a restore is or would be done
  type: int
new_timeline:
  description: The timeline the node promoted onto.
  returned: when a restore was done
  type: int
proof:
  description:
    - What the node replayed - timeline, last_xact_time, replay_lsn, and check_rows (the rows of O(check_query)).
  returned: when a restore was done
  type: dict
found_done:
  description: A promoted restore of the same backup and target was found, the node still on its timeline.
  returned: when true
  type: bool
data_dir:
  description: The data directory restored (O(pg_data_dir), absolute).
  returned: always
  type: str
repository:
  description: The stanza and pgBackRest configuration read (and O(repo) when given).
  returned: always
  type: str
node_before:
  description: The node as the run found it - running, role, timeline, current_lsn, read_only.
  returned: always
  type: dict
archived_before_stop:
  description:
    - The WAL segment switched and archived before the primary stopped; null when a re-run found the primary
      stopped already.
  returned: when a restore was done (not when a cut-off run that promoted is only finished)
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import execute  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr.in_place import run  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._pitr.options import repository_argument_spec  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import POSTGRES, connection_argument_spec  # noqa: E402


def argument_spec():
    spec = connection_argument_spec()
    spec.update(repository_argument_spec())
    spec.update(
        pg_log_file=dict(type="path"),
        target_type=dict(type="str", choices=["time", "lsn", "name"], required=True),
        target=dict(type="str", required=True),
        backup_label=dict(type="str"),
        check_query=dict(type="str"),
        pg_bin_dir=dict(type="path"),
        start_timeout=dict(type="int", default=300),
        recovery_timeout=dict(type="int", default=600),
        archive_timeout=dict(type="int", default=60),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    execute(module, run, needs=POSTGRES)


if __name__ == "__main__":
    main()
