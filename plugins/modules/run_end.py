#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: erlmcp.dr contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

# The argument spec is here, with the documentation; the work is done on the controller by the action plugin
# plugins/action/run_end.py, which validates its task against argument_spec().

from __future__ import annotations

DOCUMENTATION = r"""
module: run_end
short_description: The end of a runbook in one task - release its run lock, then publish its summary
version_added: "0.1.0"
description:
  - The C(always) section of a state-changing runbook in one task (what M(erlmcp.dr.run_lock) with
    O(erlmcp.dr.run_lock#module:state=absent) and M(ansible.builtin.set_stats) did in two; every task costs a worker
    fork and its result handling).
  - First, it releases the run lock the start took, through M(erlmcp.dr.run_lock) itself (its checks, its messages,
    its stores), with the key and the lock folder named by O(lock), the start's own lock result. Nothing is
    released when O(lock) is empty, failed (a busy lock is another run's) or skipped.
  - The lock folder comes from the start's result, not from C(dr_lock_dir), so a run whose start refused a hostile
    extra var renders none of it at its end either.
  - Then it publishes O(summary) as the run's custom stat C(summary), as C(ansible.builtin.set_stats) does with
    C(per_host=false) and C(aggregate=true), so the C(runbook) CLI, C(erlmcp_dr.run()) and AWX find it where they
    always did.
  - A release that fails fails the task, with M(erlmcp.dr.run_lock)'s message, and publishes nothing (as a failed
    release task stopped the C(always) section before its publishing task).
  - Runs on the controller only; it never connects to the managed hosts.
author:
  - erlmcp.dr developers (!UNKNOWN)
options:
  summary:
    description:
      - The run's summary envelope (the runbook's summary filter's result), published as the custom stat C(summary).
    type: dict
    required: true
  lock:
    description:
      - The start's lock result (C(pg_begin_lock), C(dns_begin_lock), C(redis_begin_lock), or the registered result of
        M(erlmcp.dr.run_lock)), or V({}) when the run took none. Its C(key) is released in its C(store_dir).
    type: dict
    default: {}
attributes:
  action:
    support: full
    description: Runs as an action plugin on the controller.
  check_mode:
    support: full
    description: A run in check mode takes no lock, so there is nothing to release; the summary is published.
  diff_mode:
    support: none
    description: No diff.
  platform:
    support: full
    platforms: all
    description: Runs on the controller.
seealso:
  - module: erlmcp.dr.run_lock
  - module: erlmcp.dr.pg_begin
"""

EXAMPLES = r"""
# The end of a database runbook: the lock pg_begin took (when it took one), then the summary.
- name: Run the runbook's steps, and always end it
  block:
    - name: Start - parameters, inventory, lock, a fresh read of the cluster
      ansible.builtin.import_role:
        name: erlmcp.dr.pg_begin
      vars:
        pg_begin_runbook: database_switchover
        pg_begin_plan: switchover
  always:
    - name: Release the cluster's run lock and publish the outcome
      erlmcp.dr.run_end:
        lock: "{{ pg_begin_lock | default({}) }}"
        summary: >-
          {{ dr_plan | default({}) | erlmcp.dr.pg_summary({}, true, ansible_check_mode, 'database_switchover') }}
"""

RETURN = r"""
released:
  description: What M(erlmcp.dr.run_lock) returned for the release (its RV(erlmcp.dr.run_lock#module:released),
    RV(erlmcp.dr.run_lock#module:holder), ...).
  returned: when O(lock) names a lock this run took
  type: dict
  sample: {key: "postgres:7301234567890123456", released: true, held: false, store: directory}
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.erlmcp.dr.plugins.module_utils._common.module import controller_only  # noqa: E402


def argument_spec():
    """The options of erlmcp.dr.run_end (its action plugin validates the task against them)."""
    return dict(
        summary=dict(type="dict", required=True),
        lock=dict(type="dict", default={}),  # the start's lock result: its key and store_dir are read
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    controller_only(module, "erlmcp.dr.run_end")


if __name__ == "__main__":
    main()
