#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: pg_standby_follow
short_description: Make a PostgreSQL node stream from a (new) primary, with pg_rewind when it must
description:
  - Runs on the database host of the node (it needs the data directory, C(pg_ctl) and C(pg_rewind)).
  - Used to repoint the remaining standbys after a failover, and to rejoin a former primary as a
    standby (failback preparation, the last step of a switchover).
  - Before any change it checks that the new primary is reachable and not in recovery, that it belongs
    to the node's cluster (same C(Database system identifier) in C(pg_controldata)), that the
    replication login works, and that the node is not a running primary (which may be taking writes).
  - C(follow) gives a running standby a new C(primary_conninfo) (C(ALTER SYSTEM) and C(pg_reload_conf),
    no restart) and waits until it streams from the new primary on its timeline. Whether the node's
    WAL went past the point where the new timeline forked is read from the primary's timeline history
    first; a node that diverged is rewound instead.
  - C(rewind) stops the node, runs C(pg_rewind --source-server) (after a C(CHECKPOINT) on the primary),
    keeps the node's own C(postgresql.conf), C(postgresql.auto.conf), C(pg_hba.conf) and C(pg_ident.conf),
    writes C(standby.signal) and C(primary_conninfo), starts it and waits until it streams.
    C(pg_rewind) answering "no rewind required" (after a clean switchover) is a success.
  - When C(pg_rewind) fails (for instance because the WAL it needs is gone) the node is left stopped with
    its config files as they were, and the message says to re-clone it with C(pg_basebackup).
  - Before C(pg_rewind) starts, a marker (RV(rewind_marker), C(.<data_dir name>.erlmcp-dr.rewind-in-progress)
    beside the data directory, 0600, holding the node's own config files) is written; it is removed once the node
    is verified as a standby. A later run (from any controller) that finds it knows the files may be half the
    primary's (a run killed while C(pg_rewind) copied), and never starts the node as it is. While the node's control
    file is still the one C(pg_rewind) started from (C(pg_rewind) writes it last), C(pg_rewind) starts over; if that
    fails (the interrupted copy destroyed the node's WAL), the node is re-cloned with O(allow_reclone), else refused
    with the way out. RV(interrupted_rewind_found) and RV(interrupted_rewind_recovery) say what happened.
  - Idempotent; the node already streaming from O(primary_host):O(primary_port) on the primary's
    timeline reports C(changed=false).
  - The replication password reaches the standby through a passfile on the node's host (O(passfile), mode 0600,
    owned by the data directory's owner, written atomically, one line for the primary's host:port); C(primary_conninfo)
    carries C(passfile=<path>) and never a password (PostgreSQL logs C(primary_conninfo) on every reload that changes
    it). A password found inline in the node's current C(primary_conninfo) is moved to the passfile.
  - C(pg_rewind) gets the login password through a temporary passfile (0600, removed afterwards) named by
    E(PGPASSFILE), never through E(PGPASSWORD).
  - A running primary fenced read-only (C(default_transaction_read_only) on, see M(erlmcp.dr.pg_fence)) takes no
    writes and is converted without O(allow_stop_primary); the fence setting is removed from its
    C(postgresql.auto.conf) as it becomes a standby (RV(read_only_lifted)). A writable primary still needs
    O(allow_stop_primary).
  - The replication password is never returned.
  - A node that diverged on the primary's own timeline (split brain - it runs or last ran as a primary on that
    timeline, its WAL reaches past the primary's current WAL end, or its history of the timeline differs from the
    primary's) is refused, naming what was found and changing nothing, because C(pg_rewind) compares timeline ids, finds
    them equal and would rewind nothing. With O(allow_reclone) it is re-cloned from the primary with
    C(pg_basebackup) instead (RV(action) V(reclone)); its diverged data directory is kept aside as
    C(<data_dir>.diverged-<UTC time>) (RV(diverged_copy)).
  - A node counts as following only once it has replayed a marker committed on the primary after it streams
    (a logical message, C(pg_logical_emit_message)); a node that streams but does not replay (its WAL diverged,
    its replay paused) fails within O(wait_timeout). Outside check mode this holds for a node that already streamed
    too.
  - Before it stops, starts, rewinds or re-clones anything, the module checks that O(data_dir) is the server at
    O(login_host)/O(login_port) (the port in C(postmaster.pid), or in its config files when it is stopped; the
    data directory and system identifier read over SQL there) and refuses, naming both, when it is not.
version_added: "0.1.0"
author:
  - erlmcp.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - erlmcp.dr.postgres
options:
  data_dir:
    description:
      - The node's data directory on this host.
      - O(login_host)/O(login_port) must reach the PostgreSQL serving this directory when it runs.
      - Required unless O(nodes) is given (the two exclude each other).
    type: path
  nodes:
    description:
      - Several nodes on this host to make stream from the primary all at once (one thread each), instead of the
        one node of O(data_dir). Each goes through what the module does for one node (its own checks, its own
        way back when it fails); none waits for another.
      - The result then holds RV(results), one entry per node in the order given, shaped as a loop's items
        (C(item) is the node's O(nodes[].name)); the task fails, after every node ended, when any node failed,
        naming each.
      - O(primary_host), O(primary_port), the logins, O(method), O(allow_stop_primary) and the timeouts are
        shared; O(application_name) and O(passfile) are each node's own.
    type: list
    elements: dict
    version_added: "0.1.0"
    suboptions:
      name:
        description: The node's name (its inventory host), C(item) in RV(results) and its default C(application_name).
        type: str
        required: true
      data_dir:
        description: The node's data directory on this host.
        type: path
        required: true
      login_host:
        description: Host the node's PostgreSQL answers on; defaults to O(login_host).
        type: str
      login_port:
        description: Port the node's PostgreSQL answers on; defaults to O(login_port).
        type: int
      bin_dir:
        description: Folder holding the node's PostgreSQL programs; defaults to O(bin_dir).
        type: path
      log_file:
        description: Server log file for C(pg_ctl start -l); defaults to C(pg_ctl_start.log) in its data directory.
        type: path
      passfile:
        description: The node's passfile; defaults to C(.erlmcp-dr.pgpass) in the parent folder of its data directory.
        type: path
      application_name:
        description: C(application_name) in its C(primary_conninfo); defaults to O(nodes[].name).
        type: str
  bin_dir:
    description:
      - Folder holding C(pg_ctl), C(pg_controldata) and C(pg_rewind).
      - Defaults to the usual PostgreSQL 15 install paths, then E(PATH).
    type: path
  log_file:
    description:
      - Server log file passed to C(pg_ctl start -l) when the module starts the node.
      - Defaults to C(pg_ctl_start.log) in the data directory.
    type: path
  primary_host:
    description:
      - Host of the new primary, as the node's WAL receiver must reach it (written into C(primary_conninfo)).
      - The module connects to it too, with the same O(login_user)/O(login_password)/O(login_db) as for the node.
    type: str
    required: true
  primary_port:
    description: Port of the new primary.
    type: int
    required: true
  replication_user:
    description: Role the standby streams as (C(user) in C(primary_conninfo)).
    type: str
    default: replicator
  replication_password:
    description:
      - Password of O(replication_user), written into the node's O(passfile) (never into C(primary_conninfo)).
        Never returned.
      - When not given, the password already in O(passfile) (for O(replication_user)), else one inline in the
        node's current C(primary_conninfo), is used.
      - When known, the replication login to the primary is tried before any change.
    type: str
  passfile:
    description:
      - Path of the passfile the standby reads its replication password from, on the node's host.
      - Defaults to C(.erlmcp-dr.pgpass) in the parent folder of O(data_dir) (the lab writes the same path).
      - Holds one line, C(host:port:replication:user:password) for the primary; mode 0600, owned by the data
        directory's owner.
    type: path
  start_timeout:
    description: Seconds to wait for C(pg_ctl start) of the node.
    type: int
    default: 120
  rewind_timeout:
    description: Seconds C(pg_rewind) (or C(pg_basebackup), for O(allow_reclone)) may take.
    type: int
    default: 600
  application_name:
    description:
      - C(application_name) in C(primary_conninfo), the name the primary shows in C(pg_stat_replication).
      - Defaults to the node's C(cluster_name), else the host name.
    type: str
  method:
    description:
      - V(auto) follows when it can and uses C(pg_rewind) when it must (the node's history diverged,
        it is stopped, it was a primary, or following did not reach streaming within O(wait_timeout)).
      - V(follow) never runs C(pg_rewind) (a stopped node is started as a standby as it is); it fails
        if the node cannot follow, putting things back as they were.
      - V(rewind) always stops the node and runs C(pg_rewind).
    type: str
    choices: [auto, follow, rewind]
    default: auto
  allow_stop_primary:
    description:
      - Let the module stop the node when it runs as a writable primary (not in recovery, not read-only).
      - Without it such a node is refused, since it may be taking writes; fence it first with
        M(erlmcp.dr.pg_fence). A primary fenced read-only needs no O(allow_stop_primary).
    type: bool
    default: false
  allow_reclone:
    description:
      - Re-clone (C(pg_basebackup)) a node that diverged on the primary's own timeline (split brain) instead of
        refusing it. What only that node wrote is no longer served (its data directory is kept aside, see
        RV(diverged_copy)).
      - A node running as a writable primary also needs O(allow_stop_primary).
      - Also re-clones a node whose interrupted C(pg_rewind) (see RV(rewind_marker)) cannot start over.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait for the node to stream from the new primary on its timeline (polled, never slept), for
        C(pg_ctl stop) when the node must be stopped, and for it to replay the marker committed on the primary.
    type: int
    default: 60
notes:
  - When the task's target (its delegated host, with C(delegate_to)) is reached with a local connection and no
    C(become), its action plugin runs this module's code in the controller's worker process instead of copying the
    module to the host and starting a Python there (same options, results and check mode). Set the variable
    C(erlmcp_dr_pg_on_controller=false) to have the module copied and run as any module is.
  - Check mode reports the action it would take and the C(primary_conninfo) it would set; it changes nothing.
  - Diff mode shows C(primary_conninfo) (password masked) and the role before and after.
  - Needs C(wal_log_hints=on) or data checksums on the node for C(pg_rewind), and a login that may run
    C(pg_rewind) on the primary (a superuser, or the functions C(pg_rewind) needs granted).
  - PostgreSQL binaries refuse to run as root; run as root, the module runs them as the data directory's owner.
  - A C(primary_slot_name) set on the node must exist on the new primary, else the module refuses.
requirements:
  - PostgreSQL 13 or later (primary_conninfo applied on reload), 15 tested
seealso:
  - module: erlmcp.dr.pg_promote
  - module: erlmcp.dr.pg_fence
  - module: erlmcp.dr.pg_replication_info
attributes:
  check_mode:
    support: full
    description: Runs the checks and reports the action it would take and the C(primary_conninfo) it would
      set; never writes a file, reloads, stops, starts nor rewinds the node.
  diff_mode:
    support: full
    description: Shows C(primary_conninfo) (password masked) and the node's role before and after.
"""

EXAMPLES = r"""
- name: Repoint the remaining standby at the new primary after a failover
  erlmcp.dr.pg_standby_follow:
    data_dir: "{{ pg_data_dir }}"
    bin_dir: "{{ pg_bin_dir }}"
    login_host: "{{ pg_host }}"
    login_port: "{{ pg_port }}"
    login_user: "{{ pg_login_user }}"
    login_password: "{{ pg_login_password }}"
    primary_host: "{{ hostvars[new_primary].pg_host }}"
    primary_port: "{{ hostvars[new_primary].pg_port }}"
    replication_user: "{{ pg_replication_user }}"
    replication_password: "{{ pg_replication_password }}"
    application_name: "{{ inventory_hostname }}"

- name: Rejoin the fenced former primary as a standby (pg_rewind if its history diverged)
  erlmcp.dr.pg_standby_follow:
    data_dir: "{{ pg_data_dir }}"
    login_port: "{{ pg_port }}"
    login_user: "{{ pg_login_user }}"
    login_password: "{{ pg_login_password }}"
    primary_host: "{{ hostvars[new_primary].pg_host }}"
    primary_port: "{{ hostvars[new_primary].pg_port }}"
    replication_password: "{{ pg_replication_password }}"
    allow_stop_primary: true
    wait_timeout: 120
  register: rejoin

- name: Show what a repoint would do, changing nothing
  erlmcp.dr.pg_standby_follow:
    data_dir: /var/lib/postgresql/15/main
    login_port: 5432
    login_password: "{{ pg_login_password }}"
    primary_host: db2.example.internal
    primary_port: 5432
    replication_password: "{{ pg_replication_password }}"
  check_mode: true
  diff: true
"""

RETURN = r"""
action:
  description: What was done (or would be, in check mode).
  returned: always
  type: str
  choices: [none, follow, rewind, reclone]
  sample: follow
role_before:
  description: The node before the run, V(primary) or V(standby) (running) or V(stopped).
  returned: always
  type: str
  sample: standby
timeline_before:
  description: The node's timeline before the run (from C(pg_controldata) when it was stopped).
  returned: always
  type: int
  sample: 1
timeline_after:
  description: The timeline the node streams on after the run (in check mode, the one it would be on).
  returned: always
  type: int
  sample: 2
primary_timeline:
  description: The new primary's timeline.
  returned: always
  type: int
  sample: 2
receive_lsn:
  description: The node's last received and flushed WAL location at the end (C(pg_last_wal_receive_lsn)).
  returned: always
  type: str
  sample: 0/3000148
streaming:
  description: Whether the node's WAL receiver is streaming at the end.
  returned: always
  type: bool
  sample: true
upstream:
  description: host:port the node's WAL receiver streams from at the end; null when it has none.
  returned: always
  type: str
  sample: 127.0.0.1:54322
rewind_output:
  description: The short output of C(pg_rewind) (progress lines left out); null when it did not run.
  returned: always
  type: str
  sample: "pg_rewind: servers diverged at WAL location 0/40287A0 on timeline 1 ... pg_rewind: no rewind required"
copied_bytes:
  description: >-
    Bytes copied to the node: what C(pg_rewind) reported copying (its last progress line), or the size of the
    re-cloned data directory. Only when the node was rewound or re-cloned.
  returned: when the node was rewound or re-cloned
  type: int
  sample: 5373952
min_recovery_point:
  description: >-
    The node's minimum recovery point after C(pg_rewind) (pg_controldata's "Minimum recovery ending location"): it
    accepts connections only once it has replayed WAL up to there. Only when the node was rewound.
  returned: when the node was rewound
  type: str
  sample: 0/7000028
consistency_marker_lsn:
  description: >-
    The primary's WAL flush position after the marker committed right after C(pg_rewind): a record ending past
    RV(min_recovery_point), which an idle primary's WAL may otherwise never reach (its last record an
    archive_timeout segment switch). Only when C(pg_rewind) set a minimum recovery point.
  returned: when the node was rewound
  type: str
  sample: 0/70000E0
primary_conninfo:
  description: The C(primary_conninfo) set (or that would be set); it never holds a password.
  returned: always
  type: str
  sample: "application_name='pg-c' host='127.0.0.1' passfile='/srv/pg/.erlmcp-dr.pgpass' port='54322' user='replicator'"
passfile:
  description: The passfile path the standby reads its replication password from.
  returned: always
  type: str
passfile_changed:
  description: Whether the passfile was (or, in check mode, would be) written.
  returned: always
  type: bool
read_only_lifted:
  description: Whether C(default_transaction_read_only) (a read-only fence) was removed from the node's
    C(postgresql.auto.conf) as it became a standby.
  returned: always
  type: bool
refused:
  description: Whether the module failed before it changed anything (a precondition refused the node); false when
    it succeeded or failed after a change.
  returned: always
  type: bool
split_brain:
  description: Why the node counts as diverged on the primary's own timeline (split brain); null when nothing says so.
  returned: always
  type: str
  sample: "it last ran (cluster state 'shut down') as a primary on timeline 2, the primary's own timeline: ..."
rewind_marker:
  description: The path of the node's "rewind in progress" marker (present from before C(pg_rewind) starts until
    the node is verified as a standby).
  returned: always
  type: str
  sample: /var/lib/postgresql/15/.main.erlmcp-dr.rewind-in-progress
interrupted_rewind_found:
  description: Whether the run found the marker of an earlier C(pg_rewind) of this node that was interrupted (or
    failed) before the node was verified.
  returned: always
  type: bool
  sample: false
interrupted_rewind_recovery:
  description:
    - How the node was (or would be) recovered from an interrupted C(pg_rewind); null when none was found, or when
      the node had been rewound and started and was judged as it runs.
    - V(rewind_again) - its control file was the one C(pg_rewind) started from, so C(pg_rewind) started over.
    - V(configure_rewound) - C(pg_rewind) had ended (its control file's checkpoint is on the source's timeline);
      the node was configured and started as a standby without rewinding again.
    - V(reclone) - re-cloned with C(pg_basebackup) (O(allow_reclone)).
  returned: always
  type: str
  sample: rewind_again
diverged_copy:
  description: Where a re-cloned node's diverged data directory was kept (V(reclone)); null otherwise.
  returned: always
  type: str
  sample: /var/lib/postgresql/15/main.diverged-20261206T091500Z
marker_lsn:
  description: The primary's WAL flush position right after it committed the replay marker; null in check mode.
  returned: always
  type: str
  sample: 0/3000190
replay_lsn:
  description: The node's replay position when it had replayed past RV(marker_lsn) (or the last one seen when it did
    not); null in check mode.
  returned: always
  type: str
  sample: 0/3000190
seconds:
  description: Seconds the module took.
  returned: always
  type: float
  sample: 1.84
diff:
  description: In diff mode, C(primary_conninfo) (password masked) and C(role) before and after (with O(nodes), the
    list of the nodes' diffs).
  returned: when diff mode is on
  type: raw
results:
  description:
    - With O(nodes), each node's outcome in the order given, shaped as a loop's items - C(item) (its name),
      C(failed), C(changed), C(msg) and the keys above for that node (the top-level keys above are then absent).
  returned: when O(nodes) is given
  type: list
  elements: dict
  sample: [{"item": "pg-a", "failed": false, "changed": true, "action": "rewind", "streaming": true},
           {"item": "pg-c", "failed": false, "changed": true, "action": "follow", "streaming": true}]
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres import sql as pg  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.follow import run_any  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.follow_plan import METHODS  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import execute  # noqa: E402


def argument_spec():
    spec = pg.connection_argument_spec()
    spec.update(
        data_dir=dict(type="path"),
        nodes=dict(type="list", elements="dict", options=dict(
            name=dict(type="str", required=True),
            data_dir=dict(type="path", required=True),
            login_host=dict(type="str"),
            login_port=dict(type="int"),
            bin_dir=dict(type="path"),
            log_file=dict(type="path"),
            passfile=dict(type="path", no_log=False),
            application_name=dict(type="str"),
        )),
        bin_dir=dict(type="path"),
        log_file=dict(type="path"),
        primary_host=dict(type="str", required=True),
        primary_port=dict(type="int", required=True),
        replication_user=dict(type="str", default="replicator"),
        replication_password=dict(type="str", no_log=True),
        application_name=dict(type="str"),
        method=dict(type="str", choices=list(METHODS), default="auto"),
        allow_stop_primary=dict(type="bool", default=False),
        allow_reclone=dict(type="bool", default=False),
        wait_timeout=dict(type="int", default=60),
        passfile=dict(type="path", no_log=False),
        start_timeout=dict(type="int", default=120),
        rewind_timeout=dict(type="int", default=600),
    )
    return spec


# One node (data_dir) or several (nodes), never both.
REQUIRED_ONE_OF = [["data_dir", "nodes"]]
MUTUALLY_EXCLUSIVE = [["data_dir", "nodes"]]


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True, required_one_of=REQUIRED_ONE_OF,
                           mutually_exclusive=MUTUALLY_EXCLUSIVE)
    execute(module, run_any, needs=pg.POSTGRES)


if __name__ == "__main__":
    main()
