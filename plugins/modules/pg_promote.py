#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: pg_promote
short_description: Promote a PostgreSQL standby to primary, after checking it is safe to
version_added: "0.1.0"
description:
  - Promotes the standby the login options point at (the candidate). It only speaks SQL, so it runs from the
    controller.
  - 'Before changing anything it checks, and on any failed check fails saying what it found, what it expected and
    which parameter overrides it, leaving everything as it was:'
  - C(target_is_standby) - the candidate is reachable and in recovery.
  - C(system_identifier) - the candidate belongs to the same cluster as the old primary (when it can be asked) and
    as O(expected_system_identifier) (when given). Never overridden, not even by O(force). When the old primary
    cannot be asked and O(expected_system_identifier) is not given it cannot be compared (RV(checks[].ok) null).
  - C(old_primary_fenced) - when the old primary can be asked and is still a primary, it must be fenced
    (C(default_transaction_read_only) on, see M(erlmcp.dr.pg_fence)), or promoting makes two primaries taking
    writes. Never overridden, not even by O(force). In check mode, a O(fence) whose result says it fenced (or
    would fence) the old primary counts; the checks judge as after the fence.
  - C(replay_not_paused) - WAL replay is not paused on the candidate. Overridden by O(force).
  - C(lag) - the candidate has replayed WAL up to within O(max_lag_bytes) of where the old primary is (its current
    LSN, when it can be asked) or ended (O(primary_final_lsn)), after waiting up to O(catchup_timeout) for it to
    catch up. Measured on the replay LSN (as RV(erlmcp.dr.pg_replication_info#module:nodes.lag_bytes) is), which
    also bounds how long the promotion replays. Overridden by O(force).
  - C(old_primary_state) - when neither is known, the lag cannot be judged, and the operator must say the old
    primary is down (O(primary_confirmed_down)), or a successful stop O(fence) must have stopped it, or a
    O(fence_command) must be given. Never overridden by O(force).
  - C(single_writer) - right before C(pg_promote) (after the catch-up wait, the other checks and O(fence_command)),
    every member in O(members) (and the old primary) is read again. It refuses, with no override at all (not even
    O(force)), when a member other than the candidate is a reachable writable primary (not in recovery and
    C(default_transaction_read_only) off; a read-only fenced primary is not a writer) or a reachable node of another
    cluster (its system identifier differs). Members that cannot be reached are listed in RV(members_unreachable)
    and warned about, not blocking (a failover's old primary is down by definition). In check mode, the old
    primary is not counted as a writer when O(fence) says it would be fenced.
  - When the old primary cannot be asked and O(fence_command) is given, it runs on the controller after the checks
    pass and before promoting, and must exit 0.
  - The promotion runs C(pg_promote) (with C(wait => false)), polls until C(pg_is_in_recovery) is false (up to
    O(wait_timeout)), then verifies that a write succeeds (C(txid_current) assigns a transaction id, impossible on
    a standby) and that the timeline moved up.
  - When the candidate already is a primary nothing is done (RV(ignore:changed) false); it fails if
    O(expected_timeline) is given and differs, or if another member takes writes too (split brain, the same
    C(single_writer) re-read of O(members)). When the candidate is the old primary itself it fails.
  - In check mode the checks run (and the catch-up wait, which only reads) and the module reports whether it would
    promote; it never promotes nor runs O(fence_command).
author:
  - erlmcp.dr developers (!UNKNOWN)
extends_documentation_fragment:
  - erlmcp.dr.postgres
options:
  primary_host:
    description:
      - Host of the old primary (the one failed over away from). Used to compare system identifiers, to check it is
        fenced and to measure the candidate's lag against its current LSN. It may be down.
      - The login options other than host and port are used for it too.
    type: str
  primary_port:
    description: Port of the old primary.
    type: int
    default: 5432
  primary_final_lsn:
    description:
      - Where the old primary's WAL ended, for example RV(erlmcp.dr.pg_fence#module:final_lsn) after a stop fence.
        The lag is measured against the higher of this and the old primary's current LSN.
    type: str
  max_lag_bytes:
    description:
      - Largest lag, in bytes of WAL, at which the candidate may be promoted (Patroni's C(maximum_lag_on_failover)
        default). A switchover uses 0 with a O(catchup_timeout).
    type: int
    default: 1048576
  catchup_timeout:
    description:
      - Seconds to wait for the candidate to replay up to the old primary's current or final LSN before the lag is
        judged. 0 judges it at once.
    type: int
    default: 0
  primary_confirmed_down:
    description:
      - The operator confirms that the old primary is down and will not take writes. Required when neither the old
        primary can be asked nor O(primary_final_lsn) is known, unless a stop O(fence) stopped it or a
        O(fence_command) is given (O(force) does not replace it).
    type: bool
    default: false
  fence_command:
    description:
      - Shell command run on the controller before promoting when the old primary cannot be asked (for example one
        that powers it off through its management board). It must exit 0 within O(wait_timeout) seconds, or nothing
        is promoted.
    type: str
  force:
    description:
      - Promote even when the lag or paused-replay checks fail (the data-loss gates). Never overrides fencing
        (C(old_primary_fenced), C(old_primary_state)), the system identifier check, the single-writer re-check nor
        the candidate being a standby.
    type: bool
    default: false
  members:
    description:
      - The cluster's other nodes (the candidate may be among them, it is recognised and skipped). Each is read
        again right before promoting (the C(single_writer) check).
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The node's name (inventory hostname), used in messages and results.
        type: str
        required: true
      host:
        description: Host of the node.
        type: str
        required: true
      port:
        description: Port of the node.
        type: int
        default: 5432
  guard:
    description:
      - The cluster guard this run holds (the fact C(pg_begin_guard) that M(erlmcp.dr.pg_begin) sets for the
        switchover and failover runbooks) - its C(token) and the members it was taken on (C(held)).
      - Right before C(pg_promote()), after the C(single_writer) re-read, a strict majority of O(members) must show
        the guard's advisory lock granted to this run's holder session (the C(cluster_guard) check, no override).
        The old primary counts as held when the guard held it and this task's stop fence stopped it (a stopped
        server grants no lock to anyone).
      - The token is returned as RV(guard_token), the fencing value of the promotion.
    type: dict
    suboptions:
      token:
        description: The guard's token (its holder's sessions carry it in their application_name).
        type: str
        required: true
      held:
        description: The members (names) the guard was taken on at the start.
        type: list
        elements: str
        default: []
  fence:
    description:
      - How the old primary was fenced before this task, and the registered result of that M(erlmcp.dr.pg_fence)
        task. The module derives from it what the playbook would otherwise decide in Jinja.
      - A stop fence whose result says C(fenced) confirms the old primary is down (as O(primary_confirmed_down)
        does) and gives O(primary_final_lsn) (its RV(erlmcp.dr.pg_fence#module:final_lsn)) unless that is given.
      - In check mode, where the fence only announced itself, the old primary counts as fenced by it; outside
        check mode the old primary's real state is what counts.
      - A skipped or failed fence result, or O(fence.method=none), derives nothing.
    type: dict
    suboptions:
      method:
        description: The fence method used.
        type: str
        choices: [stop, read_only, none]
        required: true
      result:
        description: The registered result of the M(erlmcp.dr.pg_fence) task (may be a skipped result).
        type: dict
      require_clean_shutdown:
        description:
          - With O(fence.method=stop), refuse (promoting nothing) unless the fence's result says the old primary
            was shut down cleanly (RV(erlmcp.dr.pg_fence#module:clean_shutdown)). After an unclean stop its WAL may
            go on past its last checkpoint, so a zero-loss promotion cannot know its final LSN.
          - Checked before anything is asked or changed, so a switchover needs no task of its own between the fence
            and the promotion (writes are unavailable there). With O(fence.perform), checked right after the fence,
            before anything is promoted. Not checked in check mode.
        type: bool
        default: false
      perform:
        description:
          - This task fences the old primary itself (with M(erlmcp.dr.pg_fence), O(fence.method), state C(fenced),
            O(wait_timeout)) right before promoting, instead of taking the result of an earlier fence task; the fence's
            result is returned as RV(fence_result). O(fence.result) is then ignored.
          - 'The promotion is armed first: the connections to the candidate and to every member but the old primary
            are opened and kept, and every check the fence cannot change runs before it (C(target_is_standby),
            C(system_identifier), C(replay_not_paused), and no member but the old primary and the candidate taking
            writes); a failure fences nothing. Then the fence; a failed fence, or an unclean one with
            O(fence.require_clean_shutdown), never promotes. Then at once the checks that depend on the fence, the
            C(single_writer) re-read of every member on the open connections, and the promotion: no task switch
            inside the write-unavailable window.'
          - Run the task with C(delegate_to) the old primary's inventory host, so the fence reaches its host. When
            that host is this machine (local connection, no C(become), C(erlmcp_dr_pg_on_controller) not false) the
            fence runs in the controller's worker, else M(erlmcp.dr.pg_fence) is shipped to the old primary's host.
            The promotion itself always runs in the controller (it holds the connections across the fence); when
            psycopg cannot be imported there, this module is shipped whole to the old primary's host, where it fences
            locally and then promotes over SQL.
          - O(primary_host) and O(primary_port) are the fence's login host and port (O(fence.method=read_only)).
        type: bool
        default: false
      data_dir:
        description: With O(fence.perform) and O(fence.method=stop), the old primary's data directory on its host.
        type: path
      bin_dir:
        description: With O(fence.perform), the folder holding the old primary's C(pg_ctl) (found when not given).
        type: path
      log_file:
        description: With O(fence.perform), the old primary's server log file (as M(erlmcp.dr.pg_fence)'s).
        type: path
  expected_system_identifier:
    description:
      - System identifier the candidate must have (as a string), for when the old primary cannot be asked.
    type: str
  wait_timeout:
    description:
      - Seconds to wait for the promotion to finish (and for O(fence_command) to exit).
    type: int
    default: 60
  expected_timeline:
    description:
      - Timeline the candidate must be on after promotion, or already be on when it is a primary.
    type: int
attributes:
  check_mode:
    support: full
    description: Runs the checks (and the catch-up wait, which only reads) and reports whether it would promote; never
      promotes nor runs O(fence_command). With O(fence.perform) the fence runs in check mode too (it touches nothing
      and says in RV(fence_result) whether it would fence).
  diff_mode:
    support: full
    description: Shows the candidate's role and timeline before and after.
notes:
  - When the task's target (its delegated host, with C(delegate_to)) is reached with a local connection and no
    C(become), its action plugin runs this module's code in the controller's worker process instead of copying the
    module to the host and starting a Python there (same options, results and check mode). Set the variable
    C(erlmcp_dr_pg_on_controller=false) to have the module copied and run as any module is.
"""

EXAMPLES = r"""
- name: Fail over to pg-b, the old primary is fenced or down
  erlmcp.dr.pg_promote:
    login_host: "{{ hostvars['pg-b'].pg_host }}"
    login_port: "{{ hostvars['pg-b'].pg_port }}"
    login_user: "{{ pg_login_user }}"
    login_password: "{{ pg_login_password }}"
    primary_host: "{{ hostvars['pg-a'].pg_host }}"
    primary_port: "{{ hostvars['pg-a'].pg_port }}"
    max_lag_bytes: 1048576
  register: promotion

- name: Switchover - zero data loss, the old primary was stopped by erlmcp.dr.pg_fence (registered as fence)
  erlmcp.dr.pg_promote:
    login_host: 10.0.2.10
    login_port: 5432
    login_user: erlmcp_dr
    login_password: "{{ vault_pg_password }}"
    primary_host: 10.0.1.10
    fence:
      method: stop
      result: "{{ fence }}"
    members:
      - {name: db1, host: 10.0.1.10, port: 5432}
      - {name: db2, host: 10.0.2.10, port: 5432}
      - {name: db3, host: 10.0.3.10, port: 5432}
    max_lag_bytes: 0
    catchup_timeout: 60

- name: Region lost - the old primary cannot be reached, the operator confirmed it is down
  erlmcp.dr.pg_promote:
    login_host: 10.0.2.10
    login_user: erlmcp_dr
    login_password: "{{ vault_pg_password }}"
    primary_host: 10.0.1.10
    primary_confirmed_down: true
    expected_system_identifier: "7311520438512345678"
"""

RETURN = r"""
promoted:
  description: Whether this run promoted the candidate.
  returned: always
  type: bool
would_promote:
  description: In check mode, whether a real run would promote.
  returned: always
  type: bool
role:
  description: The candidate's role after the run (C(primary) or C(standby)).
  returned: when the candidate was reachable
  type: str
timeline_before:
  description: The candidate's timeline before promotion.
  returned: when the candidate was reachable
  type: int
  sample: 1
timeline_after:
  description: The candidate's timeline after promotion (or now, when it already was a primary); null in check mode.
  returned: when the candidate was reachable
  type: int
  sample: 2
lsn_before:
  description: The candidate's replay LSN just before promotion.
  returned: when the candidate was reachable
  type: str
receive_lsn_before:
  description: The candidate's receive LSN just before promotion.
  returned: when the candidate was reachable
  type: str
lsn_after:
  description: C(pg_current_wal_lsn) on the new primary; null in check mode.
  returned: when the candidate was reachable
  type: str
reference_lsn:
  description: Where the old primary is or ended (the higher of its current LSN and O(primary_final_lsn)); null
    when unknown.
  returned: when the candidate was reachable
  type: str
lag_bytes:
  description: The candidate's replay lag behind RV(reference_lsn) at the gate, in bytes; null when unknown.
  returned: when the candidate was reachable
  type: int
lost_bytes_max:
  description:
    - Bytes of WAL the old primary had that the candidate did not (at most; 0 when none), from the higher of the
      candidate's receive and replay LSN (a promotion replays all WAL received); null when unknowable (the old
      primary could not be asked and O(primary_final_lsn) was not given).
  returned: when the candidate was reachable
  type: int
catchup_seconds:
  description: Seconds spent waiting for the candidate to catch up (O(catchup_timeout)).
  returned: when the candidate was reachable
  type: float
promote_seconds:
  description: Seconds from C(pg_promote) until the candidate took a write; null when not promoted.
  returned: when the candidate was reachable
  type: float
write_xid:
  description: The transaction id C(txid_current) assigned on the new primary, proof that it takes writes.
  returned: when promoted
  type: str
system_identifier:
  description: The candidate's system identifier.
  returned: when the candidate was reachable
  type: str
old_primary:
  description: What was found at O(primary_host) (host, port, reachable, error, role, timeline, current_lsn,
    position_lsn, read_only, system_identifier); null when O(primary_host) is not given.
  returned: always
  type: dict
checks:
  description: Every check run before promoting.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: C(target_is_standby), C(system_identifier), C(old_primary_fenced), C(replay_not_paused), C(lag)
        or C(old_primary_state), then C(single_writer) (the re-check right before promoting).
      type: str
    ok:
      description: Whether it passed; null when it could not be evaluated.
      type: bool
    found:
      description: What was found.
      type: str
    expected:
      description: What was expected.
      type: str
    override:
      description: The parameter that overrides it, null when nothing does.
      type: str
    overridden:
      description: Whether it failed and O(force) overrode it (only C(lag) and C(replay_not_paused) can be).
      type: bool
members:
  description: What each member (and the old primary, named C(primary_host) when it is not a member) said right
    before promoting.
  returned: when the checks got that far
  type: list
  elements: dict
  contains:
    name:
      description: The member's name.
      type: str
    host:
      description: Its host.
      type: str
    port:
      description: Its port.
      type: int
    reachable:
      description: Whether it could be asked.
      type: bool
    error:
      description: Why not, when it could not.
      type: str
    error_kind:
      description: C(auth), C(refused), C(timeout), C(dns) or C(other); null when reachable.
      type: str
    candidate:
      description: Whether it is the candidate itself.
      type: bool
    role:
      description: C(primary) or C(standby).
      type: str
    read_only:
      description: Whether C(default_transaction_read_only) is on.
      type: bool
    writable:
      description: A primary with C(default_transaction_read_only) off.
      type: bool
    system_identifier:
      description: Its system identifier.
      type: str
members_unreachable:
  description: Names of the members that could not be asked right before promoting (warned about, not blocking).
  returned: always
  type: list
  elements: str
foreign_members:
  description: Names of reachable members whose system identifier differs from the candidate's (blocking).
  returned: always
  type: list
  elements: str
guard_token:
  description: The token of the cluster guard the promotion was checked under (O(guard)) - the promotion's fencing
    value, also in the runbook's summary.
  returned: when O(guard) is given and the candidate was promoted
  type: str
  sample: 20261206T081500-3f2a9c1d0e4b
guard_members:
  description: The members counted as holding this run's guard right before promoting.
  returned: when O(guard) is given and the guard was checked
  type: list
  elements: str
fence_result:
  description:
    - With O(fence.perform), the result of the fence this task ran, as M(erlmcp.dr.pg_fence) returns it (C(changed),
      C(fenced), C(was_fenced), C(final_lsn), C(clean_shutdown), C(cluster_state), C(fence_seconds), ...); with
      C(failed) and C(msg) when it failed; C(skipped) with O(fence.method=none).
    - Returned with a failure too, so that a rescue can lift a fence this task set.
  returned: when O(fence.perform) and the promotion was armed
  type: dict
fence_host:
  description: The inventory name of the old primary this task fenced (its C(delegate_to)).
  returned: when O(fence.perform) ran in the controller with the task delegated
  type: str
  sample: pg-a
fence_command_rc:
  description: Exit status of O(fence_command); null when it did not run.
  returned: always
  type: int
fence_command_output:
  description: Its standard output and error.
  returned: when O(fence_command) ran
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import execute  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.sql import POSTGRES, connection_argument_spec  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._postgres.promote import (  # noqa: E402
    fence_here,
    fence_params,
    run,
    run_armed,
)


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        primary_host=dict(type="str"),
        primary_port=dict(type="int", default=5432),
        primary_final_lsn=dict(type="str"),
        max_lag_bytes=dict(type="int", default=1048576),
        catchup_timeout=dict(type="int", default=0),
        primary_confirmed_down=dict(type="bool", default=False),
        fence_command=dict(type="str"),
        force=dict(type="bool", default=False),
        expected_system_identifier=dict(type="str"),
        wait_timeout=dict(type="int", default=60),
        expected_timeline=dict(type="int"),
        members=dict(type="list", elements="dict", default=[], options=dict(
            name=dict(type="str", required=True),
            host=dict(type="str", required=True),
            port=dict(type="int", default=5432),
        )),
        guard=dict(type="dict", no_log=False, options=dict(
            token=dict(type="str", required=True, no_log=False),
            held=dict(type="list", elements="str", default=[]),
        )),
        fence=dict(type="dict", options=dict(
            method=dict(type="str", choices=["stop", "read_only", "none"], required=True),
            result=dict(type="dict"),
            require_clean_shutdown=dict(type="bool", default=False),
            perform=dict(type="bool", default=False),
            data_dir=dict(type="path"),
            bin_dir=dict(type="path"),
            log_file=dict(type="path"),
        )),
    )
    return spec


def performs_fence(params):
    return bool((params.get("fence") or {}).get("perform"))


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    if performs_fence(module.params):
        # Shipped to the old primary's host (delegate_to): it fences itself here, then promotes over SQL.
        def fence_step(check_mode):
            return fence_here(fence_params(module.params), check_mode, False, module.warn)

        def armed(params, check_mode=False, diff=False, warn=None):
            return run_armed(params, fence_step, check_mode=check_mode, diff=diff, warn=warn)

        execute(module, armed, needs=POSTGRES)
    else:
        execute(module, run, needs=POSTGRES)


if __name__ == "__main__":
    main()
