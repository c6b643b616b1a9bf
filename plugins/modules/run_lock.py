#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# The argument spec is here, with the documentation; the work is done on the controller by the action plugin
# plugins/action/run_lock.py, which validates its task against argument_spec().

from __future__ import annotations

DOCUMENTATION = r"""
module: run_lock
short_description: Take or release the run lock of a system, so that only one run changes it at a time
version_added: "0.1.0"
description:
  - Takes (O(state=present)) or releases (O(state=absent)) a named lock on the controller. The runbooks take it
    right after they have read the cluster's identity, with the key C(postgres:<system identifier>), and
    release it in an C(always) section, so every entry point (the C(runbook) CLI, C(erlmcp_dr.run()), plain
    C(ansible-playbook), AWX) honours it and two inventories of one cluster share it.
  - The holder record names the run id, the runbook, the operator, the PID of the C(ansible-playbook) process
    and that process's start time, the controller's host name and user, when it was taken and when its lease
    expires. It is a JSON file (mode 0600) in O(store_dir) (mode 0700) named after the SHA-256 of O(key).
  - Taking it is atomic (an C(flock) on a mutex file in O(store_dir) while the record is read and written;
    records are written to a temporary file and renamed).
  - A holder that is gone is detected and the lock taken over (RV(took_over), with a warning). On the same host
    a holder is alive while its PID runs with the start time recorded (a reused PID does not count). A holder
    on another host sharing O(store_dir) is alive until its lease (O(lease_seconds)) expires.
  - When another live run holds the lock, the task fails (RV(busy)) with a message naming the holder and how to
    release its lock if that run is really gone.
  - O(state=absent) releases the lock only when this run holds it; otherwise it changes nothing and warns,
    naming the holder.
  - Runs on the controller only; it never connects to the managed hosts.
  - The lock is bookkeeping, not a change to the system it protects, so the task never reports C(changed)
    (RV(acquired) and RV(released) say what it did), so a runbook run that changes nothing reports no change.
author:
  - erlmcp.dr developers (!UNKNOWN)
options:
  key:
    description:
      - What the lock protects, as any text. The runbooks use C(postgres:<system identifier>), read live from
        the cluster, so every inventory of one cluster maps to one lock.
    type: str
    required: true
  state:
    description:
      - V(present) takes the lock (or keeps it, when this run holds it already); V(absent) releases it when
        this run holds it.
    type: str
    choices: [present, absent]
    default: present
  run_id:
    description:
      - Who holds the lock. The same run id always holds it again; another run id is refused while the
        holder lives.
      - Default is the variable C(erlmcp_dr_run_id) when it is defined (the C(runbook) CLI and
        C(erlmcp_dr.run()) set it), else an id naming this C(ansible-playbook) process (its PID, its start
        time and the host), which is the same for every task of one run.
      - Letters, digits and C(.), C(_), C(:), C(@), C(+), C(-); at most 200 characters.
    type: str
  runbook:
    description:
      - Name of the runbook, recorded in the holder record for the messages.
    type: str
    default: ""
  operator:
    description:
      - Who started the run (recorded in the holder record for the messages).
      - Default is the variable C(erlmcp_dr_operator), which C(runbook run --operator) sets, else empty.
    type: str
    default: ""
  store_dir:
    description:
      - Folder holding the lock records.
      - Default is the environment variable E(ERLMCP_DR_LOCK_DIR) of the controller, else
        C($XDG_STATE_HOME/erlmcp-dr/locks), else C(~/.local/state/erlmcp-dr/locks).
      - Runs that must exclude each other must use the same folder. It must be on a local file system (C(flock)
        is not reliable over every network file system).
    type: path
  lease_seconds:
    description:
      - How long a holder on another host (sharing O(store_dir)) keeps the lock without its PID being checked.
        Set it above the longest run. Holders on this host are checked by PID and do not depend on it.
      - At least 60.
    type: int
    default: 3600
attributes:
  action:
    support: full
    description: Runs as an action plugin on the controller.
  check_mode:
    support: full
    description: Takes and releases nothing; reports whether the lock is free (RV(would_take)) or who holds it
      (with a warning when another live run does).
  diff_mode:
    support: none
    description: No diff.
  platform:
    support: full
    platforms: posix
    description: The controller must be Linux (C(/proc) for process start times) for PID liveness checks.
notes:
  - A killed C(ansible-playbook) leaves its record behind; the next run finds its PID gone and takes the lock
    over. A run killed and started again with the same O(run_id) holds the lock again at once.
  - A holder record written on another host is only judged by its lease. See the collection's docs/design.md
    for the shared store to use with AWX on several execution nodes.
  - "The store is chosen by the inventory: C(dr_lock_store: etcd) keeps the lock in etcd (C(dr_lock_etcd_endpoints),
    C(dr_lock_etcd_ca_file), C(dr_lock_etcd_cert_file), C(dr_lock_etcd_key_file), C(dr_lock_etcd_user),
    C(dr_lock_etcd_password) from vault, C(dr_lock_etcd_ttl)); the take is one transaction under a lease that a
    keeper process renews while C(ansible-playbook) runs, the key's create revision is the fencing token
    (RV(token)), and every later engine step of the run is refused once it no longer holds it. An etcd that
    cannot be reached fails the task; it never falls back to O(store_dir), which only the default directory
    store uses."
seealso:
  - module: erlmcp.dr.inventory_contract
"""

EXAMPLES = r"""
- name: Take the cluster's run lock (after reading its system identifier)
  erlmcp.dr.run_lock:
    key: "postgres:{{ pg_assess_result.system_identifier }}"
    runbook: database_switchover
    operator: "{{ lookup('ansible.builtin.env', 'USER') }}"

- name: Work under the lock, and always release it
  block:
    - name: The run's steps
      ansible.builtin.debug:
        msg: one writer at a time
  always:
    - name: Release the run lock
      erlmcp.dr.run_lock:
        key: "postgres:{{ pg_assess_result.system_identifier }}"
        state: absent

- name: Release the lock of a run that is really gone (ad hoc, with the run id the failure named)
  erlmcp.dr.run_lock:
    key: postgres:7301234567890123456
    state: absent
    run_id: 20261123T150102Z-database_failover-3fa2
"""

RETURN = r"""
key:
  description: O(key) as given.
  returned: always
  type: str
  sample: postgres:7301234567890123456
run_id:
  description: The run id this task acted for (O(run_id) or its default).
  returned: always
  type: str
  sample: 20261123T150102Z-database_switchover-3fa2
token:
  description: The fencing token, with the etcd store - the create revision of the lock's key, different for every
    take; the engines check it is still the live holder's right before they act.
  returned: when the etcd store holds the lock for this run
  type: int
  sample: 4211
store:
  description: Which store holds the lock - V(directory) or V(etcd) (the inventory's C(dr_lock_store)).
  returned: always, once the store was chosen
  type: str
  sample: directory
store_dir:
  description: The folder holding the lock records.
  returned: always
  type: str
  sample: /root/.local/state/erlmcp-dr/locks
path:
  description: The lock record's file.
  returned: when the store could be used
  type: str
  sample: /root/.local/state/erlmcp-dr/locks/5e2b...9c.lock.json
held:
  description: Whether this run holds the lock after the task (always V(false) in check mode and for
    O(state=absent)).
  returned: always
  type: bool
acquired:
  description: Whether this task took the lock (it was free, or its holder was gone); V(false) when this run held it.
  returned: with O(state=present) outside check mode, when the lock is held
  type: bool
busy:
  description: Whether another live run holds the lock (the task fails with O(state=present) outside check mode).
  returned: always
  type: bool
holder:
  description:
    - The holder record. With O(state=present), this run's record when it holds the lock, the other run's when
      RV(busy). With O(state=absent) or in check mode, the other run's record when another run holds it.
  returned: when there is a holder
  type: dict
  contains:
    key:
      description: The lock's key.
      type: str
    run_id:
      description: The holder's run id.
      type: str
    runbook:
      description: The holder's runbook.
      type: str
    operator:
      description: Who started the holder's run.
      type: str
    pid:
      description: PID of the holder's C(ansible-playbook) process.
      type: int
    pid_start_ticks:
      description: That process's start time (clock ticks since boot, from C(/proc/<pid>/stat)).
      type: int
    boot_id:
      description: The holder host's boot id.
      type: str
    process_started_at:
      description: That process's start time (UTC, ISO 8601).
      type: str
    hostname:
      description: The controller host the holder ran on.
      type: str
    user:
      description: The user the holder ran as.
      type: str
    started_at:
      description: When the holder took the lock (UTC, ISO 8601).
      type: str
    expires_at:
      description: When the holder's lease expires (UTC, ISO 8601).
      type: str
    lease_seconds:
      description: The holder's O(lease_seconds).
      type: int
  sample:
    key: postgres:7301234567890123456
    run_id: 20261123T150102Z-database_switchover-3fa2
    runbook: database_switchover
    operator: alice
    pid: 41213
    pid_start_ticks: 8812734
    boot_id: 0f8c4a52-33b1-4f7e-9d0c-0c5e1c7c2b11
    process_started_at: "2026-11-23T15:01:01+00:00"
    hostname: ops-1
    user: alice
    started_at: "2026-11-23T15:01:04+00:00"
    expires_at: "2026-11-23T16:01:04+00:00"
    lease_seconds: 3600
    format: 1
took_over:
  description: The record of a holder that was gone when this run took the lock over.
  returned: when the lock was taken over
  type: dict
would_take:
  description: In check mode with O(state=present), whether a run would take the lock now.
  returned: in check mode with O(state=present)
  type: bool
would_release:
  description: In check mode with O(state=absent), whether this run would release the lock.
  returned: in check mode with O(state=absent)
  type: bool
released:
  description: With O(state=absent), whether this task released the lock.
  returned: with O(state=absent), outside check mode
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import controller_only  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._lock.store import DEFAULT_LEASE_SECONDS  # noqa: E402


def argument_spec():
    """The options of erlmcp.dr.run_lock (its action plugin validates the task against them)."""
    return dict(
        key=dict(type="str", required=True, no_log=False),  # a lock's name (postgres:<system id>), not a secret
        state=dict(type="str", choices=["present", "absent"], default="present"),
        run_id=dict(type="str"),
        runbook=dict(type="str", default=""),
        store_dir=dict(type="path"),
        lease_seconds=dict(type="int", default=DEFAULT_LEASE_SECONDS),
        operator=dict(type="str", default=""),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    controller_only(module, "erlmcp.dr.run_lock")


if __name__ == "__main__":
    main()
